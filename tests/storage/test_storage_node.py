"""The node's store on a real SQLite file: a receipt and its channel's best voucher commit together (durable or
not), the outbox moves pending -> delivered | refused, an exact authorisation is claimed once, and a second process
reads it while the node runs."""

from __future__ import annotations

import sqlite3

import pytest

from offchain.node.store import NodeStore
from offchain.storage import StoreMismatch

ESCROW, STAKING, NODE = "0x" + "e" * 40, "0x" + "5" * 40, "0x" + "a" * 40


def _add(store: NodeStore, i: int, cumulative: int, durable: bool = True, voucher: dict | None = None) -> None:
    store.add_receipt(receipt_id=f"0x{i:064x}", request_id=f"0x{i + 1000:064x}", payer="0xP", amount=5,
                      cumulative=cumulative, voucher_cap=100, item=b'{"receipt": {"n": %d}}' % i,
                      payload={"i": i}, best_voucher=voucher, durable=durable)


def test_receipts_outbox_and_exact_claims(tmp_path):
    store = NodeStore(tmp_path / "n.sqlite3")
    commits: list[float] = []
    store.on_commit = commits.append
    store.open(31337, ESCROW, STAKING, NODE)
    _add(store, 1, 5, voucher={"maxCumulative": "100", "payer": "0xP"})
    _add(store, 2, 10, durable=False)
    with pytest.raises(sqlite3.IntegrityError):  # the same request id again: refused, nothing stored
        store.add_receipt(receipt_id="0x" + "f" * 64, request_id=f"0x{1001:064x}", payer="0xP", amount=5,
                          cumulative=15, voucher_cap=100, item=b"{}", payload={}, best_voucher=None)
    assert store.channels() == [("0xP", 10, {"maxCumulative": "100", "payer": "0xP"})]
    assert store.receipt(f"0x{1:064x}").receipt == {"n": 1} and store.receipt_ids_above("0xP", 5) == [f"0x{2:064x}"]
    items = store.outbox_pending(10)
    assert [i.id for i in items] == [f"0x{1:064x}", f"0x{2:064x}"] and store.outbox_oldest() is not None
    store.outbox_attempted([items[0].seq], "relayer down")
    store.outbox_done([(items[0].seq, "delivered", "pending", None), (items[1].seq, "refused", None, "bad")])
    assert store.outbox_counts() == {"delivered": 1, "refused": 1} and store.outbox_pending(10) == []
    assert store.exact_claim("k", "0xP", 7) is None and store.exact_claim("k", "0xP", 7)["status"] == "claimed"
    store.exact_release("k")
    assert store.exact_claim("k", "0xP", 7) is None
    store.exact_update("k", "settled", "0xtx", None)
    assert store.exact_claim("k", "0xP", 7)["tx_hash"] == "0xtx"
    assert len(commits) >= 8
    reader = NodeStore(tmp_path / "n.sqlite3")  # e.g. ``opg node settle`` while the node runs
    assert reader.open_readonly()["node"] == NODE and len(reader.channels()) == 1
    reader.close()
    store.close()
    with pytest.raises(RuntimeError):
        _add(store, 3, 15)
    with pytest.raises(StoreMismatch):
        NodeStore(tmp_path / "n.sqlite3").open(31337, ESCROW, STAKING, "0x" + "b" * 40)
