"""Every metric the relayer exposes at ``GET /metrics`` (primitives: ``offchain.daemon.metrics``)."""

from __future__ import annotations

from collections.abc import Callable

from ..daemon.metrics import CONTENT_TYPE, Counter, Gauge, Histogram  # noqa: F401  (CONTENT_TYPE re-exported)


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
