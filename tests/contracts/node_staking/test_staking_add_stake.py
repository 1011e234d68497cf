"""NodeStaking: add_stake."""

from __future__ import annotations

import ape
from node_staking_kit import OPG, is_active, stake_of


def test_add_stake_increases_stake_and_emits(opg, staking, node):
    before = stake_of(staking, node.address)
    opg.approve(staking, 123 * OPG, sender=node.account)
    tx = staking.add_stake(123 * OPG, sender=node.account)
    events = tx.decode_logs(staking.StakeAdded)
    assert len(events) == 1
    assert events[0].node == node.address
    assert events[0].amount == 123 * OPG
    assert events[0].stake == before + 123 * OPG
    assert stake_of(staking, node.address) == before + 123 * OPG
    assert tx.decode_logs(staking.Unjailed) == []


def test_add_stake_of_verifier_is_fresh_until_the_warmup(opg, staking, distributor, verifiers, chain, params):
    v = verifiers[0]
    before = stake_of(staking, v.address)
    opg.approve(staking, 7 * OPG, sender=v.account)
    staking.add_stake(7 * OPG, sender=v.account)
    assert staking.heartbeat(sender=v.account).return_value == before
    chain.pending_timestamp += params.warmup
    chain.mine()
    assert staking.heartbeat(sender=v.account).return_value == before + 7 * OPG


def test_add_stake_zero_reverts(staking, node):
    with ape.reverts("NodeStaking: zero amount"):
        staking.add_stake(0, sender=node.account)


def test_add_stake_unregistered_reverts(opg, staking, make_actor):
    actor = make_actor()
    opg.approve(staking, OPG, sender=actor.account)
    with ape.reverts("NodeStaking: not registered"):
        staking.add_stake(OPG, sender=actor.account)


def test_add_stake_reactivates_node_that_unbonded_below_minimum(opg, staking, node, params):
    staking.request_unbond(stake_of(staking, node.address), sender=node.account)
    assert not is_active(staking, node.address)
    opg.approve(staking, params.min_inference_stake, sender=node.account)
    staking.add_stake(params.min_inference_stake, sender=node.account)
    assert is_active(staking, node.address)
