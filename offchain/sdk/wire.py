"""The one wire format of the protocol's signed messages, and the fast signature check.

JSON form (what nodes, the relayer, clients and the web app exchange): the EIP-712 field names in camelCase,
256-bit amounts as decimal strings (JSON numbers lose precision above 2**53), ``timestamp`` as a number, the
65-byte ``r || s || v`` signature as 0x-hex under ``"signature"``. Parsing accepts camelCase or snake_case names and
numbers or decimal strings (the models' validators).

:class:`SignatureChecker` recovers signers with the domain separator computed once and coincurve's secp256k1
recovery (``messages.recover_signer``) instead of generic typed-data encoding: about ten times faster than
eth-account, equal to it byte for byte (``tests/sdk/test_wire.py``).
"""

from __future__ import annotations

from typing import Any

from eth_utils import keccak
from pydantic import ConfigDict
from pydantic.alias_generators import to_camel

from ..messages import (
    Domain,
    Receipt,
    SignedReceipt,
    SignedVoucher,
    TransferWithAuthorization,
    TypedMessage,
    Voucher,
    domain_separator,
    recover_signer,
)


class WireReceipt(SignedReceipt):
    """A signed receipt read from (or written to) its camelCase JSON form."""

    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)


class WireVoucher(SignedVoucher):
    """A signed voucher read from (or written to) its camelCase JSON form."""

    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)


def receipt_json(receipt: Receipt, signature: str | None = None) -> dict[str, Any]:
    """A signed receipt's JSON form (the signature of a SignedReceipt unless ``signature`` is given)."""
    sig = signature if signature is not None else getattr(receipt, "signature", None)
    if sig is None:
        raise ValueError("a receipt's wire form needs its signature")
    return {"requestId": receipt.request_id, "payer": receipt.payer, "node": receipt.node,
            "modelId": receipt.model_id, "inputHash": receipt.input_hash, "outputHash": receipt.output_hash,
            "amount": str(receipt.amount), "cumulative": str(receipt.cumulative), "timestamp": receipt.timestamp,
            "signature": sig}


def receipt_row_json(row: Any) -> dict[str, Any]:
    """A stored receipt row (snake_case columns, e.g. a sqlite3.Row) in the wire form."""
    return {"requestId": row["request_id"], "payer": row["payer"], "node": row["node"], "modelId": row["model_id"],
            "inputHash": row["input_hash"], "outputHash": row["output_hash"], "amount": str(row["amount"]),
            "cumulative": str(row["cumulative"]), "timestamp": int(row["timestamp"]), "signature": row["signature"]}


def parse_receipt(data: Any) -> SignedReceipt:
    """A SignedReceipt from its wire form (pydantic's ValidationError, a ValueError, if malformed)."""
    return SignedReceipt(**WireReceipt.model_validate(data).model_dump(by_alias=False))


def voucher_fields_json(voucher: Voucher) -> dict[str, Any]:
    """A voucher's fields without the signature (``paymentPayload.payload.voucher`` of opg-credit)."""
    return {"payer": voucher.payer, "node": voucher.node, "maxCumulative": str(voucher.max_cumulative)}


def voucher_json(voucher: Voucher, signature: str | None = None) -> dict[str, Any]:
    """A signed voucher's JSON form (the signature of a SignedVoucher unless ``signature`` is given)."""
    sig = signature if signature is not None else getattr(voucher, "signature", None)
    if sig is None:
        raise ValueError("a voucher's wire form needs its signature")
    return {**voucher_fields_json(voucher), "signature": sig}


def parse_voucher(data: Any) -> SignedVoucher:
    """A SignedVoucher from its wire form."""
    return SignedVoucher(**WireVoucher.model_validate(data).model_dump(by_alias=False))


def authorization_json(auth: TransferWithAuthorization) -> dict[str, Any]:
    """An EIP-3009 authorisation as x402's exact scheme sends it (``paymentPayload.payload.authorization``)."""
    return {"from": auth.owner, "to": auth.to, "value": str(auth.value), "validAfter": str(auth.valid_after),
            "validBefore": str(auth.valid_before), "nonce": auth.nonce}


class SignatureChecker:
    """Signer recovery in one EIP-712 domain with its separator precomputed (hot paths: /verify, the node)."""

    def __init__(self, domain: Domain):
        self.domain = domain
        self._prefix = b"\x19\x01" + domain_separator(domain)

    def digest(self, message: TypedMessage) -> bytes:
        """``keccak(0x1901 || domainSeparator || hashStruct(message))``: equal to ``message.digest(domain)``."""
        return keccak(self._prefix + message.struct_hash())

    def signer(self, message: TypedMessage, signature: str | bytes) -> str:
        """The checksummed address that signed ``message``; ``messages.InvalidSignature`` if none (malformed,
        malleable high-s, or not recoverable)."""
        return recover_signer(self.digest(message), signature)

    def signed_by(self, message: TypedMessage, signature: str | bytes, address: str) -> bool:
        try:
            return self.signer(message, signature).lower() == address.lower()
        except ValueError:
            return False
