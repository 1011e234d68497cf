"""Every metric the node exposes at ``GET /metrics`` (primitives: ``offchain.daemon.metrics``)."""

from __future__ import annotations

from ..daemon.metrics import Registry


class NodeMetrics(Registry):
    def __init__(self) -> None:
        super().__init__()
        self.requests = self.counter("opg_node_requests_total", "Chat requests answered, by scheme, mode and outcome.",
                                     ("scheme", "mode", "outcome"))
        self.payment_required = self.counter("opg_node_payment_required_total", "402 answers, by error.", ("error",))
        self.verify = self.counter("opg_node_verify_total", "Payment verifications, by scheme and result.",
                                   ("scheme", "result"))
        self.charged = self.counter("opg_node_charged_wei_total", "OPG (wei) charged, by scheme.", ("scheme",))
        self.receipts = self.counter("opg_node_receipts_total", "Receipts signed and stored.")
        self.tokens = self.counter("opg_node_tokens_total", "Tokens processed, by kind.", ("kind",))
        self.model_errors = self.counter("opg_node_model_errors_total", "Backend failures (nothing charged).",
                                         ("model",))
        self.cancelled = self.counter("opg_node_streams_cancelled_total", "Streams the client left before the end.")
        self.outbox = self.counter("opg_node_outbox_total", "Receipt hand-overs to the relayer, by result.",
                                   ("result",))
        self.payloads = self.counter("opg_node_payloads_total", "Payload requests, by result.", ("result",))
        self.generation = self.histogram("opg_node_generation_seconds", "Time a backend takes to answer.",
                                         (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120))
        self.handover_latency = self.histogram("opg_node_handover_seconds",
                                               "From a receipt's signature to the relayer's acknowledgement.",
                                               (0.01, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 300, 3600))
        self.store_commit = self.histogram("opg_node_store_commit_seconds", "Receipt commits (with fsync).",
                                           (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
