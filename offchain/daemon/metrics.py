"""Prometheus text exposition (format 0.0.4): counters, callback gauges and histograms, and a registry that renders
them. Every daemon (relayer, node, verifier) serves its registry at ``GET /metrics``."""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class Counter:
    kind = "counter"

    def __init__(self, name: str, help_: str, labels: tuple[str, ...] = ()):
        self.name, self.help, self.label_names = name, help_, labels
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def inc(self, amount: float = 1, *labels: str) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0)

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        values = dict(self._values) or ({(): 0} if not self.label_names else {})
        for labels, value in sorted(values.items()):
            lines.append(f"{self.name}{_labels(self.label_names, labels)} {_num(value)}")
        return lines


class Gauge:
    """A gauge read at scrape time from a callback returning ``{label values: value}``."""

    kind = "gauge"

    def __init__(self, name: str, help_: str, read: Callable[[], dict[tuple[str, ...], float]],
                 labels: tuple[str, ...] = ()):
        self.name, self.help, self.label_names, self.read = name, help_, labels, read

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        for labels, value in sorted(self.read().items()):
            lines.append(f"{self.name}{_labels(self.label_names, labels)} {_num(value)}")
        return lines


class Histogram:
    kind = "histogram"

    def __init__(self, name: str, help_: str, buckets: tuple[float, ...]):
        self.name, self.help = name, help_
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0
        self._count = 0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self._counts[bisect.bisect_left(self.buckets, value)] += 1
            self._sum += value
            self._count += 1

    def observe_many(self, values: list[float]) -> None:
        with self._lock:
            for value in values:
                self._counts[bisect.bisect_left(self.buckets, value)] += 1
                self._sum += value
            self._count += len(values)

    @property
    def count(self) -> int:
        return self._count

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        running = 0
        for bound, count in zip(self.buckets + (float("inf"),), self._counts, strict=True):
            running += count
            lines.append(f'{self.name}_bucket{{le="{_num(bound)}"}} {running}')
        lines.append(f"{self.name}_sum {_num(self._sum)}")
        lines.append(f"{self.name}_count {self._count}")
        return lines


class Registry:
    """A daemon's metrics, rendered in registration order."""

    def __init__(self) -> None:
        self._metrics: list[Counter | Gauge | Histogram] = []

    def add(self, metric):
        self._metrics.append(metric)
        return metric

    def counter(self, name: str, help_: str, labels: tuple[str, ...] = ()) -> Counter:
        return self.add(Counter(name, help_, labels))

    def histogram(self, name: str, help_: str, buckets: tuple[float, ...]) -> Histogram:
        return self.add(Histogram(name, help_, buckets))

    def gauge(self, name: str, help_: str, read: Callable[[], dict[tuple[str, ...], float]],
              labels: tuple[str, ...] = ()) -> Gauge:
        return self.add(Gauge(name, help_, read, labels))

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics:
            lines += metric.render()
        return "\n".join(lines) + "\n"
