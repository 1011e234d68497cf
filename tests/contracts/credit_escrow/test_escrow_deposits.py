"""CreditEscrow: Deposits."""

from __future__ import annotations

import os

import ape
import pytest
from credit_escrow_kit import OPG, ZERO

from offchain.messages import (
    Domain,
    ReceiveWithAuthorization,
)

pytestmark = pytest.mark.usefixtures("_session_fixtures_first", "_node_stake_backs_the_pay")


def sign_receive_authorization(key, chain_id, token, owner, to, value, valid_after, valid_before, nonce):
    auth = ReceiveWithAuthorization(
        owner=owner, to=to, value=value, valid_after=valid_after, valid_before=valid_before, nonce=nonce
    )
    return auth.sign_vrs(key, Domain.token(chain_id, token))


def test_deposit_credits_caller_and_pulls_tokens(escrow, opg, payer):
    before = opg.balanceOf(payer.address)
    opg.approve(escrow, 10 * OPG, sender=payer.account)
    tx = escrow.deposit(10 * OPG, sender=payer.account)
    assert escrow.balance_of(payer.address) == 10 * OPG
    assert opg.balanceOf(payer.address) == before - 10 * OPG
    assert opg.balanceOf(escrow.address) == 10 * OPG
    [event] = escrow.Deposited.from_receipt(tx)
    assert (event.payer, event.funder, event.amount, event.balance) == (
        payer.address,
        payer.address,
        10 * OPG,
        10 * OPG,
    )


def test_deposits_accumulate(escrow, opg, payer):
    opg.approve(escrow, 30 * OPG, sender=payer.account)
    escrow.deposit(10 * OPG, sender=payer.account)
    tx = escrow.deposit(20 * OPG, sender=payer.account)
    assert escrow.balance_of(payer.address) == 30 * OPG
    assert escrow.Deposited.from_receipt(tx)[0].balance == 30 * OPG


def test_deposit_without_allowance_reverts(escrow, payer):
    with ape.reverts("erc20: insufficient allowance"):
        escrow.deposit(OPG, sender=payer.account)


def test_deposit_zero_amount_reverts(escrow, payer):
    with ape.reverts("CreditEscrow: zero amount"):
        escrow.deposit(0, sender=payer.account)


def test_deposit_for_credits_payer_funded_by_caller(escrow, opg, payer, stranger):
    payer_tokens = opg.balanceOf(payer.address)
    opg.approve(escrow, 10 * OPG, sender=stranger.account)
    tx = escrow.deposit_for(payer.address, 10 * OPG, sender=stranger.account)
    assert escrow.balance_of(payer.address) == 10 * OPG
    assert escrow.balance_of(stranger.address) == 0
    assert opg.balanceOf(payer.address) == payer_tokens
    [event] = escrow.Deposited.from_receipt(tx)
    assert (event.payer, event.funder) == (payer.address, stranger.address)


def test_deposit_for_zero_payer_reverts(escrow, opg, stranger):
    opg.approve(escrow, OPG, sender=stranger.account)
    with ape.reverts("CreditEscrow: payer is the zero address"):
        escrow.deposit_for(ZERO, OPG, sender=stranger.account)


def test_deposit_for_zero_amount_reverts(escrow, payer, stranger):
    with ape.reverts("CreditEscrow: zero amount"):
        escrow.deposit_for(payer.address, 0, sender=stranger.account)


def test_deposit_with_authorization_submitted_by_relayer(escrow, opg, chain_id, payer, relayer, now):
    nonce = os.urandom(32)
    vrs = sign_receive_authorization(
        payer.key, chain_id, opg.address, payer.address, escrow.address, 25 * OPG, 0, now + 600, nonce
    )
    tokens = opg.balanceOf(payer.address)
    tx = escrow.deposit_with_authorization(payer.address, 25 * OPG, 0, now + 600, nonce, *vrs, sender=relayer.account)
    assert escrow.balance_of(payer.address) == 25 * OPG
    assert escrow.balance_of(relayer.address) == 0
    assert opg.balanceOf(payer.address) == tokens - 25 * OPG
    assert opg.balanceOf(escrow.address) == 25 * OPG
    assert opg.authorizationState(payer.address, nonce) is True
    [deposited] = escrow.Deposited.from_receipt(tx)
    assert (deposited.payer, deposited.funder, deposited.amount) == (payer.address, relayer.address, 25 * OPG)
    [used] = opg.AuthorizationUsed.from_receipt(tx)
    assert used.authorizer == payer.address


def test_deposit_with_authorization_replay_reverts(escrow, opg, chain_id, payer, relayer, now):
    nonce = os.urandom(32)
    vrs = sign_receive_authorization(
        payer.key, chain_id, opg.address, payer.address, escrow.address, 25 * OPG, 0, now + 600, nonce
    )
    escrow.deposit_with_authorization(payer.address, 25 * OPG, 0, now + 600, nonce, *vrs, sender=relayer.account)
    with ape.reverts("eip3009: authorization is used or canceled"):
        escrow.deposit_with_authorization(payer.address, 25 * OPG, 0, now + 600, nonce, *vrs, sender=relayer.account)
    assert escrow.balance_of(payer.address) == 25 * OPG


def test_deposit_with_authorization_tampered_amount_reverts(escrow, opg, chain_id, payer, relayer, now):
    nonce = os.urandom(32)
    vrs = sign_receive_authorization(
        payer.key, chain_id, opg.address, payer.address, escrow.address, 25 * OPG, 0, now + 600, nonce
    )
    with ape.reverts("eip3009: invalid signature"):
        escrow.deposit_with_authorization(payer.address, 26 * OPG, 0, now + 600, nonce, *vrs, sender=relayer.account)


def test_deposit_with_authorization_cannot_credit_someone_else(escrow, opg, chain_id, payer, relayer, now):
    nonce = os.urandom(32)
    vrs = sign_receive_authorization(
        payer.key, chain_id, opg.address, payer.address, escrow.address, 25 * OPG, 0, now + 600, nonce
    )
    with ape.reverts("eip3009: invalid signature"):
        escrow.deposit_with_authorization(relayer.address, 25 * OPG, 0, now + 600, nonce, *vrs, sender=relayer.account)


def test_deposit_with_authorization_for_other_payee_reverts(escrow, opg, chain_id, payer, relayer, now):
    # An authorisation paying the relayer cannot be turned into a deposit (and vice versa).
    nonce = os.urandom(32)
    vrs = sign_receive_authorization(
        payer.key, chain_id, opg.address, payer.address, relayer.address, 25 * OPG, 0, now + 600, nonce
    )
    with ape.reverts("eip3009: invalid signature"):
        escrow.deposit_with_authorization(payer.address, 25 * OPG, 0, now + 600, nonce, *vrs, sender=relayer.account)


def test_deposit_with_authorization_expired_reverts(escrow, opg, chain_id, payer, relayer, chain, now):
    nonce = os.urandom(32)
    vrs = sign_receive_authorization(
        payer.key, chain_id, opg.address, payer.address, escrow.address, OPG, 0, now + 10, nonce
    )
    chain.pending_timestamp = now + 10
    with ape.reverts("eip3009: authorization is expired"):
        escrow.deposit_with_authorization(payer.address, OPG, 0, now + 10, nonce, *vrs, sender=relayer.account)


def test_deposit_with_authorization_zero_amount_reverts(escrow, opg, chain_id, payer, relayer, now):
    nonce = os.urandom(32)
    vrs = sign_receive_authorization(
        payer.key, chain_id, opg.address, payer.address, escrow.address, 0, 0, now + 600, nonce
    )
    with ape.reverts("CreditEscrow: zero amount"):
        escrow.deposit_with_authorization(payer.address, 0, 0, now + 600, nonce, *vrs, sender=relayer.account)


def test_deposit_with_authorization_zero_payer_reverts(escrow, relayer, now):
    with ape.reverts("CreditEscrow: payer is the zero address"):
        escrow.deposit_with_authorization(
            ZERO, OPG, 0, now + 600, os.urandom(32), 27, b"\x01" * 32, b"\x01" * 32, sender=relayer.account
        )
