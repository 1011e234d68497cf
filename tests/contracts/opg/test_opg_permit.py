"""OPG token: EIP-712 domain (EIP-5267) and EIP-2612 permit."""

from __future__ import annotations

import ape
import pytest
from eth_abi import encode
from eth_utils import keccak
from opg_kit import OPG, Sig, domain, sign_typed

pytestmark = pytest.mark.usefixtures("_session_fixtures_first")


PERMIT_FIELDS = [
    {"name": "owner", "type": "address"},
    {"name": "spender", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]


def test_eip712_domain_reports_opengradient_v1(opg, chain_id):
    fields, name, version, cid, verifying_contract, salt, extensions = opg.eip712Domain()
    assert bytes(fields) == b"\x0f"  # name, version, chainId, verifyingContract
    assert name == "OpenGradient"
    assert version == "1"
    assert cid == chain_id
    assert verifying_contract == opg.address
    assert bytes(salt) == b"\x00" * 32
    assert list(extensions) == []


def test_domain_separator_matches_eip712(opg, chain_id):
    expected = keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak(text="OpenGradient"),
                keccak(text="1"),
                chain_id,
                opg.address,
            ],
        )
    )
    assert bytes(opg.DOMAIN_SEPARATOR()) == expected


def test_eip3009_type_hashes_match_the_standard(opg):
    fields = "(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
    assert bytes(opg.TRANSFER_WITH_AUTHORIZATION_TYPEHASH()) == keccak(text="TransferWithAuthorization" + fields)
    assert bytes(opg.RECEIVE_WITH_AUTHORIZATION_TYPEHASH()) == keccak(text="ReceiveWithAuthorization" + fields)
    assert bytes(opg.CANCEL_AUTHORIZATION_TYPEHASH()) == keccak(
        text="CancelAuthorization(address authorizer,bytes32 nonce)"
    )


def _permit(key, dom, owner, spender, value, nonce, deadline) -> Sig:
    message = {"owner": owner, "spender": spender, "value": value, "nonce": nonce, "deadline": deadline}
    return sign_typed(key, dom, "Permit", PERMIT_FIELDS, message)


def test_permit_sets_allowance_and_increments_nonce(opg, opg_domain, holder, other, relayer, now):
    deadline = now + 600
    sig = _permit(holder.key, opg_domain, holder.address, other.address, 50 * OPG, 0, deadline)
    tx = opg.permit(holder.address, other.address, 50 * OPG, deadline, *sig.vrs, sender=relayer.account)
    assert opg.allowance(holder.address, other.address) == 50 * OPG
    assert opg.nonces(holder.address) == 1
    [event] = opg.Approval.from_receipt(tx)
    assert event.value == 50 * OPG
    opg.transferFrom(holder.address, other.address, 50 * OPG, sender=other.account)
    assert opg.balanceOf(other.address) == 50 * OPG


def test_permit_expired_deadline_reverts(opg, opg_domain, holder, other, chain, now):
    deadline = now + 10
    sig = _permit(holder.key, opg_domain, holder.address, other.address, OPG, 0, deadline)
    chain.pending_timestamp = deadline + 1
    with ape.reverts("erc20: expired deadline"):
        opg.permit(holder.address, other.address, OPG, deadline, *sig.vrs, sender=other.account)


def test_permit_signed_by_wrong_key_reverts(opg, opg_domain, holder, other, now):
    deadline = now + 600
    sig = _permit(other.key, opg_domain, holder.address, other.address, OPG, 0, deadline)
    with ape.reverts("erc20: invalid signature"):
        opg.permit(holder.address, other.address, OPG, deadline, *sig.vrs, sender=other.account)


def test_permit_replayed_nonce_reverts(opg, opg_domain, holder, other, now):
    deadline = now + 600
    sig = _permit(holder.key, opg_domain, holder.address, other.address, OPG, 0, deadline)
    opg.permit(holder.address, other.address, OPG, deadline, *sig.vrs, sender=other.account)
    with ape.reverts("erc20: invalid signature"):
        opg.permit(holder.address, other.address, OPG, deadline, *sig.vrs, sender=other.account)
    assert opg.nonces(holder.address) == 1


def test_permit_high_s_twin_reverts(opg, opg_domain, holder, other, now):
    deadline = now + 600
    sig = _permit(holder.key, opg_domain, holder.address, other.address, OPG, 0, deadline).high_s_twin()
    with ape.reverts("ecdsa: invalid signature `s` value"):
        opg.permit(holder.address, other.address, OPG, deadline, *sig.vrs, sender=other.account)


def test_permit_for_another_chain_reverts(opg, holder, other, chain_id, now):
    deadline = now + 600
    sig = _permit(holder.key, domain(chain_id + 1, opg.address), holder.address, other.address, OPG, 0, deadline)
    with ape.reverts("erc20: invalid signature"):
        opg.permit(holder.address, other.address, OPG, deadline, *sig.vrs, sender=other.account)
