"""A relayer whose settle_batch reverts for a reason no claim causes never throws receipts away: an account that is
no facilitator of the escrow (a wrong key, a facilitator rotated out by the owner) sees every settle_batch revert
("batch not proposed"); it stops settling, keeps every receipt pending, says why in /healthz and a metric, and settles
them once the account is made a facilitator (through the escrow's timelock). Only claims that revert on their own
are ever rejected, found by bisecting the batch (policy.culprits)."""

from __future__ import annotations

import sqlite3

from eth_utils import keccak
from hypothesis import given
from hypothesis import strategies as st

from offchain.devkit.devchain import transact
from offchain.devkit.devnet import FACILITATOR_ACCOUNTS, OPG, ChannelSim, RelayerProc, wait_until
from offchain.relayer.policy import REJECT_AFTER, culprits

NOT_FACILITATOR = 8
assert NOT_FACILITATOR not in FACILITATOR_ACCOUNTS


def make_facilitator(devnet, account: str) -> None:
    """The owner queues set_facilitator(account, true); once due, anyone executes it."""
    escrow = devnet.escrow
    call = keccak(text="set_facilitator(address,bool)")[:4] + bytes(12) + bytes.fromhex(account[2:]) + (1).to_bytes(
        32, "big")
    receipt = transact(devnet.w3, devnet.deployer, escrow.functions.queue_change(call))
    [queued] = escrow.events.ChangeQueued().process_receipt(receipt)
    devnet.advance(queued["args"]["eta"] - devnet.chain_now() + 1)
    transact(devnet.w3, devnet.deployer, escrow.functions.set_facilitator(account, True))
    assert escrow.functions.is_facilitator(account).call()


def test_no_facilitator_keeps_receipts_pending_says_why_and_settles_once_made_one(devnet, tmp_path):
    payer, node = devnet.new_payer(10 * OPG), devnet.new_node()
    channel = ChannelSim(devnet, payer, node)
    store = tmp_path / "r.sqlite3"
    relayer = RelayerProc(devnet, store, NOT_FACILITATOR).start()
    try:
        ids = []
        for _ in range(3):
            res = relayer.post("/settle", channel.next(OPG // 10))
            assert res.status_code == 200, res.text
            ids.append(res.json()["id"])
        health = wait_until(lambda: (r := relayer.get("/healthz")).status_code == 503 and r.json(), what="blocked")
        assert not health["ok"] and "is not a facilitator" in health["lastError"]
        assert "batch not proposed" in health["lastError"]
        assert "opg_relayer_settlement_blocked 1" in relayer.get("/metrics").text
        # Well past the REJECT_AFTER reverts that used to reject the batch: nothing rejected, nothing batched.
        wait_until(lambda: relayer.log.read_text().count("batcher tick: the relayer account") > REJECT_AFTER + 1, timeout=60,
                   what="more blocked ticks than the old rejection threshold")
        views = [relayer.get(f"/receipts/{i}").json() for i in ids]
        assert {v["status"] for v in views} == {"pending"}, views
        assert relayer.get("/batches").json() == []
        assert relayer.get("/healthz").json()["pendingReceipts"] == 3
        assert 'status="rejected"' not in relayer.get("/metrics").text.split("opg_relayer_batches_total")[-1]
        assert devnet.spent(payer, node) == 0
        # The owner makes the account a facilitator: the same receipts settle, the relayer is healthy again.
        make_facilitator(devnet, relayer.get("/healthz").json()["relayer"])
        relayer.wait_receipts(ids, timeout=60)
        assert devnet.spent(payer, node) == channel.cumulative
        health = wait_until(lambda: (r := relayer.get("/healthz")).status_code == 200 and r.json(), what="healthy")
        assert health["lastError"] is None and health["pendingReceipts"] == 0
        assert "opg_relayer_settlement_blocked 0" in relayer.get("/metrics").text
        wait_until(lambda: unconfirmed_transactions(store) == 0, what="journal rows marked done")
    finally:
        relayer.stop()


def unconfirmed_transactions(store) -> int:
    """Journal rows of the relayer's store not marked done (mined, or retired by a transaction of their nonce)."""
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT count(*) FROM transactions WHERE done_at IS NULL").fetchone()[0]


@given(st.integers(1, 40).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)))))
def test_bisection_finds_exactly_the_claims_that_revert_alone(case):
    n, bad = case
    calls = []

    def reverts(items: list[int]) -> bool:
        calls.append(items)
        return any(i in bad for i in items)

    assert culprits(list(range(n)), reverts) == sorted(bad)
    assert len(calls) <= 1 + 2 * max(1, len(bad)) * max(1, n.bit_length())


def test_bisection_blames_nobody_for_a_revert_only_a_combination_causes():
    assert culprits([1, 2, 3, 4], lambda items: {2, 3} <= set(items)) == []
    assert culprits([], lambda items: True) == []
