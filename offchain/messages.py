"""The protocol's signed messages: Voucher, Receipt, Verdict, the Claim built from a Voucher, and the off-chain
PayloadRequest a verifier signs to fetch a receipt's payload from its node.

This is the one EIP-712 implementation of the project. Hashing and signing go through eth-account's
``encode_typed_data`` (an implementation independent of the contracts), and the tests check that every digest
agrees byte for byte with the deployed contracts' own ``*_digest`` views.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, ClassVar

from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_keys import keys
from eth_utils import keccak, to_checksum_address
from pydantic import BaseModel, ConfigDict

from .types import Address, Bytes32, Signature, Uint64, Uint256, b32

ESCROW_DOMAIN_NAME = "OPG Credit Escrow"
STAKING_DOMAIN_NAME = "OPG Node Staking"
TOKEN_DOMAIN_NAME = "OpenGradient"
DOMAIN_VERSION = "1"
SECP256K1_HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

try:  # optional: a faster path to the same secp256k1 recovery
    import coincurve as _coincurve
except ImportError:  # pragma: no cover - depends on the environment
    _coincurve = None

_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


class Domain(BaseModel):
    """An EIP-712 domain: the verifying contract of one deployment on one chain."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: str = DOMAIN_VERSION
    chain_id: int
    verifying_contract: Address

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }

    @classmethod
    def escrow(cls, chain_id: int, address: str) -> Domain:
        return cls(name=ESCROW_DOMAIN_NAME, chain_id=chain_id, verifying_contract=address)

    @classmethod
    def token(cls, chain_id: int, address: str) -> Domain:
        """The OPG token's own domain (EIP-2612 permit, EIP-3009 authorisations)."""
        return cls(name=TOKEN_DOMAIN_NAME, chain_id=chain_id, verifying_contract=address)

    @classmethod
    def staking(cls, chain_id: int, address: str) -> Domain:
        return cls(name=STAKING_DOMAIN_NAME, chain_id=chain_id, verifying_contract=address)


@lru_cache(maxsize=256)
def domain_separator(domain: Domain) -> bytes:
    """EIP-712 ``hashStruct(EIP712Domain)`` of a domain (cached: domains are frozen)."""
    type_hash = keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
    return keccak(
        type_hash
        + keccak(text=domain.name)
        + keccak(text=domain.version)
        + domain.chain_id.to_bytes(32, "big")
        + bytes(12)
        + bytes.fromhex(domain.verifying_contract[2:])
    )


@lru_cache(maxsize=64)
def _type_hash(primary_type: str, fields: tuple[tuple[str, str, str], ...]) -> bytes:
    return keccak(text=f"{primary_type}(" + ",".join(f"{t} {n}" for n, t, _ in fields) + ")")


def _static_word(sol_type: str, value: Any) -> bytes:
    """One static ABI word (address, bool, bytes32, uintN) as ``abi.encode`` lays it out."""
    if sol_type == "address":
        return bytes(12) + bytes.fromhex(value[2:])
    if sol_type == "bytes32":
        return b32(value)
    if sol_type == "bool":
        return int(bool(value)).to_bytes(32, "big")
    if sol_type.startswith("uint"):
        return int(value).to_bytes(32, "big")
    raise TypeError(f"no static encoding for {sol_type}")


class InvalidSignature(ValueError):
    """A signature that is malformed, malleable, or not the expected signer's."""


def recover_signer(digest: bytes, signature: str | bytes) -> str:
    """Recover the ECDSA signer of an EIP-712 digest; refuse non-canonical signatures like the contracts do."""
    sig = bytes.fromhex(signature[2:]) if isinstance(signature, str) else bytes(signature)
    if len(sig) != 65:
        raise InvalidSignature("signature must be 65 bytes r || s || v")
    r, s, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
    if v not in (27, 28):
        raise InvalidSignature("signature v must be 27 or 28")
    if s > SECP256K1_HALF_N:
        raise InvalidSignature("signature s is in the upper half order (malleable)")
    try:
        if _coincurve is not None:  # the same libsecp256k1 eth-keys uses when coincurve is installed, minus overhead
            if not 0 < r < SECP256K1_N or s == 0:
                raise ValueError("r or s out of range")
            public = _coincurve.PublicKey.from_signature_and_message(
                sig[:64] + bytes([v - 27]), digest, hasher=None
            ).format(compressed=False)[1:]
        else:
            public = keys.Signature(vrs=(v - 27, r, s)).recover_public_key_from_msg_hash(digest).to_bytes()
    except Exception as exc:  # both libraries raise several types for garbage input
        raise InvalidSignature(f"signature does not recover: {exc}") from exc
    return _address_of(keccak(public)[12:])


@lru_cache(maxsize=65_536)
def _address_of(raw: bytes) -> str:
    return to_checksum_address(raw)


class TypedMessage(BaseModel):
    """Base of the EIP-712 messages: subclasses give the type name, fields and domain kind."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    PRIMARY_TYPE: ClassVar[str]
    FIELDS: ClassVar[list[tuple[str, str, str]]]  # (EIP-712 name, solidity type, attribute)

    def _message(self) -> dict[str, Any]:
        values = {}
        for eip_name, sol_type, attr in self.FIELDS:
            value = getattr(self, attr)
            values[eip_name] = b32(value) if sol_type == "bytes32" else value
        return values

    def typed_data(self, domain: Domain) -> dict[str, Any]:
        """The full EIP-712 document, as a wallet's ``eth_signTypedData_v4`` takes it."""
        return {
            "types": {
                "EIP712Domain": _DOMAIN_TYPE,
                self.PRIMARY_TYPE: [{"name": n, "type": t} for n, t, _ in self.FIELDS],
            },
            "primaryType": self.PRIMARY_TYPE,
            "domain": domain.as_dict(),
            "message": self._message(),
        }

    def signable(self, domain: Domain) -> SignableMessage:
        return encode_typed_data(full_message=self.typed_data(domain))

    def struct_hash(self) -> bytes:
        """``hashStruct(message)``: independent of the domain.

        Every field of the protocol's messages is a static ABI type, so the encoding is one 32-byte word per field
        (``_static_word``); this is what the contracts' ``abi_encode`` produces, without eth-abi's overhead.
        """
        words = [_type_hash(self.PRIMARY_TYPE, tuple(self.FIELDS))]
        words += [_static_word(t, getattr(self, attr)) for _, t, attr in self.FIELDS]
        return keccak(b"".join(words))

    def digest(self, domain: Domain) -> bytes:
        """The 32-byte EIP-712 digest that is signed."""
        msg = self.signable(domain)
        return keccak(b"\x19" + msg.version + msg.header + msg.body)

    def fast_digest(self, domain: Domain) -> bytes:
        """``digest`` computed as ``keccak(0x1901 || domainSeparator || structHash)`` (hot paths, e.g. the relayer).

        Equal to ``digest`` byte for byte (tests check both against the contracts); about ten times faster.
        """
        return keccak(b"\x19\x01" + domain_separator(domain) + self.struct_hash())

    def sign_with(self, private_key: str | bytes, domain: Domain) -> str:
        """Sign with a raw key; returns the 65-byte ``r || s || v`` signature as 0x-hex. With coincurve: libsecp256k1
        over ``fast_digest`` (RFC 6979, low-s: byte for byte eth-account's signature, about six times faster)."""
        if _coincurve is not None:
            key = bytes.fromhex(private_key[2:] if private_key[:2] in ("0x", "0X") else private_key) \
                if isinstance(private_key, str) else bytes(private_key)
            sig = _coincurve.PrivateKey(key).sign_recoverable(self.fast_digest(domain), hasher=None)
            return "0x" + (sig[:64] + bytes([sig[64] + 27])).hex()
        signed = Account.sign_message(self.signable(domain), private_key)
        return "0x" + bytes(signed.signature).hex()

    def signer_of(self, signature: str, domain: Domain) -> str:
        return recover_signer(self.digest(domain), signature)


class Voucher(TypedMessage):
    """A payer's cumulative spending cap on its channel with one node."""

    PRIMARY_TYPE: ClassVar[str] = "Voucher"
    FIELDS: ClassVar[list[tuple[str, str, str]]] = [
        ("payer", "address", "payer"),
        ("node", "address", "node"),
        ("maxCumulative", "uint256", "max_cumulative"),
    ]

    payer: Address
    node: Address
    max_cumulative: Uint256


class SignedVoucher(Voucher):
    signature: Signature

    @property
    def voucher(self) -> Voucher:
        return Voucher(payer=self.payer, node=self.node, max_cumulative=self.max_cumulative)


class Receipt(TypedMessage):
    """A node's signed statement that it served one request, with the charge and the channel's new total."""

    PRIMARY_TYPE: ClassVar[str] = "Receipt"
    FIELDS: ClassVar[list[tuple[str, str, str]]] = [
        ("requestId", "bytes32", "request_id"),
        ("payer", "address", "payer"),
        ("node", "address", "node"),
        ("modelId", "bytes32", "model_id"),
        ("inputHash", "bytes32", "input_hash"),
        ("outputHash", "bytes32", "output_hash"),
        ("amount", "uint256", "amount"),
        ("cumulative", "uint256", "cumulative"),
        ("timestamp", "uint64", "timestamp"),
    ]

    request_id: Bytes32
    payer: Address
    node: Address
    model_id: Bytes32
    input_hash: Bytes32
    output_hash: Bytes32
    amount: Uint256
    cumulative: Uint256
    timestamp: Uint64

    def as_tuple(self) -> tuple:
        """The contract's ``Receipt`` struct argument."""
        return (
            b32(self.request_id),
            self.payer,
            self.node,
            b32(self.model_id),
            b32(self.input_hash),
            b32(self.output_hash),
            self.amount,
            self.cumulative,
            self.timestamp,
        )


class SignedReceipt(Receipt):
    signature: Signature

    @property
    def receipt(self) -> Receipt:
        return Receipt(**self.model_dump(exclude={"signature"}))


class Verdict(TypedMessage):
    """A verifier's judgement of a receipt (by its EIP-712 struct hash)."""

    PRIMARY_TYPE: ClassVar[str] = "Verdict"
    FIELDS: ClassVar[list[tuple[str, str, str]]] = [
        ("receiptHash", "bytes32", "receipt_hash"),
        ("valid", "bool", "valid"),
    ]

    receipt_hash: Bytes32
    valid: bool


class SignedVerdict(Verdict):
    verifier: Address
    signature: Signature


class PayloadWithheld(TypedMessage):
    """Off-chain only: a verifier's report that ``node`` did not release the payload of the receipt ``receiptHash``
    by its deadline (NodeStaking domain). Deliberately NOT a ``Verdict``: withholding is no evidence about the answer,
    so a report is never counted as a ``valid=false`` vote and never makes its signer a slashable false accuser
    (withholding is answered by the payer's bonded dispute, which hands the payer's own copy to the verifiers)."""

    PRIMARY_TYPE: ClassVar[str] = "PayloadWithheld"
    FIELDS: ClassVar[list[tuple[str, str, str]]] = [
        ("receiptHash", "bytes32", "receipt_hash"),
        ("node", "address", "node"),
    ]

    receipt_hash: Bytes32
    node: Address


class TransferWithAuthorization(TypedMessage):
    """EIP-3009 ``TransferWithAuthorization`` on OPG (what an x402 "exact" payment signs); anyone may submit it."""

    PRIMARY_TYPE: ClassVar[str] = "TransferWithAuthorization"
    FIELDS: ClassVar[list[tuple[str, str, str]]] = [
        ("from", "address", "owner"),
        ("to", "address", "to"),
        ("value", "uint256", "value"),
        ("validAfter", "uint256", "valid_after"),
        ("validBefore", "uint256", "valid_before"),
        ("nonce", "bytes32", "nonce"),
    ]

    owner: Address
    to: Address
    value: Uint256
    valid_after: Uint256
    valid_before: Uint256
    nonce: Bytes32

    def args(self) -> tuple:
        """The authorisation's arguments, before the signature, as the token functions take them."""
        return (self.owner, self.to, self.value, self.valid_after, self.valid_before, b32(self.nonce))

    def sign_vrs(self, private_key: str | bytes, domain: Domain) -> tuple[int, bytes, bytes]:
        """Sign and split into ``(v, r, s)`` for the v/r/s overloads."""
        sig = bytes.fromhex(self.sign_with(private_key, domain)[2:])
        return sig[64], sig[:32], sig[32:64]


class ReceiveWithAuthorization(TransferWithAuthorization):
    """EIP-3009 ``ReceiveWithAuthorization``: only the payee may submit it (e.g. the escrow's gasless deposit)."""

    PRIMARY_TYPE: ClassVar[str] = "ReceiveWithAuthorization"


class Registration(TypedMessage):
    """An account's proof, at ``NodeStaking.register``, that it holds the ECDSA key its evidence is checked against."""

    PRIMARY_TYPE: ClassVar[str] = "Registration"
    FIELDS: ClassVar[list[tuple[str, str, str]]] = [("account", "address", "account")]

    account: Address


class PayloadRequest(TypedMessage):
    """Off-chain only: a verifier's (or the payer's) request for a receipt's stored payload, signed over the node's
    fresh single-use ``nonce`` in the NodeStaking domain, so it proves who asks and cannot be replayed elsewhere."""

    PRIMARY_TYPE: ClassVar[str] = "PayloadRequest"
    FIELDS: ClassVar[list[tuple[str, str, str]]] = [
        ("node", "address", "node"),
        ("receiptId", "bytes32", "receipt_id"),
        ("requester", "address", "requester"),
        ("nonce", "bytes32", "nonce"),
    ]

    node: Address
    receipt_id: Bytes32
    requester: Address
    nonce: Bytes32


def compact_signature(signature: str | bytes) -> tuple[bytes, bytes]:
    """EIP-2098 ``(r, vs)`` of a canonical 65-byte ``r || s || v`` signature (what ``settle_batch`` takes)."""
    sig = bytes.fromhex(signature[2:]) if isinstance(signature, str) else bytes(signature)
    if len(sig) != 65 or sig[64] not in (27, 28):
        raise InvalidSignature("signature must be 65 bytes r || s || v with v in {27, 28}")
    s = int.from_bytes(sig[32:64], "big")
    if s > SECP256K1_HALF_N:
        raise InvalidSignature("signature s is in the upper half order (malleable)")
    return sig[:32], (s | ((sig[64] - 27) << 255)).to_bytes(32, "big")


class Claim(BaseModel):
    """One entry of ``CreditEscrow.settle_batch``: the newest voucher of a channel and the total to be paid."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    payer: Address
    node: Address
    max_cumulative: Uint256
    signature: Signature
    total: Uint256

    def as_tuple(self) -> tuple:
        """The contract's ``Claim`` struct: the voucher signature in EIP-2098 compact form ``(r, vs)``."""
        r, vs = compact_signature(self.signature)
        return (self.payer, self.node, self.max_cumulative, r, vs, self.total)


def merkle_root(leaves: list[bytes]) -> bytes:
    """Merkle root over 32-byte leaves with sorted pairs (OpenZeppelin/snekmate ``merkle_proof_verification``).

    The leaves are receipt digests, sorted first so the root does not depend on arrival order; an odd node is
    carried up unchanged. An empty list has the zero root.
    """
    if not leaves:
        return b"\x00" * 32
    level = sorted(leaves)
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            a, b = sorted((level[i], level[i + 1]))
            nxt.append(keccak(a + b))
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_proof(leaves: list[bytes], leaf: bytes) -> list[bytes]:
    """The proof of ``leaf`` against ``merkle_root(leaves)``."""
    level = sorted(leaves)
    index = level.index(leaf)
    proof: list[bytes] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            proof.append(level[sibling])
        nxt = []
        for i in range(0, len(level) - 1, 2):
            a, b = sorted((level[i], level[i + 1]))
            nxt.append(keccak(a + b))
        if len(level) % 2:
            nxt.append(level[-1])
        index //= 2
        level = nxt
    return proof


def verify_merkle_proof(root: bytes, leaf: bytes, proof: list[bytes]) -> bool:
    node = leaf
    for sibling in proof:
        a, b = sorted((node, sibling))
        node = keccak(a + b)
    return node == root
