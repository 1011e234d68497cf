"""What the relayer promised, and what others proposed to settle (issue 13, R1 and R2).

Only the escrow's facilitators settle at once; anyone else proposes a batch (``CreditEscrow.propose_batch``, logged as
``BatchProposed`` with its claims) and may settle it only ``claim_delay`` later, until one more claim delay has
passed. Two things follow for the relayer (a facilitator):

- **Settle first.** The batcher polls ``BatchProposed`` and settles every pending receipt of the proposal's payers at
  once (``Batcher._urgent_payers``), well inside the delay, so the claims this relayer accepted are paid before the
  proposed ones, which are then skipped for the balance or the session allowance they no longer have.
- **Promise nothing a live proposal may take.** Until a proposal expires, ``/verify`` counts its claims as reserved
  credits (and, for a session key's voucher, reserved allowance), like an accepted voucher: a payer cannot keep a
  proposal as a standing option to take credits that a node is promised later.

- **Promise no pay capacity a live proposal may take** (v3, R10). A proposal naming a node uses up the node's
  ``pay_capacity`` when it is settled, whoever its payer is (1 wei suffices to leave a promised claim short and
  skipped with reason 2). So ``/verify`` counts, against the node's capacity, its live proposals' claims, the
  promises it made for the node and the node's accepted-but-unsettled receipts (``node_reserved``), and the batcher
  settles every pending receipt on a node a live proposal names at once, as for the proposal's payers.

``/verify`` also records each voucher it accepts (``promise``) for 15 minutes (the ledger reserves the voucher's cap
once its receipts reach ``/settle``): the credits it promised are reserved at once, not only once the node hands the
receipt over after serving,
so two nodes are never promised the same credits, and in a batch the claims of promised channels go first
(``ordered``), before claims of channels nobody was promised anything on (a node handing over receipts it never
asked ``/verify`` about).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass

from eth_abi import decode as abi_decode
from eth_utils import event_abi_to_log_topic

from ..abi import abi
from ..messages import Domain, InvalidSignature, Voucher, _address_of, recover_signer

PROMISE_TTL = 900.0  # s a /verify acceptance reserves credits without a receipt handed over
PROPOSAL_TYPES = ["uint256", "uint256", "bytes32", "(address,address,uint256,bytes32,bytes32,uint256)[]"]


def _event(name: str) -> dict:
    return next(x for x in abi("CreditEscrow") if x["type"] == "event" and x["name"] == name)


TOPIC_PROPOSED = event_abi_to_log_topic(_event("BatchProposed"))


@dataclass
class ProposedClaim:
    payer: str
    node: str
    total: int
    signer: str  # the voucher's signer: the payer, a session key, or "" if unrecoverable
    expires_at: int  # chain time (exclusive)
    backed: int | None = None  # the total it can reach on the node's capacity (None: total; Batcher._backed)
    spent: int = 0  # the channel's spent when it was proposed (0 if not read)


def decode_proposal(entry: dict, domain: Domain) -> tuple[int, int, list[ProposedClaim]]:
    """(due_at, expires_at, claims) of a ``BatchProposed`` log."""
    due, expires, _root, claims = abi_decode(PROPOSAL_TYPES, bytes(entry["data"]))
    out = []
    for payer, node, cap, r, vs, total in claims:
        payer, node = _address_of(bytes.fromhex(payer[2:])), _address_of(bytes.fromhex(node[2:]))
        word = int.from_bytes(vs, "big")
        signature = r + (word & ((1 << 255) - 1)).to_bytes(32, "big") + bytes([27 + (word >> 255)])
        try:
            signer = recover_signer(Voucher(payer=payer, node=node, max_cumulative=cap).digest(domain), signature)
        except (InvalidSignature, ValueError):
            signer = ""
        out.append(ProposedClaim(payer, node, int(total), signer, int(expires)))
    return int(due), int(expires), out


class Reservations:
    """Proposed claims (until they expire, chain time) and /verify promises (until their receipts arrive or
    PROMISE_TTL), per channel, indexed by payer and by node (``/verify`` looks at one payer's and one node's
    channels, never at all of them). Thread-safe; memory only (a restarted relayer re-reads recent proposals from
    the chain; promises made before a restart are covered once their receipts arrive). On a store shared by several
    relayer processes the promises are also rows of the store (``Store.job_promise`` writes one under the intake
    lock, ``Store.catch_up`` loads every relayer's: ``load_promise``), so each relayer counts the others'."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proposed: dict[tuple[str, str], ProposedClaim] = {}
        self._promised: dict[tuple[str, str], tuple[int, str, float]] = {}  # (cap, signer, until monotonic)
        self._by_payer: dict[str, set[str]] = defaultdict(set)  # payer -> nodes with an entry
        self._by_node: dict[str, set[str]] = defaultdict(set)  # node -> payers with an entry
        self._promises_since_prune = 0

    # Index (under the lock) ----------------------------------------------------------------------------------------
    def _index(self, key: tuple[str, str]) -> None:
        self._by_payer[key[0]].add(key[1])
        self._by_node[key[1]].add(key[0])

    def _drop(self, entries: dict, key: tuple[str, str]) -> None:
        entries.pop(key, None)
        if key not in self._proposed and key not in self._promised:
            for index, a, b in ((self._by_payer, key[0], key[1]), (self._by_node, key[1], key[0])):
                found = index.get(a)
                if found is not None:
                    found.discard(b)
                    if not found:
                        del index[a]

    def _prune_promises(self, now: float) -> None:
        for key, (_cap, _signer, until) in list(self._promised.items()):
            if until <= now:
                self._drop(self._promised, key)

    # Writing -------------------------------------------------------------------------------------------------------
    def add_proposed(self, claim: ProposedClaim) -> None:
        with self._lock:
            key = (claim.payer, claim.node)
            old = self._proposed.get(key)
            if old is None or claim.total >= old.total or old.expires_at < claim.expires_at:
                backed = [c.total if c.backed is None else c.backed for c in (claim, old) if c is not None]
                self._proposed[key] = ProposedClaim(claim.payer, claim.node, max(claim.total, old.total if old
                                                    else 0), claim.signer, max(claim.expires_at,
                                                    old.expires_at if old else 0), max(backed),
                                                    max(claim.spent, old.spent if old else 0))
                self._index(key)

    def promise(self, payer: str, node: str, cap: int, signer: str) -> tuple[int, str, float]:
        """Promise the channel ``cap`` (kept if higher) for PROMISE_TTL; returns the promise (cap, signer, seconds
        it lasts)."""
        now = time.monotonic()
        with self._lock:
            old = self._promised.get((payer, node))
            entry = self._promised[(payer, node)] = (max(cap, old[0] if old else 0), signer, now + PROMISE_TTL)
            self._index((payer, node))
            self._promises_since_prune += 1
            if self._promises_since_prune >= 4096:  # expired promises of channels nobody asks about any more
                self._promises_since_prune = 0
                self._prune_promises(now)
        return entry[0], entry[1], PROMISE_TTL

    def load_promise(self, payer: str, node: str, cap: int, signer: str, remaining: float) -> None:
        """A promise as the shared store holds it (made by this relayer or another): it lasts ``remaining`` s more."""
        with self._lock:
            self._promised[(payer, node)] = (cap, signer, time.monotonic() + remaining)
            self._index((payer, node))

    # Reading -------------------------------------------------------------------------------------------------------
    def channels(self, payer: str, chain_now: int) -> dict[str, tuple[int, str]]:
        """node -> (highest total proposed or cap promised, its signer) for the payer's channels."""
        now = time.monotonic()
        out: dict[str, tuple[int, str]] = {}
        with self._lock:
            for node in list(self._by_payer.get(payer, ())):
                key = (payer, node)
                c = self._proposed.get(key)
                if c is not None:
                    if c.expires_at <= chain_now:
                        self._drop(self._proposed, key)
                    else:
                        out[node] = (c.total, c.signer)
                promised = self._promised.get(key)
                if promised is not None:
                    cap, signer, until = promised
                    if until <= now:
                        self._drop(self._promised, key)
                    elif cap > out.get(node, (0, ""))[0]:
                        out[node] = (cap, signer)
        return out

    def promised_cap(self, payer: str, node: str) -> int:
        with self._lock:
            entry = self._promised.get((payer, node))
        return entry[0] if entry and entry[2] > time.monotonic() else 0

    def _live_proposals(self, chain_now: int) -> list[ProposedClaim]:
        """Every live proposal (expired ones are dropped here: the batcher asks once a second)."""
        live = []
        for key, c in list(self._proposed.items()):
            if c.expires_at > chain_now:
                live.append(c)
            else:
                self._drop(self._proposed, key)
        return live

    def proposed_payers(self, chain_now: int) -> set[str]:
        with self._lock:
            return {c.payer for c in self._live_proposals(chain_now)}

    def proposed_nodes(self, chain_now: int) -> set[str]:
        """Nodes a live proposal (not this relayer's) pays: its claims will use up their pay capacity when due."""
        with self._lock:
            return {c.node for c in self._live_proposals(chain_now)}

    def node_channels(self, node: str, chain_now: int) -> dict[str, tuple[int, int]]:
        """payer -> (the highest of a live proposal's backed total and a live /verify promise on the payer's channel
        with ``node``, the channel's spent as last read with a proposal): what may still be paid to ``node``."""
        now = time.monotonic()
        out: dict[str, tuple[int, int]] = {}
        with self._lock:
            for p in list(self._by_node.get(node, ())):
                c = self._proposed.get((p, node))
                if c is not None and c.expires_at > chain_now:
                    amount, floor = out.get(p, (0, 0))
                    out[p] = (max(amount, c.total if c.backed is None else c.backed), max(floor, c.spent))
                promised = self._promised.get((p, node))
                if promised is not None and promised[2] > now:
                    amount, floor = out.get(p, (0, 0))
                    out[p] = (max(amount, promised[0]), floor)
        return out


def node_reserved(ledger, reservations: Reservations, node: str, payer: str,
                  chain_now: int) -> tuple[int, int, int]:
    """What the node's pay capacity must still cover (the review's capacity grief, v3): (reserved by the node's
    channels with other payers, this channel's live promise or proposed total, the ledger's settled sum over the
    node's channels). A channel reserves ``max(charged, live /verify promise, live proposed total) - settled``:
    the pay its accepted receipts, the requests /verify accepted for it (15 minutes) and anyone's live proposal
    may still take from the node's capacity. Once a promise's receipts arrived its ``charged`` covers them, so an
    unused voucher cap does not hold the node's capacity for ever.

    The ledger's running totals give the sum over the node's channels without walking its payers; only the few
    channels with a live promise or proposal are looked at one by one."""
    extra = reservations.node_channels(node, chain_now)
    reserved = ledger.node_open.get(node, 0)
    own = ledger.get(payer, node)
    if own is not None:
        reserved -= own.outstanding
    for p, (amount, floor) in extra.items():
        if p == payer:
            continue
        ch = ledger.get(p, node)
        charged, settled = (ch.charged, ch.settled) if ch else (0, 0)
        reserved += max(0, max(charged, amount) - max(settled, floor)) - max(0, charged - settled)
    return reserved, extra.get(payer, (0, 0))[0], ledger.node_settled.get(node, 0)


def reserved_with(ledger, reservations: Reservations, payer: str, node: str, signer: str | None,
                  chain_now: int) -> tuple[int, int, int, int]:
    """(reserved by the payer's other channels, this channel's reservation beyond the ledger's cap, reserved on the
    session key ``signer`` by its other channels, and this channel's beyond it): the ledger's accepted caps, raised
    to what /verify promised and what live proposals claim."""
    extra = reservations.channels(payer, chain_now)
    reserved, key_reserved = 0, 0
    nodes = set(ledger.by_payer.get(payer, ())) | set(extra)
    this_cap, this_key_cap = 0, 0
    for n in nodes:
        ch = ledger.get(payer, n)
        cap = ch.cap if ch else 0
        settled = ch.settled if ch else 0
        more, more_signer = extra.get(n, (0, ""))
        if n == node:
            this_cap = max(cap, more)
            if signer and more_signer.lower() == signer.lower():
                this_key_cap = more
            continue
        reserved += max(0, max(cap, more) - settled)
        if signer:
            key_cap = cap if ch and ch.signer and ch.signer.lower() == signer.lower() else 0
            if more_signer and more_signer.lower() == signer.lower():
                key_cap = max(key_cap, more)
            if key_cap:
                key_reserved += max(0, key_cap - max(settled, ch.payer_cap if ch else 0))
    return reserved, this_cap, key_reserved, this_key_cap
