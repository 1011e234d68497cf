"""The node's HTTP client of the relayer: ``POST /verify`` (both schemes), ``POST /settle`` (x402 ``exact``, which waits
for the transaction; and the receipt hand-over ``{receipt, voucher}`` / bulk ``{receipts: [...]}``), ``GET /healthz``.

A relayer that cannot be reached, or answers 5xx, raises :class:`RelayerUnavailable` (the caller retries or falls
back); any other answer is returned as ``(status, json)``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

__all__ = ["RelayerClient", "RelayerUnavailable"]


class RelayerUnavailable(Exception):
    """The relayer did not answer, or answered 5xx."""


class RelayerClient:
    def __init__(self, base_url: str, timeout: float, exact_timeout: float):
        self.base_url = base_url.rstrip("/")
        self.timeout, self.exact_timeout = timeout, exact_timeout
        self._local = threading.local()
        self._reachable: tuple[bool, float] | None = None

    def _http(self) -> httpx.Client:
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(base_url=self.base_url, timeout=self.timeout,
                                                       headers={"user-agent": "opg-node"})
        return client

    def _post(self, path: str, *, json: Any = None, content: bytes | None = None,
              timeout: float | None = None) -> tuple[int, Any]:
        try:
            if content is not None:
                res = self._http().post(path, content=content, headers={"content-type": "application/json"},
                                        timeout=timeout or self.timeout)
            else:
                res = self._http().post(path, json=json, timeout=timeout or self.timeout)
        except httpx.HTTPError as exc:
            self._reachable = (False, time.monotonic())
            raise RelayerUnavailable(f"{exc.__class__.__name__}: {exc}") from None
        if res.status_code >= 500:
            raise RelayerUnavailable(f"relayer answered HTTP {res.status_code}: {res.text[:200]}")
        self._reachable = (True, time.monotonic())
        try:
            return res.status_code, res.json()
        except ValueError:
            raise RelayerUnavailable(f"relayer answered HTTP {res.status_code} with non-JSON") from None

    def verify(self, body: dict) -> tuple[int, dict]:
        return self._post("/verify", json=body)

    def settle_x402(self, body: dict) -> tuple[int, dict]:
        return self._post("/settle", json=body, timeout=self.exact_timeout + 5)

    def hand_over(self, body: bytes) -> tuple[int, dict]:
        return self._post("/settle", content=body)

    def reachable(self, max_age: float = 5.0) -> bool:
        """Whether the relayer answered lately (probes ``/healthz`` when nothing was heard for ``max_age`` s)."""
        seen = self._reachable
        if seen is not None and time.monotonic() - seen[1] < max_age:
            return seen[0]
        try:
            self._http().get("/healthz", timeout=2.0)
            ok = True
        except httpx.HTTPError:
            ok = False
        self._reachable = (ok, time.monotonic())
        return ok
