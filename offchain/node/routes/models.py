"""``GET /v1/models``: OpenAI's model list, each entry with the node's ``opg`` terms (modelId, determinism, the
descriptor the modelId hashes, the price table, the largest max_tokens)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from ...daemon.app import ErrorBody
from ...daemon.errors import ApiError
from ..catalog import Catalog


def models_router(catalog: Catalog, owner: str) -> APIRouter:
    router = APIRouter(tags=["models"])

    @router.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        """The models served, with their pricing (decimal wei strings) and modelId."""
        return {"object": "list",
                "data": [m.describe(owner, catalog.max_tokens_limit) for m in catalog.list()]}

    @router.get("/v1/models/{model_id:path}",
                responses={404: {"model": ErrorBody, "description": "this node does not serve that model"}})
    async def one_model(model_id: str) -> dict[str, Any]:
        """One model by name."""
        model = catalog.models.get(model_id)
        if model is None:
            raise ApiError(404, "model_not_found", "model", f"this node does not serve {model_id!r}")
        return model.describe(owner, catalog.max_tokens_limit)

    return router
