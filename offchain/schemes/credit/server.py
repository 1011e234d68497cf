"""The node's side of ``opg-credit``: the offer, the admission before the model runs, the charge after it.

Offer: ``extra`` tells the payer what to sign (``maxCumulative = charged + cap``, where ``charged`` is the channel's
cumulative charge plus the caps of its requests in flight), with the escrow, staking, pricing and the request's token
counts.
Admission: local checks (the voucher's signature recovers to the payer or one of its session keys in force per
``escrow.signer_of``, it names this node, its ``maxCumulative`` covers the channel's charge + the caps in flight + this
request's cap, the payer's unsettled exposure stays under ``max_unsettled``), the cap reserved on the channel, then
the relayer's ``/verify`` (credits, allowances, the node's stake). A request skips the wait for ``/verify`` (which then
runs while the model does and is joined before anything is charged or streamed: ``confirm``, a refusal is still a 402
and charges nothing) only if the relayer accepted its payer within the last ``TRUST_SECONDS``, that answer's credits
(balance - outstanding, less what this channel charged since) cover the voucher's ``maxCumulative`` (so every cap in
flight on the channel), and fewer than ``SPECULATIVE_MAX`` requests of the payer are already waiting on the relayer
this way; any other request is verified before the model runs, so vouchers without credits behind them cannot make
the node generate (one paid answer buys at most ``SPECULATIVE_MAX`` unpaid generations before the refusal).
Charge: ``amount = min(cost(tokens used), cap)``, ``cumulative += amount`` under the channel's lock, a Receipt signed
with a fresh random ``requestId``, committed to the store with its payload and the channel's best voucher, then
released; the outbox hands it to the relayer.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from x402.schemas import PaymentPayload, PaymentRequirements

from ...amounts import format_opg
from ...daemon.errors import ApiError
from ...inference import canonical_json, input_hash, output_hash, tokens_hash
from ...messages import InvalidSignature, Receipt, SignedVoucher
from ...node.channels import Channel
from ...node.payments import Admission, SchemeServer, Served
from ...node.x402 import PaymentRefused, Quote
from ...sdk.relayer_client import RelayerUnavailable
from ...sdk.wire import SignatureChecker, receipt_json, voucher_json
from ..registry import registry
from .payload import SCHEME, CreditPayload

log = logging.getLogger("opg.node.payments")
TRUST_SECONDS = 30.0  # a payer the relayer accepted this recently may be verified while its model runs
SPECULATIVE_MAX = 2  # requests of one payer (any signer) whose /verify runs with the model at once


@dataclass
class _Trust:
    """The relayer's last acceptance of a payer's voucher (its /verify ``extra``)."""

    until: float  # monotonic time until which a request may skip the wait
    balance: int  # the payer's credits
    outstanding: int  # charged but unsettled over all its channels
    known: int  # what this channel had charged as far as the relayer knew

    def covers(self, max_cumulative: int) -> bool:
        """The relayer would accept ``max_cumulative`` on this channel as far as its answer tells (it also counts
        other channels' caps, so this is necessary, not sufficient)."""
        return max_cumulative - self.known <= self.balance - self.outstanding


@dataclass
class CreditAdmission(Admission):
    channel: Channel | None = None
    reservation: str | None = None
    voucher: SignedVoucher | None = None
    signer: str | None = None  # who signed the voucher: the payer or one of its session keys
    verified: dict | None = None  # the relayer's /verify extra (None: checked on-chain only)
    available: int | None = None  # escrow.available_of when checked on-chain only
    spent: int = 0


@registry.server
class CreditServer(SchemeServer):
    scheme = SCHEME

    def __init__(self, ctx):
        super().__init__(ctx)
        self._trusted: dict[str, _Trust] = {}  # payer -> its last acceptance by the relayer
        self._speculating: dict[str, int] = {}  # payer -> requests admitted before the relayer answered, unanswered
        self._trusted_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="credit-verify")
        self._vouchers = SignatureChecker(ctx.escrow_domain)
        self._receipts = SignatureChecker(ctx.staking_domain)

    def enhance_payment_requirements(self, requirements: PaymentRequirements, supported_kind: object,
                                     extensions: list[str]) -> PaymentRequirements:
        offer = self.ctx.offer
        requirements.extra = {"escrow": offer.escrow, "staking": offer.staking, **(requirements.extra or {})}
        return requirements

    def requirement(self, quote: Quote, charged: int) -> PaymentRequirements:
        return self.enhance_payment_requirements(self.base_requirement(quote, {
            "charged": str(charged), "maxCumulative": str(charged + quote.cap), "priceCap": str(quote.cap),
            "pricing": quote.pricing.wire(),
            "requestTokens": {"prompt": quote.prompt_tokens, "maxTokens": quote.max_tokens},
            "model": quote.model,
        }), None, [])

    # Admission ---------------------------------------------------------------------------------------------------
    def admit(self, quote: Quote, payload: PaymentPayload) -> CreditAdmission:
        ctx = self.ctx
        extra = payload.accepted.extra or {}
        for key, expected in (("escrow", ctx.offer.escrow), ("staking", ctx.offer.staking)):
            if extra.get(key) is not None and str(extra[key]).lower() != expected.lower():
                raise PaymentRefused("escrow_mismatch", f"accepted.extra.{key} {extra[key]} is not this deployment's "
                                     f"{expected}")
        p: CreditPayload = self.parse(payload)
        v, payer = p.voucher, p.voucher.payer
        if v.node != ctx.node:
            raise PaymentRefused("recipient_mismatch", f"the voucher is for node {v.node}, not this node {ctx.node}",
                                 payer)
        signed = p.signed_voucher()
        try:
            signer = self._vouchers.signer(signed.voucher, p.signature)
        except InvalidSignature as exc:
            raise PaymentRefused("invalid_signature", f"voucher signature: {exc}", payer) from None
        if signer != payer and ctx.chain.session_expiry(payer, signer) <= ctx.chain.chain_time():
            raise PaymentRefused("invalid_signature", f"the voucher is signed by {signer}, which is neither the payer "
                                 "nor a session key of it in force (or it was signed for another chain or escrow)",
                                 payer)
        channel = ctx.channels.get(payer)
        spent = ctx.chain.spent(payer)
        problem, key = self._reserve(channel, signed, quote.cap, spent)
        if problem is not None and problem[0] == "exposure_limit":
            spent = ctx.chain.spent(payer, fresh=True)  # settlement may have caught up
            problem, key = self._reserve(channel, signed, quote.cap, spent)
        if problem is not None:
            raise PaymentRefused(problem[0], problem[1], payer)
        adm = CreditAdmission(scheme=SCHEME, payer=payer, quote=quote, channel=channel, reservation=key,
                              voucher=signed, signer=signer, spent=spent)
        body = self.relayer_body(payload, self.requirement(quote, channel.charged - quote.cap))
        if self._speculate(adm):
            adm.pending = self._pool.submit(self._verify, adm, body, channel)
            adm.pending.add_done_callback(lambda _f: self._answered(payer))
            return adm
        try:
            self._verify(adm, body, channel)
        except BaseException:
            self.release(adm)
            raise
        return adm

    def _speculate(self, adm: CreditAdmission) -> bool:
        """May ``adm`` run its model before the relayer answers (then counted until it does)?"""
        assert adm.voucher is not None
        with self._trusted_lock:
            trust = self._trusted.get(adm.payer)
            if trust is None or trust.until <= time.monotonic() or not trust.covers(adm.voucher.max_cumulative):
                return False
            if self._speculating.get(adm.payer, 0) >= SPECULATIVE_MAX:
                return False
            self._speculating[adm.payer] = self._speculating.get(adm.payer, 0) + 1
            return True

    def _answered(self, payer: str) -> None:
        with self._trusted_lock:
            left = self._speculating.get(payer, 0) - 1
            if left > 0:
                self._speculating[payer] = left
            else:
                self._speculating.pop(payer, None)

    def confirm(self, adm: Admission) -> None:
        """Blocking: the relayer's verdict on a payment verified while the model ran (PaymentRefused, ApiError)."""
        assert isinstance(adm, CreditAdmission)
        pending, adm.pending = adm.pending, None
        if pending is not None:
            pending.result()

    def _reserve(self, channel: Channel, voucher: SignedVoucher, cap: int,
                 spent: int) -> tuple[tuple[str, str] | None, str | None]:
        with channel.lock:
            charged, in_flight = channel.cumulative, channel.in_flight
            need = charged + in_flight + cap
            if voucher.max_cumulative < need:
                if voucher.max_cumulative <= charged:
                    return ("stale_voucher", f"maxCumulative {voucher.max_cumulative} does not exceed what this "
                            f"channel already charged ({charged}): an old voucher; sign maxCumulative {need}"), None
                return ("cap_exceeded", f"maxCumulative {voucher.max_cumulative} < charged {charged} + in flight "
                        f"{in_flight} + this request's cap {cap}: sign maxCumulative {need}"), None
            exposure = need - spent
            if exposure > self.ctx.max_unsettled:
                return ("exposure_limit", f"unsettled exposure would be {exposure} wei (charged {charged} + in flight "
                        f"{in_flight} + cap {cap} - settled {spent}), above this node's limit of "
                        f"{self.ctx.max_unsettled}; retry once settlement catches up"), None
            return None, channel.reserve(cap)

    def _verify(self, adm: CreditAdmission, body: dict, channel: Channel) -> None:
        ctx = self.ctx
        try:
            status, answer = ctx.relayer.verify(body)
        except RelayerUnavailable as exc:
            if ctx.require_relayer:
                raise ApiError(503, "relayer_unavailable", None,
                               f"the relayer's /verify did not answer ({exc}); retry later") from None
            self._verify_on_chain(adm, channel, str(exc))
            return
        if status != 200 or not isinstance(answer, dict):
            raise PaymentRefused("invalid_payment", f"the relayer refused the payment: {answer}", adm.payer)
        if not answer.get("isValid"):
            ctx.metrics.verify.inc(1, SCHEME, str(answer.get("invalidReason")))
            with self._trusted_lock:
                self._trusted.pop(adm.payer, None)
            raise PaymentRefused(str(answer.get("invalidReason") or "invalid_payment"),
                                 str(answer.get("invalidMessage") or "refused by the relayer's /verify"), adm.payer)
        ctx.metrics.verify.inc(1, SCHEME, "valid")
        adm.verified = extra = answer.get("extra") or {}
        try:
            trust = _Trust(time.monotonic() + TRUST_SECONDS, int(extra["balance"]), int(extra["outstanding"]),
                           int(extra["charged"]))
        except (KeyError, TypeError, ValueError):
            return  # an answer without its credits: no request skips the wait on it
        with self._trusted_lock:
            if len(self._trusted) > 4096:
                now = time.monotonic()
                self._trusted = {p: t for p, t in self._trusted.items() if t.until > now}
            self._trusted[adm.payer] = trust

    def _verify_on_chain(self, adm: CreditAdmission, channel: Channel, why: str) -> None:
        """The relayer is unreachable: check the payer's credits on the escrow alone (the exposure limit bounds the
        risk of what this cannot see: the payer's other channels)."""
        chain = self.ctx.chain
        available = chain.available(adm.payer)
        need = channel.charged - adm.spent
        self.ctx.metrics.verify.inc(1, SCHEME, "on_chain_only")
        log.warning("relayer /verify unreachable (%s): checked %s's credits on-chain only", why, adm.payer)
        if available < need:
            raise PaymentRefused("insufficient_balance", f"available credits {format_opg(available)} OPG < "
                                 f"{format_opg(need)} OPG this channel may charge (charged + in flight + cap - "
                                 "settled)", adm.payer)
        if adm.signer is not None and adm.signer != adm.payer:  # settlement charges a session voucher to its key
            allowance = chain.session_allowance(adm.payer, adm.signer)
            if allowance < need:
                raise PaymentRefused("allowance_exceeded", f"session key {adm.signer} has {format_opg(allowance)} "
                                     f"OPG of allowance left, below the {format_opg(need)} OPG this channel may "
                                     "charge unsettled", adm.payer)
        adm.available = available

    # Ending ------------------------------------------------------------------------------------------------------
    def release(self, adm: Admission) -> None:
        assert isinstance(adm, CreditAdmission)
        adm.done = True
        if adm.channel is not None and adm.reservation is not None:
            with adm.channel.lock:
                adm.channel.inflight.pop(adm.reservation, None)

    def complete(self, adm: Admission, served: Served | None) -> dict:
        assert isinstance(adm, CreditAdmission) and served is not None
        self.confirm(adm)  # nothing is charged before the relayer accepted the payment
        ctx = self.ctx
        channel, quote = adm.channel, adm.quote
        assert channel is not None and adm.voucher is not None
        cost = quote.pricing.cost(served.prompt_tokens, served.billed_output_tokens)
        with channel.lock:
            cap = channel.inflight.pop(adm.reservation, quote.cap)
            adm.done = True
            amount = min(cost, cap)
            if amount <= 0:
                return self._result(adm, None, None, 0, channel.cumulative)
            cumulative = channel.cumulative + amount
            new_best = adm.voucher if adm.voucher.max_cumulative > channel.best_cap else None
            best = new_best or channel.best
            if best is None or best.max_cumulative < cumulative:  # the invariant; never expected
                raise ApiError(500, "internal_error", None, "channel invariant broken: no voucher covers the charge")
            receipt = Receipt(
                request_id="0x" + secrets.token_hex(32), payer=adm.payer, node=ctx.node, model_id=served.model_id,
                input_hash=input_hash(served.request), output_hash=served.output_hash or output_hash(served.text),
                amount=amount, cumulative=cumulative, timestamp=ctx.chain.now())
            signature = receipt.sign_with(ctx.account.key, ctx.staking_domain)
            rid = "0x" + self._receipts.digest(receipt).hex()
            signed = receipt_json(receipt, signature)
            item = canonical_json({"receipt": signed, "voucher": voucher_json(best)})
            payload = {
                "receiptId": rid, "receipt": signed, "request": served.request, "output": served.text,
                "usage": {"promptTokens": served.prompt_tokens, "outputTokens": served.output_tokens,
                          "billedOutputTokens": served.billed_output_tokens},
                "finishReason": served.finish_reason, "pricing": quote.pricing.wire(), "scheme": SCHEME,
            }
            if served.tokens is not None:
                payload["tokens"] = served.tokens
            try:
                ctx.store.add_receipt(receipt_id=rid, request_id=receipt.request_id, payer=adm.payer, amount=amount,
                                      cumulative=cumulative, voucher_cap=best.max_cumulative, item=item,
                                      payload=payload, best_voucher=voucher_json(new_best) if new_best else None)
            except Exception as exc:
                log.exception("could not store receipt %s: nothing charged", rid)
                raise ApiError(500, "store_failed", None, f"the node could not store the receipt ({exc}); "
                               "nothing was charged") from None
            channel.cumulative = cumulative
            if new_best is not None:
                channel.best = new_best
        ctx.metrics.charged.inc(amount, SCHEME)
        ctx.metrics.receipts.inc()
        ctx.on_receipt(rid)
        result = self._result(adm, rid, signed, amount, cumulative)
        if served.tokens is not None:  # what the payer needs to check (and dispute) a token-committed outputHash
            result["tokensHash"] = tokens_hash(served.tokens)
        return result

    def _result(self, adm: CreditAdmission, rid: str | None, signed: dict | None, amount: int,
                cumulative: int) -> dict:
        if adm.verified is not None:
            v = adm.verified
            try:
                balance, outstanding, known = int(v.get("balance", 0)), int(v.get("outstanding", 0)), \
                    int(v.get("charged", 0))
                left = balance - outstanding - max(0, cumulative - known)
            except (TypeError, ValueError):
                left = 0
        else:
            left = (adm.available or 0) - (cumulative - adm.spent)
        return {"success": True, "transaction": "", "network": self.ctx.network, "payer": adm.payer,
                "scheme": SCHEME, "receiptId": rid, "receipt": signed, "cost": str(amount),
                "cumulative": str(cumulative), "creditsLeft": str(max(0, left)),
                "status": "pending" if rid else "free"}
