"""The supervised worker loop (offchain/daemon/worker.py) on real threads: backoff, recovery, health, wake, stop."""

from __future__ import annotations

import threading
import time

import pytest

from offchain.daemon.worker import Backoff, Gated, Supervisor, Worker


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


class Flaky:
    """Fails its first ``fail`` ticks, then succeeds; records when each tick ran."""

    def __init__(self, name: str, fail: int, delay: float | None = 0.01):
        self.name, self.fail, self.delay = name, fail, delay
        self.times: list[float] = []
        self.events: list[str] = []

    def startup(self) -> None:
        self.events.append("startup")

    def tick(self) -> float | None:
        self.times.append(time.monotonic())
        if len(self.times) <= self.fail:
            raise RuntimeError(f"boom {len(self.times)}")
        return self.delay

    def shutdown(self) -> None:
        self.events.append("shutdown")


def test_backoff_doubles_and_is_bounded():
    b = Backoff(initial=0.25, maximum=2.0)
    assert [b.delay(n) for n in range(7)] == [0.0, 0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert Backoff(initial=1.0, maximum=10.0).delay(10_000) == 10.0


def test_failing_ticks_back_off_exponentially_then_recover():
    worker = Flaky("flaky", fail=3)
    assert isinstance(worker, Worker)
    sup = Supervisor([worker], backoff=Backoff(initial=0.05, maximum=0.15))
    sup.start()
    try:
        wait_until(lambda: len(worker.times) >= 6)
        gaps = [b - a for a, b in zip(worker.times, worker.times[1:], strict=False)]
        # after failures 1, 2, 3: 0.05, 0.10, then bounded at 0.15; after recovery the worker's own 0.01
        assert 0.045 <= gaps[0] < 0.10
        assert 0.095 <= gaps[1] < 0.15
        assert 0.145 <= gaps[2] < 0.25
        assert gaps[4] < 0.05
        h = sup.worker_health("flaky")
        assert h.alive and h.failures == 0 and h.last_error is None and h.ticks >= 3 and h.last_ok is not None
    finally:
        assert sup.stop(timeout=5)
    assert worker.events == ["startup", "shutdown"]


def test_health_shows_a_failure_streak_and_clears_on_recovery():
    gate = threading.Event()

    class Gated:
        name = "gated"

        def tick(self) -> float:
            if not gate.is_set():
                raise ConnectionError("relayer down")
            return 0.01

    told: list[tuple[str, str]] = []
    sup = Supervisor([Gated()], backoff=Backoff(initial=0.01, maximum=0.02),
                     on_error=lambda name, exc: told.append((name, str(exc))))
    sup.start()
    try:
        wait_until(lambda: sup.worker_health("gated").failures >= 3)
        h = sup.worker_health("gated")
        assert h.alive and h.last_ok is None and h.ticks == 0
        assert h.last_error == "ConnectionError: relayer down"
        assert told[0] == ("gated", "relayer down") and len(told) >= 3
        assert sup.alive
        gate.set()
        wait_until(lambda: sup.worker_health("gated").ticks >= 1)
        h = sup.worker_health("gated")
        assert h.failures == 0 and h.last_error is None and h.last_ok is not None
        assert h.as_json()["name"] == "gated"
    finally:
        sup.stop(timeout=5)
    assert not sup.alive and not sup.worker_health("gated").alive


def test_idle_sleep_is_cut_short_by_wake():
    ticks: list[float] = []

    class Idle:
        name = "idle"

        def tick(self) -> None:
            ticks.append(time.monotonic())
            return None  # nothing pending: sleep `idle` unless woken

    sup = Supervisor(idle=30.0)
    wake = sup.add(Idle())
    sup.start()
    try:
        wait_until(lambda: len(ticks) == 1)
        woken = time.monotonic()
        wake.set()
        wait_until(lambda: len(ticks) == 2, timeout=2.0)
        assert ticks[1] - woken < 1.0
        sup.wake("idle")
        wait_until(lambda: len(ticks) == 3, timeout=2.0)
    finally:
        started = time.monotonic()
        assert sup.stop(timeout=5)
        assert time.monotonic() - started < 1.0  # the 30 s idle sleep does not hold the stop


def test_a_given_wake_event_is_the_one_waited_on():
    event = threading.Event()
    ticks: list[int] = []

    class Once:
        name = "once"

        def tick(self) -> float:
            ticks.append(1)
            return 60.0

    sup = Supervisor()
    assert sup.add(Once(), wake=event) is event
    sup.start()
    try:
        wait_until(lambda: len(ticks) == 1)
        event.set()
        wait_until(lambda: len(ticks) == 2, timeout=2.0)
    finally:
        sup.stop(timeout=5)


def test_stop_lets_the_current_tick_finish_and_runs_shutdown_in_the_thread():
    in_tick, finished = threading.Event(), []
    threads: dict[str, str] = {}

    class Slow:
        name = "slow"

        def tick(self) -> float:
            in_tick.set()
            time.sleep(0.2)
            finished.append(True)
            return 0.0

        def shutdown(self) -> None:
            threads["shutdown"] = threading.current_thread().name

    sup = Supervisor([Slow()])
    sup.start()
    in_tick.wait(5)
    assert sup.stop(timeout=5)
    assert finished and threads["shutdown"] == "worker-slow"
    assert sup.stopping.is_set()


def test_stopping_event_interrupts_a_long_wait_inside_a_tick():
    sup = Supervisor()
    waited: list[float] = []

    class Patient:
        name = "patient"

        def __init__(self, stopping: threading.Event):
            self.stopping = stopping

        def tick(self) -> float:
            started = time.monotonic()
            self.stopping.wait(30)
            waited.append(time.monotonic() - started)
            return 0.0

    sup.add(Patient(sup.stopping))
    sup.start()
    time.sleep(0.05)
    assert sup.stop(timeout=5)
    assert waited and waited[0] < 1.0


def test_a_failed_startup_is_recorded_and_the_loop_runs_anyway():
    ticks: list[int] = []

    class BadStart:
        name = "badstart"

        def startup(self) -> None:
            raise ValueError("no chain")

        def tick(self) -> float:
            ticks.append(1)
            return 0.01

    sup = Supervisor([BadStart()], backoff=Backoff(initial=0.01, maximum=0.01))
    sup.start()
    try:
        wait_until(lambda: len(ticks) >= 2)
        assert sup.worker_health("badstart").last_error is None  # the first tick that returned cleared it
    finally:
        sup.stop(timeout=5)


def test_several_workers_run_independently_and_stop_joins_them_all():
    good, bad = Flaky("good", fail=0), Flaky("bad", fail=10**9)
    sup = Supervisor([good, bad], backoff=Backoff(initial=0.01, maximum=0.02))
    sup.start()
    try:
        wait_until(lambda: len(good.times) >= 20 and sup.worker_health("bad").failures >= 5)
        health = {h.name: h for h in sup.health()}
        assert health["good"].failures == 0 and health["bad"].last_error.startswith("RuntimeError: boom")
        assert sup.alive
    finally:
        assert sup.stop(timeout=5)
    assert good.events == bad.events == ["startup", "shutdown"]
    assert not {"worker-good", "worker-bad"} & {t.name for t in threading.enumerate()}


def test_names_are_unique_and_a_stopped_supervisor_takes_no_workers():
    sup = Supervisor([Flaky("a", 0)])
    with pytest.raises(ValueError, match="already supervised"):
        sup.add(Flaky("a", 0))
    sup.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        sup.add(Flaky("b", 0))


def test_a_gated_worker_idles_healthy_while_closed_and_starts_up_each_time_it_opens():
    """``Gated``: the relayer's senders on a follower (the gate: this process holds the sending lease)."""
    open_ = threading.Event()

    class Lost(Exception):
        pass

    worker = Flaky("sender", fail=0, delay=0.01)
    lose_next = threading.Event()
    tick = worker.tick

    def ticking() -> float | None:
        if lose_next.is_set():
            lose_next.clear()
            open_.clear()
            raise Lost("the gate closed during the tick")
        return tick()

    worker.tick = ticking
    sup = Supervisor([Gated(worker, open_.is_set, (Lost,))], idle=0.01)
    sup.start()
    try:
        time.sleep(0.1)
        health = sup.worker_health("sender")
        assert worker.times == [] and worker.events == [] and health.ticks > 3 and health.failures == 0
        open_.set()
        wait_until(lambda: len(worker.times) >= 3)
        assert worker.events == ["startup"]
        lose_next.set()  # closed mid-tick: an idle tick, not a failure
        wait_until(lambda: not lose_next.is_set())
        seen = len(worker.times)
        time.sleep(0.05)
        assert len(worker.times) == seen and sup.worker_health("sender").failures == 0
        open_.set()
        wait_until(lambda: len(worker.times) > seen)
        assert worker.events == ["startup", "startup"]  # opened again: started up again
    finally:
        sup.stop()
    assert worker.events == ["startup", "startup", "shutdown"]
