"""RewardDistributor: parameters and governance."""

from __future__ import annotations

import ape
import pytest
from eth_utils import keccak
from reward_distributor_kit import OPG, calldata, credited, end_epoch, epoch_of, govern, pay, queue

pytestmark = pytest.mark.usefixtures("backed_node")


DAY = 86_400


ZERO_ADDRESS = "0x" + "00" * 20


NOT_OWNER = "ownable: caller is not the owner"


def test_deployed_parameters_match_params(distributor, opg, escrow, staking, treasury, deployer, params):
    assert distributor.token() == opg.address
    assert distributor.escrow() == escrow.address
    assert distributor.staking() == staking.address
    assert distributor.treasury() == treasury.address
    assert distributor.protocol_fee_bps() == params.protocol_fee_bps
    assert distributor.verifier_fee_bps() == params.verifier_fee_bps
    assert distributor.max_emission_per_fee_bps() == params.max_emission_per_fee_bps
    assert distributor.epoch_length() == params.epoch_length
    assert distributor.emission_per_epoch() == params.emission_per_epoch
    assert distributor.delay() == params.delay
    assert distributor.owner() == deployer.address


def test_attack_owner_cannot_change_fees_without_queueing(distributor, deployer):
    with ape.reverts("timelock: change not queued"):
        distributor.set_fees(2_000, 2_000, 0, sender=deployer)


def test_attack_fee_change_queued_now_cannot_apply_to_settlements_within_the_delay(
    opg, escrow, escrow_domain, distributor, deployer, node, payer, chain
):
    # Payers sign vouchers against today's fees; a raise queued now reaches none of the settlements before it is due.
    eta = queue(distributor, deployer, "set_fees", 2_000, 2_000, 0)
    opg.approve(escrow, 1_000 * OPG, sender=payer.account)
    escrow.deposit(1_000 * OPG, sender=payer.account)
    chain.pending_timestamp = eta - 1
    with ape.reverts("timelock: change not due"):
        distributor.set_fees(2_000, 2_000, 0, sender=payer.account)
    chain.pending_timestamp = eta - 1
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG, deposit=False)
    assert chain.blocks[tx.block_number].timestamp == eta - 1
    ev = credited(tx, distributor)[0]
    assert (ev.protocol_fee, ev.verifier_fee) == (50 * OPG, 100 * OPG)
    # Once due, anyone executes it, and only then does it apply.
    chain.pending_timestamp = eta
    tx = distributor.set_fees(2_000, 2_000, 0, sender=payer.account)
    assert len(tx.decode_logs(distributor.FeesUpdated)) == 1
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    ev = credited(tx, distributor)[0]
    assert (ev.protocol_fee, ev.verifier_fee) == (200 * OPG, 200 * OPG)


def test_queued_fee_change_records_eta_after_the_delay(distributor, deployer, params, chain):
    tx = distributor.queue_change(calldata("set_fees", 2_000, 2_000, 0), sender=deployer)
    timestamp = chain.blocks[tx.block_number].timestamp
    assert distributor.queued_eta(keccak(calldata("set_fees", 2_000, 2_000, 0))) == timestamp + params.delay
    assert tx.return_value == keccak(calldata("set_fees", 2_000, 2_000, 0))


def test_attack_due_fee_change_lapses_after_a_day(distributor, deployer, chain):
    # A due change that nobody executed is not a standing option for the owner: it lapses.
    eta = queue(distributor, deployer, "set_fees", 2_000, 2_000, 0)
    chain.pending_timestamp = eta + DAY
    with ape.reverts("timelock: change lapsed"):
        distributor.set_fees(2_000, 2_000, 0, sender=deployer)


def test_due_fee_change_executes_on_the_last_second_of_its_grace_day(distributor, deployer, chain):
    eta = queue(distributor, deployer, "set_fees", 2_000, 2_000, 0)
    chain.pending_timestamp = eta + DAY - 1
    distributor.set_fees(2_000, 2_000, 0, sender=deployer)
    assert distributor.protocol_fee_bps() == 2_000


def test_due_fee_change_executes_only_with_the_queued_arguments(distributor, deployer, chain):
    eta = queue(distributor, deployer, "set_fees", 2_000, 2_000, 0)
    chain.pending_timestamp = eta
    with ape.reverts("timelock: change not queued"):
        distributor.set_fees(2_000, 2_000, 1, sender=deployer)
    distributor.set_fees(2_000, 2_000, 0, sender=deployer)
    with ape.reverts("timelock: change not queued"):  # consumed
        distributor.set_fees(2_000, 2_000, 0, sender=deployer)


def test_attack_non_owner_cannot_queue_a_change(distributor, node):
    for name, args in [("set_fees", (2_000, 2_000, 0)), ("set_treasury", (node.address,)), ("set_delay", (90 * DAY,))]:
        with ape.reverts(NOT_OWNER):
            distributor.queue_change(calldata(name, *args), sender=node.account)


def test_attack_non_owner_cannot_cancel_a_change(distributor, deployer, node):
    queue(distributor, deployer, "set_fees", 2_000, 2_000, 0)
    with ape.reverts(NOT_OWNER):
        distributor.cancel_change(keccak(calldata("set_fees", 2_000, 2_000, 0)), sender=node.account)


def test_owner_cancels_a_queued_change(distributor, deployer, chain):
    eta = queue(distributor, deployer, "set_fees", 2_000, 2_000, 0)
    distributor.cancel_change(keccak(calldata("set_fees", 2_000, 2_000, 0)), sender=deployer)
    chain.pending_timestamp = eta
    with ape.reverts("timelock: change not queued"):
        distributor.set_fees(2_000, 2_000, 0, sender=deployer)
    with ape.reverts("timelock: change not queued"):
        distributor.cancel_change(keccak(calldata("set_fees", 2_000, 2_000, 0)), sender=deployer)


def test_queue_the_same_change_twice_reverts(distributor, deployer):
    queue(distributor, deployer, "set_fees", 2_000, 2_000, 0)
    with ape.reverts("timelock: change already queued"):
        distributor.queue_change(calldata("set_fees", 2_000, 2_000, 0), sender=deployer)


def test_set_fees_through_the_queue_emits(distributor, deployer, chain):
    tx = govern(distributor, deployer, chain, "set_fees", 2_000, 2_000, 2_000)
    [event] = tx.decode_logs(distributor.FeesUpdated)
    assert (event.protocol_fee_bps, event.verifier_fee_bps, event.max_emission_per_fee_bps) == (2_000, 2_000, 2_000)
    assert (distributor.protocol_fee_bps(), distributor.verifier_fee_bps(), distributor.max_emission_per_fee_bps()) == (
        2_000,
        2_000,
        2_000,
    )


@pytest.mark.parametrize(
    "fees, error",
    [
        ((2_001, 0, 0), "RewardDistributor: protocol fee out of bounds"),
        ((500, 2_001, 0), "RewardDistributor: verifier fee out of bounds"),
        ((500, 1_000, 501), "RewardDistributor: emission cap above protocol fee"),
    ],
)
def test_set_fees_out_of_bounds_reverts_when_due(distributor, deployer, chain, fees, error):
    eta = queue(distributor, deployer, "set_fees", *fees)
    chain.pending_timestamp = eta
    with ape.reverts(error):
        distributor.set_fees(*fees, sender=deployer)


def test_attack_owner_cannot_set_treasury_without_queueing(distributor, deployer, node):
    with ape.reverts("timelock: change not queued"):
        distributor.set_treasury(node.address, sender=deployer)


def test_set_treasury_through_the_queue_redirects_later_fees(
    opg, escrow, escrow_domain, distributor, deployer, treasury, make_actor, node, payer, chain
):
    pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    old_earned = distributor.claimable(treasury)
    new = make_actor(0)
    tx = govern(distributor, deployer, chain, "set_treasury", new.address)
    [event] = tx.decode_logs(distributor.TreasuryUpdated)
    assert event.treasury == new.address
    assert distributor.treasury() == new.address
    pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)  # no live weight after the delay
    assert distributor.claimable(treasury) == old_earned  # what the old treasury earned stays its own
    assert distributor.claimable(new.address) == 150 * OPG  # protocol + verifier fee
    assert distributor.claim(sender=treasury).return_value == old_earned


def test_set_treasury_zero_address_reverts_when_due(distributor, deployer, chain):
    eta = queue(distributor, deployer, "set_treasury", ZERO_ADDRESS)
    chain.pending_timestamp = eta
    with ape.reverts("RewardDistributor: treasury is the zero address"):
        distributor.set_treasury(ZERO_ADDRESS, sender=deployer)


def test_set_epoch_length_through_the_queue_applies_after_the_current_epoch(distributor, deployer, chain):
    tx = govern(distributor, deployer, chain, "set_epoch_length", 7_200)
    [event] = tx.decode_logs(distributor.EpochLengthUpdated)
    assert event.epoch_length == 7_200
    assert distributor.epoch_length() == 7_200
    # The call rolled the epoch counter first: the current epoch keeps its old (3,600 s) length.
    epoch = distributor.current_epoch()
    current_end = distributor.current_epoch_end()
    assert current_end - 3_600 <= chain.blocks[tx.block_number].timestamp < current_end
    chain.mine(timestamp=current_end)
    assert distributor.epoch_now() == epoch + 1
    chain.mine(timestamp=current_end + 7_199)
    assert distributor.epoch_now() == epoch + 1
    chain.mine(timestamp=current_end + 7_200)
    assert distributor.epoch_now() == epoch + 2


@pytest.mark.parametrize("length", [0, 59])
def test_set_epoch_length_out_of_bounds_reverts_when_due(distributor, deployer, chain, length):
    eta = queue(distributor, deployer, "set_epoch_length", length)
    chain.pending_timestamp = eta
    with ape.reverts("RewardDistributor: epoch length out of bounds"):
        distributor.set_epoch_length(length, sender=deployer)


def test_attack_epoch_length_above_the_delay_minus_one_day_reverts(distributor, deployer, chain, params):
    # An epoch longer than the delay would let a pool or an emission rule change under an epoch already running.
    length = params.delay - DAY + 1
    eta = queue(distributor, deployer, "set_epoch_length", length)
    chain.pending_timestamp = eta
    with ape.reverts("RewardDistributor: epoch length above the delay"):
        distributor.set_epoch_length(length, sender=deployer)


def test_attack_delay_cannot_be_set_below_epoch_length_plus_one_day(distributor, deployer, chain, params):
    eta = queue(distributor, deployer, "set_delay", params.epoch_length + DAY - 1)
    chain.pending_timestamp = eta
    with ape.reverts("timelock: delay below the floor"):
        distributor.set_delay(params.epoch_length + DAY - 1, sender=deployer)


def test_delay_set_through_the_queue_applies_to_later_changes(distributor, deployer, chain, params):
    govern(distributor, deployer, chain, "set_delay", 10 * DAY)
    assert distributor.delay() == 10 * DAY
    tx = distributor.queue_change(calldata("set_fees", 0, 0, 0), sender=deployer)
    timestamp = chain.blocks[tx.block_number].timestamp
    assert distributor.queued_eta(keccak(calldata("set_fees", 0, 0, 0))) == timestamp + 10 * DAY


def test_set_emission_per_epoch_through_the_queue_emits(distributor, deployer, chain):
    tx = govern(distributor, deployer, chain, "set_emission_per_epoch", 123 * OPG)
    [event] = tx.decode_logs(distributor.EmissionPerEpochUpdated)
    assert event.emission_per_epoch == 123 * OPG
    assert distributor.emission_per_epoch() == 123 * OPG


def test_set_emission_per_epoch_zero_turns_emissions_off(
    opg, escrow, escrow_domain, distributor, deployer, node, payer, funded, chain
):
    govern(distributor, deployer, chain, "set_emission_per_epoch", 0)
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    distributor.finalize_epoch(epoch, sender=payer.account)
    assert distributor.epoch_emission(epoch) == 0
    assert distributor.emission_reserve() == funded


def test_attack_owner_cannot_set_emission_or_epoch_length_without_queueing(distributor, deployer):
    with ape.reverts("timelock: change not queued"):
        distributor.set_emission_per_epoch(1, sender=deployer)
    with ape.reverts("timelock: change not queued"):
        distributor.set_epoch_length(7_200, sender=deployer)


def test_connect_only_once(distributor, deployer, escrow, staking):
    with ape.reverts("RewardDistributor: already connected"):
        distributor.connect(escrow, staking, sender=deployer)


def test_connect_by_non_owner_reverts(distributor, node, escrow, staking):
    with ape.reverts(NOT_OWNER):
        distributor.connect(escrow, staking, sender=node.account)


def test_connect_fresh_deployment_rejects_zero_addresses(project, opg, deployer, treasury, escrow, staking, params):
    fresh = project.RewardDistributor.deploy(opg, treasury, 500, 1_000, 400, 3_600, OPG, params.delay, sender=deployer)
    with ape.reverts("RewardDistributor: zero address"):
        fresh.connect(ZERO_ADDRESS, staking, sender=deployer)
    with ape.reverts("RewardDistributor: zero address"):
        fresh.connect(escrow, ZERO_ADDRESS, sender=deployer)
    tx = fresh.connect(escrow, staking, sender=deployer)
    [event] = tx.decode_logs(fresh.Connected)
    assert (event.escrow, event.staking) == (escrow.address, staking.address)
    with ape.reverts("RewardDistributor: already connected"):
        fresh.connect(escrow, staking, sender=deployer)


def test_constructor_enforces_parameter_bounds(project, opg, deployer, treasury, params):
    delay = params.delay
    with ape.reverts("RewardDistributor: emission cap above protocol fee"):
        project.RewardDistributor.deploy(opg, treasury, 500, 1_000, 501, 3_600, OPG, delay, sender=deployer)
    with ape.reverts("RewardDistributor: treasury is the zero address"):
        project.RewardDistributor.deploy(opg, ZERO_ADDRESS, 500, 1_000, 400, 3_600, OPG, delay, sender=deployer)
    with ape.reverts("RewardDistributor: epoch length out of bounds"):
        project.RewardDistributor.deploy(opg, treasury, 500, 1_000, 400, 59, OPG, delay, sender=deployer)
    with ape.reverts("RewardDistributor: token is the zero address"):
        project.RewardDistributor.deploy(ZERO_ADDRESS, treasury, 500, 1_000, 400, 3_600, OPG, delay, sender=deployer)


def test_constructor_delay_below_epoch_length_plus_one_day_reverts(project, opg, deployer, treasury):
    with ape.reverts("timelock: delay below the floor"):
        project.RewardDistributor.deploy(opg, treasury, 500, 1_000, 400, 3_600, OPG, 3_600 + DAY - 1, sender=deployer)
    fresh = project.RewardDistributor.deploy(opg, treasury, 500, 1_000, 400, 3_600, OPG, 3_600 + DAY, sender=deployer)
    assert fresh.delay() == 3_600 + DAY


def test_transfer_ownership_is_two_step(distributor, deployer, make_actor):
    new_owner = make_actor(0)
    distributor.transfer_ownership(new_owner.address, sender=deployer)
    assert distributor.owner() == deployer.address
    assert distributor.pending_owner() == new_owner.address
    with ape.reverts("ownable_2step: caller is not the new owner"):
        distributor.accept_ownership(sender=deployer)
    distributor.accept_ownership(sender=new_owner.account)
    assert distributor.owner() == new_owner.address
    distributor.queue_change(calldata("set_emission_per_epoch", 1), sender=new_owner.account)
    with ape.reverts(NOT_OWNER):
        distributor.queue_change(calldata("set_emission_per_epoch", 2), sender=deployer)
