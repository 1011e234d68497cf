"""The HTTP layer's dependencies: each router takes the components it uses through FastAPI's ``Depends`` from the
app's state (``install``), never the composition root."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request

COMPONENTS = ("facts", "rpc", "metrics", "events", "store", "ledger", "facilitators", "intake", "slasher", "deposits")


def install(app: Any, **components: Any) -> None:
    """Put the components the routers depend on into ``app.state`` (exactly the names in COMPONENTS)."""
    if set(components) != set(COMPONENTS):
        raise TypeError(f"components must be {sorted(COMPONENTS)}, got {sorted(components)}")
    for name, value in components.items():
        setattr(app.state, name, value)


def _component(name: str) -> Callable[[Request], Any]:
    async def dependency(request: Request) -> Any:  # async: FastAPI runs a plain def in its thread pool
        return getattr(request.app.state, name)

    dependency.__name__ = name
    return dependency


# One dependency per component (routes annotate the type: ``store: Annotated[Store, Depends(deps.store)]``).
facts, rpc, metrics, events = (_component(n) for n in ("facts", "rpc", "metrics", "events"))
store, ledger, facilitators, intake, slasher, deposits = (
    _component(n) for n in ("store", "ledger", "facilitators", "intake", "slasher", "deposits"))
