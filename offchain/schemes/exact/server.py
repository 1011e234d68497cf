"""The node's side of ``exact`` (EIP-3009, one on-chain transfer per request, of the quote in full).

Offer: ``extra`` is OPG's EIP-712 domain name and version, which x402's EVM exact client signs with.
Admission: the authorisation pays exactly this request's cap to this node, is not yet used here (one request per
authorisation), and the relayer's ``/verify`` accepts it.
Charge: the relayer's ``/settle`` sends ``transferWithAuthorization`` and waits for it; a model failure settles
nothing. Streams are settled before their first piece leaves (``upfront``): text already streamed cannot be withheld
if the transfer then fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from x402.schemas import PaymentPayload, PaymentRequirements

from ...daemon.errors import ApiError
from ...node.payments import Admission, SchemeServer, Served
from ...node.x402 import PaymentRefused, Quote
from ...sdk.relayer_client import RelayerUnavailable
from ..registry import registry
from .payload import SCHEME, ExactPayload


@dataclass
class ExactAdmission(Admission):
    payload: PaymentPayload | None = None
    requirement: PaymentRequirements | None = None
    exact_key: str | None = None


@registry.server
class ExactServer(SchemeServer):
    scheme = SCHEME
    upfront = True

    def enhance_payment_requirements(self, requirements: PaymentRequirements, supported_kind: object,
                                     extensions: list[str]) -> PaymentRequirements:
        offer = self.ctx.offer
        requirements.extra = {"name": offer.token_name, "version": offer.token_version, **(requirements.extra or {})}
        return requirements

    def requirement(self, quote: Quote, charged: int) -> PaymentRequirements:
        return self.enhance_payment_requirements(self.base_requirement(quote, {}), None, [])

    def admit(self, quote: Quote, payload: PaymentPayload) -> ExactAdmission:
        ctx = self.ctx
        p: ExactPayload = self.parse(payload)
        a = p.authorization
        if a.to != ctx.node:
            raise PaymentRefused("invalid_exact_evm_payload_recipient_mismatch",
                                 f"the authorization pays {a.to}, not this node {ctx.node}", a.from_)
        if a.value != quote.cap:
            raise PaymentRefused("invalid_exact_evm_payload_authorization_value_mismatch",
                                 f"the authorization's value {a.value} is not this request's price {quote.cap}",
                                 a.from_)
        key = f"{a.from_}:{a.nonce}".lower()
        if ctx.store.exact_claim(key, a.from_, a.value) is not None:
            raise PaymentRefused("invalid_exact_evm_nonce_already_used",
                                 "this authorization already paid (or is paying) another request", a.from_)
        adm = ExactAdmission(scheme=SCHEME, payer=a.from_, quote=quote, upfront=True, payload=payload,
                             requirement=self.requirement(quote, 0), exact_key=key)
        try:
            status, answer = ctx.relayer.verify(self._body(adm))
        except RelayerUnavailable as exc:
            ctx.store.exact_release(key)
            raise ApiError(503, "relayer_unavailable", None,
                           f"exact payments need the relayer, which did not answer ({exc}); retry later") from None
        if status != 200 or not isinstance(answer, dict) or not answer.get("isValid"):
            ctx.store.exact_release(key)
            reason = answer.get("invalidReason") if isinstance(answer, dict) else None
            ctx.metrics.verify.inc(1, SCHEME, str(reason or "invalid"))
            raise PaymentRefused(str(reason or "invalid_payment"),
                                 str((answer or {}).get("invalidMessage") or (answer or {}).get("reason")
                                     or "refused by the relayer's /verify"), a.from_)
        ctx.metrics.verify.inc(1, SCHEME, "valid")
        return adm

    def _body(self, adm: ExactAdmission) -> dict:
        assert adm.payload is not None and adm.requirement is not None
        return self.relayer_body(adm.payload, adm.requirement)

    def release(self, adm: Admission) -> None:
        assert isinstance(adm, ExactAdmission)
        adm.done = True
        if adm.exact_key is not None:
            self.ctx.store.exact_release(adm.exact_key)

    def complete(self, adm: Admission, served: Served | None) -> dict:
        assert isinstance(adm, ExactAdmission) and adm.exact_key is not None
        ctx = self.ctx
        adm.done = True
        amount = adm.quote.cap
        base = {"network": ctx.network, "payer": adm.payer, "scheme": SCHEME, "receiptId": None,
                "receipt": None, "cost": str(amount), "amount": str(amount), "cumulative": None, "creditsLeft": None}
        try:
            status, answer = ctx.relayer.settle(self._body(adm))
        except RelayerUnavailable as exc:
            ctx.store.exact_update(adm.exact_key, "unknown", None, str(exc)[:300])
            return {**base, "success": False, "transaction": "", "errorReason": "relayer_unavailable",
                    "errorMessage": str(exc)[:300], "status": "failed"}
        if status == 200 and isinstance(answer, dict) and answer.get("success"):
            tx = str(answer.get("transaction") or "")
            ctx.on_exact_settled(adm.exact_key)
            ctx.store.exact_update(adm.exact_key, "settled", tx, None)
            ctx.metrics.charged.inc(amount, SCHEME)
            return {**base, "success": True, "transaction": tx, "status": "settled"}
        answer = answer if isinstance(answer, dict) else {}
        reason = str(answer.get("errorReason") or answer.get("error") or "settlement_failed")
        message = str(answer.get("errorMessage") or answer.get("reason") or "")
        ctx.store.exact_update(adm.exact_key, "failed", answer.get("transaction") or None, f"{reason}: {message}")
        return {**base, "success": False, "transaction": str(answer.get("transaction") or ""),
                "errorReason": reason, "errorMessage": message, "status": "failed"}
