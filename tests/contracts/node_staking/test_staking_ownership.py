"""NodeStaking: ownership (2-step)."""

from __future__ import annotations

import ape
from eth_utils import keccak
from node_staking_kit import INFERENCE, NOT_OWNER, SETTERS, ZERO_ADDRESS, call_data


def test_owner_is_the_deployer(staking, deployer):
    assert staking.owner() == deployer.address


def test_transfer_ownership_is_two_step(staking, deployer, make_actor, params):
    new_owner = make_actor(0)
    data = call_data(*SETTERS["set_min_stake"], [INFERENCE, 2 * params.min_inference_stake])
    tx = staking.transfer_ownership(new_owner.address, sender=deployer)
    started = tx.decode_logs(staking.OwnershipTransferStarted)
    assert len(started) == 1 and started[0].new_owner == new_owner.address
    assert staking.owner() == deployer.address
    assert staking.pending_owner() == new_owner.address
    with ape.reverts(NOT_OWNER):
        staking.queue_change(data, sender=new_owner.account)
    staking.accept_ownership(sender=new_owner.account)
    assert staking.owner() == new_owner.address
    assert staking.pending_owner() == ZERO_ADDRESS
    staking.queue_change(data, sender=new_owner.account)
    with ape.reverts(NOT_OWNER):
        staking.cancel_change(keccak(data), sender=deployer)


def test_accept_ownership_by_other_than_pending_owner_reverts(staking, deployer, make_actor):
    new_owner, intruder = make_actor(0), make_actor(0)
    staking.transfer_ownership(new_owner.address, sender=deployer)
    with ape.reverts("ownable_2step: caller is not the new owner"):
        staking.accept_ownership(sender=intruder.account)
    assert staking.owner() == deployer.address


def test_transfer_ownership_by_non_owner_reverts(staking, node):
    with ape.reverts(NOT_OWNER):
        staking.transfer_ownership(node.address, sender=node.account)
