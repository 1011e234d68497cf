"""Prometheus text exposition (format 0.0.4) of the relayer's counters, gauges and histograms."""

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


class Metrics:
    """Every metric the relayer exposes at ``GET /metrics``."""

    def __init__(self) -> None:
        self.receipts_accepted = Counter("opg_relayer_receipts_accepted_total", "Receipts stored as pending.")
        self.receipts_duplicate = Counter(
            "opg_relayer_receipts_duplicate_total", "Receipts submitted again (answered from the store)."
        )
        self.receipts_refused = Counter(
            "opg_relayer_receipts_refused_total", "Receipts refused at submission, by error.", ("error",)
        )
        self.receipts_resolved = Counter(
            "opg_relayer_receipts_resolved_total", "Receipts settled or rejected after batching.", ("status",)
        )
        self.batches = Counter("opg_relayer_batches_total", "Batch state transitions.", ("status",))
        self.gas_used = Counter("opg_relayer_gas_used_total", "Gas used by the relayer's confirmed transactions.",
                                ("kind",))
        self.fees_wei = Counter("opg_relayer_fees_wei_total", "Fees paid by the relayer (wei).", ("kind",))
        self.slashes = Counter("opg_relayer_slashes_total", "Slashing submissions, by kind and outcome.",
                               ("kind", "status"))
        self.verdicts = Counter("opg_relayer_verdicts_total", "Verdicts accepted, by value.", ("valid",))
        self.verify = Counter("opg_relayer_verify_total", "POST /verify answers.", ("scheme", "result"))
        self.exact = Counter("opg_relayer_exact_settlements_total", "exact settlements, by result.", ("result",))
        self.rpc_errors = Counter("opg_relayer_rpc_errors_total", "RPC calls that failed and were retried.")
        self.settle_latency = Histogram(
            "opg_relayer_settle_latency_seconds",
            "From a receipt's acceptance to its batch's confirmation on-chain.",
            (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 900),
        )
        self.ack_latency = Histogram(
            "opg_relayer_settle_ack_seconds",
            "POST /settle (opg-credit) handling time, body read to answer.",
            (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.commit_work = Histogram(
            "opg_relayer_store_commit_work_seconds", "Time a group commit spends running its jobs (SQL).",
            (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
        self.commit_sync = Histogram(
            "opg_relayer_store_commit_sync_seconds", "Time a group commit spends in COMMIT (WAL write and fsync).",
            (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
        self.commit_jobs = Histogram(
            "opg_relayer_store_commit_jobs", "Jobs (submissions, batch updates) per group commit.",
            (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024))
        self.gauges: list[Gauge] = []

    def gauge(self, name: str, help_: str, read: Callable[[], dict[tuple[str, ...], float]],
              labels: tuple[str, ...] = ()) -> None:
        self.gauges.append(Gauge(name, help_, read, labels))

    def render(self) -> str:
        lines: list[str] = []
        for metric in (
            self.receipts_accepted, self.receipts_duplicate, self.receipts_refused, self.receipts_resolved,
            self.batches, self.gas_used, self.fees_wei, self.slashes, self.verdicts, self.verify, self.exact,
            self.rpc_errors, self.settle_latency, self.ack_latency, self.commit_work, self.commit_sync,
            self.commit_jobs, *self.gauges,
        ):
            lines += metric.render()
        return "\n".join(lines) + "\n"
