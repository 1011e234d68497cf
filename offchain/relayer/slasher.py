"""Submitting slashing evidence to NodeStaking.

- Equivocation: the store flags a receipt whose (node, requestId) it already holds under another digest and queues
  the pair; the slasher sends ``slash_equivocation(a, sig_a, b, sig_b)``.
- Fraud: verdicts count by stake weight. Once the ``Verdict(valid=false)`` signers held for a receipt reach the
  quorum, ``sum(vote_weight(v)) * 10000 >= total_weight_in(epoch_now()) * fraud_quorum_bps()``, it sends
  ``slash_fraud(receipt, sig, verdicts)`` with the verdicts in ascending verifier order.
- Lazy verifier: once that fraud is proven (by this relayer or anyone), every stored ``Verdict(valid=true)`` on the
  receipt is sent to ``slash_verifier`` (lazy).
- Validity: ``Verdict(valid=true)`` signers reaching the same quorum -> ``prove_valid``; then every stored
  ``Verdict(valid=false)`` on the receipt is sent to ``slash_verifier`` (false accuser), and so is every verifier
  that only flagged it on-chain (``Flagged`` without a bond: ``slash_verifier`` with an empty signature).
- Double vote: a verifier that signed both verdicts on one receipt -> ``slash_double_vote``.
- Invalid receipt: a receipt refused at ``/settle`` that no honest node signs (``amount > cumulative``, or dated more
  than ``MAX_FUTURE`` ahead of the chain) under the node's valid signature -> ``slash_invalid_receipt``
  (``CreditScheme.report_invalid``).
Each submission is simulated first; evidence the contract already used ends ``skipped``, evidence it refuses for
another reason ends ``failed`` with the revert reason. States: queued -> sent -> confirmed | failed | skipped.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from web3.logs import DISCARD

from ..chain import Chain
from ..messages import SignedReceipt
from ..sdk.tx import BroadcastError, TxManager, is_revert, revert_message
from ..types import b32
from .events import Events
from .metrics import Metrics
from .rpc import ChainFacts
from .store import Slash, Store, StoredReceipt

log = logging.getLogger("opg.relayer.slasher")

MAX_VERDICTS = 16
RECHECK_AFTER = 5.0
UNKNOWN_GRACE = 3.0


class Slasher:
    """The worker (``offchain.daemon.worker``) queueing and submitting slashing evidence."""

    name = "slasher"

    def __init__(self, facts: ChainFacts, store: Store, sender: TxManager, chain: Chain, metrics: Metrics,
                 events: Events):
        self.facts, self.store, self.sender, self.metrics, self.events = facts, store, sender, metrics, events
        self.staking = chain.staking
        self.distributor = chain.distributor
        self._quorum: tuple[int, float] | None = None
        self._recheck: dict[tuple[str, str], float] = {}
        self._flags_read: set[str] = set()
        self._arrivals: dict[str, int] = {}  # verdicts received per receipt hash (API thread), see verdict_arrived
        events.verdict_stored.subscribe(self.verdict_arrived)

    def fraud_quorum_bps(self) -> int:
        now = time.monotonic()
        if self._quorum is None or self._quorum[1] < now:
            self._quorum = (int(self.sender.retry(lambda: self.staking.functions.fraud_quorum_bps().call())), now + 30)
        return self._quorum[0]

    def verdict_arrived(self, receipt_hash: str) -> None:
        """A new verdict on the receipt: count its quorum again at the next tick, not after ``RECHECK_AFTER`` (also
        when it arrives while the worker is counting it)."""
        self._arrivals[receipt_hash] = self._arrivals.get(receipt_hash, 0) + 1
        self._recheck.pop(("fraud", receipt_hash), None)
        self._recheck.pop(("valid", receipt_hash), None)

    def quorum_reached(self, weight: int, total: int) -> bool:
        return total > 0 and weight * 10_000 >= total * self.fraud_quorum_bps()

    # The worker's entry point ----------------------------------------------------------------------------------
    def tick(self) -> None:
        now = time.monotonic()
        for receipt_hash in self.store.slashes.fraud_candidates():
            if self._recheck.get(("fraud", receipt_hash), 0) <= now:
                self._queue_proof(receipt_hash, valid=False)
        for receipt_hash in self.store.slashes.verdict_candidates(True, "valid"):
            if self._recheck.get(("valid", receipt_hash), 0) <= now:
                self._queue_proof(receipt_hash, valid=True)
        for proof, valid, kind in (("fraud", True, "lazy"), ("valid", False, "false_accuser")):
            for v in self.store.slashes.contrary_candidates(proof, valid, kind):
                self.store.call(Store.job_queue_slash, "lazy_verifier" if kind == "lazy" else kind,
                                f"{kind}:{v.receipt_hash}:{v.verifier}", v.verifier,
                                {"receipt_hash": v.receipt_hash, "verifier": v.verifier, "signature": v.signature},
                                time.time())
        for proof in self.store.slashes.proofs_done("prove_valid", time.time() - self.facts.dispute_window):
            self._queue_flag_accusers(proof.evidence.split(":", 1)[1])
        for d in self.store.slashes.double_votes():
            self.store.call(Store.job_queue_slash, "double_vote", f"double:{d.receipt_hash}:{d.verifier}",
                            d.verifier, {"receipt_hash": d.receipt_hash, "verifier": d.verifier,
                                         "sig_true": d.sig_true, "sig_false": d.sig_false}, time.time())
        for slash in self.store.slashes.open():
            self._advance(slash)

    # Queueing proofs -------------------------------------------------------------------------------------------
    def _queue_proof(self, receipt_hash: str, valid: bool) -> None:
        """Queue ``slash_fraud`` (valid=False) or ``prove_valid`` (valid=True) once the verdicts' weight is a quorum."""
        row = self.store.receipts.by_struct_hash(receipt_hash)
        if row is None:
            return
        kind, prefix = ("prove_valid", "valid") if valid else ("fraud", "fraud")
        arrivals = self._arrivals.get(receipt_hash, 0)
        evidence = f"{prefix}:{receipt_hash}"
        h = b32(receipt_hash)
        proven = self.sender.retry(lambda: self.staking.functions.fraud_proven_at(h).call())
        proven_valid = self.sender.retry(lambda: self.staking.functions.valid_proven_at(h).call())
        if (proven if not valid else proven_valid) != 0:
            self._record_skipped(kind, evidence, row, f"{'validity' if valid else 'fraud'} already proven on-chain")
            return
        if (proven_valid if not valid else proven) != 0:
            self._record_skipped(kind, evidence, row, "the opposite outcome is proven on-chain", status="failed")
            return
        verdicts, weight = [], 0
        for sv in self.store.slashes.verdicts(receipt_hash, valid=valid):
            w = int(self.sender.retry(lambda sv=sv: self.staking.functions.vote_weight(sv.verifier).call()))
            if w > 0:
                verdicts.append({"verifier": sv.verifier, "signature": sv.signature, "weight": w})
                weight += w
        total = self.total_vote_weight()
        # Heaviest first up to MAX_VERDICTS, then ascending verifier order (what the contract requires).
        verdicts.sort(key=lambda v: -v["weight"])
        verdicts = verdicts[:MAX_VERDICTS]
        weight = sum(v["weight"] for v in verdicts)
        if not self.quorum_reached(weight, total):
            if self._arrivals.get(receipt_hash, 0) == arrivals:  # else a verdict came in meanwhile: count again
                self._recheck[(prefix, receipt_hash)] = time.monotonic() + RECHECK_AFTER
            return
        self._arrivals.pop(receipt_hash, None)
        verdicts.sort(key=lambda v: int(v["verifier"], 16))
        self.store.call(Store.job_queue_slash, kind, evidence, row.node,
                        {"receipt_id": row.id, "verdicts": [{"verifier": v["verifier"], "signature": v["signature"]}
                                                               for v in verdicts]}, time.time())
        log.info("%s quorum reached for receipt %s (%d verdicts, weight %d of %d)", prefix, receipt_hash,
                 len(verdicts), weight, total)

    def _queue_flag_accusers(self, receipt_hash: str) -> None:
        """Verifiers that accused a receipt proven valid only by an on-chain flag (no verdict here): slash them as
        false accusers too (``slash_verifier`` with an empty signature). Each proof's flags are read once a run."""
        if receipt_hash in self._flags_read:
            return
        h = b32(receipt_hash)
        events = self.sender.retry(lambda: self.staking.events.Flagged().get_logs(
            argument_filters={"receipt_hash": h}, from_block=self.facts.start_block))
        for ev in events:
            if ev["args"]["bond"] == 0:  # a verifier's flag (a payer's dispute carries a bond)
                v = ev["args"]["flagger"]
                self.store.call(Store.job_queue_slash, "false_accuser", f"false_accuser:{receipt_hash}:{v}", v,
                                {"receipt_hash": receipt_hash, "verifier": v, "signature": "0x"}, time.time())
        self._flags_read.add(receipt_hash)

    def _record_skipped(self, kind: str, evidence: str, row: StoredReceipt, reason: str,
                        status: str = "skipped") -> None:
        self.store.call(Store.job_queue_slash, kind, evidence, row.node, {"receipt_id": row.id, "verdicts": []},
                        time.time())
        slash = self.store.slashes.by_evidence(evidence)
        self.store.call(Store.job_slash_update, slash.id, status, None, reason, None, time.time())
        self.metrics.slashes.inc(1, kind, status)

    def total_vote_weight(self) -> int:
        """The live verifier weight proofs are counted against now: ``total_weight_in(epoch_now())``."""
        distributor = self.distributor
        epoch = int(self.sender.retry(lambda: distributor.functions.epoch_now().call()))
        return int(self.sender.retry(lambda: self.staking.functions.total_weight_in(epoch).call()))

    # Sending and following -------------------------------------------------------------------------------------
    def _function(self, slash: Slash) -> Any:
        args = slash.args
        if slash.kind == "equivocation":
            a, b = self.store.receipts.get(args["a"]), self.store.receipts.get(args["b"])
            return self.staking.functions.slash_equivocation(
                a.message().as_tuple(), bytes.fromhex(a.signature[2:]),
                b.message().as_tuple(), bytes.fromhex(b.signature[2:]))
        if slash.kind in ("fraud", "prove_valid"):
            row = self.store.receipts.get(args["receipt_id"])
            verdicts = [(v["verifier"], bytes.fromhex(v["signature"][2:])) for v in args["verdicts"]]
            fn = self.staking.functions.slash_fraud if slash.kind == "fraud" else self.staking.functions.prove_valid
            return fn(row.message().as_tuple(), bytes.fromhex(row.signature[2:]), verdicts)
        if slash.kind == "invalid_receipt":
            receipt = SignedReceipt.model_validate(args["receipt"])
            return self.staking.functions.slash_invalid_receipt(receipt.as_tuple(),
                                                                bytes.fromhex(receipt.signature[2:]))
        if slash.kind == "double_vote":
            return self.staking.functions.slash_double_vote(
                b32(args["receipt_hash"]), args["verifier"], bytes.fromhex(args["sig_true"][2:]),
                bytes.fromhex(args["sig_false"][2:]))
        # lazy_verifier and false_accuser: one entry point, the contract tells them apart by the proven outcome.
        return self.staking.functions.slash_verifier(
            b32(args["receipt_hash"]), args["verifier"], bytes.fromhex(args["signature"][2:]))

    def _advance(self, slash: Slash) -> None:
        if slash.status == "sent":
            txs = self.store.tx_journal().of("slash", str(slash.id))
            for tx in reversed(txs):
                receipt = self.sender.receipt(tx.tx_hash)
                if receipt is not None:
                    self._mined(slash, tx.tx_hash, receipt)
                    return
            latest = txs[-1] if txs else None
            if latest is not None and (self.sender.known(latest.tx_hash) or (
                    latest.tx_hash in self.sender.broadcast_this_run
                    and time.time() - latest.sent_at < UNKNOWN_GRACE)):
                return
            log.warning("slash %d: transaction unknown to the node; simulating again", slash.id)
        fn = self._function(slash)
        try:
            self.sender.retry(lambda: fn.call({"from": self.sender.address}))
        except Exception as exc:
            if not is_revert(exc):
                raise
            message = revert_message(exc)
            status = "skipped" if "already used" in message or "already proven" in message else "failed"
            self.store.call(Store.job_slash_update, slash.id, status, None, message, None, time.time())
            self.metrics.slashes.inc(1, slash.kind, status)
            log.warning("slash %d (%s on %s) %s: %s", slash.id, slash.kind, slash.subject, status, message)
            return
        try:
            self.sender.send(fn, "slash", str(slash.id))
        except BroadcastError as exc:
            log.warning("slash %d: %s", slash.id, exc)
            return
        self.metrics.slashes.inc(1, slash.kind, "sent")

    def _mined(self, slash: Slash, tx_hash: str, receipt: Any) -> None:
        if self.sender.journal is not None:  # mined: the journal record (and the others of its nonce) are done
            self.sender.journal.done(tx_hash)
        if receipt["status"] != 1:
            self.store.call(Store.job_slash_update, slash.id, "failed", None, f"transaction {tx_hash} reverted",
                            None, time.time())
            self.metrics.slashes.inc(1, slash.kind, "failed")
            return
        events = self.staking.events.Slashed().process_receipt(receipt, errors=DISCARD)
        amount = sum(e["args"]["amount"] for e in events)
        self.store.call(Store.job_slash_update, slash.id, "confirmed", amount, None, None, time.time())
        self.metrics.slashes.inc(1, slash.kind, "confirmed")
        self.metrics.gas_used.inc(receipt["gasUsed"], "slash")
        self.events.node_slashed.publish(slash.subject)
        log.info("slash %d (%s on %s) confirmed: %d slashed (%s)", slash.id, slash.kind, slash.subject,
                 amount, tx_hash)
