"""``OpgCreditClient``: the ``opg-credit`` scheme for stock x402 clients (``x402`` package, v2 protocol).

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
clients) and signs ``maxCumulative = max(extra.charged, local charged) + caps in flight + this cap`` through the
same :class:`~offchain.client.payer.Payer` (and state directory) the paying transports use.

The scheme also hooks x402's ``on_payment_response``: a corrective 402 from the node (voucher under-capped because a
stock client does not send ``X-OPG-Payer``, so the first quote says ``charged: 0``) frees the cap and asks the
transport for one fresh payload, which then uses the node's corrected ``extra.charged`` within the bounds the Payer
enforces. x402's ``SettleResponse`` drops the receipt fields, so with stock clients the receipt is not checked
automatically: call :meth:`OpgCreditClient.check` with the response's ``PAYMENT-RESPONSE`` header (or its
``x_opg_payment`` body) to check and store it; until then the request's cap counts as charged-but-unreceipted.
"""

from __future__ import annotations

import threading
from typing import Any

from .payer import SCHEME_CREDIT, Payer, PaymentOutcome, PaymentRefused, Reservation, decode_b64_json


class OpgCreditClient:
    """x402 ``SchemeNetworkClient`` for ``opg-credit``."""

    scheme = SCHEME_CREDIT

    def __init__(self, payer: Payer):
        self.payer = payer
        self._open: dict[tuple[str, str], Reservation] = {}  # (node, maxCumulative) -> reservation
        self._served: dict[str, list[Reservation]] = {}  # node -> answered requests whose receipt was not checked
        self._hints: dict[str, int] = {}  # node -> extra.charged of its last corrective 402
        self._lock = threading.Lock()
        self.scheme_hooks = {"on_payment_response": self._on_payment_response}
        self.last_outcome: PaymentOutcome | None = None

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
                  if getattr(a, "scheme", None) == SCHEME_CREDIT and str(a.pay_to).lower() == res.node.lower()]
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


def _as_json(requirements: Any) -> dict:
    if isinstance(requirements, dict):
        return requirements
    return requirements.model_dump(mode="json", by_alias=True, exclude_none=True)
