"""The FastAPI app factory every daemon uses: one error shape for every refused request
(``{"error": code, "field": dotted.path | null, "reason": text}``, 400 for every validation error, never 422),
``GET /healthz`` and ``GET /metrics``, Swagger UI at ``/docs`` served from local files, an OpenAPI document that
lists the refusals, and the daemon's own ``APIRouter``s (one per resource) included as given."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import requests
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from web3.exceptions import Web3RPCError

from .. import __version__
from ..sdk.tx import is_transient
from .errors import ApiError, field_path
from .metrics import CONTENT_TYPE, Registry


class Hash32Convertor(Convertor):
    """``{name:hash32}`` path segments: a 0x-prefixed 32-byte hex id. Other segments do not match the route, so
    ``POST /v1/payloads/challenge`` is a 405 (the GET route of that path), not a refused receipt id."""

    regex = "0x[0-9a-fA-F]{64}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("hash32", Hash32Convertor())


class ErrorBody(BaseModel):
    """Every refusal: ``{error, field, reason}``."""

    error: str = Field(description="machine-readable code")
    field: str | None = Field(description="dotted path of the offending input, or null")
    reason: str = Field(description="why, for a person")


class ErrorResponse(JSONResponse):
    """A refusal: ASCII JSON, so that text echoed from hostile input (a lone surrogate) can always be encoded."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def _error(status: int, error: str, field: str | None, reason: str, headers: Any = None) -> ErrorResponse:
    return ErrorResponse(status_code=status, content={"error": error, "field": field, "reason": reason},
                         headers=dict(headers) if headers else None)


def install_error_handlers(app: FastAPI) -> None:
    """Refused input answers 4xx JSON naming the field and the reason; a dead chain RPC answers 503."""

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.error, exc.field, exc.reason, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = [p for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
        if first.get("type") == "json_invalid":
            return _error(400, "invalid_json", None, f"malformed JSON: {first.get('msg')}")
        error = {"missing": "missing_field", "extra_forbidden": "unknown_field"}.get(first.get("type"), "invalid_field")
        return _error(400, error, field_path(loc), str(first.get("msg", "invalid")))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 400: "invalid_request"}.get(exc.status_code,
                                                                                          "http_error")
        return _error(exc.status_code, code, None, str(exc.detail), exc.headers)  # 405 keeps its Allow header

    @app.exception_handler(requests.exceptions.RequestException)
    async def _chain_down(_request: Request, exc: Exception) -> JSONResponse:
        return _error(503, "chain_unavailable", None, f"the chain RPC did not answer: {exc.__class__.__name__}")

    @app.exception_handler(Web3RPCError)
    async def _chain_busy(_request: Request, exc: Web3RPCError) -> JSONResponse:
        if not is_transient(exc):  # a refusal of the call itself is no outage: the server error it was
            raise exc
        return _error(503, "chain_unavailable", None, f"the chain RPC is busy: {exc.message}")

    # Hostile input that got past validation must still be answered 4xx, not 500:
    @app.exception_handler(RecursionError)
    async def _too_deep(_request: Request, _exc: RecursionError) -> JSONResponse:
        return _error(400, "invalid_json", None, "input nested too deeply")

    @app.exception_handler(OverflowError)
    async def _overflow(_request: Request, _exc: OverflowError) -> JSONResponse:
        return _error(400, "out_of_range", None, "a number is out of range (integers must be below 2**63)")

    @app.exception_handler(UnicodeError)
    async def _unicode(_request: Request, _exc: UnicodeError) -> JSONResponse:
        return _error(400, "invalid_text", None, "text that is not valid Unicode (a lone surrogate?)")


# API docs, served offline -------------------------------------------------------------------------------------------
def _swagger_dir() -> Path:
    from swagger_ui_bundle import swagger_ui_path

    return Path(str(swagger_ui_path))


DOCS_ASSETS = ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png")


def install_docs(app: FastAPI) -> None:
    """``GET /docs``: Swagger UI from the ``swagger-ui-bundle-v2`` package's files, served by the daemon itself
    (``/docs/assets/...``), so the page works on a machine with no internet. (FastAPI's default loads it from a CDN;
    create the app with ``docs_url=None, redoc_url=None``.)"""
    from fastapi.openapi.docs import get_swagger_ui_html

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - API docs",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})  # no call to validator.swagger.io

    @app.get("/docs/assets/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> FileResponse:
        if name not in DOCS_ASSETS:
            raise ApiError(404, "not_found", "name", "no such docs asset")
        return FileResponse(_swagger_dir() / name)


# OpenAPI: what the answers really are --------------------------------------------------------------------------------
ERROR_SCHEMA = {
    "type": "object", "title": "ErrorBody", "required": ["error", "field", "reason"],
    "properties": {"error": {"type": "string", "description": "machine-readable code"},
                   "field": {"anyOf": [{"type": "string"}, {"type": "null"}],
                             "description": "dotted path of the offending input, or null"},
                   "reason": {"type": "string", "description": "why, for a person"}},
}
COMMON_ERRORS = {
    "400": "refused input (malformed JSON, a field of the wrong type, shape or range, JSON nested too deeply, text "
           "that is not Unicode): the field and the reason",
    "408": "the request body stopped arriving (idle partial body) or took too long",
    "413": "request body too large (declared or streamed)",
}


def finalize_openapi(schema: dict, extra_errors: dict[str, str] | None = None) -> dict:
    """Make a generated OpenAPI document say what the daemon answers: validation errors are 400 with
    ``{error, field, reason}`` (FastAPI documents 422 ``HTTPValidationError``, which no daemon sends); every
    operation documents 400, 408 and 413 (and 503 where the chain or a peer is needed, via ``extra_errors``)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["ErrorBody"] = components.get("ErrorBody") or ERROR_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    for methods in schema.get("paths", {}).values():
        for op in methods.values():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            responses = op["responses"]
            responses.pop("422", None)
            for code, text in {**COMMON_ERRORS, **(extra_errors or {})}.items():
                entry = responses.setdefault(code, {"description": text})
                entry.setdefault("content", {"application/json": {"schema": ref}})
    return schema


def install_openapi(app: FastAPI, extra_errors: dict[str, str] | None = None,
                    extend: Callable[[dict], None] | None = None) -> None:
    """``app.openapi()`` through ``extend`` (a daemon's own additions, e.g. schemas of bodies it parses by hand)
    and ``finalize_openapi`` (cached like FastAPI's)."""
    base = app.openapi

    def openapi() -> dict:
        if not getattr(app, "_opg_openapi_done", False):
            schema = base()
            if extend is not None:
                extend(schema)
            app.openapi_schema = finalize_openapi(schema, extra_errors)
            app._opg_openapi_done = True  # type: ignore[attr-defined]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


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
               lifespan: Callable[[FastAPI], AbstractAsyncContextManager] | None = None, *,
               openapi_extend: Callable[[dict], None] | None = None,
               extra_errors: dict[str, str] | None = None) -> FastAPI:
    """A daemon's FastAPI app: its routers, the shared error handlers, OpenAPI at ``/openapi.json`` (``extend``ed by
    the daemon; ``extra_errors``: the daemon's own text for its 503)."""
    app = FastAPI(title=title, version=__version__, description=description, lifespan=lifespan, docs_url=None,
                  redoc_url=None)
    install_error_handlers(app)
    install_docs(app)
    for router in routers:
        app.include_router(router)
    install_openapi(app, extra_errors or {"503": "the chain RPC (or a peer the daemon needs) did not answer"},
                    openapi_extend)
    return app
