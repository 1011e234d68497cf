"""A small typed client of the relayer's read API, on the relayer's own pydantic models (``offchain.relayer.models``
and ``offchain.relayer.feed``).

The architecture issue's typed relayer client has not landed; this one covers only what the web app reads:
``GET /receipts/{id}``, ``/batches``, ``/batches/{id}``, ``/slashes``, ``/channels/{payer}/{node}``,
``/feed/receipts``, ``/nodes/{address}`` and ``/healthz``. Every answer is validated against the model the relayer
serves it with, so a change of the relayer's API fails here loudly instead of showing wrong numbers.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from ..relayer.feed import FeedPage, NodeView
from ..relayer.models import BatchView, ChannelView, Health, ReceiptView, SlashView

T = TypeVar("T")


class RelayerError(Exception):
    """The relayer did not answer, or answered something its models do not accept."""


def _with_nones(model: type[BaseModel], data: Any) -> Any:
    """The relayer drops None fields from some answers (``response_model_exclude_none``) while its models declare
    them without a default; put them back before validating."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in out and name not in out and info.is_required():
            if type(None) in getattr(info.annotation, "__args__", ()):
                out[key] = None
    return out


class RelayerClient:
    def __init__(self, url: str, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _get(self, path: str, model: Any, params: dict | None = None,
             missing_ok: bool = False) -> T | None:
        try:
            res = self.http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise RelayerError(f"relayer {self.url} unreachable: {exc.__class__.__name__}") from None
        if res.status_code == 404 and missing_ok:
            return None
        if res.status_code != 200:
            raise RelayerError(f"GET {path}: HTTP {res.status_code}: {res.text[:200]}")
        try:
            if isinstance(model, tuple):  # (list, item model)
                return [model[1].model_validate(_with_nones(model[1], x)) for x in res.json()]
            assert issubclass(model, BaseModel)
            return model.model_validate(_with_nones(model, res.json()))
        except ValueError as exc:
            raise RelayerError(f"GET {path}: unexpected answer: {str(exc).splitlines()[0]}") from None

    def receipt(self, receipt_id: str) -> ReceiptView | None:
        return self._get(f"/receipts/{receipt_id}", ReceiptView, missing_ok=True)

    def batches(self, limit: int = 200, status: str | None = None) -> list[BatchView]:
        params: dict = {"limit": limit}
        if status:
            params["status"] = status
        return self._get("/batches", (list, BatchView), params) or []

    def batch(self, batch_id: int) -> BatchView | None:
        return self._get(f"/batches/{batch_id}", BatchView, missing_ok=True)

    def slashes(self, limit: int = 200) -> list[SlashView]:
        return self._get("/slashes", (list, SlashView), {"limit": limit}) or []

    def channel(self, payer: str, node: str) -> ChannelView:
        return self._get(f"/channels/{payer}/{node}", ChannelView)

    def feed(self, after: int = 0, limit: int = 1000) -> FeedPage:
        return self._get("/feed/receipts", FeedPage, {"after": after, "limit": limit})

    def node(self, address: str) -> NodeView:
        return self._get(f"/nodes/{address}", NodeView)

    def health(self) -> Health | None:
        try:
            res = self.http.get("/healthz")
        except httpx.HTTPError:
            return None
        try:
            return Health.model_validate(res.json())
        except ValueError:
            return None
