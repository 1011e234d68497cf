"""NodeStaking slashing: invalid receipts (attack 14)."""

from __future__ import annotations

import ape
from node_staking_kit import OPG, bps_of, make_receipt, sig, total_stake

KIND_INVALID_RECEIPT = 4


def test_attack_receipt_dated_far_in_the_future_is_slashable_at_once(
    staking, node, payer, challenger, chain, staking_domain, params
):
    receipt = make_receipt(node, payer, chain, timestamp=chain.pending_timestamp + 365 * 86_400)
    stake = total_stake(staking, node.address)
    tx = staking.slash_invalid_receipt(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=challenger.account)
    events = tx.decode_logs(staking.Slashed)
    assert events[0].kind == KIND_INVALID_RECEIPT
    assert tx.return_value == bps_of(stake, params.equivocation_slash_bps)
    assert staking.nodes(node.address).jailed


def test_attack_receipt_with_amount_above_cumulative_is_slashable(
    staking, node, payer, challenger, chain, staking_domain
):
    receipt = make_receipt(node, payer, chain, amount=10 * OPG, cumulative=5 * OPG)
    tx = staking.slash_invalid_receipt(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=challenger.account)
    assert tx.decode_logs(staking.Slashed)[0].kind == KIND_INVALID_RECEIPT
    with ape.reverts("NodeStaking: evidence already used"):
        staking.slash_invalid_receipt(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=challenger.account)


def test_well_formed_receipt_is_not_an_invalid_receipt(staking, node, payer, chain, staking_domain):
    receipt = make_receipt(node, payer, chain, timestamp=chain.pending_timestamp + 300)
    with ape.reverts("NodeStaking: receipt is well-formed"):
        staking.slash_invalid_receipt(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=payer.account)
    assert total_stake(staking, node.address) == 2 * 1_000 * OPG
