"""R5 (issue 13): a backdated repeat offence does not escape the jail.

v2 counted a fraud receipt dated before the node's release as part of the old offence (the multiple only, no
per-offence slash, no jail); the node chooses its receipts' timestamps, so a receipt dated one second before the
release escaped. v3 reads only the chain's state: a proof against a node that is not jailed is a new offence
(``fraud_slash_bps`` of its stake and a jail) whatever the receipt says; proofs while it is jailed cost the multiple.
"""

from __future__ import annotations

from node_staking_kit import OPG, bps_of, make_receipt, prove_fraud, relive, total_stake, wait


def test_attack_backdated_repeat_offence_is_a_new_offence(
    opg, staking, node, payer, verifiers, make_actor, chain, staking_domain, params, distributor
):
    challenger = make_actor(0).account
    first = make_receipt(node, payer, chain, request="r1")
    lost = prove_fraud(staking, first, node, verifiers, challenger, staking_domain).return_value
    wait(chain, params.dispute_window)
    opg.approve(staking, lost, sender=node.account)
    staking.add_stake(lost, sender=node.account)  # serves its time, restores its stake: released
    record = staking.nodes(node.address)
    assert not record.jailed
    relive(chain, staking, distributor, verifiers)
    # A new fraud, dated one second before the release.
    backdated = make_receipt(node, payer, chain, request="r2", timestamp=record.released_at - 1)
    before = total_stake(staking, node.address)
    taken = prove_fraud(staking, backdated, node, verifiers, challenger, staking_domain).return_value
    assert taken == params.fraud_multiplier * backdated.amount + bps_of(before, params.fraud_slash_bps)
    assert staking.nodes(node.address).jailed


def test_further_proofs_while_jailed_cost_the_multiple_only(
    staking, node, payer, verifiers, make_actor, chain, staking_domain, params
):
    challenger = make_actor(0).account
    prove_fraud(staking, make_receipt(node, payer, chain, request="r1"), node, verifiers, challenger, staking_domain)
    jailed = staking.nodes(node.address)
    second = make_receipt(node, payer, chain, request="r2", amount=3 * OPG)
    taken = prove_fraud(staking, second, node, verifiers, challenger, staking_domain).return_value
    assert taken == params.fraud_multiplier * 3 * OPG
    assert staking.nodes(node.address).jailed_at == jailed.jailed_at
