"""The relayer's event hub: small typed subscriptions through which components learn what another one saw, instead of
reaching into each other (the batcher does not clear /verify's caches; it announces a withdrawal request, and the
credit scheme, subscribed, drops what it cached for that payer).

Handlers run synchronously in the publishing thread and must be quick (drop a cache entry, count something); a
handler that raises is logged and does not stop the others or the publisher."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..sdk.tx import SentTx

log = logging.getLogger("opg.relayer.events")
T = TypeVar("T")


class Signal(Generic[T]):
    """One kind of event: ``subscribe(handler)``, ``publish(value)``."""

    def __init__(self, name: str):
        self.name = name
        self._handlers: list[Callable[[T], None]] = []
        self._lock = threading.Lock()

    def subscribe(self, handler: Callable[[T], None]) -> None:
        with self._lock:
            self._handlers = [*self._handlers, handler]

    def publish(self, value: T) -> None:
        for handler in self._handlers:
            try:
                handler(value)
            except Exception:
                log.exception("handler of %s failed", self.name)


@dataclass
class Events:
    """Every event one relayer component announces to the others."""

    # A payer's on-chain funds moved in a way the relayer did not cause (a WithdrawalRequested, a BatchProposed
    # claiming from it): /verify re-reads its balance (credit.CreditScheme subscribes).
    payer_funds_changed: Signal[str] = field(default_factory=lambda: Signal("payer_funds_changed"))
    # A slash of this node confirmed: /verify and /settle re-read its status (credit).
    node_slashed: Signal[str] = field(default_factory=lambda: Signal("node_slashed"))
    # A new verdict on this receipt hash was stored: the slasher counts its quorum again at its next tick.
    verdict_stored: Signal[str] = field(default_factory=lambda: Signal("verdict_stored"))
    # A transaction signed and recorded (write-ahead, kind batch | exact | slash | deposit), about to be broadcast
    # (test fault plug-ins subscribe here: relayer.plugins).
    tx_recorded: Signal[SentTx] = field(default_factory=lambda: Signal("tx_recorded"))
