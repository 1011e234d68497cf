"""NodeStaking: register."""

from __future__ import annotations

import ape
import pytest
from node_staking_kit import INFERENCE, OPG, VERIFIER

from offchain.messages import Domain, Registration


def registration_sig(actor, domain) -> bytes:
    return bytes.fromhex(Registration(account=actor.address).sign_with(actor.key, domain)[2:])


def test_register_inference_node_locks_stake_and_emits_registered(opg, staking, make_actor, register, params):
    actor = make_actor()
    before = opg.balanceOf(staking)
    tx = register(actor, INFERENCE, params.min_inference_stake, "http://gpu.invalid:8000")
    events = tx.decode_logs(staking.Registered)
    assert len(events) == 1
    assert events[0].node == actor.address
    assert events[0].role == INFERENCE
    assert events[0].stake == params.min_inference_stake
    assert events[0].endpoint == "http://gpu.invalid:8000"
    record = staking.nodes(actor.address)
    assert record.role == INFERENCE and not record.jailed
    assert record.stake == params.min_inference_stake and record.unbonding == 0
    assert staking.endpoint(actor.address) == "http://gpu.invalid:8000"
    assert opg.balanceOf(staking) == before + params.min_inference_stake
    assert opg.balanceOf(actor.address) == 100_000 * OPG - params.min_inference_stake
    assert staking.is_payable(actor.address)
    assert staking.is_active_as(actor.address, INFERENCE)
    assert not staking.is_active_as(actor.address, VERIFIER)


def test_register_verifier_has_no_vote_weight_before_warmup(staking, distributor, make_actor, register, params):
    actor = make_actor()
    register(actor, VERIFIER, params.min_verifier_stake)
    assert staking.is_active_as(actor.address, VERIFIER)
    assert not staking.is_payable(actor.address)
    assert staking.vote_weight(actor.address) == 0
    assert staking.heartbeat(sender=actor.account).return_value == 0


def test_register_with_registration_signed_by_another_key_reverts(opg, staking, make_actor, staking_domain, params):
    actor, other = make_actor(), make_actor(0)
    opg.approve(staking, params.min_inference_stake, sender=actor.account)
    with ape.reverts("NodeStaking: invalid registration"):
        staking.register(
            INFERENCE, params.min_inference_stake, "http://n.invalid",
            registration_sig(other, staking_domain), sender=actor.account,
        )


def test_register_with_another_accounts_registration_reverts(opg, staking, make_actor, staking_domain, params):
    actor, other = make_actor(), make_actor(0)
    opg.approve(staking, params.min_inference_stake, sender=actor.account)
    # The actor's own key signing a Registration of another account does not register the actor.
    signature = bytes.fromhex(Registration(account=other.address).sign_with(actor.key, staking_domain)[2:])
    with ape.reverts("NodeStaking: invalid registration"):
        staking.register(INFERENCE, params.min_inference_stake, "http://n.invalid", signature, sender=actor.account)


def test_register_with_registration_for_another_chain_reverts(opg, staking, make_actor, chain_id, params):
    actor = make_actor()
    opg.approve(staking, params.min_inference_stake, sender=actor.account)
    with ape.reverts("NodeStaking: invalid registration"):
        staking.register(
            INFERENCE, params.min_inference_stake, "http://n.invalid",
            registration_sig(actor, Domain.staking(chain_id + 1, staking.address)), sender=actor.account,
        )


def test_register_with_empty_signature_reverts(opg, staking, make_actor, params):
    actor = make_actor()
    opg.approve(staking, params.min_inference_stake, sender=actor.account)
    with ape.reverts("NodeStaking: invalid registration"):
        staking.register(INFERENCE, params.min_inference_stake, "http://n.invalid", b"", sender=actor.account)


@pytest.mark.parametrize("role", [0, 3, 255])
def test_register_with_invalid_role_reverts(opg, staking, make_actor, register, params, role):
    actor = make_actor()
    with ape.reverts("NodeStaking: invalid role"):
        register(actor, role, params.min_inference_stake)


def test_register_twice_reverts_even_for_the_other_role(staking, node, register, params):
    with ape.reverts("NodeStaking: already registered"):
        register(node, INFERENCE, params.min_inference_stake)
    with ape.reverts("NodeStaking: already registered"):
        register(node, VERIFIER, params.min_verifier_stake)


def test_register_inference_below_min_stake_reverts(make_actor, register, params):
    with ape.reverts("NodeStaking: stake below minimum"):
        register(make_actor(), INFERENCE, params.min_inference_stake - 1)


def test_register_verifier_below_min_stake_reverts(make_actor, register, params):
    with ape.reverts("NodeStaking: stake below minimum"):
        register(make_actor(), VERIFIER, params.min_verifier_stake - 1)


def test_min_stake_is_per_role(staking, params):
    assert staking.min_stake(INFERENCE) == params.min_inference_stake
    assert staking.min_stake(VERIFIER) == params.min_verifier_stake


def test_register_with_empty_endpoint_reverts(make_actor, register, params):
    with ape.reverts("NodeStaking: empty endpoint"):
        register(make_actor(), INFERENCE, params.min_inference_stake, "")


def test_register_without_allowance_reverts(staking, make_actor, staking_domain, params):
    actor = make_actor()
    with ape.reverts():
        staking.register(
            INFERENCE, params.min_inference_stake, "http://n.invalid",
            registration_sig(actor, staking_domain), sender=actor.account,
        )
