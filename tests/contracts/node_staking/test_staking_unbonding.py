"""NodeStaking: unbonding."""

from __future__ import annotations

import ape
from node_staking_kit import INFERENCE, OPG, is_active, stake_of


def unbonding_of(staking, account) -> int:
    return staking.nodes(account).unbonding


def test_request_unbond_moves_stake_to_unbonding_and_emits(staking, node, params, chain):
    stake = stake_of(staking, node.address)
    tx = staking.request_unbond(300 * OPG, sender=node.account)
    ts = chain.blocks[tx.block_number].timestamp
    events = tx.decode_logs(staking.UnbondRequested)
    assert len(events) == 1
    assert events[0].node == node.address
    assert events[0].amount == 300 * OPG
    assert events[0].unbonding == 300 * OPG
    assert events[0].ready_at == ts + params.unbonding_period
    record = staking.nodes(node.address)
    assert record.stake == stake - 300 * OPG
    assert record.unbonding == 300 * OPG
    assert record.unbond_ready_at == ts + params.unbonding_period


def test_request_unbond_zero_reverts(staking, node):
    with ape.reverts("NodeStaking: zero amount"):
        staking.request_unbond(0, sender=node.account)


def test_request_unbond_exceeding_stake_reverts(staking, node):
    with ape.reverts("NodeStaking: amount exceeds stake"):
        staking.request_unbond(stake_of(staking, node.address) + 1, sender=node.account)


def test_request_unbond_unregistered_reverts(staking, make_actor):
    actor = make_actor(0)
    with ape.reverts("NodeStaking: not registered"):
        staking.request_unbond(1, sender=actor.account)


def test_request_unbond_below_minimum_deactivates_node(staking, node, params):
    stake = stake_of(staking, node.address)
    staking.request_unbond(stake - params.min_inference_stake, sender=node.account)
    assert is_active(staking, node.address)
    staking.request_unbond(1, sender=node.account)
    assert not is_active(staking, node.address)
    assert not staking.is_active_as(node.address, INFERENCE)


def test_request_unbond_below_minimum_stops_verifier_heartbeats(staking, verifiers, params):
    v = verifiers[0]
    stake = stake_of(staking, v.address)
    staking.request_unbond(stake - params.min_verifier_stake + 1, sender=v.account)
    assert not is_active(staking, v.address)
    with ape.reverts("NodeStaking: not an active verifier"):
        staking.heartbeat(sender=v.account)


def test_request_unbond_of_verifier_lowers_its_next_weight(staking, verifiers, params):
    v = max(verifiers, key=lambda a: stake_of(staking, a.address))
    stake = stake_of(staking, v.address)
    staking.request_unbond(OPG, sender=v.account)
    assert is_active(staking, v.address)
    assert staking.heartbeat(sender=v.account).return_value == stake - OPG


def test_request_unbond_again_accumulates_and_restarts_the_period(staking, node, params, chain):
    staking.request_unbond(100 * OPG, sender=node.account)
    chain.pending_timestamp += 1_000
    tx = staking.request_unbond(50 * OPG, sender=node.account)
    ts = chain.blocks[tx.block_number].timestamp
    record = staking.nodes(node.address)
    assert record.unbonding == 150 * OPG
    assert record.unbond_ready_at == ts + params.unbonding_period


def test_withdraw_unbonded_with_nothing_unbonding_reverts(staking, node, make_actor):
    with ape.reverts("NodeStaking: nothing unbonding"):
        staking.withdraw_unbonded(sender=node.account)
    stranger = make_actor(0)
    with ape.reverts("NodeStaking: nothing unbonding"):
        staking.withdraw_unbonded(sender=stranger.account)


def test_withdraw_unbonded_before_period_ends_reverts(staking, node, chain):
    staking.request_unbond(100 * OPG, sender=node.account)
    ready_at = staking.nodes(node.address).unbond_ready_at
    chain.pending_timestamp = ready_at - 1
    with ape.reverts("NodeStaking: still unbonding"):
        staking.withdraw_unbonded(sender=node.account)


def test_withdraw_unbonded_after_period_pays_and_emits(opg, staking, node, chain):
    staking.request_unbond(100 * OPG, sender=node.account)
    ready_at = staking.nodes(node.address).unbond_ready_at
    balance = opg.balanceOf(node.address)
    held = opg.balanceOf(staking)
    chain.pending_timestamp = ready_at
    tx = staking.withdraw_unbonded(sender=node.account)
    assert tx.return_value == 100 * OPG
    events = tx.decode_logs(staking.UnbondedWithdrawn)
    assert len(events) == 1
    assert events[0].node == node.address
    assert events[0].amount == 100 * OPG
    assert opg.balanceOf(node.address) == balance + 100 * OPG
    assert opg.balanceOf(staking) == held - 100 * OPG
    assert unbonding_of(staking, node.address) == 0
    with ape.reverts("NodeStaking: nothing unbonding"):
        staking.withdraw_unbonded(sender=node.account)


def test_attack_node_that_withdrew_all_its_stake_is_no_longer_payable(staking, node, chain):
    # A node with nothing left to slash must not settle vouchers it held back: their reopened dispute window would
    # have no stake behind it. v3: unbonding stake backs no new pay at all (it only answers for pay made before the
    # request), so the node stops being payable as soon as it unbonds everything.
    staking.request_unbond(stake_of(staking, node.address), sender=node.account)
    assert not staking.is_payable(node.address)
    assert staking.pay_capacity(node.address) == 0
    chain.pending_timestamp = staking.nodes(node.address).unbond_ready_at
    staking.withdraw_unbonded(sender=node.account)
    assert not staking.is_payable(node.address)


def test_withdraw_unbonded_leaves_active_stake_in_place(staking, node, chain):
    stake = stake_of(staking, node.address)
    staking.request_unbond(100 * OPG, sender=node.account)
    chain.pending_timestamp = staking.nodes(node.address).unbond_ready_at + 10
    staking.withdraw_unbonded(sender=node.account)
    assert stake_of(staking, node.address) == stake - 100 * OPG
    assert is_active(staking, node.address)


def test_staking_balance_equals_active_plus_unbonding(opg, staking, node, verifiers, chain):
    # Other modules' session fixtures may hold stake here too: check that unbonding moves no tokens and keeps the
    # accounts' stake + unbonding, all of which the contract's balance covers.
    accounts = [node.address] + [v.address for v in verifiers]

    def locked() -> int:
        return sum(staking.nodes(a).stake + staking.nodes(a).unbonding for a in accounts)

    held, before = opg.balanceOf(staking), locked()
    staking.request_unbond(100 * OPG, sender=node.account)
    staking.request_unbond(10 * OPG, sender=verifiers[2].account)
    assert opg.balanceOf(staking) == held >= locked() == before
