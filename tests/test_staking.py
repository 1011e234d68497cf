"""NodeStaking: registration, stake management, unbonding, activity, owner-only parameters and ownership.

Slashing lives in ``test_slashing.py``; fees and emissions in ``test_rewards.py``.
"""

from __future__ import annotations

import ape
import pytest

OPG = 10**18
INFERENCE = 1
VERIFIER = 2
ZERO_ADDRESS = "0x" + "00" * 20
NOT_OWNER = "ownable: caller is not the owner"


def register(opg, staking, actor, role, stake, endpoint="http://n.invalid"):
    opg.approve(staking, stake, sender=actor.account)
    return staking.register(role, stake, endpoint, sender=actor.account)


def stake_of(staking, account) -> int:
    return staking.nodes(account).stake


def unbonding_of(staking, account) -> int:
    return staking.nodes(account).unbonding


# ---------------------------------------------------------------- register


def test_register_inference_node_locks_stake_and_emits_registered(opg, staking, make_actor, params):
    actor = make_actor()
    before = opg.balanceOf(staking)
    tx = register(opg, staking, actor, INFERENCE, params.min_inference_stake, "http://gpu.invalid:8000")
    events = tx.decode_logs(staking.Registered)
    assert len(events) == 1
    assert events[0].node == actor.address
    assert events[0].role == INFERENCE
    assert events[0].stake == params.min_inference_stake
    assert events[0].endpoint == "http://gpu.invalid:8000"
    record = staking.nodes(actor.address)
    assert record.role == INFERENCE
    assert not record.jailed
    assert record.stake == params.min_inference_stake
    assert record.unbonding == 0
    assert staking.endpoint(actor.address) == "http://gpu.invalid:8000"
    assert opg.balanceOf(staking) == before + params.min_inference_stake
    assert opg.balanceOf(actor.address) == 100_000 * OPG - params.min_inference_stake


def test_register_inference_node_does_not_touch_verifier_pool(opg, staking, distributor, make_actor, params):
    actor = make_actor()
    tx = register(opg, staking, actor, INFERENCE, params.min_inference_stake)
    assert tx.decode_logs(distributor.VerifierStakeUpdated) == []
    assert distributor.verifier_stake(actor.address) == 0


def test_register_verifier_reports_stake_to_distributor(opg, staking, distributor, make_actor, params):
    actor = make_actor()
    total_before = distributor.total_verifier_stake()
    tx = register(opg, staking, actor, VERIFIER, params.min_verifier_stake)
    events = tx.decode_logs(distributor.VerifierStakeUpdated)
    assert len(events) == 1
    assert events[0].verifier == actor.address
    assert events[0].stake == params.min_verifier_stake
    assert events[0].total_stake == total_before + params.min_verifier_stake
    assert distributor.verifier_stake(actor.address) == params.min_verifier_stake
    assert staking.nodes(actor.address).role == VERIFIER


@pytest.mark.parametrize("role", [0, 3, 255])
def test_register_with_invalid_role_reverts(opg, staking, make_actor, params, role):
    actor = make_actor()
    opg.approve(staking, params.min_inference_stake, sender=actor.account)
    with ape.reverts("NodeStaking: invalid role"):
        staking.register(role, params.min_inference_stake, "http://n.invalid", sender=actor.account)


def test_register_twice_reverts_even_for_the_other_role(opg, staking, node, params):
    opg.approve(staking, params.min_inference_stake, sender=node.account)
    with ape.reverts("NodeStaking: already registered"):
        staking.register(INFERENCE, params.min_inference_stake, "http://n.invalid", sender=node.account)
    with ape.reverts("NodeStaking: already registered"):
        staking.register(VERIFIER, params.min_inference_stake, "http://n.invalid", sender=node.account)


def test_register_inference_below_min_stake_reverts(opg, staking, make_actor, params):
    actor = make_actor()
    stake = params.min_inference_stake - 1
    opg.approve(staking, stake, sender=actor.account)
    with ape.reverts("NodeStaking: stake below minimum"):
        staking.register(INFERENCE, stake, "http://n.invalid", sender=actor.account)


def test_register_verifier_below_min_stake_reverts(opg, staking, make_actor, params):
    actor = make_actor()
    stake = params.min_verifier_stake - 1
    opg.approve(staking, stake, sender=actor.account)
    with ape.reverts("NodeStaking: stake below minimum"):
        staking.register(VERIFIER, stake, "http://n.invalid", sender=actor.account)


def test_min_stake_is_per_role(opg, staking, make_actor, params):
    assert staking.min_stake(INFERENCE) == params.min_inference_stake
    assert staking.min_stake(VERIFIER) == params.min_verifier_stake
    assert staking.min_stake(0) == 0
    # The verifier minimum (500) is enough for a verifier but not for an inference node (1,000).
    actor = make_actor()
    opg.approve(staking, params.min_verifier_stake, sender=actor.account)
    with ape.reverts("NodeStaking: stake below minimum"):
        staking.register(INFERENCE, params.min_verifier_stake, "http://n.invalid", sender=actor.account)
    staking.register(VERIFIER, params.min_verifier_stake, "http://n.invalid", sender=actor.account)
    assert staking.is_active_as(actor.address, VERIFIER)


def test_register_with_empty_endpoint_reverts(opg, staking, make_actor, params):
    actor = make_actor()
    opg.approve(staking, params.min_inference_stake, sender=actor.account)
    with ape.reverts("NodeStaking: empty endpoint"):
        staking.register(INFERENCE, params.min_inference_stake, "", sender=actor.account)


def test_register_without_allowance_reverts(opg, staking, make_actor, params):
    actor = make_actor()
    with ape.reverts("erc20: insufficient allowance"):
        staking.register(INFERENCE, params.min_inference_stake, "http://n.invalid", sender=actor.account)


# ---------------------------------------------------------------- endpoint


def test_set_endpoint_updates_endpoint_and_emits(staking, node):
    tx = staking.set_endpoint("https://new.invalid/v1", sender=node.account)
    events = tx.decode_logs(staking.EndpointUpdated)
    assert len(events) == 1
    assert events[0].node == node.address
    assert events[0].endpoint == "https://new.invalid/v1"
    assert staking.endpoint(node.address) == "https://new.invalid/v1"


def test_set_endpoint_empty_reverts(staking, node):
    with ape.reverts("NodeStaking: empty endpoint"):
        staking.set_endpoint("", sender=node.account)


def test_set_endpoint_unregistered_reverts(staking, make_actor):
    actor = make_actor(0)
    with ape.reverts("NodeStaking: not registered"):
        staking.set_endpoint("http://n.invalid", sender=actor.account)


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


def test_add_stake_of_verifier_updates_distributor(opg, staking, distributor, verifiers):
    v = verifiers[0]
    before = stake_of(staking, v.address)
    total = distributor.total_verifier_stake()
    opg.approve(staking, 7 * OPG, sender=v.account)
    staking.add_stake(7 * OPG, sender=v.account)
    assert distributor.verifier_stake(v.address) == before + 7 * OPG
    assert distributor.total_verifier_stake() == total + 7 * OPG


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
    assert not staking.is_active(node.address)
    opg.approve(staking, params.min_inference_stake, sender=node.account)
    staking.add_stake(params.min_inference_stake, sender=node.account)
    assert staking.is_active(node.address)


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
    assert staking.is_active(node.address)
    staking.request_unbond(1, sender=node.account)
    assert not staking.is_active(node.address)
    assert not staking.is_active_as(node.address, INFERENCE)


def test_request_unbond_below_minimum_removes_verifier_from_pool(staking, distributor, verifiers, params):
    v = verifiers[0]
    stake = stake_of(staking, v.address)
    total = distributor.total_verifier_stake()
    staking.request_unbond(stake - params.min_verifier_stake + 1, sender=v.account)
    assert not staking.is_active(v.address)
    assert distributor.verifier_stake(v.address) == 0
    assert distributor.total_verifier_stake() == total - stake


def test_request_unbond_of_verifier_above_minimum_reports_remaining_stake(
    staking, distributor, verifiers, params
):
    v = max(verifiers, key=lambda a: stake_of(staking, a.address))
    stake = stake_of(staking, v.address)
    staking.request_unbond(OPG, sender=v.account)
    assert staking.is_active(v.address)
    assert distributor.verifier_stake(v.address) == stake - OPG


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


def test_withdraw_unbonded_leaves_active_stake_in_place(staking, node, chain):
    stake = stake_of(staking, node.address)
    staking.request_unbond(100 * OPG, sender=node.account)
    chain.pending_timestamp = staking.nodes(node.address).unbond_ready_at + 10
    staking.withdraw_unbonded(sender=node.account)
    assert stake_of(staking, node.address) == stake - 100 * OPG
    assert staking.is_active(node.address)


def test_staking_balance_equals_active_plus_unbonding(opg, staking, node, verifiers, chain):
    staking.request_unbond(100 * OPG, sender=node.account)
    staking.request_unbond(10 * OPG, sender=verifiers[2].account)
    total = 0
    for account in [node.address] + [v.address for v in verifiers]:
        record = staking.nodes(account)
        total += record.stake + record.unbonding
    assert opg.balanceOf(staking) == total


# ---------------------------------------------------------------- activity


def test_is_active_for_registered_nodes(staking, node, verifiers):
    assert staking.is_active(node.address)
    assert staking.is_active_as(node.address, INFERENCE)
    assert not staking.is_active_as(node.address, VERIFIER)
    for v in verifiers:
        assert staking.is_active(v.address)
        assert staking.is_active_as(v.address, VERIFIER)
        assert not staking.is_active_as(v.address, INFERENCE)


def test_is_active_false_for_unregistered_and_role_none(staking, make_actor, node):
    stranger = make_actor(0)
    assert not staking.is_active(stranger.address)
    assert not staking.is_active_as(stranger.address, 0)
    assert not staking.is_active_as(stranger.address, INFERENCE)
    assert not staking.is_active_as(node.address, 0)


def test_raising_min_stake_deactivates_understaked_node(staking, deployer, node):
    stake = stake_of(staking, node.address)
    staking.set_min_stake(INFERENCE, stake + 1, sender=deployer)
    assert not staking.is_active(node.address)
    staking.set_min_stake(INFERENCE, stake, sender=deployer)
    assert staking.is_active(node.address)


# ---------------------------------------------------------------- owner-only parameters


def test_set_min_stake_by_owner_emits(staking, deployer):
    tx = staking.set_min_stake(VERIFIER, 42 * OPG, sender=deployer)
    events = tx.decode_logs(staking.MinStakeUpdated)
    assert len(events) == 1
    assert events[0].role == VERIFIER
    assert events[0].amount == 42 * OPG
    assert staking.min_stake(VERIFIER) == 42 * OPG


@pytest.mark.parametrize("role", [0, 3])
def test_set_min_stake_invalid_role_reverts(staking, deployer, role):
    with ape.reverts("NodeStaking: invalid role"):
        staking.set_min_stake(role, OPG, sender=deployer)


def test_set_min_stake_zero_reverts(staking, deployer):
    with ape.reverts("NodeStaking: min stake out of bounds"):
        staking.set_min_stake(INFERENCE, 0, sender=deployer)


def test_set_min_stake_by_non_owner_reverts(staking, node):
    with ape.reverts(NOT_OWNER):
        staking.set_min_stake(INFERENCE, OPG, sender=node.account)


def test_set_periods_by_owner_emits(staking, deployer):
    tx = staking.set_periods(7_200, 14_400, sender=deployer)
    events = tx.decode_logs(staking.PeriodsUpdated)
    assert len(events) == 1
    assert events[0].dispute_window == 7_200
    assert events[0].unbonding_period == 14_400
    assert staking.dispute_window() == 7_200
    assert staking.unbonding_period() == 14_400


def test_set_periods_accepts_the_bounds(staking, deployer):
    staking.set_periods(60, 60, sender=deployer)
    assert (staking.dispute_window(), staking.unbonding_period()) == (60, 60)
    staking.set_periods(30 * 86_400, 60 * 86_400, sender=deployer)
    assert (staking.dispute_window(), staking.unbonding_period()) == (30 * 86_400, 60 * 86_400)


@pytest.mark.parametrize("window", [0, 59, 30 * 86_400 + 1])
def test_set_periods_dispute_window_out_of_bounds_reverts(staking, deployer, window):
    with ape.reverts("NodeStaking: dispute window out of bounds"):
        staking.set_periods(window, 60 * 86_400, sender=deployer)


def test_set_periods_unbonding_shorter_than_dispute_window_reverts(staking, deployer):
    with ape.reverts("NodeStaking: unbonding period out of bounds"):
        staking.set_periods(86_400, 86_399, sender=deployer)


def test_set_periods_unbonding_above_sixty_days_reverts(staking, deployer):
    with ape.reverts("NodeStaking: unbonding period out of bounds"):
        staking.set_periods(86_400, 60 * 86_400 + 1, sender=deployer)


def test_set_periods_by_non_owner_reverts(staking, node):
    with ape.reverts(NOT_OWNER):
        staking.set_periods(86_400, 86_400, sender=node.account)


def test_set_slashing_by_owner_emits(staking, deployer):
    tx = staking.set_slashing(10_000, 1, 5_000, sender=deployer)
    events = tx.decode_logs(staking.SlashingUpdated)
    assert len(events) == 1
    assert events[0].equivocation_slash_bps == 10_000
    assert events[0].fraud_slash_bps == 1
    assert events[0].challenger_reward_bps == 5_000
    assert staking.equivocation_slash_bps() == 10_000
    assert staking.fraud_slash_bps() == 1
    assert staking.challenger_reward_bps() == 5_000


def test_set_slashing_allows_zero_challenger_reward(staking, deployer):
    staking.set_slashing(1, 10_000, 0, sender=deployer)
    assert staking.challenger_reward_bps() == 0


@pytest.mark.parametrize("bps", [0, 10_001])
def test_set_slashing_equivocation_out_of_bounds_reverts(staking, deployer, bps):
    with ape.reverts("NodeStaking: equivocation slash out of bounds"):
        staking.set_slashing(bps, 2_000, 2_000, sender=deployer)


@pytest.mark.parametrize("bps", [0, 10_001])
def test_set_slashing_fraud_out_of_bounds_reverts(staking, deployer, bps):
    with ape.reverts("NodeStaking: fraud slash out of bounds"):
        staking.set_slashing(5_000, bps, 2_000, sender=deployer)


def test_set_slashing_challenger_reward_above_half_reverts(staking, deployer):
    with ape.reverts("NodeStaking: challenger reward out of bounds"):
        staking.set_slashing(5_000, 2_000, 5_001, sender=deployer)


def test_set_slashing_by_non_owner_reverts(staking, node):
    with ape.reverts(NOT_OWNER):
        staking.set_slashing(5_000, 2_000, 2_000, sender=node.account)


def test_set_fraud_quorum_by_owner_emits(staking, deployer):
    tx = staking.set_fraud_quorum(3, sender=deployer)
    events = tx.decode_logs(staking.FraudQuorumUpdated)
    assert len(events) == 1
    assert events[0].fraud_quorum == 3
    assert staking.fraud_quorum() == 3


def test_set_fraud_quorum_accepts_the_bounds(staking, deployer):
    staking.set_fraud_quorum(1, sender=deployer)
    assert staking.fraud_quorum() == 1
    staking.set_fraud_quorum(16, sender=deployer)
    assert staking.fraud_quorum() == 16


@pytest.mark.parametrize("quorum", [0, 17])
def test_set_fraud_quorum_out_of_bounds_reverts(staking, deployer, quorum):
    with ape.reverts("NodeStaking: fraud quorum out of bounds"):
        staking.set_fraud_quorum(quorum, sender=deployer)


def test_set_fraud_quorum_by_non_owner_reverts(staking, node):
    with ape.reverts(NOT_OWNER):
        staking.set_fraud_quorum(1, sender=node.account)


def test_deployed_parameters_match_params(staking, distributor, escrow, opg, params):
    assert staking.token() == opg.address
    assert staking.distributor() == distributor.address
    assert staking.escrow() == escrow.address
    assert staking.dispute_window() == params.dispute_window
    assert staking.unbonding_period() == params.unbonding_period
    assert staking.equivocation_slash_bps() == params.equivocation_slash_bps
    assert staking.fraud_slash_bps() == params.fraud_slash_bps
    assert staking.challenger_reward_bps() == params.challenger_reward_bps
    assert staking.fraud_quorum() == params.fraud_quorum


def test_eip712_domain_is_opg_node_staking(staking, chain_id):
    domain = staking.eip712Domain()
    assert domain[1] == "OPG Node Staking"
    assert domain[2] == "1"
    assert domain[3] == chain_id
    assert domain[4] == staking.address


# ---------------------------------------------------------------- connect


def test_connect_only_once(staking, deployer, escrow):
    with ape.reverts("NodeStaking: already connected"):
        staking.connect(escrow, sender=deployer)


def test_connect_by_non_owner_reverts(staking, node, escrow):
    with ape.reverts(NOT_OWNER):
        staking.connect(escrow, sender=node.account)


def test_connect_fresh_deployment_wires_escrow_once(project, opg, distributor, deployer, escrow, params):
    fresh = project.NodeStaking.deploy(
        opg, distributor, OPG, OPG, 86_400, 86_400, 5_000, 2_000, 2_000, 2, sender=deployer
    )
    assert fresh.escrow() == ZERO_ADDRESS
    with ape.reverts("NodeStaking: escrow is the zero address"):
        fresh.connect(ZERO_ADDRESS, sender=deployer)
    tx = fresh.connect(escrow, sender=deployer)
    events = tx.decode_logs(fresh.Connected)
    assert len(events) == 1 and events[0].escrow == escrow.address
    assert fresh.escrow() == escrow.address
    with ape.reverts("NodeStaking: already connected"):
        fresh.connect(escrow, sender=deployer)


def test_constructor_enforces_parameter_bounds(project, opg, distributor, deployer):
    with ape.reverts("NodeStaking: unbonding period out of bounds"):
        project.NodeStaking.deploy(
            opg, distributor, OPG, OPG, 86_400, 3_600, 5_000, 2_000, 2_000, 2, sender=deployer
        )
    with ape.reverts("NodeStaking: fraud quorum out of bounds"):
        project.NodeStaking.deploy(
            opg, distributor, OPG, OPG, 86_400, 86_400, 5_000, 2_000, 2_000, 0, sender=deployer
        )
    with ape.reverts("NodeStaking: min stake out of bounds"):
        project.NodeStaking.deploy(
            opg, distributor, 0, OPG, 86_400, 86_400, 5_000, 2_000, 2_000, 2, sender=deployer
        )
    with ape.reverts("NodeStaking: distributor is the zero address"):
        project.NodeStaking.deploy(
            opg, ZERO_ADDRESS, OPG, OPG, 86_400, 86_400, 5_000, 2_000, 2_000, 2, sender=deployer
        )


# ---------------------------------------------------------------- ownership (2-step)


def test_owner_is_the_deployer(staking, deployer):
    assert staking.owner() == deployer.address


def test_transfer_ownership_is_two_step(staking, deployer, make_actor):
    new_owner = make_actor(0)
    tx = staking.transfer_ownership(new_owner.address, sender=deployer)
    started = tx.decode_logs(staking.OwnershipTransferStarted)
    assert len(started) == 1
    assert started[0].previous_owner == deployer.address
    assert started[0].new_owner == new_owner.address
    # Nothing changes until the new owner accepts.
    assert staking.owner() == deployer.address
    assert staking.pending_owner() == new_owner.address
    with ape.reverts(NOT_OWNER):
        staking.set_fraud_quorum(1, sender=new_owner.account)
    tx = staking.accept_ownership(sender=new_owner.account)
    transferred = tx.decode_logs(staking.OwnershipTransferred)
    assert len(transferred) == 1 and transferred[0].new_owner == new_owner.address
    assert staking.owner() == new_owner.address
    assert staking.pending_owner() == ZERO_ADDRESS
    staking.set_fraud_quorum(1, sender=new_owner.account)
    with ape.reverts(NOT_OWNER):
        staking.set_fraud_quorum(2, sender=deployer)


def test_accept_ownership_by_other_than_pending_owner_reverts(staking, deployer, make_actor):
    new_owner, intruder = make_actor(0), make_actor(0)
    staking.transfer_ownership(new_owner.address, sender=deployer)
    with ape.reverts("ownable_2step: caller is not the new owner"):
        staking.accept_ownership(sender=intruder.account)
    assert staking.owner() == deployer.address


def test_transfer_ownership_by_non_owner_reverts(staking, node):
    with ape.reverts(NOT_OWNER):
        staking.transfer_ownership(node.address, sender=node.account)
