"""The SDK TxManager's write-ahead journal on a store's ``transactions`` table: a record is committed before
``record`` returns (another connection sees it), ``done`` retires every record of the mined nonce (the replacements),
``unconfirmed`` survives a restart, and the relayer's journal marks the subject sent in the same commit."""

from __future__ import annotations

import sqlite3

from offchain.node.store import NodeStore
from offchain.relayer.ledger import Ledger
from offchain.relayer.store import Store
from offchain.sdk.tx import SentTx
from offchain.verifier.store import VerifierStore

ESCROW, STAKING = "0x" + "e" * 40, "0x" + "5" * 40


def _tx(h: str, nonce: int, kind: str = "flag", ref: str = "r", at: float = 1.0) -> SentTx:
    return SentTx(kind=kind, ref=ref, tx_hash=h, nonce=nonce, raw="0xraw" + h[2:], max_fee=30, tip=2, gas=21_000,
                  sent_at=at)


def test_records_are_durable_before_broadcast_and_done_retires_a_nonce(tmp_path):
    store = VerifierStore(tmp_path / "v.sqlite3")
    journal = store.tx_journal()
    journal.record(_tx("0x01", 5))
    other = sqlite3.connect(tmp_path / "v.sqlite3")  # committed: visible to another connection at once
    assert other.execute("SELECT nonce, max_fee, gas FROM transactions WHERE tx_hash = '0x01'").fetchone() == \
        (5, "30", 21_000)
    journal.record(_tx("0x02", 5, at=2.0))  # a replacement of nonce 5
    journal.record(_tx("0x03", 6, at=3.0))
    assert [t.tx_hash for t in journal.unconfirmed()] == ["0x01", "0x02", "0x03"]
    journal.done("0x02")  # the replacement was mined: the original is retired with it
    assert journal.unconfirmed() == [_tx("0x03", 6, at=3.0)]
    store.close()
    again = VerifierStore(tmp_path / "v.sqlite3")
    assert [t.tx_hash for t in again.tx_journal().unconfirmed()] == ["0x03"]
    again.close()
    node = NodeStore(tmp_path / "n.sqlite3")
    node.open(31337, ESCROW, STAKING, "0x" + "a" * 40)
    node.tx_journal().record(_tx("0x04", 0, kind="propose"))
    assert [t.kind for t in node.tx_journal().unconfirmed()] == ["propose"]
    node.close()


def test_the_relayer_journal_marks_the_subject_sent_in_the_same_commit(store_location):
    store = Store(store_location, Ledger())
    store.open(31337, ESCROW, STAKING)
    bid = store.call(Store.job_build_batch, store.ledger, [{"payer": "0xp", "node": "0xn", "total": "1"}],
                     "0x" + "00" * 32, {("0xp", "0xn"): []}, [], {}, 1.0)
    store.tx_journal().record(_tx("0xaa", 9, kind="batch", ref=str(bid)))
    batch = store.batch(bid)
    assert (batch["status"], batch["tx_hash"], batch["nonce"], batch["attempts"]) == ("sent", "0xaa", 9, 1)
    [rec] = store.transactions("batch", str(bid))
    assert (rec["tx_hash"], rec["nonce"], rec["max_fee"], rec["gas"]) == ("0xaa", 9, 30, 21_000)
    store.tx_journal().done("0xaa")  # mined: out of the journal; the batcher confirms the batch itself
    assert store.tx_journal().unconfirmed() == [] and store.batch(bid)["status"] == "sent"
    store.close()
