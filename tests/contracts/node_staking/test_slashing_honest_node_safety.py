"""NodeStaking slashing: honest-node safety."""

from __future__ import annotations

import ape
from node_staking_kit import (
    OPG,
    VERIFIER,
    by_weight,
    deposit,
    deposit_and_settle,
    dispute,
    make_receipt,
    prove_fraud_by,
    prove_valid_by,
    sig,
    total_stake,
)


def test_honest_node_keeps_its_full_stake_through_every_attack(
    opg, staking, escrow, escrow_domain, distributor, node, payer, verifiers, sybils, challenger, chain,
    staking_domain, params, make_actor, register,
):
    stake = total_stake(staking, node.address)
    small, mid, big = by_weight(staking, verifiers)
    deposit(opg, escrow, payer, 100 * OPG)
    # Attack 2: code at its address changes nothing for an honest node.
    chain.provider.make_request("anvil_setCode", [node.address, "0x6000"])
    receipts = [make_receipt(node, payer, chain, request=f"h{i}", amount=OPG, cumulative=(i + 1) * OPG)
                for i in range(3)]
    # Attack 12: a fresh verifier joins the vote.
    friend = make_actor(1_000_000 * OPG)
    register(friend, VERIFIER, 100_000 * OPG)
    staking.heartbeat(sender=friend.account)
    for receipt in receipts:
        signature = sig(receipt, node.key, staking_domain)
        # Attack 1: sybils (and a lone honest-looking verifier) below the quorum.
        with ape.reverts("NodeStaking: quorum not reached"):
            prove_fraud_by(staking, receipt, node, sybils + [small, friend], challenger, staking_domain)
        # Attack 14: an honest receipt is well-formed.
        with ape.reverts("NodeStaking: receipt is well-formed"):
            staking.slash_invalid_receipt(receipt.as_tuple(), signature, sender=challenger.account)
        # Attack 18: flags and a payer dispute, then the quorum proves it valid.
        staking.flag(receipt.as_tuple(), signature, sender=small.account)
    dispute(opg, staking, receipts[0], node, payer, staking_domain)
    for receipt in receipts:
        prove_valid_by(staking, receipt, node, [mid, big], challenger, staking_domain)
    # An identical receipt resent after a crash is not equivocation.
    s0 = sig(receipts[0], node.key, staking_domain)
    with ape.reverts("NodeStaking: identical receipts"):
        staking.slash_equivocation(receipts[0].as_tuple(), s0, receipts[0].as_tuple(), s0, sender=challenger.account)
    deposit_and_settle(opg, escrow, escrow_domain, payer, node.address, 3 * OPG, sender=node)
    assert escrow.spent(payer.address, node.address) == 3 * OPG
    assert total_stake(staking, node.address) == stake
    assert not staking.nodes(node.address).jailed
    assert staking.is_payable(node.address)
