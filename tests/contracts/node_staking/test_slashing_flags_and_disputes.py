"""NodeStaking slashing: attack 18: flags and disputes."""

from __future__ import annotations

import ape
from node_staking_kit import OPG, dispute, make_receipt, prove_fraud_by, prove_valid_by, rhash, sig


def test_attack_flag_by_non_verifier_reverts(staking, node, payer, chain, staking_domain, make_actor, register):
    receipt = make_receipt(node, payer, chain)
    stranger = make_actor(0)
    with ape.reverts("NodeStaking: not an active verifier"):
        staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=stranger.account)
    with ape.reverts("NodeStaking: not an active verifier"):
        staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=node.account)


def test_flag_by_active_verifier_is_a_public_event(staking, node, payer, verifiers, chain, staking_domain):
    receipt = make_receipt(node, payer, chain)
    v = verifiers[0]
    tx = staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=v.account)
    event = tx.decode_logs(staking.Flagged)[0]
    assert event.receipt_hash == rhash(receipt) and event.node == node.address and event.flagger == v.address
    assert event.payer == payer.address and event.bond == 0
    assert event.request_id == bytes.fromhex(receipt.request_id[2:])
    assert staking.flagged_by(rhash(receipt), v.address)
    with ape.reverts("NodeStaking: already flagged"):
        staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=v.account)


def test_flag_of_a_judged_receipt_reverts(staking, node, payer, verifiers, challenger, chain, staking_domain):
    receipt = make_receipt(node, payer, chain)
    prove_valid_by(staking, receipt, node, verifiers, challenger, staking_domain)
    with ape.reverts("NodeStaking: already judged"):
        staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=verifiers[0].account)


def test_attack_payer_dispute_posts_a_bond_equal_to_the_amount(opg, staking, node, payer, chain, staking_domain):
    receipt = make_receipt(node, payer, chain, amount=7 * OPG)
    before = opg.balanceOf(payer.address)
    tx = dispute(opg, staking, receipt, node, payer, staking_domain)
    event = tx.decode_logs(staking.Flagged)[0]
    assert event.flagger == payer.address and event.bond == 7 * OPG
    assert opg.balanceOf(payer.address) == before - 7 * OPG
    assert staking.bonds_held() == 7 * OPG
    assert staking.disputes(rhash(receipt)).bond == 7 * OPG
    with ape.reverts("NodeStaking: already disputed"):
        dispute(opg, staking, receipt, node, payer, staking_domain)


def test_payer_dispute_of_zero_amount_receipt_reverts(opg, staking, node, payer, chain, staking_domain):
    receipt = make_receipt(node, payer, chain, amount=0, cumulative=0)
    with ape.reverts("NodeStaking: zero amount"):
        staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=payer.account)


def test_dispute_bond_is_returned_on_fraud_proof(opg, staking, node, payer, verifiers, challenger, chain, staking_domain):
    receipt = make_receipt(node, payer, chain, amount=7 * OPG)
    dispute(opg, staking, receipt, node, payer, staking_domain)
    before = opg.balanceOf(payer.address)
    tx = prove_fraud_by(staking, receipt, node, verifiers, challenger, staking_domain)
    resolved = tx.decode_logs(staking.DisputeResolved)[0]
    assert resolved.paid_to == payer.address and resolved.bond == 7 * OPG
    refund = tx.decode_logs(staking.Slashed)[0].refund
    assert opg.balanceOf(payer.address) == before + 7 * OPG + refund
    assert staking.bonds_held() == 0


def test_attack_false_dispute_bond_goes_to_the_node_on_prove_valid(
    opg, staking, node, payer, verifiers, challenger, chain, staking_domain
):
    receipt = make_receipt(node, payer, chain, amount=7 * OPG)
    dispute(opg, staking, receipt, node, payer, staking_domain)
    before = opg.balanceOf(node.address)
    tx = prove_valid_by(staking, receipt, node, verifiers, challenger, staking_domain)
    assert tx.decode_logs(staking.DisputeResolved)[0].paid_to == node.address
    assert opg.balanceOf(node.address) == before + 7 * OPG
    assert staking.bonds_held() == 0
    with ape.reverts("NodeStaking: no open dispute"):
        staking.reclaim_bond(rhash(receipt), sender=payer.account)


def test_dispute_bond_is_reclaimable_after_two_windows(opg, staking, node, payer, chain, staking_domain, params):
    receipt = make_receipt(node, payer, chain, amount=7 * OPG)
    dispute(opg, staking, receipt, node, payer, staking_domain)
    opened = staking.disputes(rhash(receipt)).opened_at
    chain.pending_timestamp = opened + 2 * params.dispute_window
    with ape.reverts("NodeStaking: dispute still open"):
        staking.reclaim_bond(rhash(receipt), sender=payer.account)
    before = opg.balanceOf(payer.address)
    chain.pending_timestamp = opened + 2 * params.dispute_window + 1
    staking.reclaim_bond(rhash(receipt), sender=node.account)
    assert opg.balanceOf(payer.address) == before + 7 * OPG
    assert staking.bonds_held() == 0
