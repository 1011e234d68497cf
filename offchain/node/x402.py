"""x402 v2 on the chat route: the ``PAYMENT-REQUIRED`` challenge, the ``PAYMENT-SIGNATURE`` payload and the
``PAYMENT-RESPONSE`` result, in the x402 package's own models and base64-JSON header encoding (``x402.schemas``,
``x402.http``), so stock x402 clients pay ``exact`` unchanged.

Every request is offered each registered scheme's requirement (``offchain.schemes``; built in: ``opg-credit`` and
``exact``), priced by its quote ``cap = pricing.cap(prompt_tokens, max_tokens)``; :class:`Offer` holds what the
schemes' offers name (network, node, OPG, escrow, staking, OPG's EIP-712 domain) and assembles the 402.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from x402.http.constants import PAYMENT_REQUIRED_HEADER, PAYMENT_RESPONSE_HEADER, PAYMENT_SIGNATURE_HEADER
from x402.schemas import PaymentPayload, PaymentRequired, PaymentRequirements, ResourceInfo

from ..daemon.limits import json_problem
from ..inference import Pricing

__all__ = [
    "PAYMENT_REQUIRED_HEADER", "PAYMENT_RESPONSE_HEADER", "PAYMENT_SIGNATURE_HEADER", "Offer", "PaymentRefused",
    "Quote", "decode_payment", "encode_header",
]

MAX_TIMEOUT_SECONDS = 300
MAX_HEADER_CHARS = 16 * 1024  # a PaymentPayload is well under 2 KiB


class PaymentRefused(Exception):
    """A request that must be paid (again): answered 402 with a fresh challenge naming ``error`` and ``reason``.
    ``payer`` (when known) makes the challenge's ``extra.charged`` that channel's."""

    def __init__(self, error: str, reason: str, payer: str | None = None):
        super().__init__(f"{error}: {reason}")
        self.error, self.reason, self.payer = error, reason, payer


@dataclass
class Quote:
    """What one request costs at most, and what it is."""

    model: str
    prompt_tokens: int
    max_tokens: int
    cap: int
    pricing: Pricing
    url: str
    stream: bool


def encode_header(data: dict) -> str:
    """Base64 of compact JSON (x402's header encoding)."""
    return base64.b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def decode_payment(value: str) -> PaymentPayload:
    """The ``PAYMENT-SIGNATURE`` header as an x402 v2 PaymentPayload; PaymentRefused ``invalid_payment`` if it is not
    base64 JSON of one."""
    if len(value) > MAX_HEADER_CHARS:
        raise PaymentRefused("invalid_payment", f"PAYMENT-SIGNATURE is longer than {MAX_HEADER_CHARS} characters")
    try:
        raw = base64.b64decode(value.strip().encode("ascii"), validate=True)
        problem = json_problem(raw)  # nesting depth, lone surrogate escapes: refused before json recurses into it
        if problem:
            raise PaymentRefused("invalid_payment", f"PAYMENT-SIGNATURE: {problem}")
        data = json.loads(raw.decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeError, RecursionError):
        raise PaymentRefused("invalid_payment", "PAYMENT-SIGNATURE must be base64-encoded JSON of an x402 v2 "
                             "PaymentPayload") from None
    if not isinstance(data, dict):
        raise PaymentRefused("invalid_payment", "PAYMENT-SIGNATURE must encode a JSON object")
    if data.get("x402Version") != 2 or isinstance(data.get("x402Version"), bool):
        raise PaymentRefused("unsupported_x402_version",
                             f"this node speaks x402Version 2, not {str(data.get('x402Version'))[:40]!r}")
    try:
        return PaymentPayload.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "payload"
        raise PaymentRefused("invalid_payment", f"PAYMENT-SIGNATURE {where}: {first.get('msg')}") from None


class Offer:
    """What this node's offers name, and its 402 challenge."""

    def __init__(self, *, network: str, node: str, asset: str, escrow: str, staking: str, token_name: str,
                 token_version: str):
        self.network, self.node, self.asset = network, node, asset
        self.escrow, self.staking = escrow, staking
        self.token_name, self.token_version = token_name, token_version

    def challenge(self, quote: Quote, accepts: list[PaymentRequirements], error: str, reason: str) -> dict[str, Any]:
        """The 402 body (also base64-encoded as the ``PAYMENT-REQUIRED`` header): x402's PaymentRequired plus a
        human-readable ``reason`` next to the machine-readable ``error``."""
        required = PaymentRequired(
            x402_version=2, error=error,
            resource=ResourceInfo(url=quote.url, description=f"chat completion with {quote.model} (at most "
                                  f"{quote.max_tokens} output tokens)",
                                  mime_type="text/event-stream" if quote.stream else "application/json"),
            accepts=accepts)
        body = required.model_dump(mode="json", by_alias=True, exclude_none=True)
        body["reason"] = reason
        return body
