"""CreditEscrow: Withdrawals."""

from __future__ import annotations

import ape
import pytest
from credit_escrow_kit import DEPOSIT, OPG, ROOT, SETTLED, SKIP_INSUFFICIENT_BALANCE, outcomes, signed_claim

pytestmark = pytest.mark.usefixtures("_session_fixtures_first", "_node_stake_backs_the_pay")


def send_in_one_block(chain, calls) -> list:
    """Send `(contract method, args, actor)` calls in one block (automine off); returns their receipts, in order."""
    web3 = chain.provider.web3
    chain.provider.make_request("evm_setAutomine", [False])
    hashes = []
    try:
        for method, args, actor in calls:
            txn = method.as_transaction(*args, sender=actor.account, gas=1_000_000)  # both must fit in one block
            signed = actor.account.sign_transaction(txn)
            hashes.append(web3.eth.send_raw_transaction(signed.serialize_transaction()))
        chain.provider.make_request("evm_mine", [])
    finally:
        chain.provider.make_request("evm_setAutomine", [True])
    receipts = [web3.eth.get_transaction_receipt(h) for h in hashes]
    assert len({r.blockNumber for r in receipts}) == 1
    assert [r.transactionIndex for r in receipts] == list(range(len(receipts)))
    return receipts


def test_request_withdrawal_starts_thaw(escrow, funded, params, chain, now):
    chain.pending_timestamp = now + 5
    tx = escrow.request_withdrawal(400 * OPG, sender=funded.account)
    request = escrow.withdrawal_of(funded.address)
    ready_at = now + 5 + params.thaw_period
    assert (request.amount, request.ready_at) == (400 * OPG, ready_at)
    [event] = escrow.WithdrawalRequested.from_receipt(tx)
    assert (event.payer, event.amount, event.ready_at, event.expires_at) == (
        funded.address,
        400 * OPG,
        ready_at,
        ready_at + params.thaw_period,
    )
    # Thawing credits are still credits (settlement may draw on them), but not available for new service.
    assert escrow.balance_of(funded.address) == DEPOSIT
    assert escrow.available_of(funded.address) == DEPOSIT - 400 * OPG


def test_available_of_is_the_balance_without_a_request(escrow, funded):
    assert escrow.available_of(funded.address) == DEPOSIT


def test_available_of_never_underflows_when_settlement_took_the_thawing_credits(
    escrow, escrow_domain, funded, node, relayer
):
    escrow.request_withdrawal(800 * OPG, sender=funded.account)
    escrow.settle_batch(
        [signed_claim(funded.key, escrow_domain, funded.address, node.address, 500 * OPG)], ROOT, sender=relayer.account
    )
    assert escrow.balance_of(funded.address) == 500 * OPG
    assert escrow.available_of(funded.address) == 0


def test_request_withdrawal_zero_reverts(escrow, funded):
    with ape.reverts("CreditEscrow: zero amount"):
        escrow.request_withdrawal(0, sender=funded.account)


def test_request_withdrawal_above_balance_reverts(escrow, funded):
    with ape.reverts("CreditEscrow: amount exceeds balance"):
        escrow.request_withdrawal(DEPOSIT + 1, sender=funded.account)


def test_withdraw_before_thaw_reverts(escrow, funded, params, chain, now):
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(DEPOSIT, sender=funded.account)
    chain.pending_timestamp = now + 1 + params.thaw_period - 1
    with ape.reverts("CreditEscrow: still thawing"):
        escrow.withdraw(sender=funded.account)


def test_withdraw_after_thaw_pays_requested_amount(escrow, opg, funded, params, chain, now):
    tokens = opg.balanceOf(funded.address)
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(400 * OPG, sender=funded.account)
    chain.pending_timestamp = now + 1 + params.thaw_period
    tx = escrow.withdraw(sender=funded.account)
    assert opg.balanceOf(funded.address) == tokens + 400 * OPG
    assert escrow.balance_of(funded.address) == 600 * OPG
    assert opg.balanceOf(escrow.address) == 600 * OPG
    assert escrow.withdrawal_of(funded.address).amount == 0
    assert escrow.available_of(funded.address) == 600 * OPG
    [event] = escrow.Withdrawn.from_receipt(tx)
    assert (event.payer, event.amount) == (funded.address, 400 * OPG)


def test_withdraw_in_the_last_second_of_the_ready_window(escrow, funded, params, chain, now):
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(400 * OPG, sender=funded.account)
    chain.pending_timestamp = now + 1 + 2 * params.thaw_period - 1
    assert escrow.Withdrawn.from_receipt(escrow.withdraw(sender=funded.account))[0].amount == 400 * OPG


def test_attack_standing_withdrawal_request_expires_one_thaw_after_ready(escrow, opg, funded, params, chain, now):
    # Attack: arm a withdrawal, let it thaw, and keep it ready as a standing instant exit to race settlement with.
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(DEPOSIT, sender=funded.account)
    ready_at = now + 1 + params.thaw_period
    chain.pending_timestamp = ready_at
    chain.mine()
    assert escrow.available_of(funded.address) == 0  # ready, unexpired: nodes serve nothing against it
    chain.pending_timestamp = ready_at + params.thaw_period  # one thaw period after ready: expired
    chain.mine()
    assert escrow.available_of(funded.address) == DEPOSIT  # an expired request no longer holds credits back
    tokens = opg.balanceOf(funded.address)
    with ape.reverts("CreditEscrow: withdrawal request expired"):
        escrow.withdraw(sender=funded.account)
    assert opg.balanceOf(funded.address) == tokens
    assert escrow.balance_of(funded.address) == DEPOSIT
    # Leaving again means a fresh request and a full new thaw.
    escrow.request_withdrawal(DEPOSIT, sender=funded.account)
    with ape.reverts("CreditEscrow: still thawing"):
        escrow.withdraw(sender=funded.account)


def test_attack_withdraw_in_the_same_block_as_a_batch_cannot_short_a_node_serving_available_credits(
    escrow, escrow_domain, opg, funded, node, relayer, params, chain, now
):
    # Attack: arm a withdrawal of most credits, get served, and withdraw in the very block the node's batch lands.
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(600 * OPG, sender=funded.account)
    chain.pending_timestamp = now + 1 + params.thaw_period
    chain.mine()
    available = escrow.available_of(funded.address)
    assert available == 400 * OPG
    # The honest node serves only against available credits: its voucher is capped at `available`.
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, available)
    tokens = opg.balanceOf(funded.address)
    first, second = send_in_one_block(
        chain,
        [(escrow.withdraw, (), funded), (escrow.settle_batch, ([voucher], ROOT), relayer)],
    )
    assert first.status == second.status == 1
    assert first.blockNumber == second.blockNumber
    assert escrow.spent(funded.address, node.address) == available  # paid in full
    assert opg.balanceOf(funded.address) == tokens + 600 * OPG
    assert escrow.balance_of(funded.address) == 0


def test_batch_before_withdraw_in_the_same_block_also_pays_the_node_in_full(
    escrow, escrow_domain, opg, funded, node, relayer, params, chain, now
):
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(600 * OPG, sender=funded.account)
    chain.pending_timestamp = now + 1 + params.thaw_period
    chain.mine()
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, escrow.available_of(funded.address))
    tokens = opg.balanceOf(funded.address)
    first, second = send_in_one_block(
        chain,
        [(escrow.settle_batch, ([voucher], ROOT), relayer), (escrow.withdraw, (), funded)],
    )
    assert first.status == second.status == 1 and first.blockNumber == second.blockNumber
    assert escrow.spent(funded.address, node.address) == 400 * OPG
    assert opg.balanceOf(funded.address) == tokens + 600 * OPG
    assert escrow.balance_of(funded.address) == 0


def test_withdraw_twice_reverts(escrow, funded, params, chain, now):
    escrow.request_withdrawal(OPG, sender=funded.account)
    chain.pending_timestamp = now + params.thaw_period + 1
    escrow.withdraw(sender=funded.account)
    with ape.reverts("CreditEscrow: no pending withdrawal"):
        escrow.withdraw(sender=funded.account)


def test_withdraw_without_request_reverts(escrow, funded):
    with ape.reverts("CreditEscrow: no pending withdrawal"):
        escrow.withdraw(sender=funded.account)


def test_cancel_withdrawal_clears_request(escrow, funded, params, chain, now):
    escrow.request_withdrawal(OPG, sender=funded.account)
    tx = escrow.cancel_withdrawal(sender=funded.account)
    assert escrow.withdrawal_of(funded.address).amount == 0
    assert escrow.available_of(funded.address) == DEPOSIT
    assert escrow.WithdrawalCanceled.from_receipt(tx)[0].payer == funded.address
    chain.pending_timestamp = now + params.thaw_period + 1
    with ape.reverts("CreditEscrow: no pending withdrawal"):
        escrow.withdraw(sender=funded.account)


def test_cancel_withdrawal_without_request_reverts(escrow, funded):
    with ape.reverts("CreditEscrow: no pending withdrawal"):
        escrow.cancel_withdrawal(sender=funded.account)


def test_new_request_replaces_and_restarts_thaw(escrow, funded, params, chain, now):
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(100 * OPG, sender=funded.account)
    chain.pending_timestamp = now + 1_000
    escrow.request_withdrawal(200 * OPG, sender=funded.account)
    request = escrow.withdrawal_of(funded.address)
    assert (request.amount, request.ready_at) == (200 * OPG, now + 1_000 + params.thaw_period)
    chain.pending_timestamp = now + 1 + params.thaw_period
    with ape.reverts("CreditEscrow: still thawing"):
        escrow.withdraw(sender=funded.account)


def test_withdraw_pays_only_what_settlement_left(escrow, escrow_domain, opg, funded, node, relayer, params, chain, now):
    # The payer signs a voucher, then tries to thaw everything away before the node settles.
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, 300 * OPG)
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(DEPOSIT, sender=funded.account)
    chain.pending_timestamp = now + params.thaw_period  # still thawing
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED]
    tokens = opg.balanceOf(funded.address)
    chain.pending_timestamp = now + 1 + params.thaw_period
    tx = escrow.withdraw(sender=funded.account)
    assert escrow.Withdrawn.from_receipt(tx)[0].amount == 700 * OPG
    assert opg.balanceOf(funded.address) == tokens + 700 * OPG
    assert escrow.balance_of(funded.address) == 0


def test_withdraw_pays_nothing_when_settlement_took_everything(
    escrow, escrow_domain, opg, funded, node, relayer, params, chain, now
):
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(DEPOSIT, sender=funded.account)
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, DEPOSIT)
    escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    tokens = opg.balanceOf(funded.address)
    chain.pending_timestamp = now + 1 + params.thaw_period
    tx = escrow.withdraw(sender=funded.account)
    assert escrow.Withdrawn.from_receipt(tx)[0].amount == 0
    assert opg.balanceOf(funded.address) == tokens
    assert escrow.withdrawal_of(funded.address).amount == 0


def test_withdrawn_credits_cannot_be_settled(escrow, escrow_domain, funded, node, relayer, params, chain, now):
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(DEPOSIT, sender=funded.account)
    chain.pending_timestamp = now + 1 + params.thaw_period
    escrow.withdraw(sender=funded.account)
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_INSUFFICIENT_BALANCE]
