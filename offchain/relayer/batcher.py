"""Turning pending receipts into ``CreditEscrow.settle_batch`` transactions, and following them to confirmation.

States of a batch: ``built`` (recorded with its claims) -> ``sent`` (transaction hash and nonce recorded before the
broadcast) -> ``confirmed`` (mined ``confirmations`` deep; receipts settled or rejected per claim outcome) or
``failed`` (the transaction reverted: its receipts go back to the queue and are batched again). A batch whose every
claim the simulation skips ends ``skipped``. One batch is in flight at a time; it carries every pending receipt of
up to ``max_claims`` channels, so the claims (one per channel) grow with the number of channels, not of receipts.

After a restart, a ``built`` batch is simulated again and sent; a ``sent`` batch is looked up by each transaction
hash it was sent with: mined -> confirmed as usual; still pending -> waited for (fees raised after
``resend_after``); unknown -> simulated again and sent again. ``settle_batch`` pays each channel up to an absolute
total and skips claims already paid, so sending a batch twice never pays twice.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from eth_abi import decode as abi_decode
from eth_utils import event_abi_to_log_topic, function_abi_to_4byte_selector

from ..abi import abi
from ..chain import Chain
from ..messages import _address_of as address_of
from ..messages import compact_signature, merkle_root
from ..sdk.clock import ProtocolClock
from ..sdk.tx import BroadcastError, PreparedCall, TxManager, is_revert, is_transient, revert_message
from .events import Events
from .ledger import Ledger
from .metrics import Metrics
from .policy import BatchPolicy, RevertStreak, culprits
from .proposals import Reservations
from .rpc import ChainFacts
from .rules import ClaimResult
from .store import Store, lock_intake
from .watch import SCAN_INTERVAL, ChainWatch

log = logging.getLogger("opg.relayer.batcher")

SETTLED, STALE = 0, 1
# Static gas bound of settle_batch (EOA payers): bench/results/gas.json measures ~238k for the batch itself (a one-claim
# batch costs 257k on an existing channel, 274k on a new one) and 19k (existing) to 36k (new) per further claim; these
# leave room for first settlements (cold, zero-to-nonzero slots), an epoch's first settlement and the per-node fee
# forwarding. Larger needs fall back to estimation. (GAS_BASE was 150k: every one-claim batch ran out of gas once.)
GAS_BASE, GAS_PER_CLAIM, GAS_PER_NODE = 260_000, 45_000, 60_000
UNKNOWN_GRACE = 3.0  # seconds a transaction this process broadcast may stay unknown to the node


def _abi_item(kind: str, name: str) -> dict:
    return next(x for x in abi("CreditEscrow") if x["type"] == kind and x["name"] == name)


# settle_batch is encoded by hand: web3's generic argument normalisation costs ~10x more CPU for a 256-claim batch,
# CPU taken from the HTTP thread under the GIL.
SETTLE_SELECTOR = function_abi_to_4byte_selector(_abi_item("function", "settle_batch"))
SETTLE_TYPES = ["(address,address,uint256,bytes32,bytes32,uint256)[]", "bytes32"]
TOPIC_SKIPPED = event_abi_to_log_topic(_abi_item("event", "ClaimSkipped"))
TOPIC_BATCH = event_abi_to_log_topic(_abi_item("event", "BatchSettled"))
SESSION_FLUSH_MARGIN = 120  # settle a session key's channels once it expires sooner than this (s)
AMOUNT_BITS = 96
AMOUNT_MASK = (1 << AMOUNT_BITS) - 1


def settle_calldata(claims: list[dict], root: bytes) -> bytes:
    """ABI encoding of ``settle_batch(claims, root)``, laid out by hand (the tests check it against eth-abi).

    Each Claim ``(address payer, address node, uint256 max_cumulative, bytes32 r, bytes32 vs, uint256 total)`` is a
    static tuple (the voucher signature in EIP-2098 compact form), so the array is its length and six words per
    claim, inline."""
    out = [SETTLE_SELECTOR, (64).to_bytes(32, "big"), root, len(claims).to_bytes(32, "big")]
    for c in claims:
        r, vs = compact_signature(c["signature"])
        out += [bytes(12), bytes.fromhex(c["payer"][2:]), bytes(12), bytes.fromhex(c["node"][2:]),
                int(c["maxCumulative"]).to_bytes(32, "big"), r, vs, int(c["total"]).to_bytes(32, "big")]
    return b"".join(out)


def settle_call(w3: object, escrow: str, claims: list[dict], root: bytes) -> PreparedCall:
    return PreparedCall(w3, escrow, settle_calldata(claims, root))


def _topic_address(topic: bytes) -> str:
    return address_of(bytes(topic)[12:])


def _word(data: bytes, index: int) -> int:
    return int.from_bytes(data[32 * index:32 * index + 32], "big")


def _uint_array(data: bytes, head: int) -> list[int]:
    """The uint256[] whose offset is the ``head``-th word of ``data``."""
    start = _word(data, head) // 32
    return [_word(data, start + 1 + i) for i in range(_word(data, start))]


def decode_batch_logs(receipt: dict, escrow: str) -> tuple[dict, dict, int]:
    """(settled {(payer, node): delta}, skipped {(payer, node): (total, reason)}, batch amount).

    ``BatchSettled`` packs each settled claim as ``payer << 96 | delta`` (in claim order) and each node run as
    ``node << 96 | settled claims in the run``; the runs give each settled claim its node. A channel settled by two
    claims of one batch (payer-signed, then session-signed) sums its deltas. ``ClaimSkipped`` has indexed payer and
    node and (total, reason) in data."""
    settled: dict[tuple[str, str], int] = {}
    skipped, amount = {}, 0
    escrow = escrow.lower()
    for log_ in receipt["logs"]:
        if log_["address"].lower() != escrow or not log_["topics"]:
            continue
        topics, data = log_["topics"], bytes(log_["data"])
        topic = bytes(topics[0])
        if topic == TOPIC_SKIPPED:
            skipped[(_topic_address(topics[1]), _topic_address(topics[2]))] = (_word(data, 0), _word(data, 1))
        elif topic == TOPIC_BATCH:
            amount += _word(data, 0)
            packed, runs = _uint_array(data, 1), _uint_array(data, 2)
            i = 0
            for run in runs:
                node = address_of((run >> AMOUNT_BITS).to_bytes(20, "big"))
                for _ in range(run & AMOUNT_MASK):
                    word = packed[i]
                    i += 1
                    key = (address_of((word >> AMOUNT_BITS).to_bytes(20, "big")), node)
                    settled[key] = settled.get(key, 0) + (word & AMOUNT_MASK)
    return settled, skipped, amount


def claim_tuple(c: dict) -> tuple:
    r, vs = compact_signature(c["signature"])
    return (c["payer"], c["node"], int(c["maxCumulative"]), r, vs, int(c["total"]))


def channel_claims(ch: Any, rows: list) -> list[dict]:
    """The claims settling a channel's pending receipts: one with the channel's best voucher, preceded, when that
    voucher is a session key's and a payer-signed voucher covers part of the unsettled range, by a claim under the
    payer's own voucher, so the session key's allowance is charged only for what the payer's voucher does not
    cover (settle_batch settles both in order)."""
    total = max(int(r["cumulative"]) for r in rows)
    out = []
    if ch.signer and ch.payer_signature and ch.payer_cap > ch.settled:
        payer_total = min(ch.payer_cap, total)
        payer_rows = sum(1 for r in rows if int(r["cumulative"]) <= payer_total)
        out.append({"payer": ch.payer, "node": ch.node, "maxCumulative": str(ch.payer_cap),
                    "signature": ch.payer_signature, "total": str(payer_total), "receipts": payer_rows})
        if payer_total >= total:
            return out
        out.append({"payer": ch.payer, "node": ch.node, "maxCumulative": str(ch.cap),
                    "signature": ch.voucher_signature, "total": str(total), "receipts": len(rows) - payer_rows})
        return out
    return [{"payer": ch.payer, "node": ch.node, "maxCumulative": str(ch.cap), "signature": ch.voucher_signature,
             "total": str(total), "receipts": len(rows)}]


def root_of(ids: list[str]) -> bytes:
    return merkle_root([bytes.fromhex(i[2:]) for i in ids])


class SimulationReverted(Exception):
    pass


class SettlementBlocked(Exception):
    """settle_batch reverts for a reason no claim causes (the relayer is no facilitator...): receipts stay pending."""


@dataclass(frozen=True)
class BatcherConfig:
    """What the batcher is told: batch bounds, confirmation depth, when to replace a pending transaction."""

    max_claims: int  # most claims (channels) in one settle_batch
    max_batch_receipts: int  # most receipts one batch covers
    confirmations: int  # blocks a batch needs to count as confirmed
    resend_after: float  # re-broadcast with higher fees a transaction pending this long (s)

    @classmethod
    def of(cls, settings: Any) -> BatcherConfig:
        return cls(max_claims=int(settings.max_claims), max_batch_receipts=int(settings.max_batch_receipts),
                   confirmations=int(settings.confirmations), resend_after=float(settings.resend_after))


T = TypeVar("T")


def fenced(job: Callable[..., T], fence: Callable[..., None] | None, granted: int | None = None) -> Callable[..., T]:
    """A batch job that first checks, in its own transaction and after the intake lock (one lock order), that this
    process still holds the sending lease (``lease.fence``): a zombie leader's last build, rebuild, failure or
    rejection raises ``Fenced`` and changes nothing (it cannot move receipts out of the new leader's batch).
    ``granted``: the epoch the calling tick was granted (``lease.permit()``, read on the tick's thread when the job
    is made): a tick that began before another leader's sends is refused even if this process leads again."""
    if fence is None:
        return job

    def run(conn: Any, *args: Any) -> T:
        lock_intake(conn)
        if granted is None:
            fence(conn)
        else:
            fence(conn, granted)
        return job(conn, *args)
    return run


class Batcher:
    """The worker (``offchain.daemon.worker``) building, sending and following batches."""

    name = "batcher"

    def __init__(self, config: BatcherConfig, policy: BatchPolicy, facts: ChainFacts, store: Store, ledger: Ledger,
                 reservations: Reservations, sender: TxManager, chain: Chain, metrics: Metrics, clock: ProtocolClock,
                 events: Events, watch: ChainWatch, fence: Callable[..., None] | None = None,
                 permit: Callable[[], int] | None = None):
        self.settings, self.policy, self.facts = config, policy, facts
        self.fence = fence  # the sending lease's (lease.fence): every batch job checks it in its transaction
        self.permit = permit  # lease.permit: the epoch this tick is granted (0: none), checked by each job's fence
        self.watch = watch  # every process's scan of withdrawal requests and proposals: its urgent payers
        self.store, self.ledger, self.reservations = store, ledger, reservations
        self.sender, self.chain, self.metrics, self.clock, self.events = sender, chain, metrics, clock, events
        self.escrow = self.chain.escrow
        self._block_gas: tuple[int, float] | None = None
        self._urgent: set[str] = set()
        self._next_scan = 0.0
        self._key_expiry: dict[tuple[str, str], tuple[int, float]] = {}
        self._reverts = RevertStreak()  # of the batch being built or re-simulated (policy.BatchPolicy.give_up)
        self.blocked: str | None = None  # why settle_batch reverts whatever the claims (None: it does not)
        metrics.gauge("opg_relayer_settlement_blocked", "1 while settle_batch reverts for a reason no claim causes "
                      "(e.g. the relayer is no facilitator): receipts stay pending.",
                      lambda: {(): float(self.blocked is not None)})

    def _granted(self) -> int | None:
        """The epoch this tick's batch jobs are fenced under (``lease.permit()`` on the tick's thread), or None
        (one process, no lease: the fence checks the epoch held now)."""
        return self.permit() if self.permit is not None else None

    # The worker's entry point ----------------------------------------------------------------------------------
    def tick(self) -> None:
        """One step: scan for urgency, follow the batch in flight or build one when the policy says so (None: sleep
        the supervisor's idle interval)."""
        batch = self.store.inflight_batch()
        if batch is not None:
            self._advance(batch)
            return
        count, oldest = self.store.unbatched_summary()
        if not count:
            return
        urgent = self._urgent_payers()
        if self.policy.reason(count, time.time() - oldest, bool(urgent)):  # policy.py
            self._build(urgent)

    # Settling early ----------------------------------------------------------------------------------------------
    def _urgent_payers(self) -> set[str]:
        """Payers whose pending receipts must be settled now, whatever the batch size and age:

        - a payer that requested a withdrawal (``WithdrawalRequested``): its credits leave the escrow after the thaw,
          so its channels are settled at once;
        - a payer with claims in a batch someone proposed (``BatchProposed``): the proposer may settle it after the
          escrow's claim delay, so what this relayer accepted for the payer is settled first (R1, R2);
        - a payer with pending receipts on a node a live proposal pays (its claims use up the node's pay capacity
          when due, so what this relayer accepted for the node is settled first: security.md v3, capacity grief),
          receipts arriving while the proposal is live included;
        - a payer whose channel's best voucher is a session key's that expires within ``SESSION_FLUSH_MARGIN``
          (the escrow refuses an expired key's vouchers)."""
        self._urgent |= self.watch.take_urgent()  # withdrawal requests and proposals (watch.py)
        now = time.monotonic()
        if now < self._next_scan:
            if self._urgent:
                self._urgent &= self._pending_payers()
            return set(self._urgent)
        self._next_scan = now + SCAN_INTERVAL
        clock = self.clock.now()
        proposed_nodes = self.reservations.proposed_nodes(clock)
        proposed_payers = self.reservations.proposed_payers(clock)
        if proposed_nodes or proposed_payers:
            for ch in list(self.ledger.channels.values()):
                if ch.pending and (ch.node in proposed_nodes or ch.payer in proposed_payers) \
                        and ch.payer not in self._urgent:
                    log.info("a live proposal pays node %s or claims from %s: settling %s's channels now", ch.node,
                             ch.payer, ch.payer)
                    self._urgent.add(ch.payer)
        chain_now = None
        for ch in list(self.ledger.channels.values()):
            if not (ch.signer and ch.pending):
                continue
            key = (ch.payer, ch.signer)
            expiry = self._key_expiry.get(key)
            if expiry is None or expiry[1] < now:
                exp = int(self.sender.retry(lambda p=ch.payer, k=ch.signer:
                                            self.escrow.functions.signer_of(p, k).call())[0])
                expiry = self._key_expiry[key] = (exp, now + 30)
            if chain_now is None:
                chain_now = max(int(time.time()), int(self.sender.retry(
                    lambda: self.chain.w3.eth.get_block("latest"))["timestamp"]))
            if expiry[0] - chain_now < SESSION_FLUSH_MARGIN:
                if ch.payer not in self._urgent:
                    log.info("session key %s of %s expires in %d s: settling its channels now", ch.signer, ch.payer,
                             expiry[0] - chain_now)
                self._urgent.add(ch.payer)
        self._urgent &= self._pending_payers()
        return set(self._urgent)

    def _pending_payers(self) -> set[str]:
        return {ch.payer for ch in list(self.ledger.channels.values()) if ch.pending}

    def _promised_first(self, claims: list[dict]) -> list[dict]:
        """Claims ordered by node, except that the claims of channels /verify promised credits to go before those of
        channels nobody was promised anything on: settle_batch pays in order, so a payer's credits go to the nodes
        it was promised to first (R1: a node handing over receipts it never asked /verify about cannot take them)."""
        def promised(c: dict) -> bool:
            return self.reservations.promised_cap(c["payer"], c["node"]) >= int(c["total"])
        return sorted(claims, key=lambda c: (not promised(c), c["node"].lower(), c["payer"].lower()))

    # Building --------------------------------------------------------------------------------------------------
    def _build(self, urgent: set[str] | None = None) -> None:
        rows = self.store.unbatched(self.settings.max_batch_receipts, first=sorted(urgent or ()))
        by_channel: dict[tuple[str, str], list] = {}
        for row in rows:
            key = (row["payer"], row["node"])
            if key not in by_channel:
                if len(by_channel) >= self.settings.max_claims:
                    continue
                by_channel[key] = []
            by_channel[key].append(row)
        claims = []
        for (payer, node), channel_rows in by_channel.items():
            claims += channel_claims(self.ledger.get(payer, node), channel_rows)
        claims = self._promised_first(claims)
        ids = {k: [r["id"] for r in v] for k, v in by_channel.items()}
        root = root_of([i for v in ids.values() for i in v])
        try:
            go, skipped, gas = self._simulate(claims, root)
        except SimulationReverted as exc:  # never expected: see _culprits
            culprits = self._culprits(claims, str(exc))
            bad = [c for c in claims if (c["payer"], c["node"]) in culprits]
            bad_ids = {k: v for k, v in ids.items() if k in culprits}
            batch_id = self.store.call(fenced(Store.job_build_batch, self.fence, self._granted()), self.ledger, bad,
                                       "0x" + root_of([i for v in bad_ids.values() for i in v]).hex(), bad_ids, [],
                                       {}, time.time())
            if batch_id is not None:
                self._reject(batch_id, str(exc))
            return
        self._unblock()
        self._reverts = RevertStreak()
        go_ids = {(c["payer"], c["node"]): ids[(c["payer"], c["node"])] for c in go}
        skipped_ids = {(s.payer, s.node): ids[(s.payer, s.node)] for s in skipped}
        if skipped:
            root = root_of([i for v in go_ids.values() for i in v])
        batch_id = self.store.call(fenced(Store.job_build_batch, self.fence, self._granted()), self.ledger, go, "0x" + root.hex(), go_ids, skipped,
                                   skipped_ids, time.time())
        self._count_skipped(skipped, skipped_ids)
        if batch_id is None:
            return
        self.metrics.batches.inc(1, "built")
        log.info("built batch %d: %d claims, %d receipts", batch_id, len(go), sum(len(v) for v in go_ids.values()))
        self._send(batch_id, go, root, gas=gas)

    def _culprits(self, claims: list[dict], reason: str) -> set[tuple[str, str]]:
        """After settle_batch's simulation reverted as a whole (never expected: it skips bad claims one by one), the
        channels whose claims revert on their own, to be rejected; raises to keep every receipt pending otherwise.

        A revert about who calls or how the escrow is set up (the relayer is no facilitator: "batch not proposed")
        blocks settlement (``SettlementBlocked``: /healthz not ok with the reason, ``opg_relayer_settlement_blocked``
        1) until it goes away, e.g. the account is made a facilitator again; the receipts are never rejected for it.
        A revert the relayer is authorised for counts towards the policy's streak (``BatchPolicy.give_up``; until
        then ``SimulationReverted`` is retried with the worker's backoff), then the batch is bisected
        (``policy.culprits``) for the channels that revert alone; none found (only a combination reverts) also blocks.
        """
        me = self.sender.address
        if not self.sender.retry(lambda: self.escrow.functions.is_facilitator(me).call()):
            self._block(f"the relayer account {me} is not a facilitator of the escrow; receipts kept pending "
                        f"(settle_batch reverts: {reason})")
        self._reverts = self._reverts.after(reason)
        log.warning("batch simulation reverted (%d in a row): %s", self._reverts.count, reason)
        if not self.policy.give_up(self._reverts):
            raise SimulationReverted(reason)
        channels = list(dict.fromkeys((c["payer"], c["node"]) for c in claims))
        found = set(culprits(channels, lambda keys: self._reverts_alone([c for c in claims
                                                                         if (c["payer"], c["node"]) in keys])))
        if not found:
            self._block(f"settle_batch reverts with no claim to blame; receipts kept pending: {reason}")
        return found

    def _reverts_alone(self, claims: list[dict]) -> bool:
        """Whether settle_batch(claims) reverts as a whole (a simulation; transient errors raise)."""
        call = settle_call(self.chain.w3, self.escrow.address, claims, bytes(32))
        try:
            self.sender.retry(lambda: call.call({"from": self.sender.address}))
        except Exception as exc:
            if is_revert(exc):
                return True
            raise
        return False

    def _block(self, reason: str) -> None:
        if self.blocked != reason:
            log.error("settlement blocked: %s", reason)
        self.blocked = reason
        self._reverts = RevertStreak()
        raise SettlementBlocked(reason)

    def _unblock(self) -> None:
        if self.blocked is not None:
            log.warning("settlement unblocked (was: %s)", self.blocked)
        self.blocked = None
        self._reverts = RevertStreak()

    def _retire(self, batch_id: int) -> None:
        """Mark the batch's journal records done: its transaction was mined (a replacement retired the others of
        its nonce), or the batch ended without one that can still matter (re-simulated, nothing left to pay)."""
        if self.sender.journal is not None:
            for tx in self.store.transactions("batch", str(batch_id)):
                self.sender.journal.done(tx["tx_hash"])

    def _reject(self, batch_id: int, reason: str) -> None:
        """Reject a batch whose simulation keeps reverting, and its receipts, recording the reason."""
        receipts = len(self.store.batch_receipt_ids(batch_id))
        self.store.call(fenced(Store.job_reject_batch, self.fence, self._granted()), self.ledger, batch_id, reason, time.time())
        self._reverts = RevertStreak()
        self.metrics.batches.inc(1, "rejected")
        self.metrics.receipts_resolved.inc(receipts, "rejected")
        log.error("batch %d rejected with its %d receipts after %d simulation reverts: %s", batch_id, receipts,
                  self.policy.reject_after, reason)

    def _count_skipped(self, skipped: list[ClaimResult], ids: dict | None, per_claim: dict | None = None) -> None:
        for s in skipped:
            n = len(ids[(s.payer, s.node)]) if ids else (per_claim or {}).get((s.payer, s.node), 0)
            self.metrics.receipts_resolved.inc(n, "settled" if s.outcome == STALE else "rejected")

    def _simulate(self, claims: list[dict], root: bytes) -> tuple[list[dict], list[ClaimResult], int | None]:
        """eth_call settle_batch; split the claims into those that pay and those the contract would skip.

        The call runs under the static gas bound of the claims; when that succeeds and every claim pays, the bound
        is the transaction's gas limit (returned), so no eth_estimateGas is needed (on anvil that is a binary search
        of a dozen executions of the whole batch)."""
        if not claims:
            return [], [], None
        call = settle_call(self.chain.w3, self.escrow.address, claims, root)
        bound = self._gas_bound(claims)
        try:
            raw = self.sender.retry(lambda: call.call({"from": self.sender.address, "gas": bound}))
        except Exception as exc:
            if is_transient(exc):
                raise
            bound = None  # out of gas under the bound (e.g. ERC-1271 payers), or a revert: ask without a cap
            try:
                raw = self.sender.retry(lambda: call.call({"from": self.sender.address}))
            except Exception as exc2:
                if is_revert(exc2):
                    raise SimulationReverted(revert_message(exc2)) from exc2
                raise
        [outcomes] = abi_decode(["uint8[]"], bytes(raw))
        # A channel may have two claims (payer-signed, then session-signed): it goes ahead if either pays; it is
        # skipped, for its last claim's reason, if none does.
        by_channel: dict[tuple[str, str], list[tuple[dict, int]]] = {}
        for claim, outcome in zip(claims, outcomes, strict=True):
            by_channel.setdefault((claim["payer"], claim["node"]), []).append((claim, outcome))
        go, skipped = [], []
        for (payer, node), entries in by_channel.items():
            paying = [c for c, o in entries if o == SETTLED]
            if paying:
                go += paying
                continue
            claim, outcome = entries[-1]
            spent = None
            if outcome == STALE:
                spent = self.sender.retry(lambda p=payer, n=node: self.escrow.functions.spent(p, n).call())
            skipped.append(ClaimResult(payer, node, outcome, int(claim["total"]), spent))
            log.info("claim %s -> %s skipped at simulation (outcome %d)", payer, node, outcome)
        return go, skipped, bound if len(go) == len(claims) else None

    def _gas_bound(self, claims: list[dict]) -> int:
        """A generous upper bound of settle_batch's gas for EOA payers, within the block gas limit."""
        if self._block_gas is None or time.monotonic() > self._block_gas[1]:
            limit = int(self.sender.retry(lambda: self.chain.w3.eth.get_block("latest"))["gasLimit"])
            self._block_gas = (limit, time.monotonic() + 600)
        nodes = len({c["node"] for c in claims})
        bound = GAS_BASE + GAS_PER_CLAIM * len(claims) + GAS_PER_NODE * nodes
        return min(bound, self._block_gas[0] * 9 // 10)

    def _gas_for(self, claims: list[dict], root: bytes) -> int | None:
        """The static bound, if settle_batch(claims) succeeds under it now; else None (the TxManager estimates)."""
        bound = self._gas_bound(claims)
        call = settle_call(self.chain.w3, self.escrow.address, claims, root)
        try:
            self.sender.retry(lambda: call.call({"from": self.sender.address, "gas": bound}))
        except Exception as exc:
            if is_transient(exc):
                raise
            return None
        return bound

    def _send(self, batch_id: int, claims: list[dict], root: bytes, nonce: int | None = None, bump: int = 0,
              gas: int | None = None) -> None:
        call = settle_call(self.chain.w3, self.escrow.address, claims, root)
        try:
            gas = gas or self._gas_for(claims, root)
            self.sender.send(call, "batch", str(batch_id), gas=gas, nonce=nonce, bump=bump)
        except BroadcastError as exc:
            log.warning("batch %d: %s (will reconcile)", batch_id, exc)
            return
        self.metrics.batches.inc(1, "sent")

    # Following a batch in flight -------------------------------------------------------------------------------
    def _advance(self, batch: dict) -> None:
        if batch["status"] == "built":
            self._resimulate_and_send(batch)
            return
        txs = self.store.transactions("batch", str(batch["id"]))
        for tx in reversed(txs):
            receipt = self.sender.raw_receipt(tx["tx_hash"])
            if receipt is not None:
                self._mined(batch, tx["tx_hash"], receipt)
                return
        latest = txs[-1] if txs else None
        if latest is not None and self.sender.known(latest["tx_hash"]):
            if time.time() - latest["sent_at"] > self.settings.resend_after:
                log.warning("batch %d: %s pending for %.0fs; replacing it with higher fees", batch["id"],
                            latest["tx_hash"], time.time() - latest["sent_at"])
                claims = json.loads(batch["claims"])
                self._send(batch["id"], claims, bytes.fromhex(batch["receipts_root"][2:]), nonce=latest["nonce"],
                           bump=len(txs))
            return
        if (latest is not None and latest["tx_hash"] in self.sender.broadcast_this_run
                and time.time() - latest["sent_at"] < UNKNOWN_GRACE):
            return
        log.warning("batch %d: transaction %s unknown to the node; simulating again and re-sending", batch["id"],
                    latest["tx_hash"] if latest else None)
        self._resimulate_and_send(batch)

    def _resimulate_and_send(self, batch: dict) -> None:
        batch_id = batch["id"]
        ids: dict[tuple[str, str], list[str]] = {}
        for rid, payer, node in self.store.batch_receipt_ids(batch_id):
            ids.setdefault((payer, node), []).append(rid)
        claims = [c for c in json.loads(batch["claims"]) if (c["payer"], c["node"]) in ids]
        root = root_of([i for v in ids.values() for i in v])
        try:
            go, skipped, gas = self._simulate(claims, root)
        except SimulationReverted as exc:
            self._culprits(claims, str(exc))  # raises unless some claim alone reverts
            # Released to be batched again: the next build bisects them and rejects only the reverting claims.
            self._retire(batch_id)
            self.store.call(fenced(Store.job_batch_failed, self.fence, self._granted()), self.ledger, batch_id, f"simulation reverted: {exc}", time.time())
            self.metrics.batches.inc(1, "failed")
            return
        self._unblock()
        go_ids = {(c["payer"], c["node"]): ids[(c["payer"], c["node"])] for c in go}
        if skipped:
            root = root_of([i for v in go_ids.values() for i in v])
        counts = {k: len(v) for k, v in ids.items()}
        if not go:
            self._retire(batch_id)
        self.store.call(fenced(Store.job_rebuild_batch, self.fence, self._granted()), self.ledger, batch_id, go, "0x" + root.hex(), skipped, time.time())
        self._count_skipped(skipped, None, counts)
        if not go:
            self.metrics.batches.inc(1, "skipped")
            log.info("batch %d: nothing left to settle", batch_id)
            return
        self._send(batch_id, go, root, gas=gas)

    def _mined(self, batch: dict, tx_hash: str, receipt: Any) -> None:
        batch_id = batch["id"]
        if receipt["status"] != 1:
            log.warning("batch %d: %s reverted; its receipts go back to the queue", batch_id, tx_hash)
            self._retire(batch_id)  # done first: whoever sees the batch ended sees its journal settled too
            self.store.call(fenced(Store.job_batch_failed, self.fence, self._granted()), self.ledger, batch_id, f"transaction {tx_hash} reverted",
                            time.time())
            self.metrics.batches.inc(1, "failed")
            return
        depth = self.sender.block_number() - receipt["blockNumber"] + 1
        if depth < self.settings.confirmations:
            return
        settled, skipped, amount = decode_batch_logs(receipt, self.escrow.address)
        results: list[ClaimResult] = []
        claims = json.loads(batch["claims"])
        counts: dict[tuple[str, str], int] = {}
        for c in claims:
            counts[(c["payer"], c["node"])] = counts.get((c["payer"], c["node"]), 0) + int(c.get("receipts", 0))
        channels: dict[tuple[str, str], list[dict]] = {}
        for c in claims:
            channels.setdefault((c["payer"], c["node"]), []).append(c)
        for key, channel_claims_ in channels.items():
            payer, node = key
            if key in settled:
                skipped_total = skipped[key][0] if key in skipped else None
                total = max(int(c["total"]) for c in channel_claims_ if int(c["total"]) != skipped_total)
                results.append(ClaimResult(payer, node, SETTLED, total))
            else:
                reason = int(skipped[key][1]) if key in skipped else STALE
                spent = None
                if reason == STALE:
                    spent = self.sender.retry(lambda p=payer, n=node: self.escrow.functions.spent(p, n).call())
                results.append(ClaimResult(payer, node, reason, int(channel_claims_[-1]["total"]), spent))
        gas_price = int(receipt.get("effectiveGasPrice", 0))
        self._retire(batch_id)  # done first: whoever sees the batch confirmed sees its journal settled too
        latencies = self.store.call(Store.job_batch_confirmed, self.ledger, batch_id, tx_hash,
                                    receipt["blockNumber"], receipt["gasUsed"], gas_price, results, amount,
                                    time.time())
        m = self.metrics
        m.batches.inc(1, "confirmed")
        m.gas_used.inc(receipt["gasUsed"], "batch")
        m.fees_wei.inc(receipt["gasUsed"] * gas_price, "batch")
        m.settle_latency.observe_many(latencies)
        for res in results:
            n = counts.get((res.payer, res.node), 0)
            m.receipts_resolved.inc(n, "settled" if res.outcome in (SETTLED, STALE) else "rejected")
        log.info("batch %d confirmed in block %d (%s): %d claims, gas %d", batch_id, receipt["blockNumber"],
                 tx_hash, len(results), receipt["gasUsed"])
