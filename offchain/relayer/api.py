"""The relayer's HTTP API (FastAPI; OpenAPI at ``/openapi.json``, interactive docs at ``/docs``), assembled on the
daemons' app factory (``offchain.daemon.app``: errors, docs, ``/healthz``, ``/metrics``) from the per-resource
routers of ``relayer.routes`` (and ``pending``, ``feed``, ``deposits``), with their components in ``deps``.

x402 facilitator endpoints: ``GET /supported``, ``POST /verify``, ``POST /settle``. Relayer endpoints: receipts,
channels, batches, verdicts, slashes, health and Prometheus metrics. Refused input answers 4xx with
``{"error": code, "field": dotted.path, "reason": text}``; a ``/verify`` or x402 ``/settle`` request that is well
formed but not payable answers 200 with ``isValid: false`` / ``success: false`` and a reason, as x402 clients expect.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pydantic_core
import requests
from fastapi import FastAPI
from x402.schemas import SettleRequest, SettleResponse

from ..daemon.app import create_app as create_daemon_app
from ..daemon.app import operations_router
from ..daemon.errors import ApiError
from ..daemon.limits import RequestGuard
from ..sdk.tx import is_transient
from . import deps
from .models import BulkSettle, BulkSettleAnswer, ErrorBody, SettleAnswer, SettleItem
from .routes import batches, deposits, feed, payers, receipts, slashing, x402

if TYPE_CHECKING:
    from .service import Relayer

log = logging.getLogger("opg.relayer.api")


class FastLane:
    """Serves ``POST /settle`` itself, without the framework's per-request machinery, because that is the receipt
    hot path (the body is already read and bounded by the RequestGuard in front). The FastAPI route of the same path
    documents it (OpenAPI) and shares the handler."""

    def __init__(self, app: FastAPI):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != "/settle":
            await self.app(scope, receive, send)
            return
        try:
            body = await self._read(receive)
            status, payload = await self.app.state.intake.handle(body)
        except ApiError as exc:
            status, payload = exc.status, exc.body()
        except Exception as exc:
            if isinstance(exc, requests.exceptions.RequestException) or is_transient(exc):
                status, payload = 503, {"error": "chain_unavailable", "field": None,
                                        "reason": f"the chain RPC did not answer: {exc.__class__.__name__}"}
            else:
                log.exception("POST /settle failed")
                status, payload = 500, {"error": "internal_error", "field": None, "reason": "see the relayer log"}
        body = pydantic_core.to_json(payload)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _read(receive: Any) -> bytes:
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ApiError(400, "invalid_request", None, "client left")
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)


def _extend_openapi(max_bulk: int):
    def extend(schema: dict) -> None:
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
            "type": "array", "minItems": 1, "maxItems": max_bulk,
            "items": {"type": "object", "description": "{receipt, voucher} (see SettleItem), validated on its own"},
            "description": "each item is validated on its own: a refused item is reported in its result with the "
                           "field and the reason, the others are stored"}
    return extend


def create_app(relayer: Relayer) -> FastAPI:
    """The relayer's FastAPI app: its routers on the daemons' app factory, its components in ``app.state``."""

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

    async def health() -> dict:
        return (await asyncio.to_thread(relayer.health)).model_dump(mode="json", by_alias=True)

    settings, store = relayer.settings, relayer.store
    routers = [
        x402.router, receipts.router, batches.router, slashing.router,
        payers.router,  # H2 (issue 13): pending receipts with their voucher's cap
        feed.router,  # verifiers' feed, withholding reports, node views
        deposits.router,  # gasless deposits
        operations_router(health, relayer.metrics),
    ]
    app = create_daemon_app("OPG settlement relayer", __doc__, routers, lifespan,
                            openapi_extend=_extend_openapi(settings.max_bulk),
                            extra_errors={"503": "not now, post again: chain_unavailable (the chain RPC did not answer), "
                                          "store_busy (another relayer holds the store's intake lock), store_full "
                                          "(the store's disk reserve), settling (the payer's channels are being "
                                          "settled)"})
    deps.install(app, facts=relayer.facts, rpc=relayer.rpc, metrics=relayer.metrics, events=relayer.events,
                 store=store, ledger=relayer.ledger, facilitators=relayer.facilitators, intake=relayer.intake,
                 slasher=relayer.slasher, deposits=relayer.deposits)
    return app


def create_asgi(relayer: Relayer) -> RequestGuard:
    """The application uvicorn serves: the FastAPI app behind its fast lane, behind the daemons' request bounds
    (body size declared or streamed, idle partial bodies, JSON depth and lone surrogates; ``POST /settle`` parses
    with pydantic_core, whose own depth limit answers 400)."""
    return RequestGuard(FastLane(create_app(relayer)), relayer.settings.max_body_bytes,
                        own_depth_check=frozenset({("POST", "/settle")}))
