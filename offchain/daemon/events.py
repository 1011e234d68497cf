"""A daemon's event hub, one typed subscription per event: components learn what another one saw without reaching
into each other (the relayer's ``relayer/events.py``), and a test's fault plug-in (``daemon/plugins.py``) subscribes
to a step to crash the process right there.

Handlers run synchronously in the publishing thread and must be quick (drop a cache entry, count something); a
handler that raises is logged and does not stop the others or the publisher. With no subscriber a publish costs one
loop over an empty list."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger("opg.events")
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
