"""The payer's side of ``opg-credit``: the voucher a 402 asks for, and the channel view a receipt updates; also the
x402 ``SchemeNetworkClient`` for stock x402 clients (``x402`` package, v2 protocol).

Signing: ``maxCumulative = max(extra.charged, local charged) + caps of this payer's requests in flight + this cap``;
an ``extra.charged`` above what this client can explain is checked against the relayer's channel view first
(``ChannelConflict`` if still unexplained). See :mod:`offchain.client.payer` for the receipt checks.

With stock x402 clients::

    from x402 import x402Client                      # or x402ClientSync for the requests adapter
    from x402.http.clients import x402HttpxClient
    from offchain.client import OpgCreditClient, Payer

    payer = Payer.from_key(key, "deployments/31337.json", relayer_url=relayer)
    client = x402Client()
    client.register("eip155:31337", OpgCreditClient(payer))
    client.set_spend_controls({"allowed_assets": [{"network": "eip155:31337", "asset": OPG_ADDRESS}]})
    async with x402HttpxClient(client) as http:
        await http.post(node + "/v1/chat/completions", json={...})

``create_payment_payload`` is synchronous (x402 calls scheme clients synchronously from both its async and sync
clients) and signs through the same :class:`~offchain.client.payer.Payer` (and state directory) the paying
transports use. The scheme also hooks x402's ``on_payment_response``: a corrective 402 from the node (voucher
under-capped because a stock client does not send ``X-OPG-Payer``, so the first quote says ``charged: 0``) frees the
cap and asks the transport for one fresh payload, which then uses the node's corrected ``extra.charged`` within the
bounds the Payer enforces. x402's ``SettleResponse`` drops the receipt fields, so with stock clients the receipt is
not checked automatically: call :meth:`OpgCreditClient.check` with the response's ``PAYMENT-RESPONSE`` header (or
its ``x_opg_payment`` body) to check and store it; until then the request's cap counts as charged-but-unreceipted.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from typing import Any

from ...client.payer import (
    ChannelConflict,
    Overcharged,
    Payer,
    PaymentOutcome,
    PaymentRefused,
    Reservation,
    decode_b64_json,
)
from ...client.state import InFlight
from ...messages import SignedReceipt, Voucher
from ...sdk.wire import voucher_fields_json
from ..registry import registry
from .payload import SCHEME

log = logging.getLogger("opg.client")
RESOLVE_MARGIN = 30.0  # s: an unreceipted request that ended this long before a later request is in its cumulative


@registry.client
class OpgCreditClient:
    """``opg-credit`` for a :class:`~offchain.client.payer.Payer`, and x402's ``SchemeNetworkClient`` for it."""

    scheme = SCHEME
    default = True  # chosen unless the caller names its schemes
    holds_channel = True  # a cap in flight per request, released, remembered or charged when it ends
    # a remembered quote of the same request may be paid with the first attempt: the voucher is signed against the
    # local channel view, and the node's 402 (cap_exceeded, new prices) is a cache miss the transport pays afresh
    reuse_quote = True

    def __init__(self, payer: Payer):
        self.payer = payer
        self._open: dict[tuple[str, str], Reservation] = {}  # (node, maxCumulative) -> reservation
        self._served: dict[str, list[Reservation]] = {}  # node -> answered requests whose receipt was not checked
        self._hints: dict[str, int] = {}  # node -> extra.charged of its last corrective 402
        self._lock = threading.Lock()
        self.scheme_hooks = {"on_payment_response": self._on_payment_response}
        self.last_outcome: PaymentOutcome | None = None

    # Payer side -------------------------------------------------------------------------------------------------
    def fits(self, accept: dict) -> bool:
        p = self.payer
        return accept.get("network") == p.network \
            and str((accept.get("extra") or {}).get("escrow", p.escrow)).lower() == p.escrow.lower()

    def prepare(self, req: dict, resource: dict | None, window: tuple[float, float] | None = None,
                retry_of: Reservation | None = None) -> Reservation:
        """Sign the voucher ``req`` asks for and hold its cap in flight (see :meth:`Payer.prepare`)."""
        p = self.payer
        node, quote = p.check_requirement(req)
        extra = req.get("extra") or {}
        if extra.get("staking") and str(extra["staking"]).lower() != p.staking.lower():
            raise PaymentRefused(f"the node names staking contract {extra['staking']}, not this deployment's "
                                 f"{p.staking}", "wrong_deployment")
        try:
            claimed = int(extra.get("charged") or 0)
        except (TypeError, ValueError):
            raise PaymentRefused("malformed extra.charged", "invalid_requirement") from None
        max_tokens = (extra.get("requestTokens") or {}).get("maxTokens")
        token = secrets.token_hex(8)
        now = time.time()
        # not fsynced (off the request path): lost in a power cut, the signed cap is restored by the node's
        # corrective 402 (its extra.charged, checked against the relayer's channel view before signing more)
        with p.channel(node, durable=False) as (st, existed):
            if not existed:
                p.sync_from_relayer(st)
            if st.blocked:
                raise Overcharged(p.blocked_message(st))
            st.expire_inflight(now)
            others = st.in_flight_caps()
            # caps of requests in flight on the node when it quoted, ended here since (their receipts checked)
            since = st.recent_slack(*window, exclude=retry_of.token if retry_of else None) if window else 0
            if claimed > st.charged + others + st.unreceipted_total + since:
                p.sync_from_relayer(st)
                if claimed > st.charged + others + st.unreceipted_total + since:
                    raise ChannelConflict(
                        f"node {node} says the channel was charged {claimed} wei, but this client knows of "
                        f"{st.charged} wei charged plus {others + st.unreceipted_total} wei of requests without a "
                        + (f"receipt and {since} wei of caps of requests that ended while the node quoted "
                           if since else "receipt ")
                        + "(and the relayer of no more): refusing to sign a higher cap on the node's word; "
                        "retry in a moment if another device of yours is using this node")
            max_cumulative = max(claimed, st.charged) + others + quote
            voucher = Voucher(payer=p.address, node=node, max_cumulative=max_cumulative)
            signature = voucher.sign_with(p._signer_key, p.escrow_domain)
            deadline = now + max(float(req.get("maxTimeoutSeconds") or p.timeout), 1.0)
            st.inflight[token] = InFlight(cap=quote, max_cumulative=max_cumulative, pid=os.getpid(),
                                          deadline=deadline, started=now)
            st.max_signed = max(st.max_signed, max_cumulative)
        payload = {"x402Version": 2, "accepted": req, "payload": {
            "voucher": voucher_fields_json(voucher),
            "signature": signature}}
        if resource:
            payload["resource"] = resource
        return Reservation(token=token, scheme=SCHEME, node=node, cap=quote, max_cumulative=max_cumulative,
                           requirement=req, payload=payload, reserved_at=now,
                           effective_max_tokens=int(max_tokens) if max_tokens is not None else None)

    # x402 SchemeNetworkClient -----------------------------------------------------------------------------------
    def create_payment_payload(self, requirements: Any) -> dict[str, Any]:
        """The inner payload ``{voucher: {payer, node, maxCumulative}, signature}`` for ``requirements``
        (x402 ``PaymentRequirements`` or its JSON). Raises PaymentRefused if this client will not pay."""
        req = _as_json(requirements)
        node = str(req.get("payTo", "")).lower()
        with self._lock:
            hint = self._hints.pop(node, None)
        if hint is not None:  # a corrective 402 told us the channel's charge (stock clients send no X-OPG-Payer)
            extra = dict(req.get("extra") or {})
            extra["charged"] = str(max(hint, int(extra.get("charged") or 0)))
            req = {**req, "extra": extra}
        res = self.payer.prepare(req)
        voucher = res.payload["payload"]["voucher"]
        with self._lock:
            self._open[(voucher["node"].lower(), voucher["maxCumulative"])] = res
        return res.payload["payload"]

    def find_default_asset(self, asset: str, network: str) -> dict | None:
        """No default asset: x402's spend controls admit OPG only when you allow-list it (``allowed_assets``)."""
        return None

    # x402 on_payment_response hook ------------------------------------------------------------------------------
    def _on_payment_response(self, ctx: Any) -> Any:
        res = self._pop(ctx.payment_payload)
        if res is None:
            return None
        settle = ctx.settle_response
        if settle is not None and getattr(settle, "success", False):
            # paid and answered; the receipt itself is not visible here (see the module doc)
            self.payer.abandon(res)
            with self._lock:
                served = self._served.setdefault(res.node.lower(), [])
                served.append(res)
                del served[:-64]
            return None
        self.payer.rejected(res)
        credit = [a for a in (ctx.payment_required.accepts if ctx.payment_required is not None else [])
                  if getattr(a, "scheme", None) == SCHEME and str(a.pay_to).lower() == res.node.lower()]
        if credit:
            try:
                charged = int((credit[0].extra or {}).get("charged") or 0)
            except (TypeError, ValueError):
                charged = 0
            with self._lock:
                self._hints[res.node.lower()] = charged
            try:
                from x402.schemas import RecoveredResponseResult
            except ImportError:  # pragma: no cover - older x402
                return None
            return RecoveredResponseResult()
        return None

    def _pop(self, payment_payload: Any) -> Reservation | None:
        payload = getattr(payment_payload, "payload", None) or {}
        voucher = payload.get("voucher") if isinstance(payload, dict) else None
        if not isinstance(voucher, dict):
            return None
        with self._lock:
            return self._open.pop((str(voucher.get("node", "")).lower(), str(voucher.get("maxCumulative"))), None)

    # Receipts ---------------------------------------------------------------------------------------------------
    def check(self, payment_response: str | dict, *, request: dict | None = None, answer: str | None = None,
              node_url: str | None = None) -> PaymentOutcome:
        """Check a node's payment response (the ``PAYMENT-RESPONSE`` header value or the decoded
        ``x_opg_payment`` object) for a request this client paid: the receipt against the quote and voucher of
        that request (the oldest answered one of that node whose voucher covers it), the channel view updated,
        the record stored. Raises PaymentRefused if no answered request of this client matches."""
        payment = decode_b64_json(payment_response) if isinstance(payment_response, str) else payment_response
        receipt = payment.get("receipt") if isinstance(payment, dict) else None
        if not isinstance(receipt, dict) or not receipt.get("node"):
            raise PaymentRefused("payment response without a receipt", "no_receipt")
        node = str(receipt["node"]).lower()
        try:
            cumulative = int(receipt.get("cumulative") or 0)
        except (TypeError, ValueError):
            cumulative = 0
        with self._lock:
            served = self._served.get(node, [])
            match = next((r for r in served if r.max_cumulative >= cumulative), served[0] if served else None)
            if match is not None:
                served.remove(match)
        if match is None:
            raise PaymentRefused(f"no answered request of this client to node {receipt['node']} awaits a receipt",
                                 "unknown_request")
        self.payer.reopen(match)
        outcome = self.payer.complete(match, payment, request=request, answer=answer, node_url=node_url)
        self.last_outcome = outcome
        return outcome


    def without_receipt(self, res: Reservation, payment: dict, outcome: PaymentOutcome) -> bool:
        """A payment response without a receipt: fine only when nothing was delivered or charged ("free")."""
        if payment.get("success") and outcome.cost == 0:
            self.payer.rejected(res)
            outcome.ok = True
            return True
        self.payer.abandon(res)
        outcome.problem = "the node's payment response has no receipt"
        return True

    def conclude(self, res: Reservation, receipt: SignedReceipt | None, problem: str | None,
                 outcome: PaymentOutcome, payment: dict) -> tuple[bool, str | None]:
        """The channel after a checked receipt: its charge, or the node blocked if the receipt over-charges."""
        # not fsynced (the request record is, before complete returns; a block always is): lost in a crash, the cap
        # stays in flight and then counts as ended without a receipt, the more cautious view
        with self.payer.channel(res.node, durable=False) as (st, _):
            flight = st.inflight.pop(res.token, None)
            if receipt is not None and outcome.receipt_id == st.last_receipt:
                return st.blocked is None, st.blocked  # the same receipt again
            if problem is None and receipt is not None:
                # concurrent requests share the channel's best voucher: the bound is the highest cap signed
                top = max(st.max_signed, res.max_cumulative)
                outcome.checks["cumulativeWithinVoucher"] = receipt.cumulative <= top
                if receipt.cumulative > top:
                    problem = (f"over-charged: the channel total {receipt.cumulative} wei exceeds the highest voucher "
                               f"cap this client signed, {top} wei")
            if problem is None and receipt is not None:
                others = st.in_flight_caps()
                prior = receipt.cumulative - receipt.amount
                limit = st.charged + others + st.unreceipted_total
                outcome.checks["cumulativeConsistent"] = prior <= limit
                if prior > limit:
                    problem = (f"over-charged: the receipt puts the channel at {receipt.cumulative} wei, so "
                               f"{prior} wei before this request, but this client was charged {st.charged} wei "
                               f"with {others + st.unreceipted_total} wei of other requests open")
            if problem is None and receipt is not None:
                st.consume_unreceipted(max(0, receipt.cumulative - receipt.amount - st.charged - st.in_flight_caps()))
                st.resolve_unreceipted(before=res.reserved_at - RESOLVE_MARGIN)
                st.charged = max(st.charged, receipt.cumulative)
                if flight is not None:
                    st.add_recent(res.token, res.cap - receipt.amount, res.reserved_at)
                st.received += receipt.amount
                st.receipts += 1
                st.last_receipt = outcome.receipt_id
                return True, None
            if flight is not None:
                st.add_unreceipted(res.cap)
            if problem is not None:
                # a receipt this client refuses (evidence when the node signed it): no more vouchers for this node
                st.blocked = problem
                st.blocked_receipt = outcome.receipt_id
                st.blocked_at = time.time()
                log.error("node %s: %s; refusing further vouchers for it", res.node, problem)
            return False, problem

def _as_json(requirements: Any) -> dict:
    if isinstance(requirements, dict):
        return requirements
    return requirements.model_dump(mode="json", by_alias=True, exclude_none=True)
