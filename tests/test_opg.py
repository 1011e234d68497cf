"""OPG token: fixed supply, ERC-20, EIP-2612 permit, EIP-5267 domain and EIP-3009 (both overloads).

Every signature is made with eth-account from EIP-712 typed data built here, independently of the contract.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import ape
import pytest
from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys import keys
from eth_utils import keccak, to_checksum_address

OPG = 10**18
TOTAL_SUPPLY = 10**27
ZERO = "0x0000000000000000000000000000000000000000"
MAX_UINT256 = 2**256 - 1
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
AUTHORIZATION_FIELDS = [
    {"name": "from", "type": "address"},
    {"name": "to", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "validAfter", "type": "uint256"},
    {"name": "validBefore", "type": "uint256"},
    {"name": "nonce", "type": "bytes32"},
]
CANCEL_FIELDS = [
    {"name": "authorizer", "type": "address"},
    {"name": "nonce", "type": "bytes32"},
]
PERMIT_FIELDS = [
    {"name": "owner", "type": "address"},
    {"name": "spender", "type": "address"},
    {"name": "value", "type": "uint256"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint256"},
]
TRANSFER_WITH_AUTHORIZATION_BYTES_SIG = (
    "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
)
BYTES_OVERLOAD_TYPES = ["address", "address", "uint256", "uint256", "uint256", "bytes32", "bytes"]


# ---------------------------------------------------------------------------------------------------------------
# EIP-712 helpers (eth-account)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sig:
    v: int
    r: bytes
    s: bytes

    @property
    def signature(self) -> bytes:
        return self.r + self.s + bytes([self.v])

    @property
    def vrs(self) -> tuple[int, bytes, bytes]:
        return self.v, self.r, self.s

    def high_s_twin(self) -> Sig:
        """The malleable twin (n - s, flipped v): recovers the same signer in a lax verifier."""
        s = SECP256K1_N - int.from_bytes(self.s, "big")
        return Sig(v=55 - self.v, r=self.r, s=s.to_bytes(32, "big"))


def domain(chain_id: int, address: str, name: str = "OpenGradient", version: str = "1") -> dict:
    return {"name": name, "version": version, "chainId": chain_id, "verifyingContract": address}


def typed_data(dom: dict, primary: str, fields: list, message: dict) -> dict:
    return {
        "types": {"EIP712Domain": DOMAIN_TYPE, primary: fields},
        "primaryType": primary,
        "domain": dom,
        "message": message,
    }


def sign_typed(key, dom: dict, primary: str, fields: list, message: dict) -> Sig:
    signed = Account.sign_typed_data(key, full_message=typed_data(dom, primary, fields, message))
    return Sig(v=signed.v, r=signed.r.to_bytes(32, "big"), s=signed.s.to_bytes(32, "big"))


@dataclass(frozen=True)
class Auth:
    """An EIP-3009 authorisation (transfer or receive)."""

    owner: str
    to: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes

    def message(self) -> dict:
        return {
            "from": self.owner,
            "to": self.to,
            "value": self.value,
            "validAfter": self.valid_after,
            "validBefore": self.valid_before,
            "nonce": self.nonce,
        }

    def args(self) -> tuple:
        return (self.owner, self.to, self.value, self.valid_after, self.valid_before, self.nonce)

    def typed_data(self, dom: dict, primary: str = "TransferWithAuthorization") -> dict:
        return typed_data(dom, primary, AUTHORIZATION_FIELDS, self.message())

    def sign(self, key, dom: dict, primary: str = "TransferWithAuthorization") -> Sig:
        return sign_typed(key, dom, primary, AUTHORIZATION_FIELDS, self.message())

    def digest(self, dom: dict, primary: str = "TransferWithAuthorization") -> bytes:
        signable = encode_typed_data(full_message=self.typed_data(dom, primary))
        return keccak(b"\x19" + signable.version + signable.header + signable.body)

    def bytes_calldata(self, signature: bytes) -> bytes:
        """Call data of the bytes-signature overload, ABI-encoded here with eth_abi."""
        selector = keccak(text=TRANSFER_WITH_AUTHORIZATION_BYTES_SIG)[:4]
        return selector + encode(BYTES_OVERLOAD_TYPES, [*self.args(), signature])


def new_nonce() -> bytes:
    return os.urandom(32)


# ---------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _session_fixtures_first(system, opg, deployer, treasury, make_actor, chain_id):
    """Instantiate the session fixtures before this module's own (ape's snapshots need that order)."""


@pytest.fixture(scope="module")
def holder(make_actor):
    """A token holder with a known key (10,000 OPG)."""
    return make_actor(10_000 * OPG)


@pytest.fixture(scope="module")
def other(make_actor):
    """A second actor holding nothing."""
    return make_actor(0)


@pytest.fixture(scope="module")
def relayer(make_actor):
    """An account with gas only, submitting other people's signatures."""
    return make_actor(0)


@pytest.fixture(scope="module")
def opg_domain(chain_id, opg) -> dict:
    return domain(chain_id, opg.address)


@pytest.fixture
def now(chain) -> int:
    return chain.pending_timestamp


@pytest.fixture
def auth(holder, other, now) -> Auth:
    """A fresh 100 OPG authorisation holder -> other, valid for an hour."""
    return Auth(holder.address, other.address, 100 * OPG, 0, now + 3_600, new_nonce())


@pytest.fixture(scope="module")
def wallet(project, holder, opg, deployer, treasury):
    """An ERC-1271 TestWallet owned by `holder`, holding 1,000 OPG."""
    w = project.TestWallet.deploy(holder.address, sender=deployer)
    opg.transfer(w, 1_000 * OPG, sender=treasury)
    return w


# ---------------------------------------------------------------------------------------------------------------
# Metadata, supply, no minting
# ---------------------------------------------------------------------------------------------------------------


def test_metadata_is_opengradient_opg_18_decimals(opg):
    assert opg.name() == "OpenGradient"
    assert opg.symbol() == "OPG"
    assert opg.decimals() == 18


def test_total_supply_is_one_billion_opg(opg):
    assert opg.totalSupply() == TOTAL_SUPPLY == 1_000_000_000 * OPG
    assert opg.TOTAL_SUPPLY() == TOTAL_SUPPLY


def test_whole_supply_is_minted_to_genesis_at_deployment(project, deployer, other, chain):
    token = project.OPG.deploy(other.address, sender=deployer)
    assert token.totalSupply() == TOTAL_SUPPLY
    assert token.balanceOf(other.address) == TOTAL_SUPPLY
    assert token.balanceOf(deployer) == 0
    receipt = chain.provider.get_receipt(token.txn_hash)
    mints = token.Transfer.from_receipt(receipt)
    assert len(mints) == 1
    assert mints[0].sender == ZERO
    assert mints[0].receiver == other.address
    assert mints[0].value == TOTAL_SUPPLY


def test_deployment_leaves_no_owner_and_no_minter(project, deployer, other, chain):
    token = project.OPG.deploy(other.address, sender=deployer)
    receipt = chain.provider.get_receipt(token.txn_hash)
    ownership = token.OwnershipTransferred.from_receipt(receipt)
    assert ownership[-1].new_owner == ZERO
    roles = token.RoleMinterChanged.from_receipt(receipt)
    assert roles[-1].minter == deployer.address
    assert not roles[-1].status
    # Storage: ownable.owner is slot 0, erc20.is_minter is the mapping at slot 4.
    assert int.from_bytes(chain.provider.get_storage(token.address, 0), "big") == 0
    minter_slot = int.from_bytes(keccak(encode(["address", "uint256"], [deployer.address, 4])), "big")
    assert int.from_bytes(chain.provider.get_storage(token.address, minter_slot), "big") == 0


def test_no_mint_or_ownership_function_is_exported(opg):
    names = {abi.name for abi in opg.contract_type.abi if abi.type == "function"}
    for forbidden in ("mint", "set_minter", "is_minter", "owner", "transfer_ownership", "renounce_ownership"):
        assert forbidden not in names
    assert {"transfer", "transferFrom", "approve", "burn", "burn_from", "permit", "eip712Domain"} <= names


def test_calling_mint_selector_reverts_unknown_function(opg, holder):
    data = keccak(text="mint(address,uint256)")[:4] + encode(["address", "uint256"], [holder.address, OPG])
    with ape.reverts("OPG: unknown function"):
        holder.account.transfer(opg, 0, data=data)
    assert opg.totalSupply() == TOTAL_SUPPLY


def test_genesis_zero_address_reverts(project, deployer):
    with ape.reverts("OPG: genesis is the zero address"):
        project.OPG.deploy(ZERO, sender=deployer)


# ---------------------------------------------------------------------------------------------------------------
# ERC-20
# ---------------------------------------------------------------------------------------------------------------


def test_transfer_moves_balance_and_emits_transfer(opg, holder, other):
    tx = opg.transfer(other.address, 10 * OPG, sender=holder.account)
    assert opg.balanceOf(holder.address) == 9_990 * OPG
    assert opg.balanceOf(other.address) == 10 * OPG
    [event] = opg.Transfer.from_receipt(tx)
    assert (event.sender, event.receiver, event.value) == (holder.address, other.address, 10 * OPG)


def test_transfer_above_balance_reverts(opg, holder, other):
    with ape.reverts("erc20: transfer amount exceeds balance"):
        opg.transfer(other.address, 10_001 * OPG, sender=holder.account)


def test_transfer_to_zero_address_reverts(opg, holder):
    with ape.reverts("erc20: transfer to the zero address"):
        opg.transfer(ZERO, OPG, sender=holder.account)


def test_approve_sets_allowance_and_emits_approval(opg, holder, other):
    tx = opg.approve(other.address, 5 * OPG, sender=holder.account)
    assert opg.allowance(holder.address, other.address) == 5 * OPG
    [event] = opg.Approval.from_receipt(tx)
    assert (event.owner, event.spender, event.value) == (holder.address, other.address, 5 * OPG)


def test_transfer_from_spends_allowance(opg, holder, other, relayer):
    opg.approve(other.address, 5 * OPG, sender=holder.account)
    opg.transferFrom(holder.address, relayer.address, 3 * OPG, sender=other.account)
    assert opg.balanceOf(relayer.address) == 3 * OPG
    assert opg.allowance(holder.address, other.address) == 2 * OPG


def test_transfer_from_above_allowance_reverts(opg, holder, other):
    opg.approve(other.address, OPG, sender=holder.account)
    with ape.reverts("erc20: insufficient allowance"):
        opg.transferFrom(holder.address, other.address, OPG + 1, sender=other.account)


def test_infinite_allowance_is_not_decreased(opg, holder, other):
    opg.approve(other.address, MAX_UINT256, sender=holder.account)
    opg.transferFrom(holder.address, other.address, OPG, sender=other.account)
    assert opg.allowance(holder.address, other.address) == MAX_UINT256


def test_burn_reduces_balance_and_total_supply(opg, holder):
    supply = opg.totalSupply()
    tx = opg.burn(7 * OPG, sender=holder.account)
    assert opg.balanceOf(holder.address) == 9_993 * OPG
    assert opg.totalSupply() == supply - 7 * OPG
    [event] = opg.Transfer.from_receipt(tx)
    assert (event.sender, event.receiver, event.value) == (holder.address, ZERO, 7 * OPG)


def test_burn_above_balance_reverts(opg, holder):
    with ape.reverts("erc20: burn amount exceeds balance"):
        opg.burn(10_001 * OPG, sender=holder.account)


def test_burn_from_spends_allowance_and_reduces_supply(opg, holder, other):
    supply = opg.totalSupply()
    opg.approve(other.address, 5 * OPG, sender=holder.account)
    opg.burn_from(holder.address, 2 * OPG, sender=other.account)
    assert opg.balanceOf(holder.address) == 9_998 * OPG
    assert opg.allowance(holder.address, other.address) == 3 * OPG
    assert opg.totalSupply() == supply - 2 * OPG


def test_burn_from_without_allowance_reverts(opg, holder, other):
    with ape.reverts("erc20: insufficient allowance"):
        opg.burn_from(holder.address, OPG, sender=other.account)


# ---------------------------------------------------------------------------------------------------------------
# EIP-712 domain (EIP-5267) and EIP-2612 permit
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# EIP-3009 transferWithAuthorization (v, r, s)
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# EIP-3009 transferWithAuthorization (bytes signature, through __default__)
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# EIP-3009 receiveWithAuthorization
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# EIP-3009 cancelAuthorization
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# __default__
# ---------------------------------------------------------------------------------------------------------------


def test_unknown_selector_reverts(opg, holder):
    with ape.reverts("OPG: unknown function"):
        holder.account.transfer(opg, 0, data=bytes.fromhex("deadbeef"))


def test_short_calldata_reverts(opg, holder):
    with ape.reverts("OPG: unknown function"):
        holder.account.transfer(opg, 0, data=b"\xcf\x09\x29")


def test_empty_calldata_reverts(opg, holder):
    with ape.reverts("OPG: unknown function"):
        holder.account.transfer(opg, 0)


def test_ether_sent_to_token_reverts(opg, holder, chain):
    with ape.reverts():
        holder.account.transfer(opg, 1, data=auth_free_bytes_calldata(holder.address))
    assert chain.provider.get_balance(opg.address) == 0


def auth_free_bytes_calldata(owner: str) -> bytes:
    """Bytes-overload call data (the one `__default__` accepts) with a dummy signature."""
    auth = Auth(owner, to_checksum_address("0x" + "11" * 20), 1, 0, 2**64, b"\x00" * 32)
    return auth.bytes_calldata(b"\x00" * 65)
