"""Submitting slashing evidence to NodeStaking.

- Equivocation: the store flags a receipt whose (node, requestId) it already holds under another digest and queues
  the pair; the slasher sends ``slash_equivocation(a, sig_a, b, sig_b)``.
- Fraud: once ``fraud_quorum`` distinct verifiers, active now, sent ``Verdict(valid=false)`` for a receipt held
  here, it sends ``slash_fraud(receipt, sig, verdicts)`` with the verdicts in ascending verifier order.
- Lazy verifier: once that fraud is proven (by this relayer or anyone), every stored ``Verdict(valid=true)`` on the
  receipt is sent to ``slash_lazy_verifier``.
Each submission is simulated first; evidence the contract already used ends ``skipped``, evidence it refuses for
another reason ends ``failed`` with the revert reason. States: queued -> sent -> confirmed | failed | skipped.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from web3.logs import DISCARD

from ..chain import ROLE_VERIFIER
from ..messages import Receipt
from ..types import b32
from .store import Store
from .txsender import BroadcastError, is_revert, revert_message

if TYPE_CHECKING:
    from .service import Relayer

log = logging.getLogger("opg.relayer.slasher")

MAX_VERDICTS = 16
RECHECK_AFTER = 5.0
UNKNOWN_GRACE = 3.0


def receipt_from_row(row: dict) -> Receipt:
    return Receipt(
        request_id=row["request_id"], payer=row["payer"], node=row["node"], model_id=row["model_id"],
        input_hash=row["input_hash"], output_hash=row["output_hash"], amount=int(row["amount"]),
        cumulative=int(row["cumulative"]), timestamp=row["timestamp"],
    )


class Slasher:
    def __init__(self, relayer: Relayer):
        self.r = relayer
        self.store = relayer.store
        self.sender = relayer.sender
        self.staking = relayer.sender_chain.staking
        self._quorum: tuple[int, float] | None = None
        self._recheck: dict[str, float] = {}

    def fraud_quorum(self) -> int:
        now = time.monotonic()
        if self._quorum is None or self._quorum[1] < now:
            self._quorum = (int(self.sender.retry(lambda: self.staking.functions.fraud_quorum().call())), now + 30)
        return self._quorum[0]

    # The worker's entry point ----------------------------------------------------------------------------------
    def tick(self) -> None:
        now = time.monotonic()
        for receipt_hash in self.store.fraud_candidates(self.fraud_quorum()):
            if self._recheck.get(receipt_hash, 0) <= now:
                self._queue_fraud(receipt_hash)
        for v in self.store.lazy_candidates():
            self.store.call(Store.job_queue_slash, "lazy_verifier", f"lazy:{v['receipt_hash']}:{v['verifier']}",
                            v["verifier"], {"receipt_hash": v["receipt_hash"], "verifier": v["verifier"],
                                            "signature": v["signature"]}, time.time())
        for slash in self.store.open_slashes():
            self._advance(slash)

    # Queueing fraud --------------------------------------------------------------------------------------------
    def _queue_fraud(self, receipt_hash: str) -> None:
        row = self.store.receipt_by_struct_hash(receipt_hash)
        if row is None:
            return
        evidence = f"fraud:{receipt_hash}"
        if self.sender.retry(lambda: self.staking.functions.fraud_proven_at(b32(receipt_hash)).call()) != 0:
            self.store.call(Store.job_queue_slash, "fraud", evidence, row["node"], {"receipt_id": row["id"],
                            "verdicts": []}, time.time())
            slash = self.store.slash_by_evidence(evidence)
            self.store.call(Store.job_slash_update, slash["id"], "skipped", None, "fraud already proven on-chain",
                            None, time.time())
            self.r.metrics.slashes.inc(1, "fraud", "skipped")
            return
        verdicts = []
        for v in self.store.verdicts(receipt_hash, valid=False):
            active = self.sender.retry(
                lambda v=v: self.staking.functions.is_active_as(v["verifier"], ROLE_VERIFIER).call())
            if active:
                verdicts.append({"verifier": v["verifier"], "signature": v["signature"]})
        if len(verdicts) < self.fraud_quorum():
            self._recheck[receipt_hash] = time.monotonic() + RECHECK_AFTER
            return
        verdicts.sort(key=lambda v: int(v["verifier"], 16))
        self.store.call(Store.job_queue_slash, "fraud", evidence, row["node"],
                        {"receipt_id": row["id"], "verdicts": verdicts[:MAX_VERDICTS]}, time.time())
        log.info("fraud quorum reached for receipt %s (%d verdicts)", receipt_hash, len(verdicts))

    # Sending and following -------------------------------------------------------------------------------------
    def _function(self, slash: dict) -> Any:
        args = json.loads(slash["args"])
        if slash["kind"] == "equivocation":
            a, b = self.store.receipt(args["a"]), self.store.receipt(args["b"])
            return self.staking.functions.slash_equivocation(
                receipt_from_row(a).as_tuple(), bytes.fromhex(a["signature"][2:]),
                receipt_from_row(b).as_tuple(), bytes.fromhex(b["signature"][2:]))
        if slash["kind"] == "fraud":
            row = self.store.receipt(args["receipt_id"])
            verdicts = [(v["verifier"], bytes.fromhex(v["signature"][2:])) for v in args["verdicts"]]
            return self.staking.functions.slash_fraud(
                receipt_from_row(row).as_tuple(), bytes.fromhex(row["signature"][2:]), verdicts)
        return self.staking.functions.slash_lazy_verifier(
            b32(args["receipt_hash"]), args["verifier"], bytes.fromhex(args["signature"][2:]))

    def _advance(self, slash: dict) -> None:
        if slash["status"] == "sent":
            txs = self.store.transactions("slash", str(slash["id"]))
            for tx in reversed(txs):
                receipt = self.sender.receipt(tx["tx_hash"])
                if receipt is not None:
                    self._mined(slash, tx["tx_hash"], receipt)
                    return
            latest = txs[-1] if txs else None
            if latest is not None and (self.sender.known(latest["tx_hash"]) or (
                    latest["tx_hash"] in self.sender.broadcast_this_run
                    and time.time() - latest["sent_at"] < UNKNOWN_GRACE)):
                return
            log.warning("slash %d: transaction unknown to the node; simulating again", slash["id"])
        fn = self._function(slash)
        try:
            self.sender.retry(lambda: fn.call({"from": self.sender.address}))
        except Exception as exc:
            if not is_revert(exc):
                raise
            message = revert_message(exc)
            status = "skipped" if "already used" in message else "failed"
            self.store.call(Store.job_slash_update, slash["id"], status, None, message, None, time.time())
            self.r.metrics.slashes.inc(1, slash["kind"], status)
            log.warning("slash %d (%s on %s) %s: %s", slash["id"], slash["kind"], slash["subject"], status, message)
            return
        try:
            self.sender.send(fn, "slash", str(slash["id"]))
        except BroadcastError as exc:
            log.warning("slash %d: %s", slash["id"], exc)
            return
        self.r.metrics.slashes.inc(1, slash["kind"], "sent")

    def _mined(self, slash: dict, tx_hash: str, receipt: Any) -> None:
        if receipt["status"] != 1:
            self.store.call(Store.job_slash_update, slash["id"], "failed", None, f"transaction {tx_hash} reverted",
                            None, time.time())
            self.r.metrics.slashes.inc(1, slash["kind"], "failed")
            return
        events = self.staking.events.Slashed().process_receipt(receipt, errors=DISCARD)
        amount = sum(e["args"]["amount"] for e in events)
        self.store.call(Store.job_slash_update, slash["id"], "confirmed", amount, None, None, time.time())
        self.r.metrics.slashes.inc(1, slash["kind"], "confirmed")
        self.r.metrics.gas_used.inc(receipt["gasUsed"], "slash")
        self.r.credit.forget_node(slash["subject"])
        log.info("slash %d (%s on %s) confirmed: %d slashed (%s)", slash["id"], slash["kind"], slash["subject"],
                 amount, tx_hash)
