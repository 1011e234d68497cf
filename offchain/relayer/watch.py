"""The escrow's logs every relayer process must follow, leader or not: ``WithdrawalRequested`` and ``BatchProposed``.

/verify counts a live proposal's claims (R1, R2) and its pull on a node's pay capacity (R10) through
``Reservations.add_proposed``, and drops its cached balance of a payer that requested a withdrawal
(``payer_funds_changed``). Every process answers /verify, so every process scans these logs: this worker runs
ungated in each relayer (a follower's /verify would otherwise promise credits a live proposal may take). The
payers it finds must be settled at once (``urgent``); the batcher, which runs only on the lease holder, takes them
(``take_urgent``) with its own reasons (session keys expiring, receipts on a node a live proposal pays).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from eth_utils import event_abi_to_log_topic

from ..abi import abi
from ..chain import Chain
from ..messages import _address_of as address_of
from ..sdk.clock import ProtocolClock
from .events import Events
from .ledger import Ledger
from .proposals import TOPIC_PROPOSED, ProposedClaim, Reservations, decode_proposal
from .rpc import ChainFacts

log = logging.getLogger("opg.relayer.watch")

T = TypeVar("T")

TOPIC_WITHDRAWAL = event_abi_to_log_topic(next(x for x in abi("CreditEscrow")
                                               if x["type"] == "event" and x["name"] == "WithdrawalRequested"))
SCAN_INTERVAL = 1.0  # s between scans for withdrawal requests, proposals (and, the batcher's, expiring session keys)
WITHDRAWAL_LOOKBACK = 10_000  # blocks scanned for withdrawal requests and proposals at start
URGENT_BOUND = 10_000  # payers kept to settle at once before those with nothing pending are dropped


def topic_address(topic: bytes) -> str:
    return address_of(bytes(topic)[12:])


class ChainWatch:
    """The worker (``offchain.daemon.worker``) scanning the escrow's withdrawal requests and proposals every
    ``SCAN_INTERVAL`` in every relayer process."""

    name = "watch"

    def __init__(self, facts: ChainFacts, chain: Chain, retry: Callable[[Callable[[], T]], T], ledger: Ledger,
                 reservations: Reservations, clock: ProtocolClock, events: Events):
        self.facts, self.chain, self.retry = facts, chain, retry
        self.ledger, self.reservations, self.clock, self.events = ledger, reservations, clock, events
        self.escrow = chain.escrow
        self._log_block: int | None = None
        self._lock = threading.Lock()
        self._urgent: set[str] = set()

    def tick(self) -> float:
        self.scan()
        return SCAN_INTERVAL

    def take_urgent(self) -> set[str]:
        """The payers found to settle at once since the last call (the batcher's)."""
        with self._lock:
            urgent, self._urgent = self._urgent, set()
        return urgent

    def _flag(self, payer: str) -> None:
        with self._lock:
            self._urgent.add(payer)
            if len(self._urgent) > URGENT_BOUND:  # a follower's set, nobody taking it: keep payers still pending
                self._urgent = {p for p in self._urgent if self._pending(p)}

    def _pending(self, payer: str) -> bool:
        return any((ch := self.ledger.get(payer, node)) is not None and ch.pending
                   for node in list(self.ledger.by_payer.get(payer, ())))

    def scan(self) -> None:
        """Read the new ``WithdrawalRequested`` and ``BatchProposed`` logs up to the latest block."""
        latest = int(self.retry(lambda: self.chain.w3.eth.block_number))
        if self._log_block is None:
            self._log_block = max(self.chain.deployment.start_block, latest - WITHDRAWAL_LOOKBACK)
        if latest < self._log_block:
            return
        logs = self.retry(lambda: self.chain.w3.eth.get_logs({
            "address": self.escrow.address, "topics": [[TOPIC_WITHDRAWAL, TOPIC_PROPOSED]],
            "fromBlock": self._log_block, "toBlock": latest}))
        self._log_block = latest + 1
        for entry in logs:
            if bytes(entry["topics"][0]) == TOPIC_PROPOSED:
                self._proposed(entry)
                continue
            payer = topic_address(entry["topics"][1])
            self.events.payer_funds_changed.publish(payer)  # /verify re-reads its available_of
            if payer in self.ledger.by_payer:
                log.info("payer %s requested a withdrawal: settling its channels now", payer)
                self._flag(payer)

    def _proposed(self, entry: dict) -> None:
        """``BatchProposed``: reserve its claims for /verify until it expires, and settle what the relayers hold for
        its payers now (before the proposal is due)."""
        due, _expires, claims = decode_proposal(entry, self.facts.escrow_domain)
        proposer = topic_address(entry["topics"][2])
        if proposer == self.facts.relayer:
            return
        for claim in claims:
            claim.backed = self._backed(claim)
            self.reservations.add_proposed(claim)
            self.events.payer_funds_changed.publish(claim.payer)
            if claim.payer in self.ledger.by_payer:
                log.info("batch proposed by %s claims %s from %s (due at %d): settling its channels now", proposer,
                         claim.total, claim.payer, due)
                self._flag(claim.payer)
            # The claim uses up the node's pay capacity when due: settle what the relayers hold for the node first.
            for payer in list(self.ledger.by_node.get(claim.node, ())):
                ch = self.ledger.get(payer, claim.node)
                if ch is not None and ch.pending:
                    log.info("batch proposed by %s pays node %s (due at %d): settling %s's channels now", proposer,
                             claim.node, due, payer)
                    self._flag(payer)

    def _backed(self, claim: ProposedClaim) -> int:
        """What a proposed claim can take from its node's pay capacity, as /verify counts it: ``spent`` + the payer's
        balance now, at most its total; 0 if its voucher's signer is neither the payer nor a session key in force
        (the escrow skips it). Without this bound anyone could hold a node's capacity with free proposals of
        unfunded or unsigned claims. Credits deposited later may raise what it takes, but only by pay the node then
        receives from that payer (and the relayer settles the node's receipts at once meanwhile)."""
        esc: Any = self.escrow.functions
        if not claim.signer:
            return 0
        if claim.signer.lower() != claim.payer.lower():
            expiry = int(self.retry(lambda: esc.signer_of(claim.payer, claim.signer).call())[0])
            if expiry <= self.clock.now():
                return 0
        spent = int(self.retry(lambda: esc.spent(claim.payer, claim.node).call()))
        balance = int(self.retry(lambda: esc.balance_of(claim.payer).call()))
        claim.spent = spent
        return min(claim.total, spent + balance)
