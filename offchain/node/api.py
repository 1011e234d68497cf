"""The node's FastAPI application (OpenAPI at ``/openapi.json``, docs at ``/docs``): the skeleton's app factory with
the chat, models and payloads routers and the skeleton's operations router (``/healthz``, ``/metrics``)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from ..daemon.app import create_app as create_daemon_app
from ..daemon.app import operations_router
from ..daemon.limits import RequestGuard
from .routes.chat import chat_router
from .routes.models import models_router
from .routes.payloads import payloads_router

if TYPE_CHECKING:
    from .service import Node

DESCRIPTION = """An OPG inference node: OpenAI-compatible chat completions paid with x402 v2 (`opg-credit` vouchers
on the CreditEscrow, or `exact` EIP-3009 transfers of OPG), a signed Receipt for every answer, payloads released only
to staked verifiers and the payer."""


def create_app(node: Node) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        # Generation, chain reads and relayer calls run in threads: enough of them that slow models never starve
        # the quick calls.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=64, thread_name_prefix="io"))
        node.start()
        try:
            yield
        finally:
            await asyncio.to_thread(node.stop)

    async def health() -> dict[str, Any]:
        return await asyncio.to_thread(node.health)

    routers = [
        chat_router(node.catalog, node.payments, node.metrics, node.events.answered.publish),
        models_router(node.catalog, node.address),
        payloads_router(node.payloads),
        operations_router(health, node.metrics),
    ]
    return create_daemon_app("OPG inference node", DESCRIPTION, routers, lifespan=lifespan)


def create_asgi(node: Node) -> RequestGuard:
    """The app behind the daemons' request bounds: bodies over ``max_body_bytes`` (declared or chunked) 413, idle
    partial bodies 408, JSON nested too deeply or with lone surrogates 400."""
    return RequestGuard(create_app(node), node.settings.max_body_bytes)
