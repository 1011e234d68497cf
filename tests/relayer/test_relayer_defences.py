"""Relayer-side defences of v2: settling early when a payer's credits may leave (withdrawal request, expiring
session key), and charging a session key's allowance only for what the payer's own voucher does not cover."""

from __future__ import annotations

import time

import pytest

from offchain.devkit.devchain import transact
from offchain.devkit.devnet import OPG, ChannelSim, RelayerProc, item, new_key, wait_until


@pytest.fixture(scope="module")
def slow_relayer(devnet, tmp_path_factory):
    """A relayer that would wait a long time before batching (size 10,000, age 1,000 s)."""
    proc = RelayerProc(devnet, tmp_path_factory.mktemp("slow") / "relayer.sqlite3", dev_account=5,
                       batch_age=1_000, batch_size=10_000).start()
    yield proc
    proc.stop()


def authorize(devnet, payer, session, expiry_in: int, allowance: int) -> None:
    expiry = devnet.chain_now() + expiry_in
    transact(devnet.w3, payer.key, devnet.escrow.functions.authorize_signer(session.address, expiry, allowance))


def test_withdrawal_request_settles_the_payers_channels_at_once(slow_relayer, devnet):
    node, payer, bystander = devnet.new_node(), devnet.new_payer(10 * OPG), devnet.new_payer(10 * OPG)
    rid = slow_relayer.post("/settle", ChannelSim(devnet, payer, node).next(OPG)).json()["id"]
    other = slow_relayer.post("/settle", ChannelSim(devnet, bystander, node).next(OPG)).json()["id"]
    time.sleep(1.5)
    assert slow_relayer.receipt_status(rid)["status"] == "pending"
    transact(devnet.w3, payer.key, devnet.escrow.functions.request_withdrawal(10 * OPG))
    slow_relayer.wait_receipts([rid], timeout=20)
    assert devnet.spent(payer, node) == OPG
    view = slow_relayer.receipt_status(other)
    assert view["status"] == "pending" or view["batchId"] == slow_relayer.receipt_status(rid)["batchId"]


def test_session_key_near_expiry_settles_its_channels_at_once(slow_relayer, devnet):
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    session = new_key()
    authorize(devnet, payer, session, devnet.params.thaw_period + 40, 5 * OPG)  # expires in ~100 s < 120 s margin
    ch = ChannelSim(devnet, payer, node)
    res = slow_relayer.post("/settle", item(ch.receipt(OPG, cumulative=OPG), ch.voucher(3 * OPG, key=session.key)))
    assert res.status_code == 200, res.text
    slow_relayer.wait_receipts([res.json()["id"]], timeout=20)
    assert devnet.spent(payer, node) == OPG


def test_session_key_far_from_expiry_waits_for_the_batch(slow_relayer, devnet):
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    session = new_key()
    authorize(devnet, payer, session, 3_600, 5 * OPG)
    ch = ChannelSim(devnet, payer, node)
    res = slow_relayer.post("/settle", item(ch.receipt(OPG, cumulative=OPG), ch.voucher(3 * OPG, key=session.key)))
    assert res.status_code == 200, res.text
    time.sleep(2.0)
    assert slow_relayer.receipt_status(res.json()["id"])["status"] == "pending"


def test_attack_session_key_near_expiry_receipt_refused(relayer, devnet):
    """A receipt under a key with less than the relayer's settle margin left could not be settled in time."""
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    session = new_key()
    authorize(devnet, payer, session, devnet.params.thaw_period + 5, 5 * OPG)
    devnet.advance(30)  # ~35 s left < the 60 s margin
    ch = ChannelSim(devnet, payer, node)
    res = relayer.post("/settle", item(ch.receipt(OPG, cumulative=OPG), ch.voucher(3 * OPG, key=session.key)))
    assert res.status_code == 400 and res.json()["field"] == "voucher.signature", res.text
    assert "expires" in res.json()["reason"]


def test_payer_signed_claim_first_charges_the_session_allowance_only_above_it(relayer, devnet):
    """Receipts up to 3 under the payer's own voucher, one more to 5 under a session key with allowance 2: the batch
    settles the payer-signed claim first, so the key pays only 5 - 3 and the channel settles in full."""
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    session = new_key()
    authorize(devnet, payer, session, 3 * devnet.params.thaw_period, 2 * OPG)
    ch = ChannelSim(devnet, payer, node)
    by_payer = ch.voucher(3 * OPG)
    items = [item(ch.receipt(OPG, cumulative=c * OPG), by_payer) for c in (1, 2, 3)]
    items.append(item(ch.receipt(2 * OPG, cumulative=5 * OPG), ch.voucher(10 * OPG, key=session.key)))
    res = relayer.post("/settle", {"receipts": items}).json()
    ids = [r["id"] for r in res["results"]]
    assert all(r["status"] == "pending" for r in res["results"]), res
    views = relayer.wait_receipts(ids)
    assert devnet.spent(payer, node) == 5 * OPG
    assert devnet.escrow.functions.signer_of(payer.address, session.address).call()[1] == 0
    assert len({v["batchId"] for v in views}) == 1


def test_session_claim_beyond_allowance_settles_the_payer_part_and_rejects_the_rest(relayer, devnet):
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    session = new_key()
    authorize(devnet, payer, session, 3 * devnet.params.thaw_period, OPG)
    ch = ChannelSim(devnet, payer, node)
    first = item(ch.receipt(2 * OPG, cumulative=2 * OPG), ch.voucher(2 * OPG))
    second = item(ch.receipt(3 * OPG, cumulative=5 * OPG), ch.voucher(10 * OPG, key=session.key))
    res = relayer.post("/settle", {"receipts": [first, second]}).json()
    a, b = (r["id"] for r in res["results"])
    relayer.wait_receipts([a])
    view = relayer.wait_receipts([b], statuses=("rejected",))[0]
    assert "allowance" in view["reason"]
    assert devnet.spent(payer, node) == 2 * OPG
    wait_until(lambda: relayer.get("/healthz").json()["pendingReceipts"] == 0, what="no pending receipts")


def test_attack_future_receipt_beyond_max_future_refused_even_with_large_clock_skew(devnet, tmp_path):
    """A receipt more than 300 s ahead (NodeStaking.MAX_FUTURE: slashable as invalid, and it would stay disputable
    longer) is refused whatever --clock-skew says; one within the skew is accepted."""
    proc = RelayerProc(devnet, tmp_path / "skew.sqlite3", 6, "--clock-skew", "3600").start()
    try:
        node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
        ch = ChannelSim(devnet, payer, node)
        voucher = ch.voucher(5 * OPG)
        res = proc.post("/settle", item(ch.receipt(OPG, cumulative=OPG, timestamp=devnet.now() + 400), voucher))
        assert res.status_code == 400 and res.json()["field"] == "receipt.timestamp", res.text
        assert "future" in res.json()["reason"]
        res = proc.post("/settle", item(ch.receipt(OPG, cumulative=OPG, timestamp=devnet.now() + 60), voucher))
        assert res.status_code == 200, res.text
    finally:
        proc.stop()
