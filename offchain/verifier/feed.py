"""The feed worker: long-polls the relayer's ``GET /feed/receipts`` from the persisted cursor, keeps every receipt
that verifies against this deployment, and queues a check for each one drawn (``Intake.drawn``)."""

from __future__ import annotations

import logging

from ..sdk.relayer_client import RelayerClient, RelayerUnavailable
from ..sdk.wire import parse_receipt
from .intake import Intake
from .metrics import Metrics, Trouble
from .payloads import check_node_signature
from .store import VerifierStore

log = logging.getLogger("opg.verifier")


class FeedReader:
    name = "feed"

    def __init__(self, relayer: RelayerClient, store: VerifierStore, intake: Intake, metrics: Metrics,
                 trouble: Trouble, poll_interval: float, batch: int):
        self.relayer, self.store, self.intake, self.metrics = relayer, store, intake, metrics
        self.trouble, self.poll_interval, self.batch = trouble, poll_interval, batch

    def tick(self) -> float:
        try:
            got = self.poll(wait=min(5.0, max(0.0, self.poll_interval * 4)))
        except RelayerUnavailable:
            self.trouble.relayer_ok = False
            raise
        self.trouble.relayer_ok = True
        return 0.0 if got else self.poll_interval

    def poll(self, wait: float = 0.0) -> int:
        """Read one page of the feed after the stored cursor; returns the number of receipts read."""
        cursor = int(self.store.get_state("feed_cursor", "0"))
        page = self.relayer.feed(after=cursor, limit=self.batch, wait=wait)
        items, sampled, skipped = [], set(), {}
        for entry in page.receipts:
            try:
                receipt = parse_receipt(entry.receipt)
            except ValueError as exc:
                log.warning("feed receipt %s is malformed: %s", entry.id, exc)
                continue
            it = self.intake.item(receipt, entry.seq)
            if it["id"] != entry.id.lower() or check_node_signature(receipt, self.intake.domain):
                log.warning("feed receipt %s does not verify against this deployment; ignored", entry.id)
                continue
            items.append(it)
            if self.intake.drawn(it):
                sampled.add(it["id"])
                reason = self.intake.skip_reason(receipt)
                if reason:
                    skipped[it["id"]] = reason
        self.store.add_feed_page(items, page.next, sampled, skipped)
        if sampled:
            self.intake.wake_checks()
        self.metrics.seen.inc(len(items))
        self.metrics.sampled.inc(len(sampled))
        for reason in skipped.values():
            self.metrics.skipped.inc(1, reason)
        return len(page.receipts)
