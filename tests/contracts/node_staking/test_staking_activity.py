"""NodeStaking: activity."""

from __future__ import annotations

from node_staking_kit import INFERENCE, VERIFIER


def test_is_active_as_for_registered_nodes(staking, node, verifiers):
    assert staking.is_active_as(node.address, INFERENCE)
    assert not staking.is_active_as(node.address, VERIFIER)
    for v in verifiers:
        assert staking.is_active_as(v.address, VERIFIER)
        assert not staking.is_active_as(v.address, INFERENCE)
        assert not staking.is_payable(v.address)


def test_is_active_as_false_for_unregistered_and_role_none(staking, make_actor, node):
    stranger = make_actor(0)
    assert not staking.is_active_as(stranger.address, INFERENCE)
    assert not staking.is_active_as(stranger.address, 0)
    assert not staking.is_active_as(node.address, 0)
    assert not staking.is_payable(stranger.address)
