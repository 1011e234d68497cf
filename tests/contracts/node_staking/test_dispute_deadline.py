"""R8 (issue 13): an accusation filed in the last admissible second can still be answered.

v2 let a payer dispute (or a verifier flag) a receipt in the last second of its dispute window, after which
``prove_valid`` was too late: the bond came back and the false accuser was never slashed. v3 keeps a receipt
admissible for a dispute window after its first flag or dispute (``accused_at``), for the answer and for a proof.
"""

from __future__ import annotations

import ape
from node_staking_kit import OPG, make_receipt, prove_valid, relive, sig, wait

KIND_FALSE_ACCUSER = 6


def test_attack_dispute_in_the_last_admissible_second_still_loses_the_bond(
    opg, staking, node, payer, verifiers, make_actor, chain, staking_domain, params, distributor
):
    receipt = make_receipt(node, payer, chain)  # valid work
    opg.approve(staking, receipt.amount, sender=payer.account)
    chain.pending_timestamp = receipt.timestamp + params.dispute_window  # the last admissible second
    staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=payer.account)
    accused = staking.accused_at("0x" + receipt.struct_hash().hex())
    relive(chain, staking, distributor, verifiers)
    assert chain.pending_timestamp > receipt.timestamp + params.dispute_window  # past v2's deadline
    before = opg.balanceOf(node.address)
    prove_valid(staking, receipt, node, verifiers, make_actor(0).account, staking_domain)
    assert opg.balanceOf(node.address) == before + receipt.amount  # the bond goes to the node
    assert accused == receipt.timestamp + params.dispute_window


def test_attack_verifier_flag_in_the_last_second_is_still_slashable(
    staking, node, payer, verifiers, make_actor, chain, staking_domain, params, distributor
):
    receipt = make_receipt(node, payer, chain)
    accuser = min(verifiers, key=lambda v: staking.nodes(v.address).stake)  # the other two are the quorum
    chain.pending_timestamp = receipt.timestamp + params.dispute_window
    staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=accuser.account)
    relive(chain, staking, distributor, verifiers)
    prove_valid(staking, receipt, node, [v for v in verifiers if v != accuser], make_actor(0).account,
                staking_domain)
    tx = staking.slash_verifier(receipt.struct_hash(), accuser.address, b"", sender=make_actor(0).account)
    assert tx.decode_logs(staking.Slashed)[0].kind == KIND_FALSE_ACCUSER


def test_answer_after_the_accusation_window_is_too_old_and_the_bond_comes_back(
    opg, staking, node, payer, verifiers, make_actor, chain, staking_domain, params, distributor
):
    receipt = make_receipt(node, payer, chain)
    opg.approve(staking, receipt.amount, sender=payer.account)
    staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=payer.account)
    opened = staking.disputes("0x" + receipt.struct_hash().hex()).opened_at
    wait(chain, params.dispute_window + 1)
    relive(chain, staking, distributor, verifiers)
    chain.pending_timestamp = max(chain.pending_timestamp, opened + params.dispute_window + 1)
    with ape.reverts("NodeStaking: evidence too old"):
        prove_valid(staking, receipt, node, verifiers, make_actor(0).account, staking_domain)
    chain.pending_timestamp = opened + 2 * params.dispute_window + 1
    before = opg.balanceOf(payer.address)
    staking.reclaim_bond(receipt.struct_hash(), sender=payer.account)
    assert opg.balanceOf(payer.address) == before + receipt.amount


def test_unaccused_receipt_is_too_old_after_its_window(staking, node, payer, verifiers, chain, staking_domain,
                                                       params, make_actor):
    receipt = make_receipt(node, payer, chain, amount=OPG)
    chain.pending_timestamp = receipt.timestamp + params.dispute_window + 1
    with ape.reverts("NodeStaking: evidence too old"):
        staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=payer.account)
