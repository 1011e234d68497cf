"""The durable outbox: hands every stored receipt to the relayer (``POST /settle``), off the response path.

The items are the JSON bytes committed with each receipt (``{"receipt": ..., "voucher": ...}``), sent exactly as
stored, one by one or as a bulk ``{"receipts": [item, ...]}``, so a resend after a crash is byte-identical and the
relayer answers it as a duplicate. While the relayer is unreachable (or answers 5xx) its supervisor retries
with exponential backoff (0.25 s doubling up to ``outbox_max_backoff``); a receipt the relayer refuses (4xx) is marked
``refused`` with the relayer's reason and not sent again (it shows at ``/healthz`` and in the metrics).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..sdk.relayer_client import RelayerClient, RelayerUnavailable
from .store import NodeStore, OutboxItem

log = logging.getLogger("opg.node.outbox")


class Outbox:
    """A worker (``offchain.daemon.worker``): each tick hands over one batch; the supervisor backs off while the relayer
    is unreachable and ``shutdown`` makes one last bounded attempt to hand over what is left."""

    name = "outbox"

    def __init__(self, store: NodeStore, relayer: RelayerClient, batch: int, metrics=None, flush_timeout: float = 5.0,
                 handed_over: Callable[[list[str]], None] = lambda ids: None):
        self.store, self.relayer, self.batch, self.metrics = store, relayer, batch, metrics
        self.flush_timeout, self.handed_over = flush_timeout, handed_over

    def tick(self) -> float | None:
        """Hand over one batch: at once again if it resolved any, else idle until a new receipt wakes it."""
        return 0.0 if self.send_once() else None

    def shutdown(self) -> None:
        """At stop: one last attempt (bounded by ``flush_timeout``) to hand over what is left."""
        deadline = time.monotonic() + self.flush_timeout
        try:
            while time.monotonic() < deadline and self.send_once():
                pass
        except RelayerUnavailable as exc:
            log.warning("outbox: relayer unreachable at shutdown (%s); %d receipt(s) will be handed over at the "
                        "next start", exc, self.store.outbox_counts().get("pending", 0))

    def send_once(self) -> int:
        """Hand over up to ``batch`` pending receipts; returns how many were resolved (0: nothing pending)."""
        items = self.store.outbox_pending(self.batch)
        if not items:
            return 0
        try:
            results = self._single(items[0]) if len(items) == 1 else self._bulk(items)
        except RelayerUnavailable as exc:
            self.store.outbox_attempted([i.seq for i in items], str(exc))
            if self.metrics is not None:
                self.metrics.outbox.inc(len(items), "retry")
            raise
        by_seq = {i.seq: i.id for i in items}
        delivered = [by_seq[seq] for seq, state, _status, _error in results if state == "delivered"]
        if delivered:
            self.handed_over(delivered)
        self.store.outbox_done(results)
        if self.metrics is not None:
            for _seq, state, _status, _error in results:
                self.metrics.outbox.inc(1, state)
            now = time.time()
            for item in items:
                self.metrics.handover_latency.observe(max(0.0, now - item.created_at))
        for seq, state, _status, error in results:
            if state == "refused":
                log.error("outbox: the relayer refused receipt #%d: %s", seq, error)
        return len(results)

    def _single(self, item: OutboxItem) -> list[tuple[int, str, str | None, str | None]]:
        status, body = self.relayer.hand_over(item.item)
        if status == 200 and isinstance(body, dict) and body.get("id"):
            if str(body["id"]).lower() != item.id.lower():
                log.error("outbox: the relayer gave receipt #%d id %s, not %s", item.seq, body["id"], item.id)
            return [(item.seq, "delivered", body.get("status"), None)]
        return [(item.seq, "refused", None, _reason(status, body))]

    def _bulk(self, items: list[OutboxItem]) -> list[tuple[int, str, str | None, str | None]]:
        body = b'{"receipts":[' + b",".join(i.item for i in items) + b"]}"
        status, answer = self.relayer.hand_over(body)
        if status != 200 or not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
            if status == 413:  # too many for this relayer: fall back to one by one
                return self._single(items[0])
            return [(i.seq, "refused", None, _reason(status, answer)) for i in items]
        out = []
        by_index = {r.get("index"): r for r in answer["results"] if isinstance(r, dict)}
        for index, item in enumerate(items):
            r = by_index.get(index)
            if r is None:
                continue  # not answered: stays pending
            if r.get("error") and r.get("error") != "equivocation":
                out.append((item.seq, "refused", None, f"{r.get('error')}: {r.get('reason')}"))
            elif r.get("error"):
                out.append((item.seq, "refused", r.get("status"), f"equivocation: {r.get('reason')}"))
            else:
                out.append((item.seq, "delivered", r.get("status"), None))
        return out


def _reason(status: int, body: object) -> str:
    if isinstance(body, dict) and body.get("error"):
        return f"HTTP {status} {body.get('error')}: {body.get('reason')} ({body.get('field')})"
    return f"HTTP {status}: {str(body)[:300]}"
