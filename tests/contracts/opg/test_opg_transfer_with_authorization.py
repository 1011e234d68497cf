"""OPG token: EIP-3009 transferWithAuthorization (v, r, s)."""

from __future__ import annotations

import ape
import pytest
from eth_keys import keys
from opg_kit import OPG, Auth, domain, new_nonce

pytestmark = pytest.mark.usefixtures("_session_fixtures_first")


def test_transfer_with_authorization_moves_tokens_submitted_by_anyone(opg, opg_domain, holder, other, relayer, auth):
    sig = auth.sign(holder.key, opg_domain)
    assert opg.authorizationState(holder.address, auth.nonce) is False
    tx = opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)
    assert opg.balanceOf(holder.address) == 9_900 * OPG
    assert opg.balanceOf(other.address) == 100 * OPG
    assert opg.authorizationState(holder.address, auth.nonce) is True
    [used] = opg.AuthorizationUsed.from_receipt(tx)
    assert used.authorizer == holder.address
    assert bytes(used.nonce) == auth.nonce
    [transfer] = opg.Transfer.from_receipt(tx)
    assert (transfer.sender, transfer.receiver, transfer.value) == (holder.address, other.address, 100 * OPG)


def test_transfer_with_authorization_replay_reverts(opg, opg_domain, holder, relayer, auth):
    sig = auth.sign(holder.key, opg_domain)
    opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)
    with ape.reverts("eip3009: authorization is used or canceled"):
        opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)
    assert opg.balanceOf(holder.address) == 9_900 * OPG


def test_transfer_with_authorization_not_yet_valid_reverts(opg, opg_domain, holder, other, relayer, chain, now):
    auth = Auth(holder.address, other.address, OPG, now + 100, now + 3_600, new_nonce())
    sig = auth.sign(holder.key, opg_domain)
    chain.pending_timestamp = now + 100  # validAfter is exclusive
    with ape.reverts("eip3009: authorization is not yet valid"):
        opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)


def test_transfer_with_authorization_valid_just_after_valid_after(opg, opg_domain, holder, other, relayer, chain, now):
    auth = Auth(holder.address, other.address, OPG, now + 100, now + 3_600, new_nonce())
    sig = auth.sign(holder.key, opg_domain)
    chain.pending_timestamp = now + 101
    opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)
    assert opg.balanceOf(other.address) == OPG


def test_transfer_with_authorization_expired_reverts(opg, opg_domain, holder, other, relayer, chain, now):
    auth = Auth(holder.address, other.address, OPG, 0, now + 100, new_nonce())
    sig = auth.sign(holder.key, opg_domain)
    chain.pending_timestamp = now + 100  # validBefore is exclusive
    with ape.reverts("eip3009: authorization is expired"):
        opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)


def test_transfer_with_authorization_valid_just_before_valid_before(
    opg, opg_domain, holder, other, relayer, chain, now
):
    auth = Auth(holder.address, other.address, OPG, 0, now + 100, new_nonce())
    sig = auth.sign(holder.key, opg_domain)
    chain.pending_timestamp = now + 99
    opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)
    assert opg.balanceOf(other.address) == OPG


def test_transfer_with_authorization_wrong_signer_reverts(opg, opg_domain, other, relayer, auth):
    sig = auth.sign(other.key, opg_domain)
    with ape.reverts("eip3009: invalid signature"):
        opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)


def test_transfer_with_authorization_tampered_amount_reverts(opg, opg_domain, holder, relayer, auth):
    sig = auth.sign(holder.key, opg_domain)
    owner, to, value, after, before, nonce = auth.args()
    with ape.reverts("eip3009: invalid signature"):
        opg.transferWithAuthorization(owner, to, value + 1, after, before, nonce, *sig.vrs, sender=relayer.account)


def test_transfer_with_authorization_redirected_payee_reverts(opg, opg_domain, holder, relayer, auth):
    sig = auth.sign(holder.key, opg_domain)
    owner, _, value, after, before, nonce = auth.args()
    with ape.reverts("eip3009: invalid signature"):
        opg.transferWithAuthorization(
            owner, relayer.address, value, after, before, nonce, *sig.vrs, sender=relayer.account
        )


def test_transfer_with_authorization_high_s_twin_reverts(opg, opg_domain, holder, relayer, auth):
    sig = auth.sign(holder.key, opg_domain)
    twin = sig.high_s_twin()
    # The twin is a genuine secp256k1 signature of the holder, only non-canonical.
    digest = auth.digest(opg_domain)
    recovered = keys.Signature(vrs=(twin.v - 27, int.from_bytes(twin.r, "big"), int.from_bytes(twin.s, "big")))
    assert recovered.recover_public_key_from_msg_hash(digest).to_checksum_address() == holder.address
    with ape.reverts("eip3009: invalid signature"):
        opg.transferWithAuthorization(*auth.args(), *twin.vrs, sender=relayer.account)
    # The canonical one still works afterwards: the refused twin consumed nothing.
    opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)


def test_transfer_with_authorization_bad_v_reverts(opg, opg_domain, holder, relayer, auth):
    sig = auth.sign(holder.key, opg_domain)
    with ape.reverts("eip3009: invalid signature"):
        opg.transferWithAuthorization(*auth.args(), sig.v - 27, sig.r, sig.s, sender=relayer.account)


def test_transfer_with_authorization_for_another_deployment_reverts(
    project, opg, chain_id, holder, other, relayer, deployer, auth
):
    twin_token = project.OPG.deploy(holder.address, sender=deployer)
    sig = auth.sign(holder.key, domain(chain_id, twin_token.address))
    with ape.reverts("eip3009: invalid signature"):
        opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)
    # The same signature is good where it was meant to be used.
    twin_token.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)
    assert twin_token.balanceOf(other.address) == 100 * OPG
    assert opg.balanceOf(other.address) == 0


def test_transfer_with_authorization_for_another_chain_reverts(opg, chain_id, holder, relayer, auth):
    sig = auth.sign(holder.key, domain(chain_id + 1, opg.address))
    with ape.reverts("eip3009: invalid signature"):
        opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)


def test_transfer_with_authorization_with_other_domain_name_reverts(opg, chain_id, holder, relayer, auth):
    sig = auth.sign(holder.key, domain(chain_id, opg.address, name="OPG"))
    with ape.reverts("eip3009: invalid signature"):
        opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)


def test_transfer_with_authorization_above_balance_reverts_and_keeps_nonce(
    opg, opg_domain, holder, other, relayer, now
):
    auth = Auth(holder.address, other.address, 10_001 * OPG, 0, now + 3_600, new_nonce())
    sig = auth.sign(holder.key, opg_domain)
    with ape.reverts("erc20: transfer amount exceeds balance"):
        opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)
    assert opg.authorizationState(holder.address, auth.nonce) is False


def test_receive_signature_cannot_be_used_as_transfer(opg, opg_domain, holder, relayer, auth):
    sig = auth.sign(holder.key, opg_domain, primary="ReceiveWithAuthorization")
    with ape.reverts("eip3009: invalid signature"):
        opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)
