"""The relayer's HTTP API (FastAPI; OpenAPI at ``/openapi.json``, interactive docs at ``/docs``).

x402 facilitator endpoints: ``GET /supported``, ``POST /verify``, ``POST /settle``. Relayer endpoints: receipts,
channels, batches, verdicts, slashes, health and Prometheus metrics. Refused input answers 4xx with
``{"error": code, "field": dotted.path, "reason": text}``; a ``/verify`` or x402 ``/settle`` request that is well
formed but not payable answers 200 with ``isValid: false`` / ``success: false`` and a reason, as x402 clients expect.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pydantic_core
import requests
from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError
from x402.schemas import SettleRequest, SupportedKind, SupportedResponse, VerifyRequest

from .. import __version__
from ..chain import ROLE_VERIFIER
from ..daemon.app import finalize_openapi, install_docs, install_error_handlers
from ..daemon.errors import ApiError, from_validation_error
from ..daemon.limits import RequestGuard
from ..messages import InvalidSignature, recover_signer
from .deposits import deposits_router
from .feed import feed_router
from .metrics import CONTENT_TYPE
from .models import (
    SCHEME_CREDIT,
    SCHEME_EXACT,
    BatchView,
    BulkItemResult,
    BulkSettle,
    BulkSettleAnswer,
    ChannelView,
    ClaimView,
    ErrorBody,
    Health,
    ReceiptView,
    SettleAnswer,
    SettleItem,
    SlashView,
    VerdictAnswer,
    VerdictIn,
)
from .pending import pending_router
from .store import AcceptOutcome, Store, ValidReceipt

if TYPE_CHECKING:
    from .service import Relayer

log = logging.getLogger("opg.relayer.api")

ERRORS = {
    400: {"model": ErrorBody, "description": "refused input: the field and the reason"},
    413: {"model": ErrorBody, "description": "body too large"},
}


SQLITE_INT_MAX = 2**63 - 1  # ids and cursors are SQLite integers: larger ones are refused 400, not 500


class BodyTooLarge(Exception):
    pass


class FastLane:
    """The outermost ASGI layer: it refuses bodies over ``limit`` bytes (declared or streamed) on every route, and
    serves ``POST /settle`` itself, without the framework's per-request machinery, because that is the receipt hot
    path. The FastAPI route of the same path documents it (OpenAPI) and shares the handler."""

    def __init__(self, app: FastAPI, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._send(send, 413, self._too_large(), close=True)
                return
        if scope["method"] == "POST" and scope["path"] == "/settle":
            try:
                body = await self._read(receive)
                status, payload = await self.app.state.handle_settle(body)
            except BodyTooLarge:
                status, payload = 413, self._too_large()
            except ApiError as exc:
                status, payload = exc.status, exc.body()
            except requests.exceptions.RequestException as exc:
                status, payload = 503, {"error": "chain_unavailable", "field": None,
                                        "reason": f"the chain RPC did not answer: {exc.__class__.__name__}"}
            except Exception:
                log.exception("POST /settle failed")
                status, payload = 500, {"error": "internal_error", "field": None, "reason": "see the relayer log"}
            await self._send(send, status, payload)
            return
        received = 0

        async def limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited, send)

    async def _read(self, receive: Any) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise BodyTooLarge() if size > self.limit else ApiError(400, "invalid_request", None, "client left")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise BodyTooLarge()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    @staticmethod
    async def _send(send: Any, status: int, payload: dict, close: bool = False) -> None:
        body = pydantic_core.to_json(payload)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _too_large(self) -> dict:
        return {"error": "body_too_large", "field": None, "reason": f"request body exceeds {self.limit} bytes"}


def _settle_doc() -> dict:
    """OpenAPI of POST /settle, whose body is parsed by hand (bulk items are validated one by one)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/SettleItem"},
                {"$ref": "#/components/schemas/BulkSettle"},
                {"$ref": "#/components/schemas/SettleRequest"},
            ]}}},
        },
        "responses": {
            "200": {"description": "stored (single: SettleAnswer; bulk: BulkSettleAnswer; x402: SettleResponse)",
                    "content": {"application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/SettleAnswer"},
                        {"$ref": "#/components/schemas/BulkSettleAnswer"},
                        {"$ref": "#/components/schemas/SettleResponse"},
                    ]}}}},
            "409": {"description": "equivocation: the node signed another receipt for this requestId",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}},
        },
    }


def _dump(model: Any) -> dict:
    return model.model_dump(mode="json", by_alias=True)


def _x402_dump(model: Any) -> dict:
    data = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    if "isValid" in data:
        data.setdefault("invalidReason", None)
    if "success" in data and not data["success"]:
        data.setdefault("errorReason", None)
    return data


def create_app(relayer: Relayer) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # Blocking chain reads and exact settlements (which wait for their transaction) run in threads: room for
        # many at once, so a few slow ones never hold the others back.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=64, thread_name_prefix="io"))
        relayer.start()
        try:
            yield
        finally:
            await asyncio.to_thread(relayer.stop)

    app = FastAPI(
        title="OPG settlement relayer",
        version=__version__,
        description=__doc__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    credit, metrics, store, ledger = relayer.credit, relayer.metrics, relayer.store, relayer.ledger

    # Errors ------------------------------------------------------------------------------------------------------
    install_error_handlers(app)  # the daemons' shared {error, field, reason} answers
    install_docs(app)  # Swagger UI at /docs from local files (works offline)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_request: Request, _exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse(status_code=413, content={"error": "body_too_large", "field": None,
                                                      "reason": f"request body exceeds {relayer.settings.max_body_bytes} bytes"})

    # x402 facilitator --------------------------------------------------------------------------------------------
    @app.get("/supported", response_model=SupportedResponse, response_model_by_alias=True,
             response_model_exclude_none=True, tags=["x402"])
    async def supported() -> Any:
        """The x402 kinds this relayer verifies and settles."""
        return SupportedResponse(
            kinds=[
                SupportedKind(x402_version=2, scheme=SCHEME_EXACT, network=relayer.facts.network),
                SupportedKind(x402_version=2, scheme=SCHEME_CREDIT, network=relayer.facts.network, extra={
                    "escrow": relayer.facts.escrow, "staking": relayer.facts.staking,
                    "asset": relayer.facts.opg,
                }),
            ],
            signers={"eip155:*": [relayer.facts.relayer]},
        )

    @app.post("/verify", tags=["x402"], responses=ERRORS)
    async def verify(body: VerifyRequest) -> Any:
        """x402 verify: ``{isValid, invalidReason, payer}`` (200 even when invalid, as x402 clients expect)."""
        scheme = body.payment_requirements.scheme
        if scheme == SCHEME_CREDIT:
            answer = await asyncio.to_thread(credit.verify, body)
        elif scheme == SCHEME_EXACT:
            answer = await asyncio.to_thread(relayer.exact.verify, body)
        else:
            raise ApiError(400, "unsupported_scheme", "paymentRequirements.scheme",
                           f"this relayer handles {SCHEME_EXACT} and {SCHEME_CREDIT}")
        return JSONResponse(_x402_dump(answer))

    async def handle_settle(raw: bytes) -> tuple[int, dict]:
        started = time.perf_counter()
        try:
            data = pydantic_core.from_json(raw)
        except ValueError as exc:
            raise ApiError(400, "invalid_json", None, f"malformed JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_request", None, "the body must be a JSON object")
        if "paymentPayload" in data or "x402Version" in data:
            return await _settle_x402(data, started)
        if "receipts" in data:
            return await _settle_bulk(data, raw, started)
        if "receipt" in data or "voucher" in data:
            return await _settle_one(data, started)
        raise ApiError(400, "missing_field", "receipt",
                       "give {receipt, voucher}, {receipts: [...]} or an x402 settle request")

    app.state.handle_settle = handle_settle

    @app.post("/settle", tags=["x402"], openapi_extra=_settle_doc())
    async def settle(request: Request) -> Any:
        """Store a node's signed receipt(s) for batch settlement (opg-credit), or settle an exact payment now.

        Bodies: ``{receipt, voucher}``; ``{receipts: [{receipt, voucher}, ...]}`` (bulk, per-item results); or an
        x402 settle request ``{x402Version, paymentPayload, paymentRequirements}`` (exact, or opg-credit with the
        receipt in ``paymentPayload.payload.receipt``). A receipt is acknowledged only once committed to disk.
        (Served by the ASGI fast lane in front of the app; this route documents it and serves in-process tests.)"""
        status, payload = await handle_settle(await request.body())
        return JSONResponse(payload, status_code=status)

    async def _store(valid: list[ValidReceipt]) -> list:
        outcomes = await store.accept(valid) if valid else []
        for o in outcomes:
            if o.duplicate:
                metrics.receipts_duplicate.inc()
            elif o.conflicts_with:
                metrics.receipts_refused.inc(1, "equivocation")
            else:
                metrics.receipts_accepted.inc()
        return outcomes

    def _stored_resend(item: Any, answer: Any) -> AcceptOutcome | None:
        """A receipt refused only for its age that this relayer already stores, signed the same (the same EIP-712
        digest and signature): a byte-identical resend of a receipt accepted earlier, answered as the duplicate it
        is rather than ``invalid_timestamp`` (the client's retry after a lost acknowledgement, any time later)."""
        if not (isinstance(answer, ApiError) and answer.error == "invalid_timestamp"
                and answer.reason != "is in the future"):
            return None
        try:
            r = SettleItem.model_validate(item).receipt
        except (ValidationError, TypeError, ValueError):
            return None
        rid = "0x" + r.fast_digest(relayer.facts.staking_domain).hex()
        row = store.receipt(rid)
        if row is None or str(row["signature"]).lower() != r.signature.lower():
            return None
        metrics.receipts_duplicate.inc()
        return AcceptOutcome(id=rid, status=row["status"], reason=row["reason"], batch_id=row["batch_id"],
                             duplicate=True)

    async def _accept_one(prefix: str, item: Any, started: float) -> tuple[Any, Any]:
        """Validate and durably store one receipt item; an equivocating one is stored as evidence, answered 409."""
        [answer] = await credit.validate([(0, prefix, item)])
        resend = _stored_resend(item, answer)
        if resend is not None:
            return SettleItem.model_validate(item), resend
        if isinstance(answer, ApiError):
            metrics.receipts_refused.inc(1, answer.error)
            raise answer
        [outcome] = await _store([answer])
        metrics.ack_latency.observe(time.perf_counter() - started)
        if outcome.conflicts_with:
            raise ApiError(409, "equivocation", f"{prefix}receipt.requestId", outcome.reason or "equivocation")
        return answer, outcome

    async def _settle_one(data: dict, started: float) -> tuple[int, dict]:
        _answer, outcome = await _accept_one("", data, started)
        return 200, _dump(SettleAnswer(id=outcome.id, status=outcome.status, batch_id=outcome.batch_id,
                                       reason=outcome.reason, duplicate=outcome.duplicate))

    async def _settle_bulk(data: dict, raw_body: bytes, started: float) -> tuple[int, dict]:
        unknown = sorted(set(data) - {"receipts", "network"})
        if unknown:
            raise ApiError(400, "unknown_field", unknown[0], "unknown field")
        items = data["receipts"]
        if not isinstance(items, list):
            raise ApiError(400, "invalid_field", "receipts", "must be a list of {receipt, voucher}")
        if not items:
            raise ApiError(400, "invalid_field", "receipts", "must not be empty")
        for i, it in enumerate(items):
            if not isinstance(it, dict):
                raise ApiError(400, "invalid_field", f"receipts[{i}]", "must be an object {receipt, voucher}")
        if len(items) > relayer.settings.max_bulk:
            raise ApiError(413, "too_many_receipts", "receipts",
                           f"at most {relayer.settings.max_bulk} receipts per request, got {len(items)}")
        network = data.get("network")
        if network is not None and network != relayer.facts.network:
            raise ApiError(400, "wrong_network", "network", f"this relayer settles on {relayer.facts.network}")
        answers = await credit.validate_bulk(raw_body, len(items))
        resends = {i: o for i, a in enumerate(answers) if (o := _stored_resend(items[i], a)) is not None}
        valid = [a for a in answers if isinstance(a, ValidReceipt)]
        outcomes = iter(await _store(valid))
        results, accepted = [], 0
        for i, answer in enumerate(answers):
            if i in resends:
                o = resends[i]
                accepted += 1
                results.append(BulkItemResult(index=i, id=o.id, status=o.status, batch_id=o.batch_id, reason=o.reason,
                                              duplicate=True))
                continue
            if isinstance(answer, ApiError):
                metrics.receipts_refused.inc(1, answer.error)
                results.append(BulkItemResult(index=i, error=answer.error, field=answer.field, reason=answer.reason))
                continue
            o = next(outcomes)
            if o.conflicts_with:
                results.append(BulkItemResult(index=i, id=o.id, status=o.status, error="equivocation",
                                              field=f"receipts[{i}].receipt.requestId", reason=o.reason))
                continue
            accepted += 1
            results.append(BulkItemResult(index=i, id=o.id, status=o.status, batch_id=o.batch_id, reason=o.reason,
                                          duplicate=o.duplicate))
        metrics.ack_latency.observe(time.perf_counter() - started)
        answer = BulkSettleAnswer(accepted=accepted, refused=len(items) - accepted, results=results)
        return 200, answer.model_dump(mode="json", by_alias=True, exclude_none=True)

    async def _settle_x402(data: dict, started: float) -> tuple[int, dict]:
        try:
            req = SettleRequest.model_validate(data)
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        scheme = req.payment_requirements.scheme
        if scheme == SCHEME_EXACT:
            answer = await asyncio.to_thread(relayer.exact.settle, req)
            return 200, _x402_dump(answer)
        if scheme != SCHEME_CREDIT:
            raise ApiError(400, "unsupported_scheme", "paymentRequirements.scheme",
                           f"this relayer handles {SCHEME_EXACT} and {SCHEME_CREDIT}")
        reqs = req.payment_requirements
        if reqs.network != relayer.facts.network:
            raise ApiError(400, "wrong_network", "paymentRequirements.network",
                           f"this relayer settles on {relayer.facts.network}")
        extra = reqs.extra or {}
        for key, expected in (("escrow", relayer.facts.escrow), ("staking", relayer.facts.staking)):
            if extra.get(key) is not None and str(extra[key]).lower() != expected.lower():
                raise ApiError(400, "wrong_domain", f"paymentRequirements.extra.{key}",
                               f"not this deployment's {expected}")
        payload = req.payment_payload.payload
        if not isinstance(payload, dict) or "receipt" not in payload:
            raise ApiError(400, "missing_field", "paymentPayload.payload.receipt",
                           "opg-credit settlement needs the node's signed receipt")
        voucher = payload.get("voucher")
        item = {"receipt": payload["receipt"],
                "voucher": {**voucher, "signature": payload.get("signature")} if isinstance(voucher, dict) else voucher}
        answer, outcome = await _accept_one("paymentPayload.payload.", item, started)
        return 200, {"success": True, "transaction": "", "network": relayer.facts.network, "payer": answer.receipt.payer,
                     "errorReason": None, "id": outcome.id, "status": outcome.status, "batchId": outcome.batch_id}

    # Receipts, channels, batches ---------------------------------------------------------------------------------
    @app.get("/receipts/{receipt_id}", response_model=ReceiptView, responses={404: {"model": ErrorBody}},
             tags=["relayer"])
    async def receipt(receipt_id: str = Path(pattern=r"^0x[0-9a-fA-F]{64}$")) -> Any:
        """A receipt by id (its EIP-712 digest): pending, settled or rejected, with its batch and transaction."""
        row = store.receipt(receipt_id)
        if row is None:
            raise ApiError(404, "not_found", "id", "no such receipt")
        return ReceiptView(
            id=row["id"], status=row["status"], reason=row["reason"], batch_id=row["batch_id"],
            tx=row["batch_tx"],
            batch_status=row["batch_status"], request_id=row["request_id"], payer=row["payer"], node=row["node"],
            amount=row["amount"], cumulative=row["cumulative"], timestamp=row["timestamp"],
            receipt_hash=row["struct_hash"], accepted_at=row["accepted_at"], settled_at=row["settled_at"],
        )

    @app.get("/channels/{payer}/{node}", response_model=ChannelView, responses=ERRORS, tags=["relayer"])
    async def channel(payer: str = Path(pattern=r"^0x[0-9a-fA-F]{40}$"),
                      node: str = Path(pattern=r"^0x[0-9a-fA-F]{40}$")) -> Any:
        """A (payer, node) channel: charged, settled on-chain, best voucher, pending receipts."""
        from eth_utils import to_checksum_address

        payer, node = to_checksum_address(payer), to_checksum_address(node)
        spent = await asyncio.to_thread(lambda: relayer.rpc.retry(
            lambda: relayer.rpc.chain().escrow.functions.spent(payer, node).call()))
        ch = ledger.get(payer, node)
        pending = store.pending_of_channel(payer, node, limit=100)
        return ChannelView(
            payer=payer, node=node, charged=str(ch.charged if ch else 0), settled=str(spent),
            settled_known=str(ch.settled if ch else 0), voucher_cap=str(ch.cap if ch else 0),
            pending_receipts=ch.pending if ch else 0,
            pending=[{"id": p["id"], "amount": p["amount"], "cumulative": p["cumulative"], "batchId": p["batch_id"]}
                     for p in pending],
        )

    def _batch_view(row: dict, full: bool) -> BatchView:
        import json

        claims = json.loads(row["claims"])
        return BatchView(
            id=row["id"], status=row["status"], receipts_root=row["receipts_root"], receipt_count=row["receipt_count"],
            claims=[ClaimView(max_cumulative=c["maxCumulative"], **{k: v for k, v in c.items() if k != "maxCumulative"})
                    for c in claims] if full else None,
            claim_count=len(claims), tx_hash=row["tx_hash"], nonce=row["nonce"], block_number=row["block_number"],
            gas_used=row["gas_used"], gas_price=row["gas_price"], settled_amount=row["settled_amount"],
            attempts=row["attempts"], error=row["error"], created_at=row["created_at"], sent_at=row["sent_at"],
            confirmed_at=row["confirmed_at"],
            transactions=[t["tx_hash"] for t in store.transactions("batch", str(row["id"]))] if full else None,
        )

    @app.get("/batches", response_model=list[BatchView], response_model_exclude_none=True, tags=["relayer"])
    async def batches(status: str | None = Query(None, pattern="^(built|sent|confirmed|failed|skipped)$"),
                      limit: int = Query(50, ge=1, le=1000),
                      before: int | None = Query(None, ge=1, le=SQLITE_INT_MAX)) -> Any:
        """Batches, newest first."""
        return [_batch_view(b, full=False) for b in store.batches(status, limit, before)]

    @app.get("/batches/{batch_id}", response_model=BatchView, responses={404: {"model": ErrorBody}},
             tags=["relayer"])
    async def batch(batch_id: int = Path(ge=1, le=SQLITE_INT_MAX)) -> Any:
        """One batch: Merkle root, transaction(s), status, gas used, and its claims with their outcomes."""
        row = store.batch(batch_id)
        if row is None:
            raise ApiError(404, "not_found", "id", "no such batch")
        return _batch_view(row, full=True)

    # Verdicts and slashes ----------------------------------------------------------------------------------------
    @app.post("/verdicts", response_model=VerdictAnswer, responses=ERRORS, tags=["slashing"])
    async def verdicts(body: VerdictIn) -> Any:
        """A verifier's signed Verdict. Verdicts are collected until their signers' vote weight reaches
        ``fraud_quorum_bps`` of the live verifier weight; then the relayer submits ``slash_fraud`` (valid=false) and
        slashes the lazy verifiers, or ``prove_valid`` (valid=true) and slashes the false accusers. A verifier that
        signed both ways is slashed for a double vote."""
        digest = body.fast_digest(relayer.facts.staking_domain)
        try:
            signer = recover_signer(digest, body.signature)
        except InvalidSignature as exc:
            raise ApiError(400, "invalid_signature", "signature", str(exc)) from None
        if signer != body.verifier:
            raise ApiError(400, "invalid_signature", "signature",
                           "not the verifier's signature over this deployment's NodeStaking domain")
        active = await asyncio.to_thread(lambda: relayer.rpc.retry(
            lambda: relayer.rpc.chain().staking.functions.is_active_as(body.verifier, ROLE_VERIFIER).call()))
        if not active:
            raise ApiError(400, "verifier_not_active", "verifier", f"{body.verifier} is not an active verifier")
        stored = await asyncio.wrap_future(store.submit(Store.job_verdict, body.receipt_hash, body.verifier,
                                                        body.valid, body.signature, time.time()))
        if stored:
            metrics.verdicts.inc(1, str(body.valid).lower())
            relayer.events.verdict_stored.publish(body.receipt_hash)
        quorum = await asyncio.to_thread(relayer.slasher.fraud_quorum_bps)
        return VerdictAnswer(
            receipt_hash=body.receipt_hash, verifier=body.verifier, valid=body.valid, stored=stored,
            receipt_known=store.receipt_by_struct_hash(body.receipt_hash) is not None,
            invalid_verdicts=len(store.verdicts(body.receipt_hash, valid=False)), fraud_quorum_bps=quorum,
        )

    @app.get("/slashes", response_model=list[SlashView], tags=["slashing"])
    async def slashes(status: str | None = Query(None, pattern="^(queued|sent|confirmed|skipped|failed)$"),
                      limit: int = Query(100, ge=1, le=1000)) -> Any:
        """Slashing submissions (equivocation, fraud, lazy_verifier, prove_valid, false_accuser, double_vote), newest
        first."""
        return [SlashView(**{k: v for k, v in s.items() if k not in ("args", "attempts")})
                for s in store.slashes(status, limit)]

    app.include_router(pending_router(store))  # H2 (issue 13): pending receipts with their voucher's cap
    app.include_router(feed_router(store, relayer.facts.staking_domain, lambda v: relayer.rpc.retry(
        lambda: relayer.rpc.chain().is_active_verifier(v))))  # verifiers' feed, withholding reports, node views
    app.include_router(deposits_router(sender=relayer.sender, chain=relayer.rpc.chain, transactions=store.transactions,
                                       retry=relayer.rpc.retry, timeout=relayer.settings.exact_timeout))  # gasless deposits

    # Operations --------------------------------------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Any:
        """Chain reachable, store usable, last block, pending receipts (503 when not ok)."""
        health = await asyncio.to_thread(relayer.health)
        return JSONResponse(_dump(health), status_code=200 if health.ok else 503)

    @app.get("/metrics", response_class=PlainTextResponse, tags=["operations"])
    async def prometheus() -> Response:
        """Prometheus text format."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi
        from x402.schemas import SettleResponse

        schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (SettleItem, BulkSettle, SettleRequest, SettleAnswer, BulkSettleAnswer, SettleResponse,
                      ErrorBody):
            model_schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
            for name, sub in model_schema.pop("$defs", {}).items():
                components.setdefault(name, sub)
            components.setdefault(model.__name__, model_schema)
        # A bulk body is checked item by item (a refused item is reported in its result, the others are stored):
        # the document says so, rather than promising that one bad item refuses the whole request.
        components["BulkSettle"]["properties"]["receipts"] = {
            "type": "array", "minItems": 1, "maxItems": relayer.settings.max_bulk,
            "items": {"type": "object", "description": "{receipt, voucher} (see SettleItem), validated on its own"},
            "description": "each item is validated on its own: a refused item is reported in its result with the "
                           "field and the reason, the others are stored"}
        app.openapi_schema = finalize_openapi(schema, {"503": "the chain RPC did not answer"})
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def create_asgi(relayer: Relayer) -> RequestGuard:
    """The application uvicorn serves: the FastAPI app behind its fast lane, behind the daemons' request bounds
    (body size declared or streamed, idle partial bodies, JSON depth and lone surrogates; ``POST /settle`` parses
    with pydantic_core, whose own depth limit answers 400)."""
    limit = relayer.settings.max_body_bytes
    return RequestGuard(FastLane(create_app(relayer), limit), limit,
                        own_depth_check=frozenset({("POST", "/settle")}))
