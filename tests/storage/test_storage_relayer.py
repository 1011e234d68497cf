"""The relayer's repositories and units of work, each test on a SQLite file and on a PostgreSQL database: accepting receipts moves the ledger and the
stored channel together, a duplicate is answered as before and an equivocation kept as evidence with a slash queued;
batches are built, confirmed, failed and rejected; the transaction journal, verdicts and exact payments round-trip;
a reopened store rebuilds the same ledger."""

from __future__ import annotations

import asyncio
import os

from eth_account import Account

from offchain.messages import Domain, Receipt, SignedReceipt, SignedVoucher, Voucher
from offchain.relayer.ledger import Ledger
from offchain.relayer.rules import ClaimResult
from offchain.relayer.store import Store, ValidReceipt
from offchain.sdk.tx import SentTx

DOMAIN = Domain(name="OPG", chain_id=31337, verifying_contract="0x" + "5" * 40)
ESCROW, STAKING = "0x" + "e" * 40, "0x" + "5" * 40
PAYER, NODE, SESSION = Account.create(), Account.create(), Account.create()


def _b32() -> str:
    return "0x" + os.urandom(32).hex()


def _valid(cumulative: int, cap: int, request_id: str | None = None, signer=PAYER) -> ValidReceipt:
    r = Receipt(request_id=request_id or _b32(), payer=PAYER.address, node=NODE.address, model_id=_b32(),
                input_hash=_b32(), output_hash=_b32(), amount=10, cumulative=cumulative, timestamp=1_700_000_000)
    v = Voucher(payer=PAYER.address, node=NODE.address, max_cumulative=cap)
    signed_r = SignedReceipt(**r.model_dump(), signature=r.sign_with(NODE.key, DOMAIN))
    signed_v = SignedVoucher(**v.model_dump(), signature=v.sign_with(signer.key, DOMAIN))
    return ValidReceipt(id=_b32(), struct_hash=_b32(), receipt=signed_r, voucher=signed_v,
                        voucher_signer=signer.address)


def _open(location, ledger=None) -> Store:
    store = Store(location, ledger or Ledger())
    store.open(31337, ESCROW, STAKING)
    return store


def test_accept_moves_ledger_and_channel_together_and_answers_duplicates_and_equivocations(store_location):
    store = _open(store_location)
    a, b = _valid(10, 100), _valid(20, 150)
    out = asyncio.run(store.accept([a, b]))
    assert [o.status for o in out] == ["pending", "pending"]
    ch = store.ledger.get(PAYER.address, NODE.address)
    assert (ch.charged, ch.cap, ch.voucher_signature, ch.pending, store.ledger.pending) == \
        (20, 150, b.voucher.signature, 2, 2)
    session = _valid(30, 300, signer=SESSION)  # a session key's voucher is the best, the payer's stays apart
    asyncio.run(store.accept([session]))
    assert (ch.cap, ch.signer, ch.payer_cap, ch.payer_signature) == (300, SESSION.address, 150, b.voucher.signature)
    [dup] = asyncio.run(store.accept([a]))
    assert dup.duplicate and dup.status == "pending"
    twin = _valid(40, 300, request_id=a.receipt.request_id)
    [eq] = asyncio.run(store.accept([twin]))
    assert eq.status == "rejected" and eq.conflicts_with == a.id and "equivocation" in eq.reason
    assert store.receipts.get(twin.id).conflicts_with == a.id
    [slash] = store.slashes.open()
    assert slash.kind == "equivocation" and slash.subject == NODE.address
    assert store.receipts.pending_of_channel(PAYER.address, NODE.address) and len(store.receipts.feed(0, 10)) == 3
    store.close()
    again = _open(store_location)  # the ledger is rebuilt from the database
    ch2 = again.ledger.get(PAYER.address, NODE.address)
    assert (ch2.charged, ch2.cap, ch2.signer, ch2.payer_cap, ch2.pending) == (30, 300, SESSION.address, 150, 3)
    again.close()


def test_batches_are_built_sent_confirmed_failed_and_rejected(store_location):
    store = _open(store_location)
    items = [_valid(10 * (i + 1), 100) for i in range(4)]
    asyncio.run(store.accept(items))
    key = (PAYER.address, NODE.address)
    ids = [r["id"] for r in store.unbatched(10)]
    assert sorted(ids) == sorted(i.id for i in items) and store.unbatched_summary()[0] == 4
    claim = {"payer": PAYER.address, "node": NODE.address, "total": "40"}
    bid = store.call(Store.job_build_batch, store.ledger, [claim], "0x" + "00" * 32, {key: ids}, [], {}, 1.0)
    assert store.inflight_batch()["id"] == bid and store.unbatched_summary()[0] == 0
    store.tx_journal().record(SentTx("batch", str(bid), "0xaa", 7, "0xraw", max_fee=9, tip=1, gas=90_000, sent_at=2.0))
    [tx] = store.transactions("batch", str(bid))
    assert (tx["tx_hash"], tx["nonce"], tx["raw"]) == ("0xaa", 7, "0xraw") and store.batch(bid)["status"] == "sent"
    store.call(Store.job_batch_failed, store.ledger, bid, "reverted", 3.0)  # back to the queue
    assert store.batch(bid)["status"] == "failed" and store.unbatched_summary()[0] == 4
    bid2 = store.call(Store.job_build_batch, store.ledger, [claim], "0x" + "11" * 32, {key: ids}, [], {}, 4.0)
    latencies = store.call(Store.job_batch_confirmed, store.ledger, bid2, "0xbb", 12, 50_000, 3, [
        ClaimResult(PAYER.address, NODE.address, 0, 40)], 40, 10.0)
    assert len(latencies) == 4
    assert store.batch(bid2)["status"] == "confirmed" and '"outcome": 0' in store.batch(bid2)["claims"]
    ch = store.ledger.get(*key)
    assert (ch.settled, ch.pending, store.ledger.pending) == (40, 0, 0)
    assert {store.receipts.get(i).status for i in ids} == {"settled"}
    # A batch whose simulation keeps reverting: its receipts are rejected for good, the ledger follows.
    more = [_valid(50, 100), _valid(60, 100)]
    asyncio.run(store.accept(more))
    bid3 = store.call(Store.job_build_batch, store.ledger, [claim], "0x" + "22" * 32, {key: [m.id for m in more]},
                      [], {}, 11.0)
    store.call(Store.job_reject_batch, store.ledger, bid3, "ClaimTooLarge", 12.0)
    assert store.batch(bid3)["status"] == "failed" and store.inflight_batch() is None
    assert {store.receipts.get(m.id).reason for m in more} == {"batch simulation reverted: ClaimTooLarge"}
    assert (store.ledger.get(*key).pending, store.ledger.pending, store.unbatched_summary()[0]) == (0, 0, 0)
    assert store.batch_counts() == {"failed": 2, "confirmed": 1}
    store.close()


def test_verdicts_slashes_withholding_and_exact_payments_round_trip(store_location):
    store = _open(store_location)
    h, verifier = _b32(), Account.create().address
    assert store.call(Store.job_verdict, h, verifier, True, "0x01", 1.0)
    assert not store.call(Store.job_verdict, h, verifier, True, "0x01", 1.0)
    assert store.call(Store.job_verdict, h, verifier, False, "0x02", 1.0)
    [double] = store.slashes.double_votes()
    assert (double.sig_true, double.sig_false) == ("0x01", "0x02")
    assert store.call(Store.job_queue_slash, "double_vote", f"double:{h}:{verifier}", verifier, {"x": 1}, 2.0)
    assert store.slashes.double_votes() == []
    slash = store.slashes.by_evidence(f"double:{h}:{verifier}")
    store.call(Store.job_slash_update, slash.id, "confirmed", 5, None, None, 3.0)
    assert store.slashes.list("confirmed")[0].amount == 5 and store.slashes.open() == []
    assert store.call(Store.job_withholding_report, h, NODE.address, verifier, "0x03", "late", 4.0)
    assert store.slashes.node_summary(NODE.address).reports == 1
    assert store.call(Store.job_exact_new, "k", PAYER.address, NODE.address, 9, {"a": 1}, 5.0) is None
    assert store.call(Store.job_exact_new, "k", PAYER.address, NODE.address, 9, {"a": 1}, 5.0).status == "new"
    store.tx_journal().record(SentTx("exact", "k", "0xcc", 1, "0xraw", max_fee=9, tip=1, gas=90_000, sent_at=6.0))
    assert store.exact.get("k").tx_hash == "0xcc" and len(store.exact.in_flight()) == 1
    store.call(Store.job_exact_update, "k", "failed", None, "reverted", 7.0)
    assert store.call(Store.job_exact_new, "k", PAYER.address, NODE.address, 9, {"a": 2}, 8.0) is None  # re-claimed
    row = store.exact.get("k")
    assert (row.status, row.tx_hash, row.error) == ("new", None, None)
    store.close()
