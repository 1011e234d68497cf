"""R10 and R3 (issue 13): pay for work stays backed by stake that can answer for it, and an unbonding node's clock
stops.

Settlement pays a node at most ``pay_capacity``: its *active* stake / ``fraud_multiplier``, less what it was paid in
the current and the previous window of ``dispute_window`` (what may still be disputed). Unbonding stake backs no new
pay and leaves ``unbonding_period`` (two dispute windows) after the latest request, whatever is settled meanwhile. So
a node proven fraudulent loses at least ``fraud_multiplier`` x what it was paid, however it exits. ``test_attack_*``
perform an attack and show it fails; the others are the honest paths.
"""

from __future__ import annotations

import ape
import pytest
from node_staking_kit import (
    OPG,
    SETTLED,
    SKIP_NODE_NOT_PAYABLE,
    deposit,
    make_receipt,
    prove_fraud,
    settle,
    skip_reasons,
    total_stake,
)


@pytest.fixture
def funded_payer(opg, escrow, payer):
    deposit(opg, escrow, payer, 1_000 * OPG)
    return payer


def capacity_of(staking, node) -> int:
    return staking.nodes(node.address).stake // staking.fraud_multiplier()


# ---------------------------------------------------------------- R10: exit with all but 1 wei, then settle


def test_attack_exit_with_one_wei_then_settle_fraud_is_refused(
    opg, staking, escrow, escrow_domain, facilitator, node, funded_payer, chain
):
    # The node holds back vouchers for 150 OPG of (fraudulent) work, unbonds all but 1 wei and withdraws it.
    stake = staking.nodes(node.address).stake
    staking.request_unbond(stake - 1, sender=node.account)
    chain.pending_timestamp = staking.nodes(node.address).unbond_ready_at
    assert staking.withdraw_unbonded(sender=node.account).return_value == stake - 1
    # 1 wei answers for nothing: the vouchers do not settle, the payer keeps its credits.
    assert staking.pay_capacity(node.address) == 0 and not staking.is_payable(node.address)
    balance = escrow.balance_of(funded_payer.address)
    tx = settle(escrow, escrow_domain, facilitator, funded_payer, node.address, 150 * OPG)
    assert skip_reasons(escrow, tx) == [SKIP_NODE_NOT_PAYABLE]
    assert escrow.spent(funded_payer.address, node.address) == 0
    assert escrow.balance_of(funded_payer.address) == balance


def test_attack_settle_then_exit_still_loses_the_multiple(
    opg, staking, escrow, escrow_domain, facilitator, node, funded_payer, verifiers, chain, staking_domain, params,
    make_actor,
):
    # The node settles fraudulent work up to its capacity, then unbonds everything at once. The stake cannot leave
    # before the work's dispute window is over, and the proof takes fraud_multiplier x what was paid.
    paid = capacity_of(staking, node)
    receipt = make_receipt(node, funded_payer, chain, amount=paid, cumulative=paid)
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, funded_payer, node.address, paid)) == []
    staking.request_unbond(staking.nodes(node.address).stake, sender=node.account)
    assert staking.nodes(node.address).unbond_ready_at > chain.pending_timestamp + params.dispute_window
    before_stake = total_stake(staking, node.address)
    before_payer = opg.balanceOf(funded_payer.address)
    tx = prove_fraud(staking, receipt, node, verifiers, make_actor(0).account, staking_domain)
    assert before_stake - total_stake(staking, node.address) >= params.fraud_multiplier * paid
    assert opg.balanceOf(funded_payer.address) - before_payer == paid  # the payer is made whole
    assert tx.decode_logs(staking.Slashed)[0].refund == paid


def test_settlement_beyond_the_stake_backing_is_skipped_until_the_window_passes(
    staking, escrow, escrow_domain, facilitator, node, funded_payer, chain, params
):
    capacity = capacity_of(staking, node)
    assert staking.pay_capacity(node.address) == capacity
    tx = settle(escrow, escrow_domain, facilitator, funded_payer, node.address, capacity + 1)
    assert skip_reasons(escrow, tx) == [SKIP_NODE_NOT_PAYABLE]
    tx = settle(escrow, escrow_domain, facilitator, funded_payer, node.address, capacity)
    assert tx.return_value == [SETTLED]
    assert staking.paid_in_window(node.address) == capacity
    assert staking.pay_capacity(node.address) == 0 and not staking.is_payable(node.address)
    tx = settle(escrow, escrow_domain, facilitator, funded_payer, node.address, capacity + 1)
    assert skip_reasons(escrow, tx) == [SKIP_NODE_NOT_PAYABLE]
    # Three pay windows (dispute window + MAX_FUTURE) later the paid work can no longer be disputed, even flagged:
    # the capacity is back.
    chain.pending_timestamp += 3 * (params.dispute_window + staking.MAX_FUTURE())
    chain.mine()
    assert staking.paid_in_window(node.address) == 0
    assert staking.pay_capacity(node.address) == capacity
    tx = settle(escrow, escrow_domain, facilitator, funded_payer, node.address, capacity + 1)
    assert tx.return_value == [SETTLED]


def test_honest_node_is_paid_in_full_within_its_capacity(
    staking, escrow, escrow_domain, facilitator, node, funded_payer
):
    for total in (10 * OPG, 60 * OPG, 150 * OPG):
        assert settle(escrow, escrow_domain, facilitator, funded_payer, node.address, total).return_value == [SETTLED]
    assert escrow.spent(funded_payer.address, node.address) == 150 * OPG
    assert staking.paid_in_window(node.address) == 150 * OPG
    assert staking.pay_capacity(node.address) == capacity_of(staking, node) - 150 * OPG


def test_more_stake_buys_more_capacity(opg, staking, node):
    before = staking.pay_capacity(node.address)
    opg.approve(staking, 1_000 * OPG, sender=node.account)
    staking.add_stake(1_000 * OPG, sender=node.account)
    assert staking.pay_capacity(node.address) == before + 1_000 * OPG // staking.fraud_multiplier()


def test_record_pay_only_from_the_escrow(staking, node):
    with ape.reverts("NodeStaking: caller is not the escrow"):
        staking.record_pay(node.address, 1, sender=node.account)


# ---------------------------------------------------------------- R3: dust settlements and the unbonding clock


def test_attack_dust_settlements_do_not_delay_withdrawal(
    opg, staking, escrow, escrow_domain, facilitator, node, funded_payer, chain
):
    # The node unbonds half its stake. A payer settles 10 wei at a time, the last one a block before the unbonding
    # period ends, to keep moving the node's last settlement: the unbonding stake leaves on time all the same.
    half = staking.nodes(node.address).stake // 2
    staking.request_unbond(half, sender=node.account)
    ready = staking.nodes(node.address).unbond_ready_at
    for i, at in enumerate((ready - 3_600, ready - 60, ready - 1)):
        chain.pending_timestamp = at
        assert settle(escrow, escrow_domain, facilitator, funded_payer, node.address, 10 * (i + 1)).return_value == [
            SETTLED
        ]
    assert escrow.node_settled_at(node.address) == ready - 1
    chain.pending_timestamp = ready
    before = opg.balanceOf(node.address)
    assert staking.withdraw_unbonded(sender=node.account).return_value == half
    assert opg.balanceOf(node.address) == before + half


def test_withdrawal_before_the_unbonding_period_reverts(staking, node, chain):
    staking.request_unbond(OPG, sender=node.account)
    chain.pending_timestamp = staking.nodes(node.address).unbond_ready_at - 1
    with ape.reverts("NodeStaking: still unbonding"):
        staking.withdraw_unbonded(sender=node.account)
