"""NodeStaking: endpoint."""

from __future__ import annotations

import ape


def test_set_endpoint_updates_endpoint_and_emits(staking, node):
    tx = staking.set_endpoint("http://new.invalid", sender=node.account)
    events = tx.decode_logs(staking.EndpointUpdated)
    assert len(events) == 1 and events[0].endpoint == "http://new.invalid"
    assert staking.endpoint(node.address) == "http://new.invalid"


def test_set_endpoint_empty_reverts(staking, node):
    with ape.reverts("NodeStaking: empty endpoint"):
        staking.set_endpoint("", sender=node.account)


def test_set_endpoint_unregistered_reverts(staking, make_actor):
    with ape.reverts("NodeStaking: not registered"):
        staking.set_endpoint("http://x.invalid", sender=make_actor(0).account)
