"""NodeStaking slashing: attack 7 / 14b: backdated receipts."""

from __future__ import annotations

import ape
from node_staking_kit import OPG, SKIP_NODE_NOT_PAYABLE, deposit, deposit_and_settle, make_receipt, sig, wait


def test_attack_backdated_receipt_settled_later_stays_admissible(
    opg, staking, escrow, escrow_domain, node, payer, challenger, chain, staking_domain, params
):
    old = chain.pending_timestamp
    a = make_receipt(node, payer, chain, output="a", timestamp=old)
    b = make_receipt(node, payer, chain, output="b", timestamp=old)
    deposit(opg, escrow, payer, 100 * OPG)
    wait(chain, 2 * params.dispute_window)
    deposit_and_settle(opg, escrow, escrow_domain, payer, node.address, 10 * OPG, sender=node)
    settled = escrow.settled_at(payer.address, node.address)
    chain.pending_timestamp = settled + params.dispute_window
    tx = staking.slash_equivocation(
        a.as_tuple(), sig(a, node.key, staking_domain), b.as_tuple(), sig(b, node.key, staking_domain),
        sender=challenger.account,
    )
    assert tx.return_value > 0


def test_backdated_receipt_is_inadmissible_a_window_after_the_settlement(
    opg, staking, escrow, escrow_domain, node, payer, challenger, chain, staking_domain, params
):
    old = chain.pending_timestamp
    a = make_receipt(node, payer, chain, output="a", timestamp=old)
    b = make_receipt(node, payer, chain, output="b", timestamp=old)
    wait(chain, 2 * params.dispute_window)
    deposit_and_settle(opg, escrow, escrow_domain, payer, node.address, 10 * OPG, deposit_amount=100 * OPG, sender=node)
    chain.pending_timestamp = escrow.settled_at(payer.address, node.address) + params.dispute_window + 1
    with ape.reverts("NodeStaking: evidence too old"):
        staking.slash_equivocation(
            a.as_tuple(), sig(a, node.key, staking_domain), b.as_tuple(), sig(b, node.key, staking_domain),
            sender=challenger.account,
        )


def test_attack_settling_one_block_before_withdraw_is_refused_once_unbonding(
    opg, staking, escrow, escrow_domain, node, payer, chain, params
):
    # v3: unbonding stake backs no new pay, so the held-back voucher cannot reopen a dispute window over stake that
    # is about to leave: the claim is skipped (reason 2) and the channel is not charged.
    deposit(opg, escrow, payer, 100 * OPG)
    staking.request_unbond(staking.nodes(node.address).stake, sender=node.account)
    ready = staking.nodes(node.address).unbond_ready_at
    chain.pending_timestamp = ready - 1
    tx = deposit_and_settle(opg, escrow, escrow_domain, payer, node.address, 10 * OPG, sender=node)
    assert [e.reason for e in tx.decode_logs(escrow.ClaimSkipped)] == [SKIP_NODE_NOT_PAYABLE]
    assert escrow.spent(payer.address, node.address) == 0
    chain.pending_timestamp = ready
    assert staking.withdraw_unbonded(sender=node.account).return_value == 2 * params.min_inference_stake


def test_withdraw_unbonded_after_settling_waits_until_the_pay_is_no_longer_provable(
    opg, staking, escrow, escrow_domain, node, payer, chain, params
):
    # Pay settled while the stake was active stays backed until its last provable second (a receipt flagged in its
    # window's last second stays provable one more: two dispute windows + MAX_FUTURE after the settlement), however
    # short the unbonding period (second review, finding 4).
    deposit_and_settle(opg, escrow, escrow_domain, payer, node.address, 10 * OPG, deposit_amount=100 * OPG, sender=node)
    staking.request_unbond(staking.nodes(node.address).stake, sender=node.account)
    ready = staking.nodes(node.address).unbond_ready_at
    provable_until = escrow.node_settled_at(node.address) + 2 * params.dispute_window + staking.MAX_FUTURE()
    assert ready == provable_until + 1
    chain.pending_timestamp = ready - 1
    with ape.reverts("NodeStaking: still unbonding"):
        staking.withdraw_unbonded(sender=node.account)
    chain.pending_timestamp = ready
    before = opg.balanceOf(node.address)
    tx = staking.withdraw_unbonded(sender=node.account)
    assert tx.return_value == 2 * params.min_inference_stake
    assert opg.balanceOf(node.address) == before + 2 * params.min_inference_stake
