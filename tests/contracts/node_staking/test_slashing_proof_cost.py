"""NodeStaking slashing: attack 10: cost per proven receipt."""

from __future__ import annotations

from node_staking_kit import OPG, bps_of, make_receipt, prove_fraud_by, relive, total_stake, wait


def test_attack_each_further_receipt_of_an_offence_costs_the_multiple(
    staking, node, payer, verifiers, challenger, chain, staking_domain, params
):
    stake = total_stake(staking, node.address)
    receipts = [make_receipt(node, payer, chain, request=f"r{i}", amount=(i + 1) * OPG, cumulative=(i + 1) * OPG)
                for i in range(3)]
    first = prove_fraud_by(staking, receipts[0], node, verifiers, challenger, staking_domain).return_value
    assert first == params.fraud_multiplier * OPG + bps_of(stake, params.fraud_slash_bps)
    jailed = staking.nodes(node.address)
    assert jailed.jailed
    for receipt in receipts[1:]:
        before = total_stake(staking, node.address)
        taken = prove_fraud_by(staking, receipt, node, verifiers, challenger, staking_domain).return_value
        # Not free after the first slash, and no second per-offence share.
        assert taken == params.fraud_multiplier * receipt.amount
        assert total_stake(staking, node.address) == before - taken
    assert staking.nodes(node.address).jailed_at == jailed.jailed_at
    assert staking.nodes(node.address).restore_stake == jailed.restore_stake


def test_fraud_penalty_never_exceeds_what_is_slashable(
    staking, node, payer, verifiers, challenger, chain, staking_domain, params
):
    stake = total_stake(staking, node.address)
    receipt = make_receipt(node, payer, chain, amount=stake, cumulative=stake)
    taken = prove_fraud_by(staking, receipt, node, verifiers, challenger, staking_domain).return_value
    assert taken == stake
    assert total_stake(staking, node.address) == 0


def test_receipt_signed_after_release_is_a_new_offence(
    opg, staking, node, payer, verifiers, challenger, chain, staking_domain, params, distributor
):
    r1 = make_receipt(node, payer, chain, request="r1")
    before = staking.nodes(node.address).stake
    lost = prove_fraud_by(staking, r1, node, verifiers, challenger, staking_domain).return_value
    wait(chain, params.dispute_window)
    opg.approve(staking, lost, sender=node.account)
    staking.add_stake(lost, sender=node.account)
    assert not staking.nodes(node.address).jailed
    relive(chain, staking, distributor, verifiers)
    r2 = make_receipt(node, payer, chain, request="r2")
    taken = prove_fraud_by(staking, r2, node, verifiers, challenger, staking_domain).return_value
    assert taken == params.fraud_multiplier * r2.amount + bps_of(before, params.fraud_slash_bps)
    assert staking.nodes(node.address).jailed
