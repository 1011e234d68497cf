"""Validated primitive types shared by every pydantic model of the SDK."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from eth_utils import is_hex, to_checksum_address
from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema

UINT256_MAX = 2**256 - 1
UINT64_MAX = 2**64 - 1


def _address(value: object) -> str:
    if isinstance(value, bytes) and len(value) == 20:
        value = "0x" + value.hex()
    if not isinstance(value, str):
        raise ValueError("must be a 0x-prefixed 20-byte hex address")
    return _checksummed(value)


@lru_cache(maxsize=65_536)
def _checksummed(value: str) -> str:
    """Validate and checksum an address string (cached: hot paths see the same few addresses again and again)."""
    if not value.startswith("0x") or len(value) != 42 or not is_hex(value):
        raise ValueError("must be a 0x-prefixed 20-byte hex address")
    return to_checksum_address(value)


def _hex_bytes(length: int | None):
    def check(value: object) -> str:
        if isinstance(value, (bytes, bytearray)):
            value = "0x" + bytes(value).hex()
        if not isinstance(value, str) or not value.startswith("0x") or not is_hex(value) or len(value) % 2:
            raise ValueError("must be 0x-prefixed hex bytes")
        if length is not None and len(value) != 2 + 2 * length:
            raise ValueError(f"must be exactly {length} bytes")
        return value.lower()

    return check


def _int_from_str(value: object) -> object:
    # JSON clients often send big integers as decimal strings; accept both.
    if isinstance(value, str) and value.isascii() and value.isdigit():  # not "１２" (fullwidth digits) or "²"
        if len(value) > 78:
            raise ValueError("must be at most 78 decimal digits")
        return int(value)
    if isinstance(value, bool):
        raise ValueError("must be an integer, not a boolean")
    return value


def _bytes_to_hex(value: object) -> object:
    # Raw bytes (a nonce from os.urandom, a signature from eth-account) are accepted and kept as 0x-hex.
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return value


def _hex_schema(pattern: str, description: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "string", "pattern": pattern, "description": description})


def _uint_schema(maximum: int) -> WithJsonSchema:
    return WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 0, "maximum": maximum},
                                     {"type": "string", "pattern": f"^[0-9]{{1,{len(str(maximum))}}}$"}],
                           "description": "an unsigned integer, as a JSON number or a string of ASCII digits"})


# The JSON schemas (OpenAPI) say what the validators accept.
Address = Annotated[str, BeforeValidator(_bytes_to_hex), AfterValidator(_address),
                    _hex_schema("^0x[0-9a-fA-F]{40}$", "a 20-byte address, 0x-hex")]
Bytes32 = Annotated[str, BeforeValidator(_bytes_to_hex), AfterValidator(_hex_bytes(32)),
                    _hex_schema("^0x[0-9a-fA-F]{64}$", "32 bytes, 0x-hex")]
HexBytes = Annotated[str, BeforeValidator(_bytes_to_hex), AfterValidator(_hex_bytes(None)),
                     _hex_schema("^0x([0-9a-fA-F]{2})*$", "bytes, 0x-hex")]
Signature = Annotated[str, BeforeValidator(_bytes_to_hex), AfterValidator(_hex_bytes(65)),
                      _hex_schema("^0x[0-9a-fA-F]{130}$", "a 65-byte secp256k1 signature (r, s, v), 0x-hex")]
Uint256 = Annotated[int, BeforeValidator(_int_from_str), Field(ge=0, le=UINT256_MAX), _uint_schema(UINT256_MAX)]
Uint64 = Annotated[int, BeforeValidator(_int_from_str), Field(ge=0, le=UINT64_MAX), _uint_schema(UINT64_MAX)]


def b32(value: str) -> bytes:
    """A Bytes32 hex string as raw bytes."""
    return bytes.fromhex(value[2:])
