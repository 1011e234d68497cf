"""Protocol time as the relayer judges it: max(wall clock, the chain's clock estimated from a recent block)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from .reads import RawReader

T = TypeVar("T")
CHAIN_CLOCK_TTL = 2.0  # s a block timestamp read keeps the chain's clock estimate fresh


class ProtocolClock:
    """A chain whose clock runs ahead of the wall clock (a devnet after ``evm_increaseTime``) moves protocol time
    forward, so a node that dates its receipts by the chain is not refused as future-dated."""

    def __init__(self, reads: RawReader, retry: Callable[[Callable[[], Any]], Any]):
        self.reads, self.retry = reads, retry
        self._clock: tuple[int, float] | None = None  # (block timestamp, monotonic time it was read)

    def saw_block(self, stamp: int) -> int:
        """Record a latest-block timestamp read elsewhere; returns max(it, wall clock)."""
        self._clock = (stamp, time.monotonic())
        return max(stamp, int(time.time()))

    def chain_now(self) -> int:
        """The latest block's timestamp (what the escrow compares a session key's expiry with), or the clock's."""
        return self.saw_block(self.retry(lambda: self.reads.one(self.reads.latest_timestamp())))

    def stale(self) -> bool:
        return self._clock is None or time.monotonic() - self._clock[1] > CHAIN_CLOCK_TTL

    def now(self) -> float:
        """max(wall clock, the chain's clock estimated from a block read at most 2 s ago): what receipt timestamps
        are judged against (the wall clock alone while the chain is unreachable)."""
        if self.stale():
            try:
                self.chain_now()
            except Exception:
                return time.time()
        clock = self._clock
        assert clock is not None
        return max(time.time(), clock[0] + (time.monotonic() - clock[1]))
