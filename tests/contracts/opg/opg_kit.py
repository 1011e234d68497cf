"""Plain helpers of the OPG token tests: EIP-712 typed data and signatures built with eth-account, independently of the contract."""

from __future__ import annotations

import os
from dataclasses import dataclass

from eth_abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak

OPG = 10**18


ZERO = "0x0000000000000000000000000000000000000000"


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


TRANSFER_WITH_AUTHORIZATION_BYTES_SIG = (
    "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
)


BYTES_OVERLOAD_TYPES = ["address", "address", "uint256", "uint256", "uint256", "bytes32", "bytes"]


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
