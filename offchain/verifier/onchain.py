"""The verifier's view of the chain, on the SDK's connection: each thread's contracts, nodes' registered endpoints
(cached), and this verifier's own transactions (flags and heartbeats) through the SDK's transaction manager; only
the chain worker sends."""

from __future__ import annotations

import time
from typing import Any

from ..sdk.connect import Connection
from ..sdk.contracts import Contracts
from ..sdk.tx import TxManager, hex_hash

ENDPOINT_TTL = 30.0


class ChainAccess:
    def __init__(self, conn: Connection, tx: TxManager):
        self.conn, self.tx = conn, tx
        self.address = tx.address
        self.deployment = conn.deployment
        self._endpoints: dict[str, tuple[str, float]] = {}

    def chain(self) -> Contracts:
        """This thread's contracts (web3's HTTP provider is not shared between threads)."""
        return self.conn.thread_contracts()

    def endpoint(self, node: str) -> str:
        cached = self._endpoints.get(node)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        url = self.chain().staking.endpoint(node)
        self._endpoints[node] = (url, time.monotonic() + ENDPOINT_TTL)
        return url

    def transact(self, fn: Any, kind: str, ref: str = "") -> str:
        """Simulate (a revert raises ``ContractLogicError`` with the reason), send, wait for the receipt; returns the
        transaction hash (``TxFailed`` if it reverted after all)."""
        fn.call({"from": self.address})
        return hex_hash(self.tx.transact(fn, kind, ref)["transactionHash"])
