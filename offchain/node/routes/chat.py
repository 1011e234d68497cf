"""``POST /v1/chat/completions``: OpenAI's chat completions behind x402 v2.

1. The body is priced (``Catalog.prepare``): the quote ``cap`` is the most this request can cost.
2. No ``PAYMENT-SIGNATURE`` (or one that does not pay): 402, ``PAYMENT-REQUIRED: base64(json)`` and the same JSON as
   the body, offering ``opg-credit`` and ``exact`` with the ``error`` that says why and what to sign.
3. Paid: the model runs; the answer carries ``PAYMENT-RESPONSE: base64(json)`` and, in the JSON body, the same object
   as ``x_opg_payment`` (non-streaming); a stream carries it in its last chunk before ``data: [DONE]``.
4. A model failure charges nothing: 502 ``model_error`` (mid-stream: an ``error`` event).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from ...daemon.app import ErrorBody
from ...types import Address
from .. import openai as oa
from ..catalog import Catalog, Job
from ..engine import ModelFailed, StreamRun, run_to_completion
from ..payments import Payments
from ..x402 import PAYMENT_REQUIRED_HEADER, PAYMENT_RESPONSE_HEADER, PaymentRefused, Quote, encode_header

log = logging.getLogger("opg.node.chat")
PAYMENT_REQUIRED_SCHEMA = {
    "type": "object", "required": ["x402Version", "error", "accepts", "reason"],
    "properties": {"x402Version": {"const": 2}, "error": {"type": "string"}, "reason": {"type": "string"},
                   "resource": {"type": "object"}, "accepts": {"type": "array", "items": {"type": "object"}}},
}
EXPOSE = "PAYMENT-REQUIRED, PAYMENT-RESPONSE"


def _payer_hint(value: str | None) -> str | None:
    if not value:
        return None
    try:
        from pydantic import TypeAdapter

        return TypeAdapter(Address).validate_python(value.strip())
    except ValueError:
        return None


def _fingerprint(job: Job) -> str:
    return "opg-" + job.model.backend.model_id[2:18]


class RunStream(StreamingResponse):
    """A StreamingResponse that tells its run when the HTTP side ended, normally or because the client left."""

    def __init__(self, run: StreamRun, content: Any, headers: dict[str, str]):
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self.run = run

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.run.close(self.run.finished)


def chat_router(catalog: Catalog, payments: Payments, metrics: Any,
                answered: Callable[[dict], None] = lambda payment: None) -> APIRouter:
    """``answered(payment)`` runs once a paid answer's last byte was handed to the server."""
    router = APIRouter(tags=["chat"])

    def payment_required(quote: Quote, payer: str | None, error: str, reason: str) -> JSONResponse:
        body = payments.challenge(quote, payer, error, reason)
        # a 402 is this request's quote (and the channel's charge): never cached, a client's stale copy is a miss
        return JSONResponse(body, status_code=402, headers={PAYMENT_REQUIRED_HEADER: encode_header(body),
                                                            "Cache-Control": "no-store",
                                                            "Access-Control-Expose-Headers": EXPOSE})

    @router.post("/v1/chat/completions", responses={
        200: {"description": "the answer (JSON), or with stream=true a text/event-stream of chunks ending with the "
                             "payment chunk and data: [DONE]; PAYMENT-RESPONSE header (base64 JSON)",
              "content": {"text/event-stream": {"schema": {"type": "string"}}}},
        402: {"description": "payment required (no PAYMENT-SIGNATURE, or one that does not pay, or settlement "
                             "failed with the reason): PAYMENT-REQUIRED header (base64 JSON) and the same JSON as body",
              "content": {"application/json": {"schema": PAYMENT_REQUIRED_SCHEMA}}},
        404: {"model": ErrorBody, "description": "this node does not serve the model"},
        502: {"model": ErrorBody, "description": "model_error: the model failed; nothing was charged"}})
    async def chat_completions(
        request: Request, body: oa.ChatRequest,
        payment_signature: str | None = Header(None, alias="PAYMENT-SIGNATURE",
                                               description="base64 JSON x402 v2 PaymentPayload"),
        x_opg_payer: str | None = Header(None, alias="X-OPG-Payer",
                                         description="optional: the payer, so the 402's extra.charged is its channel's"),
    ) -> Any:
        """OpenAI-compatible chat completion, paid with x402 (``opg-credit`` voucher or ``exact`` EIP-3009)."""
        job = await asyncio.to_thread(catalog.prepare, body, str(request.url))  # a tokenizer may wait for the model
        mode = "stream" if body.stream else "json"
        try:
            adm = await asyncio.to_thread(payments.admit, job.quote, payment_signature)
        except PaymentRefused as exc:
            metrics.requests.inc(1, "none", mode, "payment_required")
            return payment_required(job.quote, exc.payer or _payer_hint(x_opg_payer), exc.error, exc.reason)
        cid = oa.completion_id(None)
        created = int(time.time())
        fingerprint = _fingerprint(job)
        if not body.stream:
            try:
                gen, payment = await asyncio.to_thread(run_to_completion, job, adm, payments, metrics)
            except PaymentRefused as exc:  # the relayer refused a payment it checked while the model ran
                metrics.requests.inc(1, adm.scheme, mode, "payment_required")
                return payment_required(job.quote, exc.payer or adm.payer, exc.error, exc.reason)
            except ModelFailed as exc:
                metrics.requests.inc(1, adm.scheme, mode, "model_error")
                return JSONResponse({"error": "model_error", "field": None,
                                     "reason": f"the model failed; nothing was charged: {exc}"}, status_code=502)
            if not payment.get("success"):
                metrics.requests.inc(1, adm.scheme, mode, "settlement_failed")
                return payment_required(job.quote, adm.payer, str(payment.get("errorReason")),
                                        f"settlement failed: {payment.get('errorMessage')}")
            metrics.requests.inc(1, adm.scheme, mode, "ok")
            if payment.get("receipt"):
                cid = oa.completion_id(payment["receipt"]["requestId"])
            content = oa.completion(cid, created, job.model.name, gen.text, gen.finish_reason, gen.prompt_tokens,
                                    gen.output_tokens, payment, fingerprint)
            return JSONResponse(content, headers={PAYMENT_RESPONSE_HEADER: encode_header(payment),
                                                  "Access-Control-Expose-Headers": EXPOSE},
                                background=BackgroundTask(answered, payment))

        run = StreamRun(job, adm, payments, metrics, asyncio.get_running_loop())
        asyncio.get_running_loop().run_in_executor(None, run.work)
        first = await run.next_event()
        if first[0] == "error":
            metrics.requests.inc(1, adm.scheme, mode, "model_error")
            return JSONResponse({"error": "model_error", "field": None,
                                 "reason": f"the model failed; nothing was charged: {first[1]}"}, status_code=502)
        try:  # the payment's checks left running with the model end before any text leaves
            if adm.pending is not None:
                await asyncio.to_thread(payments.confirm, adm)
        except PaymentRefused as exc:
            payments.release(adm)  # nothing delivered: nothing charged, the cap leaves the channel at once
            run.close(False)
            metrics.requests.inc(1, adm.scheme, mode, "payment_required")
            return payment_required(job.quote, exc.payer or adm.payer, exc.error, exc.reason)
        except Exception:
            run.close(False)
            raise
        if run.upfront:  # exact: settled before any text leaves (streamed text cannot be withheld afterwards)
            try:
                paid = await asyncio.to_thread(run.settle_upfront)
            except Exception:
                run.close(False)
                raise
            if not paid.get("success"):
                metrics.requests.inc(1, adm.scheme, mode, "settlement_failed")
                return payment_required(job.quote, adm.payer, str(paid.get("errorReason")),
                                        f"settlement failed: {paid.get('errorMessage')}")

        async def events():
            pending: tuple[str, Any] | None = first
            gen = None
            yield oa.sse(oa.chunk(cid, created, job.model.name, fingerprint, {"role": "assistant", "content": ""}))
            while True:
                kind, value = pending if pending is not None else await run.next_event()
                pending = None
                if kind == "piece":
                    yield oa.sse(oa.chunk(cid, created, job.model.name, fingerprint, {"content": value}))
                    run.delivered_one()
                elif kind == "generated":
                    gen = value
                    yield oa.sse(oa.chunk(cid, created, job.model.name, fingerprint, {}, gen.finish_reason))
                elif kind == "payment":
                    outcome = "ok" if value.get("success") else "settlement_failed"
                    metrics.requests.inc(1, adm.scheme, mode, outcome)
                    yield oa.sse(oa.usage_chunk(cid, created, job.model.name, fingerprint, gen.prompt_tokens,
                                                gen.output_tokens, value))
                    yield oa.sse("[DONE]")
                    run.finished = True
                    if value.get("success"):
                        answered(value)  # [DONE] was sent: the server asked for more
                    return
                elif kind == "error":
                    metrics.requests.inc(1, adm.scheme, mode, "model_error")
                    charged = "the quote was settled up front" if run.upfront else "nothing was charged"
                    yield oa.sse({"error": {"message": f"the model failed; {charged}: {value}",
                                            "type": "model_error", "param": None, "code": "model_error"}})
                    yield oa.sse("[DONE]")
                    run.finished = True
                    return

        return RunStream(run, events(), headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                                 "Access-Control-Expose-Headers": EXPOSE})

    return router
