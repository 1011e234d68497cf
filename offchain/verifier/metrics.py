"""The verifier's Prometheus metrics and its error record (the last error, whether the relayer answered)."""

from __future__ import annotations

from ..daemon.metrics import Registry

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics(Registry):
    def __init__(self) -> None:
        super().__init__()
        self.seen = self.counter("opg_verifier_receipts_seen_total", "Receipts read from the relayer's feed.")
        self.sampled = self.counter("opg_verifier_receipts_sampled_total", "Feed receipts drawn for re-execution.")
        self.flags_seen = self.counter("opg_verifier_flags_seen_total",
                                       "Flagged events of other accounts (verifiers, disputing payers).")
        self.disputes = self.counter("opg_verifier_disputes_received_total", "Payers' payloads received (POST /disputes).")
        self.checked = self.counter("opg_verifier_receipts_checked_total", "Receipts judged by re-execution.",
                                    ("source",))
        self.agreed = self.counter("opg_verifier_receipts_agreed_total", "Receipts judged valid.")
        self.disputed = self.counter("opg_verifier_receipts_disputed_total", "Receipts judged invalid (fraud, "
                                                                             "overcharge or wrong payload).")
        self.withheld = self.counter("opg_verifier_receipts_withheld_total",
                                     "Payloads a node did not release by the deadline (reported, no verdict).")
        self.skipped = self.counter("opg_verifier_receipts_skipped_total", "Receipts not judged, by reason.",
                                    ("reason",))
        self.verdicts = self.counter("opg_verifier_verdicts_posted_total", "Verdicts the relayer stored.", ("valid",))
        self.reports = self.counter("opg_verifier_withholding_reports_total", "Withholding reports the relayer took.")
        self.flags = self.counter("opg_verifier_flags_sent_total", "flag() transactions sent.", ("result",))
        self.heartbeats = self.counter("opg_verifier_heartbeats_total", "heartbeat() transactions sent.")
        self.evidence = self.counter("opg_verifier_evidence_shared_total",
                                     "Verifiers that took this verifier's evidence of a receipt it flagged.")
        self.drift_flags = self.counter("opg_verifier_drifting_nodes_total",
                                        "Nodes the teacher-forcing binomial test flagged (sampled at rate 1).")
        self.errors = self.counter("opg_verifier_errors_total", "Errors by place.", ("where",))
        self.reexec = self.histogram("opg_verifier_reexecution_seconds", "Time to re-execute one request.",
                                     LATENCY_BUCKETS)
        self.fetch = self.histogram("opg_verifier_payload_fetch_seconds", "Time of one payload request to a node.",
                                    LATENCY_BUCKETS)


class Trouble:
    """The last error anywhere (``/healthz``'s ``lastError``), counted by place, and whether the relayer answered
    the last call (``relayerOk``)."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics
        self.last_error: str | None = None
        self.relayer_ok: bool | None = None

    def error(self, where: str, exc: BaseException) -> None:
        self.last_error = f"{where}: {exc.__class__.__name__}: {str(exc)[:300]}"
        self.metrics.errors.inc(1, where)

