"""The one client of the relayer's HTTP API, typed by the relayer's own models (``offchain.relayer.models``): every answer is validated against the model the relayer serves it with, so a change of
the API fails here loudly instead of showing wrong numbers.

Failures are :class:`RelayerError`; its subclass :class:`RelayerUnavailable` is the transient kind (unreachable, 5xx,
not JSON: the caller retries or falls back), the rest are answers the models do not accept or refusals of a read. The x402
endpoints (``/verify``, ``/settle``, ``/deposits``) return ``(status, json)``: their refusals are answers.
"""

from __future__ import annotations

import threading
import time
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from ..relayer.models import BatchView, ChannelView, FeedPage, Health, NodeView, ReceiptView, SlashView

M = TypeVar("M", bound=BaseModel)


class RelayerError(Exception):
    """The relayer did not answer as expected: an answer its models do not accept, a refused read, or (subclass)
    no answer at all."""


class RelayerUnavailable(RelayerError):
    """The relayer did not answer, answered 5xx, or answered something that is not JSON."""


def _with_nones(model: type[BaseModel], data: Any) -> Any:
    """Some answers drop None fields (``response_model_exclude_none``); put them back before validating."""
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
    """A relayer at ``url``; one HTTP connection pool per thread."""

    def __init__(self, url: str, timeout: float = 10.0, settle_timeout: float | None = None,
                 user_agent: str = "opg-sdk"):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.settle_timeout = settle_timeout if settle_timeout is not None else timeout + 30
        self.user_agent = user_agent
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._reachable: tuple[bool, float] | None = None

    def http(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(base_url=self.url, timeout=self.timeout,
                                                       headers={"user-agent": self.user_agent})
            self._clients.append(client)
        return client

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        self._local = threading.local()

    # Transport ---------------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            res = self.http().request(method, path, **kw)
        except httpx.HTTPError as exc:
            self._reachable = (False, time.monotonic())
            raise RelayerUnavailable(f"relayer {self.url} unreachable: {exc.__class__.__name__}") from None
        self._reachable = (True, time.monotonic())
        if res.status_code >= 500:
            raise RelayerUnavailable(f"{method} {path}: relayer answered HTTP {res.status_code}: {res.text[:200]}")
        return res

    def post(self, path: str, json: Any = None, content: bytes | None = None,
             timeout: float | None = None) -> tuple[int, Any]:
        """POST; returns ``(status, answer)`` for any non-5xx JSON answer."""
        kw: dict[str, Any] = {"timeout": timeout or self.timeout}
        if content is not None:
            kw.update(content=content, headers={"content-type": "application/json"})
        else:
            kw["json"] = json
        res = self._request("POST", path, **kw)
        try:
            return res.status_code, res.json()
        except ValueError:
            raise RelayerUnavailable(f"POST {path}: HTTP {res.status_code} with non-JSON") from None

    def _get(self, path: str, model: type[M], params: dict | None = None, missing_ok: bool = False,
             timeout: float | None = None) -> M | None:
        res = self._request("GET", path, params=params, timeout=timeout or self.timeout)
        if res.status_code == 404 and missing_ok:
            return None
        if res.status_code != 200:
            raise RelayerError(f"GET {path}: HTTP {res.status_code}: {res.text[:200]}")
        try:
            return model.model_validate(_with_nones(model, res.json()))
        except ValueError as exc:
            raise RelayerError(f"GET {path}: unexpected answer: {str(exc).splitlines()[0]}") from None

    def _get_list(self, path: str, model: type[M], params: dict | None = None) -> list[M]:
        res = self._request("GET", path, params=params)
        if res.status_code != 200:
            raise RelayerError(f"GET {path}: HTTP {res.status_code}: {res.text[:200]}")
        try:
            return [model.model_validate(_with_nones(model, x)) for x in res.json()]
        except (ValueError, TypeError) as exc:
            raise RelayerError(f"GET {path}: unexpected answer: {str(exc).splitlines()[0]}") from None

    # x402 facilitator -----------------------------------------------------------------------------------------
    def verify(self, body: dict) -> tuple[int, dict]:
        return self.post("/verify", json=body)

    def settle(self, body: dict) -> tuple[int, dict]:
        """x402 ``/settle`` (exact: waits for the transaction)."""
        return self.post("/settle", json=body, timeout=self.settle_timeout)

    def hand_over(self, body: bytes | dict) -> tuple[int, dict]:
        """Receipts handed over for batching: ``{receipt, voucher}`` or ``{receipts: [...]}`` (pre-encoded JSON
        bytes or a dict)."""
        if isinstance(body, (bytes, bytearray)):
            return self.post("/settle", content=bytes(body))
        return self.post("/settle", json=body)

    def deposit(self, body: dict, timeout: float | None = None) -> tuple[int, dict]:
        """A gasless deposit (signed ``ReceiveWithAuthorization``); 202 = sent, not mined yet."""
        return self.post("/deposits", json=body, timeout=timeout or self.settle_timeout)

    def verdict(self, body: dict) -> tuple[int, dict]:
        return self.post("/verdicts", json=body)

    def withholding(self, body: dict) -> tuple[int, dict]:
        return self.post("/reports/withholding", json=body)

    # Reads ------------------------------------------------------------------------------------------------------
    def receipt(self, receipt_id: str) -> ReceiptView | None:
        return self._get(f"/receipts/{receipt_id}", ReceiptView, missing_ok=True)

    def batches(self, limit: int = 200, status: str | None = None) -> list[BatchView]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        return self._get_list("/batches", BatchView, params)

    def batch(self, batch_id: int) -> BatchView | None:
        return self._get(f"/batches/{batch_id}", BatchView, missing_ok=True)

    def slashes(self, limit: int = 100, **filters: str) -> list[SlashView]:
        return self._get_list("/slashes", SlashView, {"limit": limit, **filters})

    def channel(self, payer: str, node: str) -> ChannelView | None:
        return self._get(f"/channels/{payer}/{node}", ChannelView)

    def feed(self, after: int = 0, limit: int = 1000, wait: float | None = None) -> FeedPage:
        params: dict[str, Any] = {"after": after, "limit": limit}
        if wait:
            params["wait"] = wait
        page = self._get("/feed/receipts", FeedPage, params, timeout=self.timeout + (wait or 0))
        assert page is not None
        return page

    def node(self, address: str) -> NodeView | None:
        return self._get(f"/nodes/{address}", NodeView)

    def metrics(self) -> str:
        """The Prometheus text of ``/metrics``."""
        res = self._request("GET", "/metrics")
        if res.status_code != 200:
            raise RelayerError(f"GET /metrics: HTTP {res.status_code}")
        return res.text

    def health(self) -> Health | None:
        """The relayer's health, or None if it does not answer."""
        try:
            return self._get("/healthz", Health, timeout=2.0)
        except RelayerError:
            return None

    def reachable(self, max_age: float = 5.0) -> bool:
        """Whether the relayer answered lately (probes ``/healthz`` when nothing was heard for ``max_age`` s)."""
        seen = self._reachable
        if seen is not None and time.monotonic() - seen[1] < max_age:
            return seen[0]
        try:
            self._request("GET", "/healthz", timeout=2.0)
        except RelayerUnavailable:
            pass
        return bool(self._reachable and self._reachable[0])
