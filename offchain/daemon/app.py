"""The FastAPI app factory every daemon uses: one error shape for every refused request
(``{"error": code, "field": dotted.path | null, "reason": text}``), ``GET /healthz`` and ``GET /metrics``, and the
daemon's own ``APIRouter``s (one per resource) included as given."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any

import requests
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from .errors import ApiError, field_path
from .metrics import CONTENT_TYPE, Registry


def install_error_handlers(app: FastAPI) -> None:
    """Refused input answers 4xx JSON naming the field and the reason; a dead chain RPC answers 503."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(status_code=exc.status, content=exc.body(), headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = [p for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
        if first.get("type") == "json_invalid":
            return JSONResponse(status_code=400, content={"error": "invalid_json", "field": None,
                                                          "reason": f"malformed JSON: {first.get('msg')}"})
        error = {"missing": "missing_field", "extra_forbidden": "unknown_field"}.get(first.get("type"), "invalid_field")
        return JSONResponse(status_code=400, content={"error": error, "field": field_path(loc),
                                                      "reason": first.get("msg", "invalid")})

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(status_code=exc.status_code, content={"error": code, "field": None,
                                                                  "reason": str(exc.detail)})

    @app.exception_handler(requests.exceptions.RequestException)
    async def _chain_down(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=503, content={"error": "chain_unavailable", "field": None,
                                                      "reason": f"the chain RPC did not answer: {exc.__class__.__name__}"})


def operations_router(health: Callable[[], Awaitable[dict[str, Any]]], metrics: Registry) -> APIRouter:
    """``GET /healthz`` (200 when ``health()['ok']``, else 503) and ``GET /metrics`` (Prometheus text)."""
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> JSONResponse:
        """Liveness and readiness: 200 when the daemon can do its job, 503 with the reason when not."""
        body = await health()
        return JSONResponse(body, status_code=200 if body.get("ok") else 503)

    @router.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        """Prometheus text exposition of the daemon's counters, gauges and histograms."""
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    return router


def create_app(title: str, description: str, routers: Iterable[APIRouter],
               lifespan: Callable[[FastAPI], AbstractAsyncContextManager] | None = None) -> FastAPI:
    """A daemon's FastAPI app: its routers, the shared error handlers, OpenAPI at ``/openapi.json``."""
    app = FastAPI(title=title, version=__version__, description=description, lifespan=lifespan)
    install_error_handlers(app)
    for router in routers:
        app.include_router(router)
    return app
