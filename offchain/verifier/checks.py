"""Checks: the dispatcher worker runs due checks on a pool; one check fetches the payload from the node (unless a
dispute brought it), asks the judge, and signs a ``Verdict`` (or, if the node withheld the payload past the deadline,
a ``PayloadWithheld`` report: not a vote, never slashable, so a node withholding from one verifier alone cannot get
it slashed as a false accuser, attack R4)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ..messages import Domain, PayloadWithheld, SignedReceipt, Verdict
from ..sdk.wire import parse_receipt
from .intake import NOT_SERVED, Drift
from .judge import CannotJudge, ReceiptJudge
from .metrics import Metrics, Trouble
from .payloads import PayloadClient, plain
from .store import Check, VerifierStore

log = logging.getLogger("opg.verifier")

MAX_ERRORS = 5


@dataclass(frozen=True)
class Signer:
    """This verifier's signing identity: its address, key and the NodeStaking domain."""

    address: str
    key: bytes
    domain: Domain


@dataclass(frozen=True)
class CheckPolicy:
    payload_deadline: float  # a node must release a payload within this many seconds of the first attempt
    payload_retry: float  # seconds between fetch attempts
    flag_fraud: bool  # flag on-chain what sampling found fraudulent


class Checker:
    def __init__(self, signer: Signer, store: VerifierStore, judge: ReceiptJudge, payloads: PayloadClient,
                 endpoint: Callable[[str], str], drift: Drift, metrics: Metrics, trouble: Trouble,
                 policy: CheckPolicy, decided: Callable[[], None], signed: Callable[[str], None] = lambda rid: None):
        self.signer, self.store, self.judge, self.payloads, self.endpoint = signer, store, judge, payloads, endpoint
        self.drift, self.metrics, self.trouble, self.policy, self.decided = drift, metrics, trouble, policy, decided
        self.signed = signed  # a verdict on this receipt id was signed, not yet stored

    def run(self, row: Check) -> None:
        rid = row.id
        try:
            self._check(row)
        except Exception as exc:
            self.trouble.error("check", exc)
            log.exception("check of %s failed", rid)
            if row.attempts + 1 >= MAX_ERRORS:
                self.store.skip(rid, f"error: {exc.__class__.__name__}: {exc}")
                self.metrics.skipped.inc(1, "error")
            else:
                now = time.time()
                self.store.attempt_failed(rid, f"error: {exc}", now, now + self.policy.payload_retry * 2)

    def _check(self, row: Check) -> None:
        rid = row.id
        receipt = parse_receipt(self.store.receipt(rid).receipt)
        if not self.judge.serves(receipt.model_id):
            self.store.skip(rid, NOT_SERVED)
            self.metrics.skipped.inc(1, NOT_SERVED)
            return
        payload = row.payload
        if payload is None and self.judge.needs_payload:
            endpoint = self.endpoint(receipt.node)
            fetched = self.payloads.fetch(endpoint, receipt, rid)
            self.metrics.fetch.observe(fetched.seconds)
            if fetched.payload is None:
                now = time.time()
                first = row.first_attempt_at or now
                if now - first >= self.policy.payload_deadline:
                    self.withheld(row, receipt, f"withheld: no payload within {self.policy.payload_deadline:g} s "
                                                f"({fetched.error})")
                else:
                    self.store.attempt_failed(rid, fetched.error or "no payload", first,
                                              now + self.policy.payload_retry)
                return
            payload = fetched.payload
        elif payload is not None and not isinstance(payload.get("pricing"), dict):
            pricing = self.payloads.pricing(self.endpoint(receipt.node), receipt.model_id)
            if pricing is not None:
                payload = {**payload, "pricing": pricing}
        try:
            j = self.judge(plain(receipt), payload)
            if not j.valid and row.source == "sample" and payload is not None:
                self.store.keep_payload(rid, payload)  # the evidence this verifier shares once it has flagged
        except CannotJudge as exc:
            self.store.skip(rid, str(exc))
            self.metrics.skipped.inc(1, "cannot judge")
            return
        if j.rerun is not None or j.scored:
            self.metrics.reexec.observe(j.seconds)
        if j.scored:
            self.drift.note(receipt.node, j.scored, j.drifted, j.max_margin or 0.0)
        self.metrics.checked.inc(1, row.source)
        self.decide(row, j.valid, j.reason, seconds=j.seconds)

    def withheld(self, row: Check, receipt: SignedReceipt, reason: str) -> bool:
        """The node did not release the payload by the deadline: a signed ``PayloadWithheld`` report, never a
        verdict (no vote either way, no flag), so nobody can turn it into a false-accuser slash of this verifier."""
        signature = PayloadWithheld(receipt_hash=row.receipt_hash, node=receipt.node).sign_with(
            self.signer.key, self.signer.domain)
        if not self.store.withheld(row.id, reason, signature):
            return False
        self.metrics.withheld.inc()
        self.decided()
        log.warning("node %s withheld the payload of %s (reported, no verdict): %s", receipt.node, row.id, reason)
        return True

    def decide(self, row: Check, valid: bool, reason: str, seconds: float | None = None) -> bool:
        h = row.receipt_hash
        signature = Verdict(receipt_hash=h, valid=valid).sign_with(self.signer.key, self.signer.domain)
        self.signed(row.id)
        flag = (not valid and self.policy.flag_fraud and row.source == "sample"
                and not self.store.flagged_by_others(h, self.signer.address))
        if not self.store.decide(row.id, valid, reason, signature, seconds, flag):
            return False
        (self.metrics.agreed if valid else self.metrics.disputed).inc()
        self.decided()
        log.info("receipt %s of node %s: %s (%s)", row.id, row.node, "valid" if valid else "INVALID", reason)
        return True


class CheckDispatcher:
    """The work worker: starts due checks on the pool, up to its size at once (woken when a check ends or new
    checks are queued)."""

    name = "work"

    def __init__(self, checker: Checker, store: VerifierStore, pool: ThreadPoolExecutor, size: int,
                 wake: Callable[[], None], poll_interval: float):
        self.checker, self.store, self.pool, self.size = checker, store, pool, size
        self.wake, self.poll_interval = wake, poll_interval
        self.running: dict[str, Future] = {}

    def tick(self) -> float:
        self.running = {k: f for k, f in self.running.items() if not f.done()}
        free = self.size - len(self.running)
        if free > 0:
            for row in self.store.due_checks(time.time(), set(self.running), free):
                self.running[row.id] = self.pool.submit(self._run_and_wake, row)
        return min(0.1, self.poll_interval)

    def _run_and_wake(self, row: Check) -> None:
        try:
            self.checker.run(row)
        finally:
            self.wake()
