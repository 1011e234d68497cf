"""NodeStaking: timelocked parameters (attacks 8 and 17)."""

from __future__ import annotations

import ape
import pytest
from eth_utils import keccak
from node_staking_kit import (
    INFERENCE,
    MAX_MIN_STAKE,
    NOT_OWNER,
    OPG,
    SETTERS,
    VERIFIER,
    ZERO_ROOT,
    call_data,
)

from offchain.messages import Claim, Voucher

GRACE = 86_400


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
