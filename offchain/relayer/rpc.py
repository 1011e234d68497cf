"""The relayer's chain access: what the deployment is (``ChainFacts``, read once at start) and a per-thread web3
connection with connection retries (``Rpc``). Components receive these, never the composition root."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from web3 import Web3

from ..chain import Chain
from ..messages import Domain
from ..sdk.tx import with_retries
from .metrics import Metrics

T = TypeVar("T")


@dataclass(frozen=True)
class ChainFacts:
    """This deployment on this chain, as the relayer serves it."""

    chain_id: int
    relayer: str  # the relayer's transaction account
    opg: str
    escrow: str
    staking: str
    escrow_domain: Domain
    staking_domain: Domain
    opg_domain: tuple[str, str]  # OPG's EIP-712 (name, version)
    dispute_window: int
    start_block: int

    @property
    def network(self) -> str:
        return f"eip155:{self.chain_id}"


class Rpc:
    """A ``Chain`` (own HTTP session) per calling thread, and ``retry`` for calls that failed to connect."""

    def __init__(self, rpc_url: str, deployment: Any, retries: int, metrics: Metrics | None = None):
        self.rpc_url, self.deployment, self.retries, self.metrics = rpc_url, deployment, retries, metrics
        self._local = threading.local()

    def chain(self) -> Chain:
        chain = getattr(self._local, "chain", None)
        if chain is None:
            w3 = Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 15}))
            chain = self._local.chain = Chain(w3=w3, deployment=self.deployment)
        return chain

    def retry(self, fn: Callable[[], T]) -> T:
        return with_retries(fn, self.retries, self.count_error)

    def count_error(self, _exc: BaseException) -> None:
        if self.metrics is not None:
            self.metrics.rpc_errors.inc()
