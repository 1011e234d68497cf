"""``paymentPayload.payload`` of ``exact`` on EVM: an EIP-3009 ``transferWithAuthorization`` and its signature (x402's
own exact scheme; stock x402 clients send it unchanged)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ...types import Address, Bytes32, HexBytes, Uint256
from ..registry import registry

SCHEME = "exact"


class _Camel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel,
                              serialize_by_alias=True)


class Eip3009Authorization(_Camel):
    from_: Address = Field(alias="from")
    to: Address
    value: Uint256
    valid_after: Uint256
    valid_before: Uint256
    nonce: Bytes32


class ExactPayload(_Camel):
    """``paymentPayload.payload`` of the exact scheme (EIP-3009 authorisation and its signature)."""

    authorization: Eip3009Authorization
    signature: HexBytes


registry.declare(SCHEME, ExactPayload)
