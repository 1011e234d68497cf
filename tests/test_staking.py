"""NodeStaking v2: registration (with the account's Registration signature), stake management, unbonding,
heartbeats and vote weights, activity, timelocked parameters (attacks 8 and 17), connect and ownership.

Slashing lives in ``test_slashing.py``; fees and emissions in ``test_rewards.py``.
"""

from __future__ import annotations

import ape
import pytest
from eth_abi import encode
from eth_utils import keccak

from offchain.messages import Claim, Domain, Registration, Voucher

OPG = 10**18
INFERENCE = 1
VERIFIER = 2
ZERO_ADDRESS = "0x" + "00" * 20
ZERO_ROOT = b"\x00" * 32
NOT_OWNER = "ownable: caller is not the owner"
MAX_MIN_STAKE = 10_000_000 * OPG
GRACE = 86_400


def registration_sig(actor, domain) -> bytes:
    return bytes.fromhex(Registration(account=actor.address).sign_with(actor.key, domain)[2:])


def stake_of(staking, account) -> int:
    return staking.nodes(account).stake


def unbonding_of(staking, account) -> int:
    return staking.nodes(account).unbonding


def is_active(staking, account) -> bool:
    return staking.is_active_as(account, staking.nodes(account).role)


def call_data(signature: str, types: list[str], args: list) -> bytes:
    """A setter's calldata: what ``queue_change`` takes and the setter call must repeat."""
    return keccak(text=signature)[:4] + encode(types, args)


SETTERS = {
    "set_min_stake": ("set_min_stake(uint8,uint256)", ["uint8", "uint256"]),
    "set_periods": ("set_periods(uint256,uint256,uint256)", ["uint256"] * 3),
    "set_slashing": ("set_slashing(uint256,uint256,uint256,uint256,uint256)", ["uint256"] * 5),
    "set_delay": ("set_delay(uint256)", ["uint256"]),
}


def queue(staking, owner, name: str, *args) -> int:
    """Queue ``name(*args)``; returns the time it becomes due."""
    signature, types = SETTERS[name]
    tx = staking.queue_change(call_data(signature, types, list(args)), sender=owner)
    return tx.decode_logs(staking.ChangeQueued)[0].eta


def govern(staking, owner, chain, name: str, *args, executor=None):
    """Queue ``name(*args)``, wait out the delay, and execute it."""
    eta = queue(staking, owner, name, *args)
    chain.pending_timestamp = eta
    return getattr(staking, name)(*args, sender=executor or owner)


def slashing_args(params, **changes) -> list:
    values = dict(
        eq=params.equivocation_slash_bps,
        fraud=params.fraud_slash_bps,
        challenger=params.challenger_reward_bps,
        multiplier=params.fraud_multiplier,
        quorum=params.fraud_quorum_bps,
    )
    values.update(changes)
    return [values["eq"], values["fraud"], values["challenger"], values["multiplier"], values["quorum"]]


# ---------------------------------------------------------------- register


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


# ---------------------------------------------------------------- endpoint


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


# ---------------------------------------------------------------- add_stake


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


# ---------------------------------------------------------------- unbonding


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


# ---------------------------------------------------------------- heartbeats and vote weights


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


# ---------------------------------------------------------------- activity


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


# ---------------------------------------------------------------- timelocked parameters (attacks 8 and 17)


def test_attack_owner_cannot_change_a_parameter_without_the_queue(staking, deployer, params):
    with ape.reverts("timelock: change not queued"):
        staking.set_min_stake(INFERENCE, 2 * params.min_inference_stake, sender=deployer)
    with ape.reverts("timelock: change not queued"):
        staking.set_slashing(*slashing_args(params, quorum=5_000), sender=deployer)
    with ape.reverts("timelock: change not queued"):
        staking.set_periods(3_600, 7_200, 3_600, sender=deployer)
    with ape.reverts("timelock: change not queued"):
        staking.set_delay(params.delay + 1, sender=deployer)


def test_attack_owner_cannot_execute_a_change_before_the_delay(staking, deployer, chain, params):
    eta = queue(staking, deployer, "set_min_stake", INFERENCE, 2 * params.min_inference_stake)
    assert eta == staking.queued_eta(keccak(call_data(*SETTERS["set_min_stake"], [INFERENCE, 2 * params.min_inference_stake])))
    chain.pending_timestamp = eta - 1
    with ape.reverts("timelock: change not due"):
        staking.set_min_stake(INFERENCE, 2 * params.min_inference_stake, sender=deployer)


def test_queued_change_is_executable_by_anyone_when_due(staking, deployer, node, chain, params):
    tx = govern(staking, deployer, chain, "set_min_stake", INFERENCE, 3 * params.min_inference_stake, executor=node.account)
    assert tx.decode_logs(staking.MinStakeUpdated)[0].amount == 3 * params.min_inference_stake
    assert staking.min_stake(INFERENCE) == 3 * params.min_inference_stake


def test_attack_due_change_lapses_after_the_grace_day(staking, deployer, chain, params):
    eta = queue(staking, deployer, "set_min_stake", INFERENCE, 2 * params.min_inference_stake)
    chain.pending_timestamp = eta + GRACE
    with ape.reverts("timelock: change lapsed"):
        staking.set_min_stake(INFERENCE, 2 * params.min_inference_stake, sender=deployer)
    assert staking.min_stake(INFERENCE) == params.min_inference_stake


def test_execution_with_other_arguments_than_queued_reverts(staking, deployer, chain, params):
    eta = queue(staking, deployer, "set_min_stake", INFERENCE, 2 * params.min_inference_stake)
    chain.pending_timestamp = eta
    with ape.reverts("timelock: change not queued"):
        staking.set_min_stake(INFERENCE, 2 * params.min_inference_stake + 1, sender=deployer)


def test_cancelled_change_cannot_run(staking, deployer, chain, params):
    data = call_data(*SETTERS["set_min_stake"], [INFERENCE, 2 * params.min_inference_stake])
    eta = staking.queue_change(data, sender=deployer).decode_logs(staking.ChangeQueued)[0].eta
    staking.cancel_change(keccak(data), sender=deployer)
    chain.pending_timestamp = eta
    with ape.reverts("timelock: change not queued"):
        staking.set_min_stake(INFERENCE, 2 * params.min_inference_stake, sender=deployer)


def test_queue_change_by_non_owner_reverts(staking, node, params):
    with ape.reverts(NOT_OWNER):
        staking.queue_change(call_data(*SETTERS["set_min_stake"], [INFERENCE, 1]), sender=node.account)
    with ape.reverts(NOT_OWNER):
        staking.cancel_change(b"\x00" * 32, sender=node.account)


@pytest.mark.parametrize("quorum", [0, 4_999, 10_001])
def test_attack_owner_cannot_set_fraud_quorum_out_of_bounds(staking, deployer, chain, params, quorum):
    with ape.reverts("NodeStaking: fraud quorum out of bounds"):
        govern(staking, deployer, chain, "set_slashing", *slashing_args(params, quorum=quorum))


@pytest.mark.parametrize("quorum", [5_000, 10_000])
def test_set_slashing_accepts_the_quorum_bounds(staking, deployer, chain, params, quorum):
    tx = govern(staking, deployer, chain, "set_slashing", *slashing_args(params, quorum=quorum))
    assert tx.decode_logs(staking.FraudQuorumUpdated)[0].fraud_quorum_bps == quorum
    assert staking.fraud_quorum_bps() == quorum


def test_set_slashing_emits_and_stores(staking, deployer, chain, params):
    tx = govern(staking, deployer, chain, "set_slashing", 4_000, 1_500, 0, 20, 7_500)
    event = tx.decode_logs(staking.SlashingUpdated)[0]
    assert (event.equivocation_slash_bps, event.fraud_slash_bps, event.challenger_reward_bps, event.fraud_multiplier) == (
        4_000, 1_500, 0, 20,
    )
    assert staking.fraud_multiplier() == 20 and staking.challenger_reward_bps() == 0


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"eq": 0}, "NodeStaking: slash out of bounds"),
        ({"eq": 10_001}, "NodeStaking: slash out of bounds"),
        ({"fraud": 0}, "NodeStaking: slash out of bounds"),
        ({"fraud": 10_001}, "NodeStaking: slash out of bounds"),
        ({"challenger": 5_001}, "NodeStaking: reward out of bounds"),
        ({"multiplier": 0}, "NodeStaking: multiplier out of bounds"),
        ({"multiplier": 101}, "NodeStaking: multiplier out of bounds"),
    ],
)
def test_set_slashing_out_of_bounds_reverts(staking, deployer, chain, params, changes, message):
    with ape.reverts(message):
        govern(staking, deployer, chain, "set_slashing", *slashing_args(params, **changes))


@pytest.mark.parametrize("amount", [0, MAX_MIN_STAKE + 1])
def test_attack_owner_cannot_set_min_stake_out_of_bounds(staking, deployer, chain, amount):
    with ape.reverts("NodeStaking: min stake out of bounds"):
        govern(staking, deployer, chain, "set_min_stake", INFERENCE, amount)


def test_set_min_stake_accepts_the_cap(staking, deployer, chain):
    govern(staking, deployer, chain, "set_min_stake", VERIFIER, MAX_MIN_STAKE)
    assert staking.min_stake(VERIFIER) == MAX_MIN_STAKE
    assert staking.MAX_MIN_STAKE() == MAX_MIN_STAKE


@pytest.mark.parametrize("role", [0, 3])
def test_set_min_stake_invalid_role_reverts(staking, deployer, chain, role):
    with ape.reverts("NodeStaking: invalid role"):
        govern(staking, deployer, chain, "set_min_stake", role, OPG)


def test_attack_raising_min_stake_does_not_stop_pay_for_work_done(
    opg, staking, escrow, escrow_domain, deployer, node, payer, chain
):
    opg.approve(escrow, 100 * OPG, sender=payer.account)
    escrow.deposit(100 * OPG, sender=payer.account)
    voucher = Voucher(payer=payer.address, node=node.address, max_cumulative=10 * OPG)
    claim = Claim(
        payer=payer.address, node=node.address, max_cumulative=10 * OPG,
        signature=voucher.sign_with(payer.key, escrow_domain), total=10 * OPG,
    )
    govern(staking, deployer, chain, "set_min_stake", INFERENCE, MAX_MIN_STAKE)
    assert not staking.is_active_as(node.address, INFERENCE)
    assert staking.is_payable(node.address)
    escrow.settle_batch([claim.as_tuple()], ZERO_ROOT, sender=ape.accounts.test_accounts[2])  # the facilitator
    assert escrow.spent(payer.address, node.address) == 10 * OPG


def test_set_periods_emits_and_stores(staking, deployer, chain):
    tx = govern(staking, deployer, chain, "set_periods", 3_600, 7_200, 3_600)
    event = tx.decode_logs(staking.PeriodsUpdated)[0]
    assert (event.dispute_window, event.unbonding_period, event.warmup) == (3_600, 7_200, 3_600)
    assert staking.dispute_window() == 3_600 and staking.unbonding_period() == 7_200 and staking.warmup() == 3_600


@pytest.mark.parametrize(
    "periods, message",
    [
        ((59, 7_200, 3_600), "NodeStaking: window out of bounds"),
        ((30 * 86_400 + 1, 60 * 86_400, 30 * 86_400), "NodeStaking: window out of bounds"),
        ((3_600, 7_199, 3_600), "NodeStaking: unbonding out of bounds"),
        ((3_600, 60 * 86_400 + 1, 3_600), "NodeStaking: unbonding out of bounds"),
        ((3_600, 7_200, 3_599), "NodeStaking: warmup out of bounds"),
        ((3_600, 7_200, 30 * 86_400 + 1), "NodeStaking: warmup out of bounds"),
    ],
)
def test_set_periods_out_of_bounds_reverts(staking, deployer, chain, periods, message):
    with ape.reverts(message):
        govern(staking, deployer, chain, "set_periods", *periods)


def test_set_periods_above_the_delay_reverts(staking, deployer, chain, params):
    # The delay must stay at least the longest period + 1 day.
    with ape.reverts("NodeStaking: periods above delay"):
        govern(staking, deployer, chain, "set_periods", 86_400, 30 * 86_400, 86_400)


def test_set_delay_below_the_floor_reverts(staking, deployer, chain, params):
    with ape.reverts("timelock: delay below the floor"):
        govern(staking, deployer, chain, "set_delay", max(params.unbonding_period, params.warmup) + 86_400 - 1)


def test_set_delay_through_the_queue(staking, deployer, chain, params):
    govern(staking, deployer, chain, "set_delay", params.delay + 3_600)
    assert staking.delay() == params.delay + 3_600


def test_deployed_parameters_match_params(staking, distributor, escrow, opg, params):
    assert staking.token() == opg.address
    assert staking.distributor() == distributor.address
    assert staking.escrow() == escrow.address
    assert staking.dispute_window() == params.dispute_window
    assert staking.unbonding_period() == params.unbonding_period
    assert staking.warmup() == params.warmup
    assert staking.equivocation_slash_bps() == params.equivocation_slash_bps
    assert staking.fraud_slash_bps() == params.fraud_slash_bps
    assert staking.challenger_reward_bps() == params.challenger_reward_bps
    assert staking.fraud_multiplier() == params.fraud_multiplier
    assert staking.fraud_quorum_bps() == params.fraud_quorum_bps
    assert staking.delay() == params.delay


def test_eip712_domain_is_opg_node_staking(staking, chain_id):
    domain = staking.eip712Domain()
    assert domain[1] == "OPG Node Staking"
    assert domain[2] == "1"
    assert domain[3] == chain_id
    assert domain[4] == staking.address


# ---------------------------------------------------------------- connect and constructor


def constructor_args(opg, distributor_, evidence_, **changes) -> list:
    values = dict(
        token=opg, distributor=distributor_, evidence=evidence_, min_inf=OPG, min_ver=OPG, window=86_400,
        unbonding=2 * 86_400,
        warmup=86_400, eq=5_000, fraud=2_000, challenger=2_000, multiplier=10, quorum=6_667, delay=3 * 86_400,
    )
    values.update(changes)
    return list(values.values())


def test_connect_only_once(staking, deployer, escrow):
    with ape.reverts("NodeStaking: already connected"):
        staking.connect(escrow, sender=deployer)


def test_connect_by_non_owner_reverts(staking, node, escrow):
    with ape.reverts(NOT_OWNER):
        staking.connect(escrow, sender=node.account)


def test_connect_fresh_deployment_wires_escrow_once(project, opg, distributor, deployer, escrow, staking):
    fresh = project.NodeStaking.deploy(*constructor_args(opg, distributor, staking.evidence()), sender=deployer)
    assert fresh.escrow() == ZERO_ADDRESS
    with ape.reverts("NodeStaking: zero address"):
        fresh.connect(ZERO_ADDRESS, sender=deployer)
    tx = fresh.connect(escrow, sender=deployer)
    assert tx.decode_logs(fresh.Connected)[0].escrow == escrow.address
    with ape.reverts("NodeStaking: already connected"):
        fresh.connect(escrow, sender=deployer)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"unbonding": 86_400}, "NodeStaking: unbonding out of bounds"),
        ({"warmup": 3_600}, "NodeStaking: warmup out of bounds"),
        ({"quorum": 4_999}, "NodeStaking: fraud quorum out of bounds"),
        ({"min_inf": 0}, "NodeStaking: min stake out of bounds"),
        ({"min_ver": MAX_MIN_STAKE + 1}, "NodeStaking: min stake out of bounds"),
        ({"multiplier": 0}, "NodeStaking: multiplier out of bounds"),
        ({"delay": 3 * 86_400 - 1}, "timelock: delay below the floor"),
        ({"distributor": ZERO_ADDRESS}, "NodeStaking: zero address"),
        ({"token": ZERO_ADDRESS}, "NodeStaking: zero address"),
    ],
)
def test_constructor_enforces_parameter_bounds(project, opg, distributor, deployer, changes, message, staking):
    with ape.reverts(message):
        project.NodeStaking.deploy(*constructor_args(opg, distributor, staking.evidence(), **changes), sender=deployer)


# ---------------------------------------------------------------- ownership (2-step)


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
