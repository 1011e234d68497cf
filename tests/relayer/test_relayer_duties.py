"""The relayer's own duties (issue 13, still open from v2): receipts invalid on their face that reach it are slashed.

A node that signs a receipt with ``amount > cumulative``, or dated more than ``NodeStaking.MAX_FUTURE`` (300 s) after
the chain's clock, has signed something no honest node signs: the relayer refuses it at ``/settle`` and submits
``slash_invalid_receipt`` itself (it earns the challenger reward). A receipt merely ahead of the relayer's own clock
skew bound but within the contract's is refused without a slash.
"""

from __future__ import annotations

from opg_devnet import OPG, ChannelSim, item, wait_until


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
