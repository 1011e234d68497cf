"""CreditEscrow: Session keys: expiry and allowance."""

from __future__ import annotations

import ape
import pytest
from credit_escrow_kit import (
    DAY,
    DEPOSIT,
    OPG,
    ROOT,
    SETTLED,
    SKIP_ALLOWANCE_EXCEEDED,
    SKIP_BAD_SIGNATURE,
    SKIP_STALE,
    ZERO,
    batch_log,
    outcomes,
    signed_claim,
)

pytestmark = pytest.mark.usefixtures("_session_fixtures_first", "_node_stake_backs_the_pay")


def test_session_signer_voucher_settles_and_draws_down_its_allowance(
    escrow, escrow_domain, funded, node, session_key, relayer, now
):
    tx = escrow.authorize_signer(session_key.address, now + DAY, 100 * OPG, sender=funded.account)
    [event] = escrow.SignerAuthorized.from_receipt(tx)
    assert (event.payer, event.signer, event.expiry, event.allowance) == (
        funded.address,
        session_key.address,
        now + DAY,
        100 * OPG,
    )
    assert escrow.signer_of(funded.address, session_key.address) == (now + DAY, 100 * OPG)
    voucher = signed_claim(session_key.key, escrow_domain, funded.address, node.address, 10 * OPG)
    assert escrow.voucher_signer(funded.address, node.address, 10 * OPG, voucher[3], voucher[4]) == session_key.address
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED]
    assert escrow.balance_of(funded.address) == DEPOSIT - 10 * OPG
    assert escrow.signer_of(funded.address, session_key.address) == (now + DAY, 90 * OPG)


def test_payer_signed_voucher_does_not_touch_session_allowances(
    escrow, escrow_domain, funded, node, authorized, relayer
):
    expiry, allowance = escrow.signer_of(funded.address, authorized.address)
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, 500 * OPG)
    assert outcomes(escrow, escrow.settle_batch([voucher], ROOT, sender=relayer.account)) == [SETTLED]
    assert escrow.signer_of(funded.address, authorized.address) == (expiry, allowance)


def test_session_key_can_spend_exactly_its_allowance(escrow, escrow_domain, funded, node, authorized, relayer):
    voucher = signed_claim(authorized.key, escrow_domain, funded.address, node.address, 100 * OPG)
    assert outcomes(escrow, escrow.settle_batch([voucher], ROOT, sender=relayer.account)) == [SETTLED]
    assert escrow.signer_of(funded.address, authorized.address)[1] == 0


def test_attack_leaked_session_key_cannot_drain_more_than_its_allowance(
    escrow, escrow_domain, funded, node, authorized, relayer
):
    # Attack: the holder of a leaked session key (colluding with a node) signs a voucher for the whole deposit.
    drain = signed_claim(authorized.key, escrow_domain, funded.address, node.address, DEPOSIT)
    tx = escrow.settle_batch([drain], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_ALLOWANCE_EXCEEDED]
    [skipped] = escrow.ClaimSkipped.from_receipt(tx)
    assert (skipped.payer, skipped.node, skipped.total, skipped.reason) == (
        funded.address,
        node.address,
        DEPOSIT,
        SKIP_ALLOWANCE_EXCEEDED,
    )
    assert escrow.balance_of(funded.address) == DEPOSIT
    # The most the key can take is its allowance, in one claim or many.
    capped = signed_claim(authorized.key, escrow_domain, funded.address, node.address, DEPOSIT, 100 * OPG)
    more = signed_claim(authorized.key, escrow_domain, funded.address, node.address, DEPOSIT, 100 * OPG + 1)
    tx = escrow.settle_batch([capped, more], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED, SKIP_ALLOWANCE_EXCEEDED]
    assert escrow.balance_of(funded.address) == DEPOSIT - 100 * OPG
    assert escrow.signer_of(funded.address, authorized.address)[1] == 0


def test_attack_leaked_session_key_after_revocation_is_still_capped_by_its_allowance(
    escrow, escrow_domain, funded, node, authorized, relayer, params, chain, now
):
    # The payer revokes the leaked key; revocation bites only after a thaw period, but the allowance caps the loss.
    chain.pending_timestamp = now + 10
    tx = escrow.revoke_signer(authorized.address, sender=funded.account)
    revoked_at = now + 10 + params.thaw_period
    assert escrow.SignerAuthorized.from_receipt(tx)[0].expiry == revoked_at
    assert escrow.signer_of(funded.address, authorized.address) == (revoked_at, 100 * OPG)
    chain.pending_timestamp = revoked_at - 1
    drain = signed_claim(authorized.key, escrow_domain, funded.address, node.address, DEPOSIT)
    capped = signed_claim(authorized.key, escrow_domain, funded.address, node.address, DEPOSIT, 100 * OPG)
    tx = escrow.settle_batch([drain, capped], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_ALLOWANCE_EXCEEDED, SETTLED]
    chain.pending_timestamp = revoked_at
    # From the revocation time on the key signs nothing (and only the payer can grant allowance).
    tx = escrow.settle_batch([drain], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded.address) == DEPOSIT - 100 * OPG


def test_session_signer_expiry_is_respected(
    escrow, escrow_domain, funded, node, session_key, relayer, params, chain, now
):
    expiry = now + params.thaw_period
    escrow.authorize_signer(session_key.address, expiry, 100 * OPG, sender=funded.account)
    voucher = signed_claim(session_key.key, escrow_domain, funded.address, node.address, 10 * OPG)
    chain.pending_timestamp = expiry  # expiry is exclusive
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded.address) == DEPOSIT
    assert escrow.voucher_signer(funded.address, node.address, 10 * OPG, voucher[3], voucher[4]) == ZERO


def test_session_signer_valid_until_the_second_before_expiry(
    escrow, escrow_domain, funded, node, session_key, relayer, params, chain, now
):
    expiry = now + params.thaw_period
    escrow.authorize_signer(session_key.address, expiry, 100 * OPG, sender=funded.account)
    voucher = signed_claim(session_key.key, escrow_domain, funded.address, node.address, 10 * OPG)
    chain.pending_timestamp = expiry - 1
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED]


def test_short_session_key_expiry_reverts_so_no_voucher_is_stranded(escrow, funded, session_key, params, now):
    # A key expiring sooner than a thaw period could leave its vouchers unsettleable (the payer would repudiate).
    with ape.reverts("CreditEscrow: expiry sooner than the thaw period"):
        escrow.authorize_signer(session_key.address, now + params.thaw_period - 1, 100 * OPG, sender=funded.account)


def test_session_key_expiry_of_exactly_one_thaw_period_is_accepted(chain, escrow, funded, session_key, params):
    at = chain.pending_timestamp + 10
    chain.pending_timestamp = at  # the transaction's block time, pinned
    escrow.authorize_signer(session_key.address, at + params.thaw_period, 100 * OPG, sender=funded.account)
    assert escrow.signer_of(funded.address, session_key.address)[0] == at + params.thaw_period


def test_unauthorized_session_key_is_skipped(escrow, escrow_domain, funded, node, session_key, relayer):
    voucher = signed_claim(session_key.key, escrow_domain, funded.address, node.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]


def test_session_signer_cannot_sign_for_another_payer(
    escrow, escrow_domain, opg, funded, payer_b, node, authorized, relayer
):
    opg.approve(escrow, DEPOSIT, sender=payer_b.account)
    escrow.deposit(DEPOSIT, sender=payer_b.account)
    voucher = signed_claim(authorized.key, escrow_domain, payer_b.address, node.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(payer_b.address) == DEPOSIT


def test_revoke_signer_takes_effect_only_after_thaw(
    escrow, escrow_domain, funded, node, authorized, relayer, params, chain, now
):
    chain.pending_timestamp = now + 10
    escrow.revoke_signer(authorized.address, sender=funded.account)
    revoked_at = now + 10 + params.thaw_period
    early = signed_claim(authorized.key, escrow_domain, funded.address, node.address, 10 * OPG)
    chain.pending_timestamp = revoked_at - 1
    assert outcomes(escrow, escrow.settle_batch([early], ROOT, sender=relayer.account)) == [SETTLED]
    late = signed_claim(authorized.key, escrow_domain, funded.address, node.address, 20 * OPG)
    chain.pending_timestamp = revoked_at
    assert outcomes(escrow, escrow.settle_batch([late], ROOT, sender=relayer.account)) == [SKIP_BAD_SIGNATURE]
    assert escrow.spent(funded.address, node.address) == 10 * OPG


def test_revoke_signer_never_extends_expiry(escrow, funded, session_key, params, now):
    escrow.authorize_signer(session_key.address, now + params.thaw_period, OPG, sender=funded.account)
    escrow.revoke_signer(session_key.address, sender=funded.account)  # one second later: now + thaw + 1 > expiry
    assert escrow.signer_of(funded.address, session_key.address)[0] == now + params.thaw_period


def test_revoke_unauthorized_signer_reverts(escrow, funded, session_key):
    with ape.reverts("CreditEscrow: signer not authorized"):
        escrow.revoke_signer(session_key.address, sender=funded.account)


def test_revoke_expired_signer_reverts(escrow, funded, session_key, params, chain, now):
    escrow.authorize_signer(session_key.address, now + params.thaw_period, OPG, sender=funded.account)
    chain.pending_timestamp = now + params.thaw_period
    with ape.reverts("CreditEscrow: signer not authorized"):
        escrow.revoke_signer(session_key.address, sender=funded.account)


def test_attack_authorize_signer_cannot_lower_allowance_of_a_key_in_force(
    escrow, funded, authorized, params, chain, now
):
    # Attack: after being served against a key's allowance, the payer lowers it to 0 so the voucher cannot settle.
    with ape.reverts("CreditEscrow: allowance decrease needs revocation"):
        escrow.authorize_signer(authorized.address, now + 30 * DAY, 0, sender=funded.account)
    with ape.reverts("CreditEscrow: expiry decrease needs revocation"):
        escrow.authorize_signer(authorized.address, now + 30 * DAY - 1, 100 * OPG, sender=funded.account)
    assert escrow.signer_of(funded.address, authorized.address) == (now + 30 * DAY, 100 * OPG)
    # The only way down is revocation, effective one thaw period later; afterwards any new grant applies.
    revoked = escrow.revoke_signer(authorized.address, sender=funded.account)
    revoked_at = chain.provider.get_block(revoked.block_number).timestamp
    assert escrow.signer_of(funded.address, authorized.address)[0] == revoked_at + params.thaw_period
    chain.pending_timestamp = revoked_at + params.thaw_period  # the first second the key is out of force
    escrow.authorize_signer(authorized.address, now + 2 * DAY, 5 * OPG, sender=funded.account)
    assert escrow.signer_of(funded.address, authorized.address) == (now + 2 * DAY, 5 * OPG)


def test_authorize_signer_raises_allowance_and_extends_expiry_at_once(escrow, funded, authorized, now):
    escrow.authorize_signer(authorized.address, now + 60 * DAY, 300 * OPG, sender=funded.account)
    assert escrow.signer_of(funded.address, authorized.address) == (now + 60 * DAY, 300 * OPG)


def test_attack_one_session_key_on_several_channels_cannot_exceed_its_allowance(
    escrow, escrow_domain, funded, node, node_b, authorized, relayer
):
    # Attack: one key signs 60 OPG vouchers on two channels (100 OPG allowance), hoping each is checked alone.
    claims = [
        signed_claim(authorized.key, escrow_domain, funded.address, node.address, 60 * OPG),
        signed_claim(authorized.key, escrow_domain, funded.address, node_b.address, 60 * OPG),
    ]
    tx = escrow.settle_batch(claims, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED, SKIP_ALLOWANCE_EXCEEDED]
    assert escrow.ClaimSkipped.from_receipt(tx)[0].reason == SKIP_ALLOWANCE_EXCEEDED
    assert escrow.spent(funded.address, node_b.address) == 0
    assert escrow.balance_of(funded.address) == DEPOSIT - 60 * OPG
    assert escrow.signer_of(funded.address, authorized.address)[1] == 40 * OPG
    # Within what is left it still settles (the honest path).
    tx = escrow.settle_batch(
        [signed_claim(authorized.key, escrow_domain, funded.address, node_b.address, 60 * OPG, 40 * OPG)],
        ROOT,
        sender=relayer.account,
    )
    assert outcomes(escrow, tx) == [SETTLED]
    assert escrow.signer_of(funded.address, authorized.address)[1] == 0


def test_attack_payer_signed_voucher_settled_first_limits_the_session_charge_to_its_delta(
    escrow, escrow_domain, funded, node, authorized, relayer, chain
):
    # The payer signed a 40 OPG voucher itself (unsettled); its session key later signed the newest, 100 OPG.
    # Settled payer-first in one batch the key is charged only its own 60 OPG delta; the newest alone costs it 100.
    payer_signed = signed_claim(funded.key, escrow_domain, funded.address, node.address, 40 * OPG)
    session_signed = signed_claim(authorized.key, escrow_domain, funded.address, node.address, 100 * OPG)
    snapshot = chain.snapshot()
    tx = escrow.settle_batch([payer_signed, session_signed], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED, SETTLED]
    assert batch_log(escrow, tx)[1] == [(funded.address, 40 * OPG), (funded.address, 60 * OPG)]
    payer_first = escrow.signer_of(funded.address, authorized.address)[1]
    assert payer_first == 40 * OPG
    assert escrow.spent(funded.address, node.address) == 100 * OPG
    chain.restore(snapshot)
    tx = escrow.settle_batch([session_signed, payer_signed], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED, SKIP_STALE]
    session_first = escrow.signer_of(funded.address, authorized.address)[1]
    assert session_first == 0
    assert escrow.spent(funded.address, node.address) == 100 * OPG
    # Same payment to the node either way; the difference is only whose allowance paid the first 40.
    assert payer_first - session_first == 40 * OPG
    assert escrow.balance_of(funded.address) == DEPOSIT - 100 * OPG


def test_reauthorizing_an_expired_signer_is_immediate(escrow, funded, session_key, params, chain, now):
    escrow.authorize_signer(session_key.address, now + params.thaw_period, 100 * OPG, sender=funded.account)
    chain.pending_timestamp = now + params.thaw_period
    escrow.authorize_signer(session_key.address, now + 2 * params.thaw_period, OPG, sender=funded.account)
    assert escrow.signer_of(funded.address, session_key.address) == (now + 2 * params.thaw_period, OPG)


def test_authorize_zero_signer_reverts(escrow, funded, now):
    with ape.reverts("CreditEscrow: signer is the zero address"):
        escrow.authorize_signer(ZERO, now + DAY, OPG, sender=funded.account)


def test_authorize_payer_itself_reverts(escrow, funded, now):
    with ape.reverts("CreditEscrow: signer is the payer"):
        escrow.authorize_signer(funded.address, now + DAY, OPG, sender=funded.account)


def test_authorize_signer_expiry_or_allowance_too_large_reverts(escrow, funded, session_key, now):
    with ape.reverts("CreditEscrow: expiry or allowance too large"):
        escrow.authorize_signer(session_key.address, 2**64, OPG, sender=funded.account)
    with ape.reverts("CreditEscrow: expiry or allowance too large"):
        escrow.authorize_signer(session_key.address, now + DAY, 2**192, sender=funded.account)
