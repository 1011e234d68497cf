"""OPG token: EIP-3009 receiveWithAuthorization."""

from __future__ import annotations

import ape
import pytest
from opg_kit import OPG

pytestmark = pytest.mark.usefixtures("_session_fixtures_first")


def test_receive_with_authorization_by_payee(opg, opg_domain, holder, other, auth):
    sig = auth.sign(holder.key, opg_domain, primary="ReceiveWithAuthorization")
    tx = opg.receiveWithAuthorization(*auth.args(), *sig.vrs, sender=other.account)
    assert opg.balanceOf(other.address) == 100 * OPG
    assert opg.authorizationState(holder.address, auth.nonce) is True
    assert len(opg.AuthorizationUsed.from_receipt(tx)) == 1


def test_receive_with_authorization_by_non_payee_reverts(opg, opg_domain, holder, relayer, auth):
    sig = auth.sign(holder.key, opg_domain, primary="ReceiveWithAuthorization")
    with ape.reverts("eip3009: caller must be the payee"):
        opg.receiveWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)


def test_receive_with_authorization_rejects_transfer_signature(opg, opg_domain, holder, other, auth):
    sig = auth.sign(holder.key, opg_domain, primary="TransferWithAuthorization")
    with ape.reverts("eip3009: invalid signature"):
        opg.receiveWithAuthorization(*auth.args(), *sig.vrs, sender=other.account)


def test_receive_with_authorization_replay_reverts(opg, opg_domain, holder, other, auth):
    sig = auth.sign(holder.key, opg_domain, primary="ReceiveWithAuthorization")
    opg.receiveWithAuthorization(*auth.args(), *sig.vrs, sender=other.account)
    with ape.reverts("eip3009: authorization is used or canceled"):
        opg.receiveWithAuthorization(*auth.args(), *sig.vrs, sender=other.account)


def test_receive_with_authorization_high_s_twin_reverts(opg, opg_domain, holder, other, auth):
    twin = auth.sign(holder.key, opg_domain, primary="ReceiveWithAuthorization").high_s_twin()
    with ape.reverts("eip3009: invalid signature"):
        opg.receiveWithAuthorization(*auth.args(), *twin.vrs, sender=other.account)
