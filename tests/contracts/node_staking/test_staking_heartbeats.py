"""NodeStaking: heartbeats and vote weights."""

from __future__ import annotations

import ape
from node_staking_kit import VERIFIER, stake_of


def test_heartbeat_records_warm_stake_as_next_epoch_weight(staking, distributor, make_actor, register, chain, params):
    actor = make_actor()
    register(actor, VERIFIER, params.min_verifier_stake)
    chain.pending_timestamp += params.warmup
    chain.mine()
    epoch = distributor.epoch_now()
    total = staking.total_weight_in(epoch + 1)
    tx = staking.heartbeat(sender=actor.account)
    event = tx.decode_logs(staking.Heartbeat)[0]
    assert event.verifier == actor.address and event.epoch == epoch + 1
    assert event.weight == params.min_verifier_stake
    assert event.total_weight == total + params.min_verifier_stake
    assert staking.weight_in(epoch + 1, actor.address) == params.min_verifier_stake
    # Not yet in this epoch.
    assert staking.vote_weight(actor.address) == staking.weight_in(epoch, actor.address)
    # A second heartbeat in the epoch updates rather than adds.
    staking.heartbeat(sender=actor.account)
    assert staking.total_weight_in(epoch + 1) == total + params.min_verifier_stake


def test_live_verifiers_weigh_their_stake(staking, distributor, verifiers, params):
    epoch = distributor.epoch_now()
    weights = sorted(staking.vote_weight(v.address) for v in verifiers)
    assert weights == [params.min_verifier_stake * k for k in (1, 2, 3)]
    assert staking.total_weight_in(epoch) == 6 * params.min_verifier_stake


def test_vote_weight_is_zero_without_a_heartbeat_last_epoch(staking, distributor, verifiers, chain, params):
    chain.pending_timestamp += 2 * params.epoch_length
    chain.mine()
    assert all(staking.vote_weight(v.address) == 0 for v in verifiers)
    assert staking.total_weight_in(distributor.epoch_now()) == 0


def test_vote_weight_is_capped_by_what_can_still_be_slashed(staking, verifiers, chain, params):
    v = max(verifiers, key=lambda a: stake_of(staking, a.address))
    weight = staking.vote_weight(v.address)
    staking.request_unbond(stake_of(staking, v.address), sender=v.account)
    assert staking.vote_weight(v.address) == weight  # unbonding stake stays slashable
    chain.pending_timestamp = staking.nodes(v.address).unbond_ready_at
    staking.withdraw_unbonded(sender=v.account)
    assert staking.vote_weight(v.address) == 0


def test_heartbeat_by_inference_node_reverts(staking, node):
    with ape.reverts("NodeStaking: not an active verifier"):
        staking.heartbeat(sender=node.account)


def test_heartbeat_by_unregistered_account_reverts(staking, make_actor):
    with ape.reverts("NodeStaking: not an active verifier"):
        staking.heartbeat(sender=make_actor(0).account)
