"""One supervised worker loop for every daemon, in uvicorn's ``Config``/``Server`` lifecycle shape.

A :class:`Worker` is a small object with a ``name`` and a ``tick()`` that does one unit of work and returns the delay
before the next tick (``0``: at once; ``None``: nothing pending, sleep ``idle`` seconds unless woken). It may define
``startup()`` (run once in its thread before the first tick) and ``shutdown()`` (run once in its thread after the last
tick, e.g. a final flush). The :class:`Supervisor` runs each worker on its own thread:

- a tick that raises is logged and retried after an exponential backoff (``Backoff``: ``initial`` doubling up to
  ``maximum``); the first tick that returns resets it;
- each worker's health (:class:`WorkerHealth`: alive, last_ok, last_error, consecutive failures, ticks) is kept for
  ``/healthz``; ``last_error`` is the error of the current failure streak (cleared by a tick that returns);
- ``wake(name)`` (or the ``wake`` event given to :meth:`Supervisor.add`) cuts a worker's sleep short;
- ``stop()`` sets ``stopping`` (an event workers may wait on inside a long tick), wakes every worker, lets each finish
  its tick and its ``shutdown()``, and joins the threads (bounded).

A ``startup()`` that raises is logged and recorded like a failed tick; the loop then starts anyway (a worker whose
start-up work must succeed repeats it from ``tick``).

:class:`Gated` wraps a worker that may run only while a condition holds (the relayer's senders: only while this
process holds the sending lease): a closed gate's tick is idle (healthy, not failing), and the worker's ``startup()``
runs each time the gate opens, before its first tick then (a new leader resumes what the store says is in flight).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

log = logging.getLogger("opg.worker")


@runtime_checkable
class Worker(Protocol):
    """``tick()`` does one unit of work; returns the delay before the next one (``None``: idle)."""

    name: str

    def tick(self) -> float | None: ...


class Gated:
    """``worker`` run only while ``is_open()``; a tick ended by one of the ``closed`` exceptions (the gate closed
    during it) is idle too. ``startup()`` runs whenever the gate opens; ``shutdown()`` if it was open. ``scope()``, if
    given, is entered around each open tick (the relayer's ``Lease.tick``: the tick's sends are granted only under
    the lease epoch it began in)."""

    def __init__(self, worker: Worker, is_open: Callable[[], bool], closed: tuple[type[BaseException], ...] = (),
                 scope: Callable[[], AbstractContextManager[object]] = nullcontext):
        self.worker, self.is_open, self.closed, self.scope = worker, is_open, closed, scope
        self.name = worker.name
        self._open = False

    def tick(self) -> float | None:
        if not self.is_open():
            self._open = False
            return None
        try:
            with self.scope():
                if not self._open:
                    startup = getattr(self.worker, "startup", None)
                    if callable(startup):
                        startup()
                    self._open = True
                return self.worker.tick()
        except self.closed as exc:
            log.warning("%s: %s", self.name, exc)
            return None

    def shutdown(self) -> None:
        shutdown = getattr(self.worker, "shutdown", None)
        if self._open and callable(shutdown):
            shutdown()


@dataclass(frozen=True)
class Backoff:
    """Delay after the n-th consecutive failure: ``initial * 2**(n-1)``, at most ``maximum``."""

    initial: float = 0.25
    maximum: float = 10.0

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        return min(self.maximum, self.initial * 2 ** min(failures - 1, 62))


@dataclass(frozen=True)
class WorkerHealth:
    name: str
    alive: bool
    last_ok: float | None  # wall time of the last tick that returned
    last_error: str | None  # the error of the current failure streak (None once a tick returns)
    failures: int  # consecutive failed ticks
    ticks: int  # ticks that returned

    def as_json(self) -> dict:
        return {"name": self.name, "alive": self.alive, "lastOk": self.last_ok, "lastError": self.last_error,
                "failures": self.failures, "ticks": self.ticks}


@dataclass
class _Slot:
    worker: Worker
    wake: threading.Event
    backoff: Backoff
    idle: float
    quiet: tuple[type[BaseException], ...]
    thread: threading.Thread | None = None
    health: WorkerHealth = field(init=False)

    def __post_init__(self) -> None:
        self.health = WorkerHealth(self.worker.name, False, None, None, 0, 0)


class Supervisor:
    """Runs workers on threads with backoff, health and a graceful stop. Add workers, ``start()``, ``stop()``."""

    def __init__(self, workers: Iterable[Worker] = (), *, backoff: Backoff | None = None, idle: float = 1.0,
                 on_error: Callable[[str, BaseException], None] | None = None):
        self.backoff = backoff or Backoff()
        self.idle = idle
        self.on_error = on_error  # told of every failed startup or tick: (worker name, exception), e.g. a metric
        self.stopping = threading.Event()
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        for worker in workers:
            self.add(worker)

    def add(self, worker: Worker, *, wake: threading.Event | None = None, backoff: Backoff | None = None,
            idle: float | None = None, quiet: tuple[type[BaseException], ...] = ()) -> threading.Event:
        """Register ``worker`` (before ``start``); returns the event that wakes it (``wake`` if given). Exceptions of
        the ``quiet`` types are expected outages: logged on one line, without a traceback."""
        if worker.name in self._slots:
            raise ValueError(f"a worker named {worker.name!r} is already supervised")
        if self.stopping.is_set():
            raise RuntimeError("the supervisor is stopped")
        slot = _Slot(worker, wake or threading.Event(), backoff or self.backoff,
                     self.idle if idle is None else idle, quiet)
        self._slots[worker.name] = slot
        return slot.wake

    def start(self) -> None:
        for slot in self._slots.values():
            if slot.thread is None:
                slot.thread = threading.Thread(target=self._run, args=(slot,), name=f"worker-{slot.worker.name}",
                                               daemon=True)
                self._set(slot, alive=True)
                slot.thread.start()

    def wake(self, name: str) -> None:
        self._slots[name].wake.set()

    def stop(self, timeout: float = 15.0) -> bool:
        """Stop every worker and join them within ``timeout`` seconds in all; returns whether all have ended."""
        self.stopping.set()
        for slot in self._slots.values():
            slot.wake.set()
        deadline = time.monotonic() + timeout
        for slot in self._slots.values():
            if slot.thread is not None:
                slot.thread.join(max(0.0, deadline - time.monotonic()))
        return not any(s.thread is not None and s.thread.is_alive() for s in self._slots.values())

    def health(self) -> list[WorkerHealth]:
        with self._lock:
            return [s.health for s in self._slots.values()]

    def worker_health(self, name: str) -> WorkerHealth:
        with self._lock:
            return self._slots[name].health

    @property
    def alive(self) -> bool:
        """Whether every worker has been started and is still running."""
        return bool(self._slots) and all(h.alive for h in self.health())

    # The loop -----------------------------------------------------------------------------------------------------
    def _set(self, slot: _Slot, **changes) -> None:
        with self._lock:
            slot.health = replace(slot.health, **changes)

    def _failed(self, slot: _Slot, where: str, exc: BaseException) -> float:
        failures = slot.health.failures + 1
        self._set(slot, failures=failures, last_error=f"{exc.__class__.__name__}: {str(exc)[:300]}")
        delay = slot.backoff.delay(failures)
        if self.on_error is not None:
            try:
                self.on_error(slot.worker.name, exc)
            except Exception:
                log.exception("on_error hook failed")
        if isinstance(exc, slot.quiet):
            log.info("%s %s: %s; retrying in %.2f s", slot.worker.name, where, exc, delay)
        else:
            log.exception("%s %s failed (%d in a row); retrying in %.2f s", slot.worker.name, where, failures, delay)
        return delay

    def _run(self, slot: _Slot) -> None:
        worker, name = slot.worker, slot.worker.name
        try:
            startup = getattr(worker, "startup", None)
            if callable(startup):
                try:
                    startup()
                except Exception as exc:
                    self._failed(slot, "startup", exc)
            while not self.stopping.is_set():
                slot.wake.clear()  # a wake during the tick below cuts the sleep after it short
                try:
                    delay = worker.tick()
                    self._set(slot, last_ok=time.time(), last_error=None, failures=0,
                              ticks=slot.health.ticks + 1)
                    if delay is None:
                        delay = slot.idle
                except Exception as exc:
                    delay = self._failed(slot, "tick", exc)
                if delay > 0 and not self.stopping.is_set():
                    slot.wake.wait(delay)
            shutdown = getattr(worker, "shutdown", None)
            if callable(shutdown):
                try:
                    shutdown()
                except Exception:
                    log.exception("%s shutdown failed", name)
        finally:
            self._set(slot, alive=False)
