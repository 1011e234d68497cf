"""The verifier's HTTP API: ``POST /disputes`` (a payer hands over its request, answer and receipt), ``GET
/checks/{receipt_id}`` (what this verifier decided), ``GET /healthz`` and ``GET /metrics``."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, FastAPI, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ..daemon.app import ErrorBody, operations_router
from ..daemon.app import create_app as create_daemon_app
from ..daemon.errors import ApiError
from ..sdk.wire import parse_receipt
from .intake import Intake
from .metrics import Metrics
from .payloads import dispute_problem
from .store import Check, VerifierStore

if TYPE_CHECKING:
    from .service import Verifier


class DisputeIn(BaseModel):
    """A payer's own copy of a disputed answer. ``pricing`` (the quote's ``extra.pricing``), ``usage`` and
    ``finishReason`` are optional: without pricing the verifier asks the node's ``/v1/models``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    receipt: dict[str, Any] = Field(description="the node's signed receipt (camelCase or snake_case)")
    request: dict[str, Any] = Field(description="the canonical request {model, messages, params} the receipt hashes")
    output: str = Field(description="the answer's text")
    tokens: dict[str, Any] | None = Field(None, description="the node's committed token ids {promptIds, outputIds, "
                                          "finishReason} (a flagging verifier's evidence)")
    tokens_hash: str | None = Field(None, alias="tokensHash", description="the node's token commitment (its payment "
                                    "response's tokensHash) when the receipt's outputHash includes one")
    pricing: dict[str, Any] | None = None
    usage: dict[str, Any] | None = None
    finish_reason: Literal["stop", "length"] | None = Field(None, alias="finishReason")


def check_view(row: Check) -> dict:
    return {
        "receiptId": row.id, "receiptHash": row.receipt_hash, "node": row.node, "source": row.source,
        "status": row.status, "valid": row.valid, "reason": row.reason, "withheld": row.withheld,
        "reported": {1: "stored", -1: "refused"}.get(row.reported, "pending") if row.withheld else None,
        "attempts": row.attempts,
        "lastError": row.last_error, "posted": {1: "stored", -1: "refused"}.get(row.posted, "pending")
        if row.valid is not None else None, "flag": row.flag_state, "flagTx": row.flag_tx,
        "seconds": row.seconds, "createdAt": row.created_at, "decidedAt": row.decided_at,
    }


def routes(intake: Intake, store: VerifierStore, metrics: Metrics) -> APIRouter:
    router = APIRouter(tags=["verifier"])

    @router.post("/disputes", status_code=202, responses={  # documented refusals (issue 19)
        409: {"model": ErrorBody, "description": "not_disputed: the receipt has no open on-chain dispute"}})
    async def dispute(body: DisputeIn) -> Any:
        """A payer's dispute: the node's signed receipt with the payer's request and answer. The receipt must be
        disputed on-chain first (``staking.flag`` from the payer, with its bond); the payload must hash to the
        receipt. The receipt is then judged like a flagged one, on this payload (the node's is not needed)."""
        try:
            receipt = parse_receipt(body.receipt)
        except ValueError as exc:
            raise ApiError(400, "invalid_field", "receipt", str(exc).splitlines()[0]) from None
        problem = dispute_problem(receipt, body.request, body.output, intake.domain, body.tokens_hash, body.tokens)
        if problem:
            error = "invalid_signature" if "signature" in problem or "signed" in problem else "payload_mismatch"
            raise ApiError(400, error, "receipt" if error == "invalid_signature" else "request", problem)
        it = intake.item(receipt)
        if not await asyncio.to_thread(intake.accused, it["receipt_hash"]):
            raise ApiError(409, "not_disputed", "receipt",
                           "no open dispute or flag: the payer must first call staking.flag(receipt, signature) with "
                           "its bond (or a verifier flag it)")
        payload = {"request": body.request, "output": body.output}
        for key, value in (("pricing", body.pricing), ("usage", body.usage), ("finishReason", body.finish_reason),
                           ("tokensHash", body.tokens_hash), ("tokens", body.tokens)):
            if value is not None:
                payload[key] = value
        reason = intake.skip_reason(receipt)
        await asyncio.to_thread(store.queue_check, it, "dispute", payload, reason)
        metrics.disputes.inc()
        intake.wake_checks()
        row = await asyncio.to_thread(store.check, it["id"])
        return JSONResponse(check_view(row), status_code=202)

    @router.get("/checks/{receipt_id}", responses={
        404: {"model": ErrorBody, "description": "this verifier has not checked that receipt"}})
    async def check(receipt_id: str = Path(pattern=r"^0x[0-9a-fA-F]{64}$")) -> Any:
        """This verifier's check of a receipt: queued, done (with the verdict), withheld (reported, no verdict) or
        skipped."""
        row = await asyncio.to_thread(store.check, receipt_id.lower())
        if row is None:
            raise ApiError(404, "not_found", "receiptId", "this verifier has not checked that receipt")
        return check_view(row)

    @router.get("/drift")
    async def drift() -> Any:
        """Teacher-forced statistics per node: receipts and tokens scored, tokens beyond the drift margin, the largest
        margin, and whether the binomial test flagged the node (then all its receipts are sampled)."""
        rows = await asyncio.to_thread(store.drift)
        return {"nodes": [{"node": r.node, "receipts": r.receipts, "scored": r.scored,
                           "drifted": r.drifted, "maxMargin": r.max_margin,
                           "flagged": r.flagged_at is not None, "flaggedAt": r.flagged_at} for r in rows]}

    return router


def create_app(v: Verifier) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        v.start()
        try:
            yield
        finally:
            await asyncio.to_thread(v.stop)

    async def health() -> dict:
        return await asyncio.to_thread(v.health)

    return create_daemon_app("OPG verifier", __doc__, [operations_router(health, v.metrics),
                                                                routes(v.intake, v.store, v.metrics)], lifespan)
