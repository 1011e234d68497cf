"""The node's view of each payer's channel: the cumulative charge, the caps of requests in flight, the best voucher.

Invariant (kept under each channel's lock): ``cumulative + sum(in-flight caps) <= best voucher's maxCumulative``.
A request is admitted only with a voucher covering ``cumulative + in flight + its cap``; at completion its reservation
becomes its actual charge (never more than its cap) and the receipt gets ``cumulative += amount``. So every receipt's
cumulative is covered by the best voucher, whatever order concurrent requests finish in. Rebuilt from the store at
start (nothing is in flight then).
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field

from ..messages import SignedVoucher


@dataclass
class Channel:
    payer: str
    cumulative: int = 0
    best: SignedVoucher | None = None
    inflight: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def best_cap(self) -> int:
        return self.best.max_cumulative if self.best is not None else 0

    @property
    def in_flight(self) -> int:
        return sum(self.inflight.values())

    @property
    def charged(self) -> int:
        """What a new voucher must already cover: the cumulative charge plus the caps of the requests in flight."""
        return self.cumulative + self.in_flight

    def reserve(self, cap: int) -> str:
        """Hold ``cap`` for a request (call under ``lock``); returns the reservation's key."""
        key = secrets.token_hex(8)
        self.inflight[key] = cap
        return key


class Channels:
    def __init__(self) -> None:
        self._channels: dict[str, Channel] = {}
        self._lock = threading.Lock()

    def get(self, payer: str) -> Channel:
        channel = self._channels.get(payer)
        if channel is None:
            with self._lock:
                channel = self._channels.setdefault(payer, Channel(payer))
        return channel

    def peek(self, payer: str) -> Channel | None:
        return self._channels.get(payer)

    def restore(self, payer: str, cumulative: int, best: SignedVoucher | None) -> None:
        channel = self.get(payer)
        channel.cumulative = max(channel.cumulative, cumulative)
        if best is not None and best.max_cumulative > channel.best_cap:
            channel.best = best

    def all(self) -> list[Channel]:
        return list(self._channels.values())

    def in_flight_requests(self) -> int:
        return sum(len(c.inflight) for c in list(self._channels.values()))
