"""OPG token: EIP-3009 transferWithAuthorization (bytes signature, through __default__)."""

from __future__ import annotations

import ape
import pytest
from eth_utils import keccak
from opg_kit import OPG, TRANSFER_WITH_AUTHORIZATION_BYTES_SIG, Auth, new_nonce

pytestmark = pytest.mark.usefixtures("_session_fixtures_first")


def test_bytes_overload_selector_is_0xcf092995():
    assert keccak(text=TRANSFER_WITH_AUTHORIZATION_BYTES_SIG)[:4] == bytes.fromhex("cf092995")


def test_bytes_overload_moves_tokens(opg, opg_domain, holder, other, relayer, auth):
    sig = auth.sign(holder.key, opg_domain)
    tx = relayer.account.transfer(opg, 0, data=auth.bytes_calldata(sig.signature))
    assert opg.balanceOf(holder.address) == 9_900 * OPG
    assert opg.balanceOf(other.address) == 100 * OPG
    assert opg.authorizationState(holder.address, auth.nonce) is True
    [used] = opg.AuthorizationUsed.from_receipt(tx)
    assert used.authorizer == holder.address
    assert bytes(used.nonce) == auth.nonce


def test_bytes_overload_replay_reverts(opg, opg_domain, holder, relayer, auth):
    sig = auth.sign(holder.key, opg_domain)
    relayer.account.transfer(opg, 0, data=auth.bytes_calldata(sig.signature))
    with ape.reverts("eip3009: authorization is used or canceled"):
        relayer.account.transfer(opg, 0, data=auth.bytes_calldata(sig.signature))


def test_bytes_and_vrs_overloads_share_nonces(opg, opg_domain, holder, relayer, auth):
    sig = auth.sign(holder.key, opg_domain)
    relayer.account.transfer(opg, 0, data=auth.bytes_calldata(sig.signature))
    with ape.reverts("eip3009: authorization is used or canceled"):
        opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)


def test_bytes_overload_wrong_signer_reverts(opg, opg_domain, other, relayer, auth):
    sig = auth.sign(other.key, opg_domain)
    with ape.reverts("eip3009: invalid signature"):
        relayer.account.transfer(opg, 0, data=auth.bytes_calldata(sig.signature))


def test_bytes_overload_high_s_twin_reverts(opg, opg_domain, holder, relayer, auth):
    twin = auth.sign(holder.key, opg_domain).high_s_twin()
    with ape.reverts("eip3009: invalid signature"):
        relayer.account.transfer(opg, 0, data=auth.bytes_calldata(twin.signature))


def test_bytes_overload_eoa_signature_of_wrong_length_reverts(opg, opg_domain, holder, relayer, auth):
    sig = auth.sign(holder.key, opg_domain)
    with ape.reverts("eip3009: invalid signature"):
        relayer.account.transfer(opg, 0, data=auth.bytes_calldata(sig.signature + b"\x00"))
    with ape.reverts("eip3009: invalid signature"):
        relayer.account.transfer(opg, 0, data=auth.bytes_calldata(sig.signature[:64]))


def test_bytes_overload_empty_signature_reverts_unsupported_length(opg, relayer, auth):
    with ape.reverts("eip3009: unsupported signature length"):
        relayer.account.transfer(opg, 0, data=auth.bytes_calldata(b""))


def test_bytes_overload_signature_longer_than_256_bytes_reverts(opg, relayer, auth):
    with ape.reverts("eip3009: unsupported signature length"):
        relayer.account.transfer(opg, 0, data=auth.bytes_calldata(b"\x01" * 257))


def test_bytes_overload_truncated_calldata_reverts(opg, opg_domain, holder, relayer, auth):
    sig = auth.sign(holder.key, opg_domain)
    with ape.reverts("eip3009: unsupported signature length"):
        relayer.account.transfer(opg, 0, data=auth.bytes_calldata(sig.signature)[:-1])


def test_bytes_overload_not_yet_valid_and_expired_revert(opg, opg_domain, holder, other, relayer, now):
    early = Auth(holder.address, other.address, OPG, now + 1_000, now + 3_600, new_nonce())
    with ape.reverts("eip3009: authorization is not yet valid"):
        relayer.account.transfer(opg, 0, data=early.bytes_calldata(early.sign(holder.key, opg_domain).signature))
    late = Auth(holder.address, other.address, OPG, 0, now - 1, new_nonce())
    with ape.reverts("eip3009: authorization is expired"):
        relayer.account.transfer(opg, 0, data=late.bytes_calldata(late.sign(holder.key, opg_domain).signature))


def test_bytes_overload_accepts_erc1271_wallet_as_from(opg, opg_domain, wallet, holder, other, relayer, now):
    auth = Auth(wallet.address, other.address, 300 * OPG, 0, now + 3_600, new_nonce())
    sig = auth.sign(holder.key, opg_domain)  # the wallet's owner signs for the wallet
    tx = relayer.account.transfer(opg, 0, data=auth.bytes_calldata(sig.signature))
    assert opg.balanceOf(wallet.address) == 700 * OPG
    assert opg.balanceOf(other.address) == 300 * OPG
    [used] = opg.AuthorizationUsed.from_receipt(tx)
    assert used.authorizer == wallet.address


def test_vrs_overload_accepts_erc1271_wallet_as_from(opg, opg_domain, wallet, holder, other, relayer, now):
    auth = Auth(wallet.address, other.address, 300 * OPG, 0, now + 3_600, new_nonce())
    sig = auth.sign(holder.key, opg_domain)
    opg.transferWithAuthorization(*auth.args(), *sig.vrs, sender=relayer.account)
    assert opg.balanceOf(other.address) == 300 * OPG


def test_erc1271_wallet_refusing_signatures_reverts(opg, opg_domain, wallet, holder, other, relayer, now):
    wallet.set_refuse_all(True, sender=holder.account)
    auth = Auth(wallet.address, other.address, OPG, 0, now + 3_600, new_nonce())
    sig = auth.sign(holder.key, opg_domain)
    with ape.reverts("eip3009: invalid signature"):
        relayer.account.transfer(opg, 0, data=auth.bytes_calldata(sig.signature))


def test_erc1271_wallet_rejects_stranger_signature(opg, opg_domain, wallet, other, relayer, now):
    auth = Auth(wallet.address, other.address, OPG, 0, now + 3_600, new_nonce())
    sig = auth.sign(other.key, opg_domain)
    with ape.reverts("eip3009: invalid signature"):
        relayer.account.transfer(opg, 0, data=auth.bytes_calldata(sig.signature))


def test_erc1271_wallet_signature_of_non_65_bytes_reverts(opg, opg_domain, wallet, holder, other, relayer, now):
    auth = Auth(wallet.address, other.address, OPG, 0, now + 3_600, new_nonce())
    sig = auth.sign(holder.key, opg_domain)
    with ape.reverts("eip3009: invalid signature"):
        relayer.account.transfer(opg, 0, data=auth.bytes_calldata(sig.signature + b"\x00" * 31))
