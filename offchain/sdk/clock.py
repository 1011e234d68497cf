"""The protocol clock: what "now" means to every role.

The contracts judge time by ``block.timestamp``; a devnet's chain clock may run ahead of the wall clock (after
``evm_increaseTime``) and a production chain's may lag it by a block. Every role therefore takes
``max(wall clock, chain clock)``, the chain clock estimated from a block read at most ``refresh`` seconds ago plus
the monotonic time since; a node dating a receipt additionally stays within ``FUTURE_MARGIN`` of the chain's clock
(NodeStaking slashes a receipt dated more than ``MAX_FUTURE`` after the block).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from .constants import FUTURE_MARGIN


class ProtocolClock:
    """One chain's clock, read lazily and shared by the threads of one process.

    ``read_block_time`` returns the latest block's timestamp (any callable: a web3 read, a batched multicall, a
    test's fake chain). Reads the caller makes anyway can be fed in with :meth:`observe`.
    """

    def __init__(self, read_block_time: Callable[[], int], refresh: float = 1.0,
                 wall: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic):
        self._read = read_block_time
        self.refresh = refresh
        self._wall, self._mono = wall, monotonic
        self._lock = threading.Lock()
        self._seen: tuple[int, float] | None = None  # (block timestamp, monotonic time it was read)
        self._reading = False

    @classmethod
    def of_web3(cls, w3, refresh: float = 1.0) -> ProtocolClock:
        return cls(lambda: int(w3.eth.get_block("latest")["timestamp"]), refresh)

    def observe(self, block_time: int) -> int:
        """Record a block timestamp read elsewhere; returns ``max(it, wall clock)``."""
        with self._lock:
            self._seen = (int(block_time), self._mono())
        return max(int(block_time), int(self._wall()))

    def block_time(self) -> int:
        """The latest block's timestamp, read now (what the next transaction's checks compare with)."""
        stamp = int(self._read())
        self.observe(stamp)
        return stamp

    def read_now(self) -> int:
        """Read the latest block now and return ``max(its timestamp, wall clock)``."""
        return self.observe(self._read())

    def stale(self) -> bool:
        """Whether ``chain_time`` would read the chain now (never read, or the last reading older than ``refresh``):
        an event loop calls ``now_float`` from a thread then."""
        seen = self._seen
        return seen is None or self._mono() - seen[1] > self.refresh

    def chain_time(self) -> float | None:
        """The chain's clock: the last block read (re-read when older than ``refresh``) plus the seconds since;
        None if the chain was never reachable. One thread reads at a time; the others use the last reading."""
        with self._lock:
            seen = self._seen
            read_it = (seen is None or self._mono() - seen[1] > self.refresh) and not self._reading
            if read_it:
                self._reading = True
        if read_it:
            try:
                self.observe(self._read())
            except Exception:  # the chain unreachable: the last reading, if any
                pass
            finally:
                with self._lock:
                    self._reading = False
            seen = self._seen
        if seen is None:
            return None
        return seen[0] + max(0.0, self._mono() - seen[1])

    def now_float(self) -> float:
        """``max(wall clock, chain clock)`` in seconds (the wall clock alone while the chain is unreachable)."""
        chain = self.chain_time()
        wall = self._wall()
        return wall if chain is None else max(wall, chain)

    def now(self) -> int:
        """``max(wall clock, chain clock)`` in whole seconds: what the protocol's time checks compare with."""
        return int(self.now_float())

    def receipt_time(self) -> int:
        """A receipt's timestamp: ``now()`` but never more than ``FUTURE_MARGIN`` after the chain's clock."""
        chain = self.chain_time()
        now = int(self._wall())
        if chain is None:
            return now
        return min(max(now, int(chain)), int(chain) + FUTURE_MARGIN)
