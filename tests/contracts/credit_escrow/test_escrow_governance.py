"""CreditEscrow: Governance (attacks 8 and 17: no instant parameter changes)."""

from __future__ import annotations

import ape
import pytest
from credit_escrow_kit import DAY, DEPOSIT, OPG, ZERO
from eth_abi import encode
from eth_utils import keccak

pytestmark = pytest.mark.usefixtures("_session_fixtures_first", "_node_stake_backs_the_pay")


def setter_call(name: str, value: int) -> bytes:
    """Calldata of a one-uint256 setter (what `queue_change` takes and the setter call must repeat)."""
    return keccak(text=f"{name}(uint256)")[:4] + encode(["uint256"], [value])


def queue(escrow, owner, name: str, value: int) -> int:
    """Queue `name(value)`; returns the time it becomes due."""
    tx = escrow.queue_change(setter_call(name, value), sender=owner)
    return escrow.ChangeQueued.from_receipt(tx)[0].eta


def govern(escrow, owner, chain, name: str, value: int, executor=None):
    """Queue `name(value)`, wait out the delay, and execute it (by `executor`, default the owner)."""
    eta = queue(escrow, owner, name, value)
    chain.pending_timestamp = eta
    return getattr(escrow, name)(value, sender=executor or owner)


def test_attack_non_owner_cannot_queue_a_change(escrow, stranger):
    with ape.reverts("ownable: caller is not the owner"):
        escrow.queue_change(setter_call("set_thaw_period", 60), sender=stranger.account)


def test_non_owner_cannot_cancel_a_change(escrow, deployer, stranger):
    queue(escrow, deployer, "set_thaw_period", 600)
    with ape.reverts("ownable: caller is not the owner"):
        escrow.cancel_change(keccak(setter_call("set_thaw_period", 600)), sender=stranger.account)


def test_queue_change_records_eta_after_the_delay(escrow, deployer, params, chain):
    call = setter_call("set_thaw_period", 600)
    tx = escrow.queue_change(call, sender=deployer)
    [event] = escrow.ChangeQueued.from_receipt(tx)
    assert bytes(event.id) == keccak(call) and bytes(event.call) == call
    assert event.eta == tx.timestamp + params.delay
    assert escrow.queued_eta(keccak(call)) == event.eta


def test_queue_the_same_change_twice_reverts(escrow, deployer):
    queue(escrow, deployer, "set_thaw_period", 600)
    with ape.reverts("timelock: change already queued"):
        escrow.queue_change(setter_call("set_thaw_period", 600), sender=deployer)


def test_attack_owner_cannot_change_thaw_period_without_queueing(escrow, deployer):
    with ape.reverts("timelock: change not queued"):
        escrow.set_thaw_period(60, sender=deployer)


def test_attack_queued_change_cannot_execute_before_the_delay(escrow, deployer, chain):
    eta = queue(escrow, deployer, "set_thaw_period", 600)
    chain.pending_timestamp = eta - 1
    with ape.reverts("timelock: change not due"):
        escrow.set_thaw_period(600, sender=deployer)


def test_due_change_executes_by_anyone(escrow, deployer, stranger, chain):
    eta = queue(escrow, deployer, "set_thaw_period", 600)
    chain.pending_timestamp = eta
    tx = escrow.set_thaw_period(600, sender=stranger.account)
    assert escrow.thaw_period() == 600
    assert escrow.ThawPeriodUpdated.from_receipt(tx)[0].thaw_period == 600
    assert bytes(escrow.ChangeExecuted.from_receipt(tx)[0].id) == keccak(setter_call("set_thaw_period", 600))
    assert escrow.queued_eta(keccak(setter_call("set_thaw_period", 600))) == 0
    with ape.reverts("timelock: change not queued"):  # consumed: one queue entry, one execution
        escrow.set_thaw_period(600, sender=stranger.account)


def test_due_change_executes_only_with_the_queued_arguments(escrow, deployer, chain):
    eta = queue(escrow, deployer, "set_thaw_period", 600)
    chain.pending_timestamp = eta
    with ape.reverts("timelock: change not queued"):
        escrow.set_thaw_period(601, sender=deployer)


def test_attack_due_change_lapses_after_the_grace_day(escrow, deployer, chain):
    eta = queue(escrow, deployer, "set_thaw_period", 600)
    assert escrow.GRACE_PERIOD() == DAY
    chain.pending_timestamp = eta + DAY
    with ape.reverts("timelock: change lapsed"):
        escrow.set_thaw_period(600, sender=deployer)


def test_due_change_executes_in_the_last_second_of_the_grace_day(escrow, deployer, chain):
    eta = queue(escrow, deployer, "set_thaw_period", 600)
    chain.pending_timestamp = eta + DAY - 1
    escrow.set_thaw_period(600, sender=deployer)
    assert escrow.thaw_period() == 600


def test_cancelled_change_cannot_execute(escrow, deployer, chain):
    eta = queue(escrow, deployer, "set_thaw_period", 600)
    id_ = keccak(setter_call("set_thaw_period", 600))
    tx = escrow.cancel_change(id_, sender=deployer)
    assert bytes(escrow.ChangeCanceled.from_receipt(tx)[0].id) == id_
    chain.pending_timestamp = eta
    with ape.reverts("timelock: change not queued"):
        escrow.set_thaw_period(600, sender=deployer)


def test_cancel_unqueued_change_reverts(escrow, deployer):
    with ape.reverts("timelock: change not queued"):
        escrow.cancel_change(keccak(setter_call("set_thaw_period", 600)), sender=deployer)


@pytest.mark.parametrize("thaw", [60, DAY, 2 * DAY])
def test_thaw_period_set_through_the_queue_applies_to_new_requests(escrow, deployer, funded, chain, thaw):
    govern(escrow, deployer, chain, "set_thaw_period", thaw)
    assert escrow.thaw_period() == thaw
    tx = escrow.request_withdrawal(OPG, sender=funded.account)
    assert escrow.withdrawal_of(funded.address).ready_at == tx.timestamp + thaw


@pytest.mark.parametrize("thaw", [0, 59])
def test_thaw_period_below_bounds_reverts(escrow, deployer, chain, thaw):
    with ape.reverts("CreditEscrow: thaw period out of bounds"):
        govern(escrow, deployer, chain, "set_thaw_period", thaw)


def test_attack_thaw_period_above_delay_minus_one_day_reverts(escrow, deployer, params, chain):
    # A thaw period longer than the delay allows would let a change land before participants can exit.
    with ape.reverts("CreditEscrow: thaw period above the delay"):
        govern(escrow, deployer, chain, "set_thaw_period", params.delay - DAY + 1)


def test_thaw_period_of_exactly_delay_minus_one_day_is_accepted(escrow, deployer, params, chain):
    govern(escrow, deployer, chain, "set_thaw_period", params.delay - DAY)
    assert escrow.thaw_period() == params.delay - DAY


def test_attack_delay_cannot_be_set_below_thaw_period_plus_one_day(escrow, deployer, params, chain):
    with ape.reverts("timelock: delay below the floor"):
        govern(escrow, deployer, chain, "set_delay", params.thaw_period + DAY - 1)


def test_delay_set_through_the_queue(escrow, deployer, params, chain):
    tx = govern(escrow, deployer, chain, "set_delay", params.thaw_period + DAY)
    assert escrow.delay() == params.thaw_period + DAY
    assert escrow.DelayUpdated.from_receipt(tx)[0].delay == params.thaw_period + DAY


def test_delay_above_90_days_reverts(escrow, deployer, chain):
    with ape.reverts("timelock: delay above 90 days"):
        govern(escrow, deployer, chain, "set_delay", 90 * DAY + 1)


def test_thaw_period_change_does_not_move_a_pending_request(escrow, deployer, funded, params, chain):
    eta = queue(escrow, deployer, "set_thaw_period", 2 * DAY)
    chain.pending_timestamp = eta
    tx = escrow.request_withdrawal(OPG, sender=funded.account)
    escrow.set_thaw_period(2 * DAY, sender=deployer)
    chain.pending_timestamp = tx.timestamp + params.thaw_period
    assert escrow.Withdrawn.from_receipt(escrow.withdraw(sender=funded.account))[0].amount == OPG


def test_ownership_transfer_is_two_step(escrow, deployer, stranger):
    escrow.transfer_ownership(stranger.address, sender=deployer)
    assert escrow.pending_owner() == stranger.address
    assert escrow.owner() == deployer.address
    queue(escrow, deployer, "set_thaw_period", 600)  # still the owner until accepted
    escrow.accept_ownership(sender=stranger.account)
    assert escrow.owner() == stranger.address
    assert escrow.pending_owner() == ZERO
    queue(escrow, stranger.account, "set_thaw_period", 700)
    with ape.reverts("ownable: caller is not the owner"):
        escrow.queue_change(setter_call("set_thaw_period", 800), sender=deployer)


def test_accept_ownership_by_other_reverts(escrow, deployer, stranger, payer):
    escrow.transfer_ownership(stranger.address, sender=deployer)
    with ape.reverts("ownable_2step: caller is not the new owner"):
        escrow.accept_ownership(sender=payer.account)


def test_transfer_ownership_by_non_owner_reverts(escrow, payer):
    with ape.reverts("ownable: caller is not the owner"):
        escrow.transfer_ownership(payer.address, sender=payer.account)


def test_renounce_ownership_freezes_parameters(escrow, deployer):
    escrow.renounce_ownership(sender=deployer)
    assert escrow.owner() == ZERO
    with ape.reverts("ownable: caller is not the owner"):
        escrow.queue_change(setter_call("set_thaw_period", 600), sender=deployer)


def test_withdrawals_never_need_the_owner(escrow, opg, funded, deployer, params, chain, now):
    escrow.renounce_ownership(sender=deployer)
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(DEPOSIT, sender=funded.account)
    chain.pending_timestamp = now + 1 + params.thaw_period
    assert escrow.Withdrawn.from_receipt(escrow.withdraw(sender=funded.account))[0].amount == DEPOSIT
