"""NodeStaking slashing: fraud (honest path)."""

from __future__ import annotations

import ape
from node_staking_kit import (
    BPS,
    KIND_FRAUD,
    OPG,
    SKIP_NODE_NOT_PAYABLE,
    VERIFIER,
    ZERO_ROOT,
    bps_of,
    by_weight,
    claim_for,
    deposit,
    make_receipt,
    prove_fraud_by,
    rhash,
    sig,
    total_stake,
    verdicts,
    wait,
)


def test_fraud_with_quorum_refunds_payer_pays_verifiers_burns_rest_and_jails(
    opg, staking, escrow, node, payer, verifiers, challenger, settled_receipt, staking_domain, params
):
    receipt, _ = settled_receipt
    small, mid, big = by_weight(staking, verifiers)
    stake = total_stake(staking, node.address)
    payer_before = opg.balanceOf(payer.address)
    mid_before, big_before = opg.balanceOf(mid.address), opg.balanceOf(big.address)
    tx = prove_fraud_by(staking, receipt, node, [mid, big], challenger, staking_domain)
    expected = receipt.amount * params.fraud_multiplier + bps_of(stake, params.fraud_slash_bps)
    event = tx.decode_logs(staking.Slashed)[0]
    assert event.kind == KIND_FRAUD and event.payer == payer.address
    assert event.amount == expected == tx.return_value
    assert event.refund == receipt.amount
    reward = (expected - receipt.amount) * params.challenger_reward_bps // BPS
    mid_share, big_share = reward * 1_000 // 2_500, reward * 1_500 // 2_500
    assert event.reward == mid_share + big_share
    assert event.burned == expected - receipt.amount - mid_share - big_share
    assert opg.balanceOf(payer.address) == payer_before + receipt.amount
    assert opg.balanceOf(mid.address) == mid_before + mid_share
    assert opg.balanceOf(big.address) == big_before + big_share
    assert staking.nodes(node.address).jailed
    assert staking.fraud_proven_at(rhash(receipt)) > 0
    fp = tx.decode_logs(staking.FraudProven)[0]
    assert fp.weight == 2_500 * OPG and fp.total_weight == 3_000 * OPG


def test_fraud_below_quorum_reverts(staking, node, verifiers, challenger, settled_receipt, staking_domain):
    receipt, _ = settled_receipt
    small, mid, big = by_weight(staking, verifiers)
    # 2,000 of 3,000 OPG is 6,666 bps, below 6,667.
    with ape.reverts("NodeStaking: quorum not reached"):
        prove_fraud_by(staking, receipt, node, [small, big], challenger, staking_domain)


def test_fraud_with_duplicate_verifier_reverts(staking, node, verifiers, challenger, settled_receipt, staking_domain):
    receipt, signature = settled_receipt
    _, _, big = by_weight(staking, verifiers)
    one = verdicts(receipt, [big], staking_domain)[0]
    with ape.reverts("NodeStaking: verifiers not ascending"):
        staking.slash_fraud(receipt.as_tuple(), signature, [one, one], sender=challenger.account)


def test_fraud_with_descending_verifiers_reverts(staking, verifiers, challenger, settled_receipt, staking_domain):
    receipt, signature = settled_receipt
    ordered = verdicts(receipt, verifiers, staking_domain)
    with ape.reverts("NodeStaking: verifiers not ascending"):
        staking.slash_fraud(receipt.as_tuple(), signature, list(reversed(ordered)), sender=challenger.account)


def test_fraud_with_valid_true_verdict_presented_as_false_reverts(
    staking, verifiers, challenger, settled_receipt, staking_domain
):
    receipt, signature = settled_receipt
    with ape.reverts("NodeStaking: invalid verdict"):
        staking.slash_fraud(
            receipt.as_tuple(), signature, verdicts(receipt, verifiers, staking_domain, True), sender=challenger.account
        )


def test_fraud_with_receipt_not_signed_by_its_node_reverts(
    staking, verifiers, challenger, settled_receipt, staking_domain, payer
):
    receipt, _ = settled_receipt
    with ape.reverts("NodeStaking: invalid receipt"):
        staking.slash_fraud(
            receipt.as_tuple(), sig(receipt, payer.key, staking_domain), verdicts(receipt, verifiers, staking_domain),
            sender=challenger.account,
        )


def test_fraud_same_evidence_twice_reverts(staking, node, verifiers, challenger, settled_receipt, staking_domain):
    receipt, _ = settled_receipt
    prove_fraud_by(staking, receipt, node, verifiers, challenger, staking_domain)
    with ape.reverts("NodeStaking: evidence already used"):
        prove_fraud_by(staking, receipt, node, verifiers, challenger, staking_domain)


def test_fraud_evidence_older_than_dispute_window_reverts(
    staking, escrow, distributor, node, verifiers, challenger, settled_receipt, staking_domain, chain, params
):
    receipt, _ = settled_receipt
    # The window runs from the later of the receipt's time and its channel's settlement (a loaded machine may mine
    # the settlement a second after the receipt's time).
    start = max(receipt.timestamp, escrow.settled_at(receipt.payer, receipt.node))
    chain.pending_timestamp = start + params.dispute_window + 1
    with ape.reverts("NodeStaking: evidence too old"):
        prove_fraud_by(staking, receipt, node, verifiers, challenger, staking_domain)


def test_fraud_with_no_live_weight_reverts(
    staking, distributor, node, payer, chain, make_actor, register, staking_domain, challenger, params
):
    lone = make_actor()
    register(lone, VERIFIER, 500 * OPG)
    wait(chain, 2 * params.epoch_length)  # an epoch nobody heartbeated for
    assert staking.total_weight_in(distributor.epoch_now()) == 0
    receipt = make_receipt(node, payer, chain)
    with ape.reverts("NodeStaking: no live weight"):
        prove_fraud_by(staking, receipt, node, [lone], challenger, staking_domain)


def test_fraud_against_a_verifier_account_reverts(staking, verifiers, payer, chain, challenger, staking_domain):
    small, mid, big = by_weight(staking, verifiers)
    receipt = make_receipt(small, payer, chain)
    with ape.reverts("NodeStaking: not an inference node"):
        prove_fraud_by(staking, receipt, small, [mid, big], challenger, staking_domain)


def test_jailed_node_cannot_be_paid_by_settle_batch(
    opg, staking, escrow, escrow_domain, node, payer, challenger, equivocation
):
    staking.slash_equivocation(*equivocation, sender=challenger.account)
    deposit(opg, escrow, payer, 50 * OPG)
    tx = escrow.settle_batch(
        [claim_for(payer, node.address, 5 * OPG, escrow_domain)], ZERO_ROOT, sender=ape.accounts.test_accounts[2]
    )
    skipped = tx.decode_logs(escrow.ClaimSkipped)
    assert skipped[0].reason == SKIP_NODE_NOT_PAYABLE


def test_jailed_node_is_released_after_a_window_with_stake_restored(
    opg, staking, node, payer, challenger, equivocation, chain, params
):
    before = staking.nodes(node.address).stake
    tx = staking.slash_equivocation(*equivocation, sender=challenger.account)
    lost = tx.return_value
    opg.approve(staking, lost, sender=node.account)
    wait(chain, params.dispute_window)
    tx = staking.add_stake(lost, sender=node.account)
    assert len(tx.decode_logs(staking.Unjailed)) == 1
    assert not staking.nodes(node.address).jailed
    assert staking.nodes(node.address).stake == before
    assert staking.is_payable(node.address)
