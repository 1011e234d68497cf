"""NodeStaking slashing: attack 6: fraud before settlement."""

from __future__ import annotations

import ape
from node_staking_kit import OPG, ZERO_ROOT, claim_for, deposit, make_receipt, prove_fraud_by, wait

SKIP_STALE = 1


def test_attack_fraud_proven_before_settlement_voids_the_charges(
    opg, staking, escrow, node, payer, verifiers, challenger, chain, staking_domain
):
    deposit(opg, escrow, payer, 100 * OPG)
    receipt = make_receipt(node, payer, chain, amount=10 * OPG, cumulative=10 * OPG)
    tx = prove_fraud_by(staking, receipt, node, verifiers, challenger, staking_domain)
    voided = tx.decode_logs(escrow.ChargesVoided)
    assert len(voided) == 1 and voided[0].amount == 10 * OPG and voided[0].spent == 10 * OPG
    assert escrow.spent(payer.address, node.address) == 10 * OPG
    assert escrow.voided(payer.address, node.address) == 10 * OPG
    assert tx.decode_logs(staking.Slashed)[0].refund == 0
    assert escrow.balance_of(payer.address) == 100 * OPG


def test_attack_fraudulent_node_cannot_settle_voided_work_after_unjailing(
    opg, staking, escrow, escrow_domain, node, payer, verifiers, challenger, chain, staking_domain, params
):
    deposit(opg, escrow, payer, 100 * OPG)
    receipt = make_receipt(node, payer, chain, amount=10 * OPG, cumulative=10 * OPG)
    claim = claim_for(payer, node.address, 10 * OPG, escrow_domain)
    before = staking.nodes(node.address).stake
    lost = prove_fraud_by(staking, receipt, node, verifiers, challenger, staking_domain).return_value
    wait(chain, params.dispute_window)
    opg.approve(staking, lost, sender=node.account)
    staking.add_stake(lost, sender=node.account)
    assert staking.nodes(node.address).stake == before and staking.is_payable(node.address)
    tx = escrow.settle_batch([claim], ZERO_ROOT, sender=ape.accounts.test_accounts[2])  # the facilitator
    assert tx.decode_logs(escrow.ClaimSkipped)[0].reason == SKIP_STALE
    assert escrow.balance_of(payer.address) == 100 * OPG


def test_attack_unjail_with_one_wei_fails(opg, staking, node, verifiers, payer, challenger, chain, staking_domain, params):
    receipt = make_receipt(node, payer, chain)
    prove_fraud_by(staking, receipt, node, verifiers, challenger, staking_domain)
    opg.approve(staking, 2, sender=node.account)
    staking.add_stake(1, sender=node.account)
    assert staking.nodes(node.address).jailed
    with ape.reverts("NodeStaking: jail not over"):
        staking.unjail(sender=node.account)
    # After a dispute window, one wei is still not the pre-slash stake.
    wait(chain, params.dispute_window)
    staking.add_stake(1, sender=node.account)
    assert staking.nodes(node.address).jailed
    with ape.reverts("NodeStaking: jail not over"):
        staking.unjail(sender=node.account)


def test_unjail_when_not_jailed_reverts(staking, node):
    with ape.reverts("NodeStaking: not jailed"):
        staking.unjail(sender=node.account)


def test_unjail_succeeds_after_window_with_stake_restored(
    opg, staking, node, verifiers, payer, challenger, chain, staking_domain, params
):
    receipt = make_receipt(node, payer, chain)
    before = staking.nodes(node.address).stake
    prove_fraud_by(staking, receipt, node, verifiers, challenger, staking_domain)
    wait(chain, params.dispute_window)
    short = before - staking.nodes(node.address).stake
    opg.approve(staking, short, sender=node.account)
    # All but one wei keeps it jailed; the last wei releases it.
    staking.add_stake(short - 1, sender=node.account)
    assert staking.nodes(node.address).jailed
    staking.add_stake(1, sender=node.account)
    assert not staking.nodes(node.address).jailed
