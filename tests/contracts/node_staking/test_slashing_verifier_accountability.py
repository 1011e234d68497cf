"""NodeStaking slashing: attack 11: idle stake, double votes, false accusers."""

from __future__ import annotations

import ape
from node_staking_kit import (
    KIND_FRAUD,
    OPG,
    VERIFIER,
    bps_of,
    by_weight,
    make_receipt,
    prove_fraud_by,
    prove_valid_by,
    relive,
    rhash,
    sig,
    total_stake,
    verdict_sig,
    wait,
)

KIND_LAZY_VERIFIER = 3


KIND_DOUBLE_VOTE = 5


KIND_FALSE_ACCUSER = 6


def test_attack_idle_verifier_stake_does_not_block_fraud_proof(
    staking, distributor, node, payer, verifiers, challenger, chain, staking_domain, make_actor, register, params
):
    idle = make_actor(1_000_000 * OPG)
    register(idle, VERIFIER, 100_000 * OPG)
    wait(chain, params.warmup)
    relive(chain, staking, distributor, verifiers)  # the idle verifier never heartbeats
    assert staking.vote_weight(idle.address) == 0
    assert staking.total_weight_in(distributor.epoch_now()) == 3_000 * OPG
    receipt = make_receipt(node, payer, chain)
    tx = prove_fraud_by(staking, receipt, node, by_weight(staking, verifiers)[1:], challenger, staking_domain)
    assert tx.decode_logs(staking.Slashed)[0].kind == KIND_FRAUD


def test_attack_verifier_signing_both_ways_is_slashed_for_double_vote(
    opg, staking, node, payer, verifiers, challenger, chain, staking_domain, params
):
    receipt = make_receipt(node, payer, chain)
    v = verifiers[0]
    stake = total_stake(staking, v.address)
    t, f = verdict_sig(receipt, True, v, staking_domain), verdict_sig(receipt, False, v, staking_domain)
    tx = staking.slash_double_vote(rhash(receipt), v.address, t, f, sender=challenger.account)
    event = tx.decode_logs(staking.Slashed)[0]
    assert event.kind == KIND_DOUBLE_VOTE and event.node == v.address
    assert tx.return_value == bps_of(stake, params.fraud_slash_bps)
    assert staking.nodes(v.address).jailed
    assert staking.vote_weight(v.address) == 0
    with ape.reverts("NodeStaking: evidence already used"):
        staking.slash_double_vote(rhash(receipt), v.address, t, f, sender=challenger.account)


def test_double_vote_with_one_way_only_reverts(staking, node, payer, verifiers, challenger, chain, staking_domain):
    receipt = make_receipt(node, payer, chain)
    v = verifiers[0]
    t = verdict_sig(receipt, True, v, staking_domain)
    with ape.reverts("NodeStaking: invalid verdict"):
        staking.slash_double_vote(rhash(receipt), v.address, t, t, sender=challenger.account)


def test_double_vote_against_non_verifier_reverts(staking, node, payer, challenger, chain, staking_domain):
    receipt = make_receipt(node, payer, chain)
    t, f = verdict_sig(receipt, True, node, staking_domain), verdict_sig(receipt, False, node, staking_domain)
    with ape.reverts("NodeStaking: not a verifier"):
        staking.slash_double_vote(rhash(receipt), node.address, t, f, sender=challenger.account)


def test_attack_false_accuser_is_slashed_after_prove_valid(
    staking, node, payer, verifiers, challenger, chain, staking_domain, params
):
    small, mid, big = by_weight(staking, verifiers)
    receipt = make_receipt(node, payer, chain)
    accusation = verdict_sig(receipt, False, small, staking_domain)
    with ape.reverts("NodeStaking: receipt not judged"):
        staking.slash_verifier(rhash(receipt), small.address, accusation, sender=challenger.account)
    tx = prove_valid_by(staking, receipt, node, [mid, big], challenger, staking_domain)
    assert len(tx.decode_logs(staking.ValidityProven)) == 1
    stake = total_stake(staking, small.address)
    tx = staking.slash_verifier(rhash(receipt), small.address, accusation, sender=challenger.account)
    event = tx.decode_logs(staking.Slashed)[0]
    assert event.kind == KIND_FALSE_ACCUSER and event.node == small.address
    assert tx.return_value == bps_of(stake, params.fraud_slash_bps)
    assert total_stake(staking, node.address) == 2 * params.min_inference_stake
    with ape.reverts("NodeStaking: proven valid"):
        prove_fraud_by(staking, receipt, node, verifiers, challenger, staking_domain)


def test_attack_false_accuser_by_on_chain_flag_is_slashed_after_prove_valid(
    staking, node, payer, verifiers, challenger, chain, staking_domain
):
    small, mid, big = by_weight(staking, verifiers)
    receipt = make_receipt(node, payer, chain)
    staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=small.account)
    prove_valid_by(staking, receipt, node, [mid, big], challenger, staking_domain)
    tx = staking.slash_verifier(rhash(receipt), small.address, b"", sender=challenger.account)
    assert tx.decode_logs(staking.Slashed)[0].kind == KIND_FALSE_ACCUSER
    with ape.reverts("NodeStaking: no flag"):
        staking.slash_verifier(rhash(receipt), mid.address, b"", sender=challenger.account)


def test_prove_valid_below_quorum_reverts(staking, node, payer, verifiers, challenger, chain, staking_domain):
    small, mid, big = by_weight(staking, verifiers)
    receipt = make_receipt(node, payer, chain)
    with ape.reverts("NodeStaking: quorum not reached"):
        prove_valid_by(staking, receipt, node, [small, big], challenger, staking_domain)


def test_prove_valid_after_fraud_proven_reverts(staking, node, payer, verifiers, challenger, chain, staking_domain):
    receipt = make_receipt(node, payer, chain)
    prove_fraud_by(staking, receipt, node, verifiers, challenger, staking_domain)
    with ape.reverts("NodeStaking: proven fraudulent"):
        prove_valid_by(staking, receipt, node, verifiers, challenger, staking_domain)


def test_lazy_verifier_is_slashed_and_loses_its_vote(
    staking, node, payer, verifiers, challenger, chain, staking_domain, params
):
    small, mid, big = by_weight(staking, verifiers)
    receipt = make_receipt(node, payer, chain)
    lazy = verdict_sig(receipt, True, small, staking_domain)
    prove_fraud_by(staking, receipt, node, [mid, big], challenger, staking_domain)
    stake = total_stake(staking, small.address)
    tx = staking.slash_verifier(rhash(receipt), small.address, lazy, sender=challenger.account)
    event = tx.decode_logs(staking.Slashed)[0]
    assert event.kind == KIND_LAZY_VERIFIER
    assert tx.return_value == bps_of(stake, params.fraud_slash_bps)
    assert staking.nodes(small.address).jailed and staking.vote_weight(small.address) == 0


def test_lazy_verifier_with_valid_false_verdict_reverts(
    staking, node, payer, verifiers, challenger, chain, staking_domain
):
    small, mid, big = by_weight(staking, verifiers)
    receipt = make_receipt(node, payer, chain)
    prove_fraud_by(staking, receipt, node, [mid, big], challenger, staking_domain)
    with ape.reverts("NodeStaking: invalid verdict"):
        staking.slash_verifier(rhash(receipt), mid.address, verdict_sig(receipt, False, mid, staking_domain),
                               sender=challenger.account)


def test_lazy_verifier_evidence_older_than_a_window_after_the_proof_reverts(
    staking, node, payer, verifiers, challenger, chain, staking_domain, params
):
    small, mid, big = by_weight(staking, verifiers)
    receipt = make_receipt(node, payer, chain)
    prove_fraud_by(staking, receipt, node, [mid, big], challenger, staking_domain)
    chain.pending_timestamp = staking.fraud_proven_at(rhash(receipt)) + params.dispute_window + 1
    with ape.reverts("NodeStaking: evidence too old"):
        staking.slash_verifier(rhash(receipt), small.address, verdict_sig(receipt, True, small, staking_domain),
                               sender=challenger.account)


def test_attack_lazy_evidence_against_many_receipts_slashes_a_verifier_once_per_window(
    staking, node, payer, verifiers, challenger, chain, staking_domain, params
):
    small, mid, big = by_weight(staking, verifiers)
    receipts = [make_receipt(node, payer, chain, request=f"r{i}") for i in range(3)]
    for receipt in receipts:
        prove_fraud_by(staking, receipt, node, [mid, big], challenger, staking_domain)
    first = staking.slash_verifier(rhash(receipts[0]), small.address,
                                   verdict_sig(receipts[0], True, small, staking_domain), sender=challenger.account)
    assert first.return_value > 0
    for receipt in receipts[1:]:
        with ape.reverts("NodeStaking: slashed this window"):
            staking.slash_verifier(rhash(receipt), small.address, verdict_sig(receipt, True, small, staking_domain),
                                   sender=challenger.account)
