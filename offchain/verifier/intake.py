"""Which receipts this verifier checks: the sampling draw (plus every receipt of a node found drifting), whether its
judge serves the model, and whether a receipt is accused (flagged on-chain or disputed by its payer)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from ..messages import Domain, SignedReceipt
from ..sdk.wire import receipt_json
from .judge import ReceiptJudge, drifting
from .metrics import Metrics
from .onchain import ChainAccess
from .payloads import receipt_hash, receipt_id
from .sampling import Sampler
from .store import VerifierStore

log = logging.getLogger("opg.verifier")

NOT_SERVED = "model not served by this verifier"


class Drift:
    """Teacher-forced statistics: a node whose tokens drift beyond the honest rate (binomial test) is sampled at
    rate 1 from then on and reported (``GET /drift``, the metric, the log), never slashed on this alone."""

    def __init__(self, store: VerifierStore, metrics: Metrics):
        self.store, self.metrics = store, metrics
        self.nodes = {d.node for d in store.drift() if d.flagged_at}
        self._lock = threading.Lock()

    def __contains__(self, node: str) -> bool:
        return node in self.nodes

    def note(self, node: str, scored: int, drifted: int, max_margin: float) -> None:
        totals = self.store.add_drift(node, scored, drifted, max_margin)
        with self._lock:
            if node in self.nodes or not drifting(totals.scored, totals.drifted):
                return
            self.nodes.add(node)
        self.store.flag_drift(node)
        self.metrics.drift_flags.inc()
        log.warning("node %s drifts from its claimed model: %d of %d tokens beyond the drift margin over %d "
                    "receipts; sampling all its receipts", node, totals.drifted, totals.scored,
                    totals.receipts)


class Intake:
    def __init__(self, domain: Domain, sampler: Sampler, judge: ReceiptJudge, drift: Drift, store: VerifierStore,
                 access: ChainAccess, wake_checks: Callable[[], None]):
        self.domain, self.sampler, self.judge, self.drift = domain, sampler, judge, drift
        self.store, self.access, self.wake_checks = store, access, wake_checks

    def item(self, receipt: SignedReceipt, seq: int | None = None) -> dict:
        return {"id": receipt_id(receipt, self.domain), "receipt_hash": receipt_hash(receipt),
                "node": receipt.node, "model_id": receipt.model_id.lower(), "receipt": receipt_json(receipt),
                "seq": seq}

    def drawn(self, item: dict) -> bool:
        return self.sampler(item["id"]) or item["node"] in self.drift

    def skip_reason(self, receipt: SignedReceipt) -> str | None:
        return None if self.judge.serves(receipt.model_id) else NOT_SERVED

    def accused(self, h: str) -> bool:
        """Whether the receipt is accused: flagged on-chain by anyone (seen in the ``Flagged`` events) or disputed."""
        return self.store.flagged(h) or self.dispute_open(h)

    def dispute_open(self, h: str) -> bool:
        """Whether the receipt's payer disputed it on-chain (``flag`` with a bond)."""
        d = self.access.chain().staking.functions.disputes(bytes.fromhex(h[2:])).call()
        return int(d[1]) > 0
