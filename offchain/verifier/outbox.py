"""The verdict outbox worker: hands decided verdicts (``POST /verdicts``) and withholding reports (``POST
/reports/withholding``) to the relayer, retrying while it is down; a 4xx is final (stored as refused)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from ..sdk.relayer_client import RelayerClient, RelayerUnavailable
from .metrics import Metrics, Trouble
from .store import VerifierStore

log = logging.getLogger("opg.verifier")


class VerdictOutbox:
    name = "outbox"

    def __init__(self, relayer: RelayerClient, store: VerifierStore, address: str, metrics: Metrics, trouble: Trouble,
                 poll_interval: float, posted: Callable[[str], None] = lambda rid: None,
                 reported: Callable[[str], None] = lambda rid: None):
        self.relayer, self.store, self.address, self.metrics = relayer, store, address, metrics
        self.trouble, self.poll_interval = trouble, poll_interval
        self.posted, self.reported = posted, reported  # the relayer took it; not yet recorded

    def tick(self) -> float:
        self.flush()
        return self.poll_interval

    def flush(self) -> None:
        for row in self.store.unposted():
            if row.valid is not None and row.posted == 0:
                body = {"receiptHash": row.receipt_hash, "valid": row.valid, "verifier": self.address,
                        "signature": row.signature}
                try:
                    status, answer = self.relayer.verdict(body)
                except RelayerUnavailable as exc:
                    self.trouble.relayer_ok = False
                    self.trouble.error("outbox", exc)
                    return
                if status == 200:
                    self.posted(row.id)
                    self.store.mark_posted(row.id, 1)
                    self.metrics.verdicts.inc(1, str(row.valid).lower())
                elif 400 <= status < 500:
                    self.store.mark_posted(row.id, -1, _text(answer))
                    log.warning("relayer refused the verdict on %s: %s", row.id, _text(answer))
                else:
                    return
            if row.withheld and row.reported == 0 and row.report_signature:
                receipt = self.store.receipt(row.id).receipt
                body = {"receiptHash": row.receipt_hash, "verifier": self.address,
                        "signature": row.report_signature, "receipt": receipt,
                        "reason": (row.reason or "")[:200]}
                try:
                    status, answer = self.relayer.withholding(body)
                except RelayerUnavailable as exc:
                    self.trouble.error("outbox", exc)
                    return
                if status == 200:
                    self.reported(row.id)
                    self.store.mark_reported(row.id, 1)
                    self.metrics.reports.inc()
                elif 400 <= status < 500:
                    self.store.mark_reported(row.id, -1)
                    log.warning("relayer refused the withholding report on %s: %s", row.id, _text(answer))


def _text(answer: object) -> str:
    return json.dumps(answer, separators=(",", ":"))[:300]
