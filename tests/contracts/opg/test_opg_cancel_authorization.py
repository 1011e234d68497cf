"""OPG token: EIP-3009 cancelAuthorization."""

from __future__ import annotations

import ape
import pytest
from opg_kit import OPG, Sig, domain, new_nonce, sign_typed

pytestmark = pytest.mark.usefixtures("_session_fixtures_first")


CANCEL_FIELDS = [
    {"name": "authorizer", "type": "address"},
    {"name": "nonce", "type": "bytes32"},
]


def _cancel(key, dom, authorizer, nonce) -> Sig:
    return sign_typed(key, dom, "CancelAuthorization", CANCEL_FIELDS, {"authorizer": authorizer, "nonce": nonce})


def test_cancel_authorization_marks_nonce_and_emits(opg, opg_domain, holder, relayer, auth):
    sig = _cancel(holder.key, opg_domain, holder.address, auth.nonce)
    tx = opg.cancelAuthorization(holder.address, auth.nonce, *sig.vrs, sender=relayer.account)
    assert opg.authorizationState(holder.address, auth.nonce) is True
    [canceled] = opg.AuthorizationCanceled.from_receipt(tx)
    assert canceled.authorizer == holder.address
    assert bytes(canceled.nonce) == auth.nonce


def test_canceled_authorization_cannot_be_used(opg, opg_domain, holder, relayer, auth):
    cancel = _cancel(holder.key, opg_domain, holder.address, auth.nonce)
    opg.cancelAuthorization(holder.address, auth.nonce, *cancel.vrs, sender=relayer.account)
    sig = auth.sign(holder.key, opg_domain)
    with ape.reverts("eip3009: authorization is used or canceled"):
        opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)
    with ape.reverts("eip3009: authorization is used or canceled"):
        relayer.account.transfer(opg, 0, data=auth.bytes_calldata(sig.signature))
    assert opg.balanceOf(holder.address) == 10_000 * OPG


def test_cancel_authorization_twice_reverts(opg, opg_domain, holder, relayer, auth):
    cancel = _cancel(holder.key, opg_domain, holder.address, auth.nonce)
    opg.cancelAuthorization(holder.address, auth.nonce, *cancel.vrs, sender=relayer.account)
    with ape.reverts("eip3009: authorization is used or canceled"):
        opg.cancelAuthorization(holder.address, auth.nonce, *cancel.vrs, sender=relayer.account)


def test_cancel_used_authorization_reverts(opg, opg_domain, holder, relayer, auth):
    sig = auth.sign(holder.key, opg_domain)
    opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)
    cancel = _cancel(holder.key, opg_domain, holder.address, auth.nonce)
    with ape.reverts("eip3009: authorization is used or canceled"):
        opg.cancelAuthorization(holder.address, auth.nonce, *cancel.vrs, sender=relayer.account)


def test_cancel_authorization_by_wrong_signer_reverts(opg, opg_domain, holder, other, relayer, auth):
    cancel = _cancel(other.key, opg_domain, holder.address, auth.nonce)
    with ape.reverts("eip3009: invalid signature"):
        opg.cancelAuthorization(holder.address, auth.nonce, *cancel.vrs, sender=relayer.account)
    assert opg.authorizationState(holder.address, auth.nonce) is False


def test_cancel_authorization_high_s_twin_reverts(opg, opg_domain, holder, relayer, auth):
    twin = _cancel(holder.key, opg_domain, holder.address, auth.nonce).high_s_twin()
    with ape.reverts("eip3009: invalid signature"):
        opg.cancelAuthorization(holder.address, auth.nonce, *twin.vrs, sender=relayer.account)


def test_cancel_authorization_for_another_chain_reverts(opg, chain_id, holder, relayer, auth):
    cancel = _cancel(holder.key, domain(chain_id + 1, opg.address), holder.address, auth.nonce)
    with ape.reverts("eip3009: invalid signature"):
        opg.cancelAuthorization(holder.address, auth.nonce, *cancel.vrs, sender=relayer.account)


def test_cancel_authorization_by_erc1271_wallet(opg, opg_domain, wallet, holder, relayer):
    nonce = new_nonce()
    cancel = _cancel(holder.key, opg_domain, wallet.address, nonce)
    opg.cancelAuthorization(wallet.address, nonce, *cancel.vrs, sender=relayer.account)
    assert opg.authorizationState(wallet.address, nonce) is True


def test_authorization_nonces_are_per_authorizer(opg, opg_domain, holder, other, relayer, auth):
    cancel = _cancel(other.key, opg_domain, other.address, auth.nonce)
    opg.cancelAuthorization(other.address, auth.nonce, *cancel.vrs, sender=relayer.account)
    sig = auth.sign(holder.key, opg_domain)
    opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)
    assert opg.balanceOf(other.address) == 100 * OPG
