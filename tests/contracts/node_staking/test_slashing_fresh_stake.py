"""NodeStaking slashing: attack 12: front-running with fresh stake."""

from __future__ import annotations

from node_staking_kit import OPG, VERIFIER, by_weight, make_receipt, prove_fraud_by, relive


def test_attack_accused_node_front_running_with_fresh_verifier_stake_does_not_dilute_quorum(
    staking, distributor, node, payer, verifiers, challenger, chain, staking_domain, make_actor, register
):
    epoch = distributor.epoch_now()
    total = staking.total_weight_in(epoch)
    friend = make_actor(1_000_000 * OPG)
    register(friend, VERIFIER, 100_000 * OPG)
    staking.heartbeat(sender=friend.account)
    assert staking.vote_weight(friend.address) == 0
    assert staking.total_weight_in(epoch) == total
    assert staking.weight_in(epoch + 1, friend.address) == 0
    receipt = make_receipt(node, payer, chain)
    tx = prove_fraud_by(staking, receipt, node, by_weight(staking, verifiers)[1:], challenger, staking_domain)
    assert tx.decode_logs(staking.FraudProven)[0].total_weight == total


def test_attack_fresh_front_run_stake_still_weighs_nothing_next_epoch(
    staking, distributor, node, payer, verifiers, challenger, chain, staking_domain, make_actor, register
):
    friend = make_actor(1_000_000 * OPG)
    register(friend, VERIFIER, 100_000 * OPG)
    relive(chain, staking, distributor, verifiers + [friend])
    assert staking.vote_weight(friend.address) == 0
    assert staking.total_weight_in(distributor.epoch_now()) == 3_000 * OPG
    receipt = make_receipt(node, payer, chain)
    prove_fraud_by(staking, receipt, node, by_weight(staking, verifiers)[1:], challenger, staking_domain)
