"""The relayer's own duties (issue 13, still open from v2): receipts invalid on their face that reach it are slashed.

A node that signs a receipt with ``amount > cumulative``, or dated more than ``NodeStaking.MAX_FUTURE`` (300 s) after
the chain's clock, has signed something no honest node signs: the relayer refuses it at ``/settle`` and submits
``slash_invalid_receipt`` itself (it earns the challenger reward). A receipt merely ahead of the relayer's own clock
skew bound but within the contract's is refused without a slash.
"""

from __future__ import annotations

from offchain.devkit.devnet import OPG, ChannelSim, item, wait_until


def slash_of(relayer, node_address: str) -> dict | None:
    for s in relayer.get("/slashes").json():
        if s["kind"] == "invalid_receipt" and s["subject"] == node_address:
            return s
    return None


def test_attack_receipt_with_amount_above_cumulative_is_slashed_by_the_relayer(devnet, relayer):
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    ch = ChannelSim(devnet, payer, node)
    stake_before, _ = devnet.stake(node)
    res = relayer.post("/settle", item(ch.receipt(3 * OPG, cumulative=2 * OPG), ch.voucher(5 * OPG)))
    assert res.status_code == 400 and res.json()["error"] == "invalid_amount", res.text
    slash = wait_until(lambda: (s := slash_of(relayer, node.address)) and s["status"] == "confirmed" and s,
                       timeout=30, what="the invalid-receipt slash")
    assert int(slash["amount"]) > 0
    stake_after, _ = devnet.stake(node)
    assert stake_after < stake_before
    assert devnet.staking.functions.is_active_as(node.address, 1).call() is False  # jailed


def test_attack_receipt_dated_beyond_the_contracts_bound_is_slashed_by_the_relayer(devnet, relayer):
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    ch = ChannelSim(devnet, payer, node)
    receipt = ch.receipt(OPG, timestamp=devnet.chain_now() + 3_600)
    res = relayer.post("/settle", item(receipt, ch.voucher(5 * OPG)))
    assert res.status_code == 400 and res.json()["error"] == "invalid_timestamp", res.text
    wait_until(lambda: (s := slash_of(relayer, node.address)) and s["status"] == "confirmed",
               timeout=30, what="the invalid-receipt slash")
    assert devnet.staking.functions.is_active_as(node.address, 1).call() is False


def test_receipt_ahead_of_the_relayers_skew_but_within_the_contracts_bound_is_refused_not_slashed(devnet, relayer):
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    ch = ChannelSim(devnet, payer, node)
    receipt = ch.receipt(OPG, timestamp=devnet.now() + 200)  # > the relayer's 120 s skew, < MAX_FUTURE (300 s)
    res = relayer.post("/settle", item(receipt, ch.voucher(5 * OPG)))
    assert res.status_code == 400 and res.json()["error"] == "invalid_timestamp", res.text
    import time

    time.sleep(2)
    assert slash_of(relayer, node.address) is None
    assert devnet.staking.functions.is_active_as(node.address, 1).call() is True


def test_receipt_signed_by_another_key_is_refused_and_not_slashed(devnet, relayer):
    """Only the node's own signature is evidence: a made-up receipt in a node's name slashes nobody."""
    node, payer, impostor = devnet.new_node(), devnet.new_payer(10 * OPG), devnet.new_payer(0)
    ch = ChannelSim(devnet, payer, node)
    receipt = ch.receipt(3 * OPG, cumulative=2 * OPG, key=impostor.key)
    res = relayer.post("/settle", item(receipt, ch.voucher(5 * OPG)))
    assert res.status_code == 400
    import time

    time.sleep(2)
    assert slash_of(relayer, node.address) is None


# "One price cap per voucher": a node signs a made-up receipt for the rest of a cap ----------------------------
def test_attack_made_up_receipt_for_the_rest_of_a_cap_is_flagged_by_the_single_device_client(devnet, tmp_path):
    """The client signed a voucher with room for one request (cap 3 OPG), was served and charged 1 OPG; the node then
    signs a receipt for the other 2 OPG for a request never made and hands it to the relayer. The relayer lists the
    payer's pending receipts with their voucher's cap; the client finds one it never received nor asked for, and
    blocks the node (it signs nothing more for it) before the batch (a relayer with a 10-minute batch age)."""
    from offchain.client.payer import Payer
    from offchain.devkit.devnet import RelayerProc

    relayer = RelayerProc(devnet, tmp_path / "slow.sqlite3", dev_account=6, batch_age=600, batch_size=10_000).start()
    try:
        node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
        client = Payer.from_key(payer.key, devnet.deployment_file, state=tmp_path / "client", relayer_url=relayer.url)
        ch = ChannelSim(devnet, payer, node)
        voucher = ch.voucher(3 * OPG)
        served = ch.receipt(OPG)
        ch.cumulative = OPG
        ok = relayer.post("/settle", item(served, voucher))
        assert ok.status_code == 200, ok.text
        client.state.save_request({"receiptId": ok.json()["id"], "node": node.address, "payer": payer.address})
        [listed] = relayer.get(f"/payers/{payer.address}/pending").json()["receipts"]
        assert listed["id"] == ok.json()["id"] and listed["voucherCap"] == str(3 * OPG)
        assert client.audit() == []  # the honest path: every receipt accounted for
        assert client.channel_state(node.address) is None or client.channel_state(node.address).blocked is None
        made_up = ch.receipt(2 * OPG)  # cumulative 3 OPG: the whole cap
        bad = relayer.post("/settle", item(made_up, voucher))
        assert bad.status_code == 200, bad.text
        [gap] = client.audit()
        assert gap["id"] == bad.json()["id"] and gap["voucherCap"] == str(3 * OPG) and gap["node"] == node.address
        state = client.channel_state(node.address)
        assert state.blocked and state.blocked_receipt == bad.json()["id"]
        client.close()
    finally:
        relayer.stop()
