"""NodeStaking slashing: attack 1: sybil verifiers."""

from __future__ import annotations

import ape
from node_staking_kit import (
    KIND_FRAUD,
    OPG,
    by_weight,
    make_receipt,
    prove_fraud_by,
    prove_valid_by,
    relive,
    rhash,
    total_stake,
    verdict_sig,
    wait,
)


def test_attack_fresh_sybil_verifiers_have_no_weight_and_cannot_slash_honest_node(
    staking, distributor, node, payer, verifiers, sybils, challenger, chain, staking_domain, params
):
    for s in sybils:
        assert staking.heartbeat(sender=s.account).return_value == 0
    receipt = make_receipt(node, payer, chain)
    with ape.reverts("NodeStaking: quorum not reached"):
        prove_fraud_by(staking, receipt, node, sybils, challenger, staking_domain)
    # Even in the next epoch their fresh stake weighs nothing.
    relive(chain, staking, distributor, verifiers)
    assert all(staking.vote_weight(s.address) == 0 for s in sybils)
    with ape.reverts("NodeStaking: quorum not reached"):
        prove_fraud_by(staking, receipt, node, sybils, challenger, staking_domain)
    assert total_stake(staking, node.address) == 2 * params.min_inference_stake
    assert not staking.nodes(node.address).jailed


def test_attack_warm_live_sybil_verifiers_below_quorum_cannot_slash_honest_node(
    staking, distributor, node, payer, verifiers, sybils, challenger, chain, staking_domain, params
):
    wait(chain, params.warmup)
    relive(chain, staking, distributor, verifiers + sybils)
    assert all(staking.vote_weight(s.address) == params.min_verifier_stake for s in sybils)
    assert staking.total_weight_in(distributor.epoch_now()) == 4_000 * OPG
    honest = by_weight(staking, verifiers)
    for i in range(8):
        receipt = make_receipt(node, payer, chain, request=f"req-{i}")
        with ape.reverts("NodeStaking: quorum not reached"):
            prove_fraud_by(staking, receipt, node, sybils, challenger, staking_domain)
    # The sybils plus the smallest honest verifier (1,500 of 4,000) are still short.
    with ape.reverts("NodeStaking: quorum not reached"):
        prove_fraud_by(staking, receipt, node, sybils + [honest[0]], challenger, staking_domain)
    assert total_stake(staking, node.address) == 2 * params.min_inference_stake
    assert staking.is_payable(node.address)


def test_attack_honest_valid_true_verifier_is_not_lazy_slashable_after_failed_sybil_attack(
    staking, node, payer, verifiers, sybils, challenger, chain, staking_domain
):
    receipt = make_receipt(node, payer, chain)
    with ape.reverts("NodeStaking: quorum not reached"):
        prove_fraud_by(staking, receipt, node, sybils, challenger, staking_domain)
    honest = verifiers[0]
    with ape.reverts("NodeStaking: receipt not judged"):
        staking.slash_verifier(rhash(receipt), honest.address, verdict_sig(receipt, True, honest, staking_domain),
                               sender=challenger.account)
    # Once the quorum proves it valid, a valid=true verdict is no evidence against its signer either.
    prove_valid_by(staking, receipt, node, verifiers, challenger, staking_domain)
    with ape.reverts("NodeStaking: invalid verdict"):
        staking.slash_verifier(rhash(receipt), honest.address, verdict_sig(receipt, True, honest, staking_domain),
                               sender=challenger.account)
    assert staking.nodes(honest.address).stake > 0 and not staking.nodes(honest.address).jailed


def test_honest_quorum_still_proves_fraud_beside_sybils(
    staking, distributor, node, payer, verifiers, sybils, challenger, chain, staking_domain, params
):
    wait(chain, params.warmup)
    relive(chain, staking, distributor, verifiers + sybils)
    receipt = make_receipt(node, payer, chain)
    # 500 + 500 + 1,000 + 1,500 = 3,500 of 4,000 reaches the quorum.
    honest = by_weight(staking, verifiers)
    tx = prove_fraud_by(staking, receipt, node, sybils + honest[1:], challenger, staking_domain)
    assert tx.decode_logs(staking.Slashed)[0].kind == KIND_FRAUD
