"""The payer's side of ``exact``: an EIP-3009 ``transferWithAuthorization`` of the quote to the node, signed with the
payer's own key (a session key holds no OPG). Nothing is held in flight: the authorisation pays this request only."""

from __future__ import annotations

import secrets
import time

from ...client.payer import Payer, PaymentOutcome, PaymentRefused, Reservation
from ...messages import TransferWithAuthorization
from ...sdk.wire import authorization_json
from ..registry import registry
from .payload import SCHEME


@registry.client
class ExactClient:
    """``exact`` for a :class:`~offchain.client.payer.Payer` (offered only when the caller allows it)."""

    scheme = SCHEME
    default = False  # chosen only with allow_exact (one transaction per request)
    holds_channel = False  # no channel state: nothing in flight to release or remember

    def __init__(self, payer: Payer):
        self.payer = payer

    def fits(self, accept: dict) -> bool:
        p = self.payer
        return p._owner_key is not None and accept.get("network") == p.network \
            and str(accept.get("asset", "")).lower() == p.token.lower()

    def prepare(self, req: dict, resource: dict | None, window: tuple[float, float] | None = None,
                retry_of: Reservation | None = None) -> Reservation:
        p = self.payer
        owner_key = p._owner_key
        if owner_key is None:
            raise PaymentRefused("exact payments need the payer's own key (a session key holds no OPG)",
                                 "exact_needs_owner_key")
        node, quote = p.check_requirement(req)
        extra = req.get("extra") or {}
        if extra.get("name", p.token_domain.name) != p.token_domain.name or \
                str(extra.get("version", "1")) != p.token_domain.version:
            raise PaymentRefused(f"the requirement's EIP-712 domain {extra.get('name')!r} {extra.get('version')!r} "
                                 "is not OPG's", "wrong_token_domain")
        now = p.now()
        auth = TransferWithAuthorization(owner=p.address, to=node, value=quote, valid_after=0,
                                         valid_before=now + int(req.get("maxTimeoutSeconds") or 300),
                                         nonce="0x" + secrets.token_hex(32))
        signature = auth.sign_with(owner_key, p.token_domain)
        payload = {"x402Version": 2, "accepted": req, "payload": {
            "authorization": authorization_json(auth),
            "signature": signature}}
        if resource:
            payload["resource"] = resource
        max_tokens = (extra.get("requestTokens") or {}).get("maxTokens")
        return Reservation(token=secrets.token_hex(8), scheme=SCHEME, node=node, cap=quote,
                           max_cumulative=quote, requirement=req, payload=payload, reserved_at=time.time(),
                           effective_max_tokens=int(max_tokens) if max_tokens is not None else None)

    def without_receipt(self, res: Reservation, payment: dict, outcome: PaymentOutcome) -> bool:
        """A payment response without a receipt is exact's normal answer: ok when the transfer was reported."""
        outcome.ok = bool(payment.get("success"))
        outcome.cost = outcome.cost if outcome.cost is not None else res.cap
        return True

    def conclude(self, res: Reservation, receipt: object, problem: str | None, outcome: PaymentOutcome,
                 payment: dict) -> tuple[bool, str | None]:
        return problem is None and bool(payment.get("success", True)), problem
