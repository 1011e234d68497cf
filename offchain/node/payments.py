"""Payment for one request, in the two schemes: admission before the model runs, the charge after it.

``opg-credit`` (a cumulative Voucher on the escrow, settled later in batches):
  admission = local checks (x402 fields, the voucher's signature recovers to the payer or one of its session keys in
  force per ``escrow.signer_of``, it names this node, its ``maxCumulative`` covers the channel's charge + the caps in
  flight + this request's cap, the payer's unsettled exposure stays under ``max_unsettled``), the cap reserved on the
  channel, then the relayer's ``/verify`` (credits, allowances, the node's stake). The charge: ``amount =
  min(cost(tokens used), cap)``, ``cumulative += amount`` under the channel's lock, a Receipt signed with a fresh
  random ``requestId``, committed to the store with its payload and the channel's best voucher, then released; the
  outbox hands it to the relayer.
``exact`` (EIP-3009, one on-chain transfer per request, of the quote in full):
  admission = the authorisation pays exactly this request's cap to this node, is not yet used here (one request per
  authorisation), and the relayer's ``/verify`` accepts it. The charge: the relayer's ``/settle`` sends
  ``transferWithAuthorization`` and waits for it; a model failure settles nothing.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from x402.schemas import PaymentPayload, PaymentRequirements

from ..amounts import format_opg
from ..daemon.errors import ApiError
from ..inference import canonical_json, input_hash, output_hash
from ..messages import Domain, InvalidSignature, Receipt, SignedVoucher, Voucher, recover_signer
from ..types import Address, Bytes32, HexBytes, Signature, Uint256
from .chainview import ChainView
from .channels import Channel, Channels
from .relayer import RelayerClient, RelayerUnavailable
from .store import NodeStore
from .x402 import SCHEME_CREDIT, SCHEME_EXACT, Offer, PaymentRefused, Quote, decode_payment

log = logging.getLogger("opg.node.payments")




class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class VoucherFields(_Camel):
    payer: Address
    node: Address
    max_cumulative: Uint256


class CreditPayload(_Camel):
    """``paymentPayload.payload`` of opg-credit."""

    voucher: VoucherFields
    signature: Signature


class Authorization(_Camel):
    from_: Address
    to: Address
    value: Uint256
    valid_after: Uint256
    valid_before: Uint256
    nonce: Bytes32

    model_config = ConfigDict(alias_generator=lambda n: "from" if n == "from_" else to_camel(n),
                              populate_by_name=True, extra="forbid")


class ExactPayload(_Camel):
    authorization: Authorization
    signature: HexBytes


@dataclass
class Admission:
    """A request whose payment was accepted; exactly one of ``complete`` / ``release`` ends it."""

    scheme: str
    payer: str
    quote: Quote
    channel: Channel | None = None
    reservation: str | None = None
    voucher: SignedVoucher | None = None
    signer: str | None = None  # who signed the voucher: the payer or one of its session keys
    verified: dict | None = None  # the relayer's /verify extra (None: checked on-chain only)
    available: int | None = None  # escrow.available_of when checked on-chain only
    spent: int = 0
    payload: PaymentPayload | None = None
    requirement: PaymentRequirements | None = None
    exact_key: str | None = None
    done: bool = field(default=False)


@dataclass
class Served:
    """What the model did for an admitted request."""

    request: dict  # the canonical request the receipt's inputHash commits to
    text: str
    prompt_tokens: int
    output_tokens: int  # generated
    billed_output_tokens: int  # charged (fewer when the client left mid-stream)
    finish_reason: str
    model_id: str
    tokens: dict | None = None  # {promptIds, outputIds, finishReason}: committed in outputHash (offchain.inference)
    output_hash: str | None = None  # the receipt's outputHash (None: keccak of the text alone)


def receipt_json(receipt: Receipt, signature: str) -> dict[str, Any]:
    """A signed receipt with its EIP-712 (camelCase) names; big integers as decimal strings."""
    return {"requestId": receipt.request_id, "payer": receipt.payer, "node": receipt.node,
            "modelId": receipt.model_id, "inputHash": receipt.input_hash, "outputHash": receipt.output_hash,
            "amount": str(receipt.amount), "cumulative": str(receipt.cumulative), "timestamp": receipt.timestamp,
            "signature": signature}


def voucher_json(voucher: SignedVoucher) -> dict[str, Any]:
    return {"payer": voucher.payer, "node": voucher.node, "maxCumulative": str(voucher.max_cumulative),
            "signature": voucher.signature}


def _refuse_fields(payload: PaymentPayload, exc: ValidationError, payer: str | None = None) -> PaymentRefused:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first.get("loc", ()))
    what = "missing" if first.get("type") == "missing" else first.get("msg", "invalid")
    return PaymentRefused("invalid_payment", f"payload.{where}: {what} ({payload.accepted.scheme} payload)", payer)


class Payments:
    def __init__(self, *, account: LocalAccount, network: str, offer: Offer, chain: ChainView, relayer: RelayerClient,
                 store: NodeStore, channels: Channels, escrow_domain: Domain, staking_domain: Domain,
                 max_unsettled: int, require_relayer: bool, metrics: Any, on_receipt: Any = None):
        self.account, self.node, self.network = account, account.address, network
        self.offer, self.chain, self.relayer, self.store, self.channels = offer, chain, relayer, store, channels
        self.escrow_domain, self.staking_domain = escrow_domain, staking_domain
        self.max_unsettled, self.require_relayer = max_unsettled, require_relayer
        self.metrics = metrics
        self.on_receipt = on_receipt or (lambda: None)

    # Challenge ---------------------------------------------------------------------------------------------------
    def charged_for(self, payer: str | None) -> int:
        """A channel's cumulative charge plus the caps in flight (0 for an unknown payer)."""
        if not payer:
            return 0
        channel = self.channels.peek(payer)
        return channel.charged if channel is not None else 0

    def challenge(self, quote: Quote, payer: str | None, error: str, reason: str) -> dict:
        self.metrics.payment_required.inc(1, error)
        return self.offer.challenge(quote, self.charged_for(payer), error, reason)

    # Admission ---------------------------------------------------------------------------------------------------
    def admit(self, quote: Quote, header: str | None) -> Admission:
        """Blocking (chain and relayer calls). PaymentRefused -> 402; ApiError(503) if the relayer is required."""
        if header is None or not header.strip():
            raise PaymentRefused("payment_required", "this request costs at most "
                                 f"{quote.cap} wei of OPG: pay with opg-credit or exact (PAYMENT-SIGNATURE header)")
        payload = decode_payment(header)
        accepted = payload.accepted
        if accepted.scheme not in (SCHEME_CREDIT, SCHEME_EXACT):
            raise PaymentRefused("unsupported_scheme", f"this node accepts {SCHEME_CREDIT} and {SCHEME_EXACT}, "
                                 f"not {accepted.scheme!r}")
        if accepted.network != self.network:
            raise PaymentRefused("network_mismatch", f"this node is paid on {self.network}, not {accepted.network}")
        if accepted.asset.lower() != self.offer.asset.lower():
            raise PaymentRefused("asset_mismatch", f"the asset is OPG {self.offer.asset}, not {accepted.asset}")
        if accepted.pay_to.lower() != self.node.lower():
            raise PaymentRefused("recipient_mismatch", f"payTo must be this node {self.node}, not {accepted.pay_to}")
        if accepted.scheme == SCHEME_CREDIT:
            return self._admit_credit(quote, payload)
        return self._admit_exact(quote, payload)

    def _admit_credit(self, quote: Quote, payload: PaymentPayload) -> Admission:
        extra = payload.accepted.extra or {}
        for key, expected in (("escrow", self.offer.escrow), ("staking", self.offer.staking)):
            if extra.get(key) is not None and str(extra[key]).lower() != expected.lower():
                raise PaymentRefused("escrow_mismatch", f"accepted.extra.{key} {extra[key]} is not this deployment's "
                                     f"{expected}")
        try:
            p = CreditPayload.model_validate(payload.payload)
        except ValidationError as exc:
            raise _refuse_fields(payload, exc) from None
        v, payer = p.voucher, p.voucher.payer
        if v.node != self.node:
            raise PaymentRefused("recipient_mismatch", f"the voucher is for node {v.node}, not this node {self.node}",
                                 payer)
        voucher = Voucher(payer=payer, node=v.node, max_cumulative=v.max_cumulative)
        try:
            signer = recover_signer(voucher.fast_digest(self.escrow_domain), p.signature)
        except InvalidSignature as exc:
            raise PaymentRefused("invalid_signature", f"voucher signature: {exc}", payer) from None
        if signer != payer and self.chain.session_expiry(payer, signer) <= self.chain.chain_time():
            raise PaymentRefused("invalid_signature", f"the voucher is signed by {signer}, which is neither the payer "
                                 "nor a session key of it in force (or it was signed for another chain or escrow)",
                                 payer)
        signed = SignedVoucher(**voucher.model_dump(), signature=p.signature)
        channel = self.channels.get(payer)
        spent = self.chain.spent(payer)
        problem, key = self._reserve(channel, signed, quote.cap, spent)
        if problem is not None and problem[0] == "exposure_limit":
            spent = self.chain.spent(payer, fresh=True)  # settlement may have caught up
            problem, key = self._reserve(channel, signed, quote.cap, spent)
        if problem is not None:
            raise PaymentRefused(problem[0], problem[1], payer)
        adm = Admission(scheme=SCHEME_CREDIT, payer=payer, quote=quote, channel=channel, reservation=key,
                        voucher=signed, signer=signer, spent=spent)
        try:
            self._verify_credit(adm, payload, channel)
        except BaseException:
            self.release(adm)
            raise
        return adm

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
            if exposure > self.max_unsettled:
                return ("exposure_limit", f"unsettled exposure would be {exposure} wei (charged {charged} + in flight "
                        f"{in_flight} + cap {cap} - settled {spent}), above this node's limit of {self.max_unsettled}"
                        "; retry once settlement catches up"), None
            return None, channel.reserve(cap)

    def _verify_credit(self, adm: Admission, payload: PaymentPayload, channel: Channel) -> None:
        requirement = self.offer.credit(adm.quote, self.charged_for(adm.payer) - adm.quote.cap)
        body = {"x402Version": 2,
                "paymentPayload": {**payload.model_dump(mode="json", by_alias=True, exclude_none=True),
                                   "accepted": requirement.model_dump(mode="json", by_alias=True)},
                "paymentRequirements": requirement.model_dump(mode="json", by_alias=True)}
        try:
            status, answer = self.relayer.verify(body)
        except RelayerUnavailable as exc:
            if self.require_relayer:
                raise ApiError(503, "relayer_unavailable", None,
                               f"the relayer's /verify did not answer ({exc}); retry later") from None
            self._verify_on_chain(adm, channel, str(exc))
            return
        if status != 200 or not isinstance(answer, dict):
            raise PaymentRefused("invalid_payment", f"the relayer refused the payment: {answer}", adm.payer)
        if not answer.get("isValid"):
            self.metrics.verify.inc(1, SCHEME_CREDIT, str(answer.get("invalidReason")))
            raise PaymentRefused(str(answer.get("invalidReason") or "invalid_payment"),
                                 str(answer.get("invalidMessage") or "refused by the relayer's /verify"), adm.payer)
        self.metrics.verify.inc(1, SCHEME_CREDIT, "valid")
        adm.verified = answer.get("extra") or {}

    def _verify_on_chain(self, adm: Admission, channel: Channel, why: str) -> None:
        """The relayer is unreachable: check the payer's credits on the escrow alone (the exposure limit bounds the
        risk of what this cannot see: the payer's other channels)."""
        available = self.chain.available(adm.payer)
        need = channel.charged - adm.spent
        self.metrics.verify.inc(1, SCHEME_CREDIT, "on_chain_only")
        log.warning("relayer /verify unreachable (%s): checked %s's credits on-chain only", why, adm.payer)
        if available < need:
            raise PaymentRefused("insufficient_balance", f"available credits {format_opg(available)} OPG < {format_opg(need)} "
                                 "OPG this channel may charge (charged + in flight + cap - settled)", adm.payer)
        if adm.signer is not None and adm.signer != adm.payer:  # settlement charges a session voucher to its key
            allowance = self.chain.session_allowance(adm.payer, adm.signer)
            if allowance < need:
                raise PaymentRefused("allowance_exceeded", f"session key {adm.signer} has {format_opg(allowance)} OPG of "
                                     f"allowance left, below the {format_opg(need)} OPG this channel may charge unsettled",
                                     adm.payer)
        adm.available = available

    def _admit_exact(self, quote: Quote, payload: PaymentPayload) -> Admission:
        try:
            p = ExactPayload.model_validate(payload.payload)
        except ValidationError as exc:
            raise _refuse_fields(payload, exc) from None
        a = p.authorization
        if a.to != self.node:
            raise PaymentRefused("invalid_exact_evm_payload_recipient_mismatch",
                                 f"the authorization pays {a.to}, not this node {self.node}", a.from_)
        if a.value != quote.cap:
            raise PaymentRefused("invalid_exact_evm_payload_authorization_value_mismatch",
                                 f"the authorization's value {a.value} is not this request's price {quote.cap}",
                                 a.from_)
        key = f"{a.from_}:{a.nonce}".lower()
        if self.store.exact_claim(key, a.from_, a.value) is not None:
            raise PaymentRefused("invalid_exact_evm_nonce_already_used",
                                 "this authorization already paid (or is paying) another request", a.from_)
        requirement = self.offer.exact(quote)
        adm = Admission(scheme=SCHEME_EXACT, payer=a.from_, quote=quote, payload=payload, requirement=requirement,
                        exact_key=key)
        try:
            status, answer = self.relayer.verify(self._exact_body(adm))
        except RelayerUnavailable as exc:
            self.store.exact_release(key)
            raise ApiError(503, "relayer_unavailable", None,
                           f"exact payments need the relayer, which did not answer ({exc}); retry later") from None
        if status != 200 or not isinstance(answer, dict) or not answer.get("isValid"):
            self.store.exact_release(key)
            reason = answer.get("invalidReason") if isinstance(answer, dict) else None
            self.metrics.verify.inc(1, SCHEME_EXACT, str(reason or "invalid"))
            raise PaymentRefused(str(reason or "invalid_payment"),
                                 str((answer or {}).get("invalidMessage") or (answer or {}).get("reason")
                                     or "refused by the relayer's /verify"), a.from_)
        self.metrics.verify.inc(1, SCHEME_EXACT, "valid")
        return adm

    def _exact_body(self, adm: Admission) -> dict:
        assert adm.payload is not None and adm.requirement is not None
        requirement = adm.requirement.model_dump(mode="json", by_alias=True)
        return {"x402Version": 2,
                "paymentPayload": {**adm.payload.model_dump(mode="json", by_alias=True, exclude_none=True),
                                   "accepted": requirement},
                "paymentRequirements": requirement}

    # Ending ------------------------------------------------------------------------------------------------------
    def release(self, adm: Admission) -> None:
        """Nothing is charged (the model failed, or nothing was delivered)."""
        if adm.done:
            return
        adm.done = True
        if adm.scheme == SCHEME_CREDIT and adm.channel is not None and adm.reservation is not None:
            with adm.channel.lock:
                adm.channel.inflight.pop(adm.reservation, None)
        elif adm.scheme == SCHEME_EXACT and adm.exact_key is not None:
            self.store.exact_release(adm.exact_key)

    def complete(self, adm: Admission, served: Served) -> dict:
        """Charge for ``served``; returns the payment result (``x_opg_payment`` / PAYMENT-RESPONSE). Blocking."""
        if adm.done:
            raise RuntimeError("payment already ended")
        if adm.scheme == SCHEME_CREDIT:
            return self._complete_credit(adm, served)
        return self._complete_exact(adm)

    def _complete_credit(self, adm: Admission, served: Served) -> dict:
        channel, quote = adm.channel, adm.quote
        assert channel is not None and adm.voucher is not None
        cost = quote.pricing.cost(served.prompt_tokens, served.billed_output_tokens)
        with channel.lock:
            cap = channel.inflight.pop(adm.reservation, quote.cap)
            adm.done = True
            amount = min(cost, cap)
            if amount <= 0:
                return self._credit_result(adm, None, None, 0, channel.cumulative)
            cumulative = channel.cumulative + amount
            new_best = adm.voucher if adm.voucher.max_cumulative > channel.best_cap else None
            best = new_best or channel.best
            if best is None or best.max_cumulative < cumulative:  # the invariant; never expected
                raise ApiError(500, "internal_error", None, "channel invariant broken: no voucher covers the charge")
            receipt = Receipt(
                request_id="0x" + secrets.token_hex(32), payer=adm.payer, node=self.node, model_id=served.model_id,
                input_hash=input_hash(served.request), output_hash=served.output_hash or output_hash(served.text),
                amount=amount,
                cumulative=cumulative, timestamp=self.chain.now())
            signature = receipt.sign_with(self.account.key, self.staking_domain)
            rid = "0x" + receipt.fast_digest(self.staking_domain).hex()
            signed = receipt_json(receipt, signature)
            item = canonical_json({"receipt": signed, "voucher": voucher_json(best)})
            payload = {
                "receiptId": rid, "receipt": signed, "request": served.request, "output": served.text,
                "usage": {"promptTokens": served.prompt_tokens, "outputTokens": served.output_tokens,
                          "billedOutputTokens": served.billed_output_tokens},
                "finishReason": served.finish_reason, "pricing": quote.pricing.wire(), "scheme": SCHEME_CREDIT,
            }
            if served.tokens is not None:
                payload["tokens"] = served.tokens
            try:
                self.store.add_receipt(receipt_id=rid, request_id=receipt.request_id, payer=adm.payer, amount=amount,
                                       cumulative=cumulative, voucher_cap=best.max_cumulative, item=item,
                                       payload=payload, best_voucher=voucher_json(new_best) if new_best else None)
            except Exception as exc:
                log.exception("could not store receipt %s: nothing charged", rid)
                raise ApiError(500, "store_failed", None, f"the node could not store the receipt ({exc}); "
                               "nothing was charged") from None
            channel.cumulative = cumulative
            if new_best is not None:
                channel.best = new_best
        self.metrics.charged.inc(amount, SCHEME_CREDIT)
        self.metrics.receipts.inc()
        self.on_receipt()
        result = self._credit_result(adm, rid, signed, amount, cumulative)
        if served.tokens is not None:  # what the payer needs to check (and dispute) a token-committed outputHash
            from ..inference import tokens_hash

            result["tokensHash"] = tokens_hash(served.tokens)
        return result

    def _credit_result(self, adm: Admission, rid: str | None, signed: dict | None, amount: int,
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
        return {"success": True, "transaction": "", "network": self.network, "payer": adm.payer,
                "scheme": SCHEME_CREDIT, "receiptId": rid, "receipt": signed, "cost": str(amount),
                "cumulative": str(cumulative), "creditsLeft": str(max(0, left)),
                "status": "pending" if rid else "free"}

    def _complete_exact(self, adm: Admission) -> dict:
        assert adm.exact_key is not None
        adm.done = True
        amount = adm.quote.cap
        base = {"network": self.network, "payer": adm.payer, "scheme": SCHEME_EXACT, "receiptId": None,
                "receipt": None, "cost": str(amount), "amount": str(amount), "cumulative": None, "creditsLeft": None}
        try:
            status, answer = self.relayer.settle_x402(self._exact_body(adm))
        except RelayerUnavailable as exc:
            self.store.exact_update(adm.exact_key, "unknown", None, str(exc)[:300])
            return {**base, "success": False, "transaction": "", "errorReason": "relayer_unavailable",
                    "errorMessage": str(exc)[:300], "status": "failed"}
        if status == 200 and isinstance(answer, dict) and answer.get("success"):
            tx = str(answer.get("transaction") or "")
            self.store.exact_update(adm.exact_key, "settled", tx, None)
            self.metrics.charged.inc(amount, SCHEME_EXACT)
            return {**base, "success": True, "transaction": tx, "status": "settled"}
        answer = answer if isinstance(answer, dict) else {}
        reason = str(answer.get("errorReason") or answer.get("error") or "settlement_failed")
        message = str(answer.get("errorMessage") or answer.get("reason") or "")
        self.store.exact_update(adm.exact_key, "failed", answer.get("transaction") or None, f"{reason}: {message}")
        return {**base, "success": False, "transaction": str(answer.get("transaction") or ""),
                "errorReason": reason, "errorMessage": message, "status": "failed"}
