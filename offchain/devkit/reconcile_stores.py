"""Reconciliation of the node and verifier stores after a fault: every store compared with the others and with the
chain, each check returning the problems it found (an empty list: consistent), so a test asserts ``== []`` and sees
every mismatch at once (the relayer's own journal against the chain: ``reconcile.py``).

- ``reconcile_node``: what a node signed (its store) against what the relayer holds (its store) and what the escrow
  paid (``BatchSettled`` events and ``spent``): every receipt handed over and settled, each channel's receipts one
  chain of cumulatives (no receipt signed twice for one request, no two receipts for one cumulative), no conflicting
  receipt at the relayer, and each channel paid exactly its last cumulative, once; every ``exact`` payment settled
  or failed, as the token's ``authorizationState`` says.
- ``reconcile_verifier``: what a verifier decided (its store) against the relayer's verdicts and withholding reports
  and the chain's flags: every decision delivered with the signature stored, none the verifier does not hold, no two
  verdicts on one receipt, every flag it sent recorded as sent, nothing left pending.

The stores are read through ``offchain.storage.Database`` (SQLite here; a PostgreSQL relayer store reads the same), so
the failover tests' cluster of relayers can compare its stores with the chain with the same pieces. Dev-only."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from offchain.sdk.contracts import BatchSettled
from offchain.storage import Database


@dataclass(frozen=True)
class SignedByNode:
    """A receipt in a node's store (``outbox``: pending | delivered | refused)."""

    id: str
    request_id: str
    payer: str
    amount: int
    cumulative: int
    outbox: str


@dataclass(frozen=True)
class HeldByRelayer:
    """A receipt in a relayer's store (``status``: pending | settled | rejected ...)."""

    id: str
    request_id: str
    payer: str
    node: str
    amount: int
    cumulative: int
    status: str


def node_receipts(node_db: Database) -> list[SignedByNode]:
    """Every receipt a node's store holds, in signing order."""
    return [SignedByNode(r["id"].lower(), r["request_id"].lower(), r["payer"].lower(), int(r["amount"]),
                         int(r["cumulative"]), r["outbox"])
            for r in node_db.read("SELECT id, request_id, payer, amount, cumulative, outbox FROM receipts ORDER BY seq")]


def relayer_receipts(relayer_db: Database, node: str) -> dict[str, HeldByRelayer]:
    """The relayer's receipts of ``node``, by id."""
    rows = relayer_db.read("SELECT id, request_id, payer, node, amount, cumulative, status FROM receipts"
                           " WHERE lower(node) = ?", (node.lower(),))
    return {r["id"].lower(): HeldByRelayer(r["id"].lower(), r["request_id"].lower(), r["payer"].lower(),
                                           r["node"].lower(), int(r["amount"]), int(r["cumulative"]), r["status"])
            for r in rows}


def settled_on_chain(escrow: Any, from_block: int = 0) -> dict[tuple[str, str], list[int]]:
    """Every claim the escrow's ``BatchSettled`` events paid, by (payer, node) (lower case), in chain order."""
    paid: dict[tuple[str, str], list[int]] = defaultdict(list)
    for event in escrow.events.BatchSettled().get_logs(from_block=from_block):
        for claim in BatchSettled.from_event(event).claims:
            paid[(claim.payer.lower(), claim.node.lower())].append(claim.amount)
    return dict(paid)


def reconcile_node(node_db: Database, relayer_db: Database, node: str, escrow: Any, opg: Any,
                   from_block: int = 0) -> list[str]:
    """The problems between a node's store, the relayer's store and the chain (see the module docstring)."""
    node = node.lower()
    problems: list[str] = []
    signed = node_receipts(node_db)
    held = relayer_receipts(relayer_db, node)
    paid = settled_on_chain(escrow, from_block)
    requests: dict[str, str] = {}
    chains: dict[str, list[SignedByNode]] = defaultdict(list)
    for r in signed:
        if r.request_id in requests:
            problems.append(f"request {r.request_id} signed twice: receipts {requests[r.request_id]} and {r.id}")
        requests[r.request_id] = r.id
        chains[r.payer].append(r)
        if r.outbox != "delivered":
            problems.append(f"receipt {r.id} is {r.outbox} in the node's outbox, not delivered")
        h = held.get(r.id)
        if h is None:
            problems.append(f"receipt {r.id} signed by the node is unknown to the relayer")
        elif (h.request_id, h.payer, h.amount, h.cumulative) != (r.request_id, r.payer, r.amount, r.cumulative):
            problems.append(f"receipt {r.id}: the relayer holds {h}, the node signed {r}")
        elif h.status != "settled":
            problems.append(f"receipt {r.id} is {h.status} at the relayer, not settled")
    for rid in sorted(set(held) - {r.id for r in signed}):
        problems.append(f"the relayer holds receipt {rid} of this node that the node's store does not")
    for row in relayer_db.read("SELECT id, conflicts_with FROM conflicting_receipts WHERE lower(node) = ?", (node,)):
        problems.append(f"the relayer holds receipt {row['id']} conflicting with {row['conflicts_with']}: signed twice")
    for payer, receipts in chains.items():
        cumulative = 0
        for r in receipts:
            if r.cumulative != cumulative + r.amount:
                problems.append(f"channel {payer}: receipt {r.id} has cumulative {r.cumulative} after {cumulative} "
                                f"and amount {r.amount} (two receipts for one cumulative, or a gap)")
            cumulative = max(cumulative, r.cumulative)
        on_chain = paid.get((payer, node), [])
        spent = int(escrow.functions.spent(payer_address(payer), payer_address(node)).call())
        if sum(on_chain) != cumulative or spent != cumulative:
            problems.append(f"channel {payer}: the node signed up to {cumulative}, BatchSettled paid {on_chain} "
                            f"(sum {sum(on_chain)}), spent() is {spent}")
    for row in node_db.read("SELECT key, status FROM exact_payments"):
        payer, nonce = row["key"].split(":")
        used = bool(opg.functions.authorizationState(payer_address(payer), bytes.fromhex(nonce[2:])).call())
        if row["status"] not in ("settled", "failed"):
            problems.append(f"exact payment {row['key']} is {row['status']} in the node's store (used on-chain: {used})")
        elif used != (row["status"] == "settled"):
            problems.append(f"exact payment {row['key']} is {row['status']} in the node's store, used on-chain: {used}")
    return problems


def reconcile_verifier(verifier_db: Database, relayer_db: Database, verifier: str, staking: Any) -> list[str]:
    """The problems between a verifier's store, the relayer's store and the chain (see the module docstring)."""
    me = verifier.lower()
    problems: list[str] = []
    checks = verifier_db.read("SELECT id, receipt_hash, status, valid, signature, posted, withheld, reported,"
                              " flag_state, flag_tx FROM checks")
    verdicts: dict[str, list[Any]] = defaultdict(list)
    for v in relayer_db.read("SELECT receipt_hash, valid, signature FROM verdicts WHERE lower(verifier) = ?", (me,)):
        verdicts[v["receipt_hash"].lower()].append(v)
    reports = {r["receipt_hash"].lower() for r in relayer_db.read(
        "SELECT receipt_hash FROM withholding_reports WHERE lower(verifier) = ?", (me,))}
    decided = set()
    for c in checks:
        h, rid = c["receipt_hash"].lower(), c["id"]
        if c["status"] == "queued":
            problems.append(f"check {rid} still queued")
        if c["valid"] is not None:
            decided.add(h)
            held = verdicts.get(h, [])
            if c["posted"] != 1:
                problems.append(f"verdict on {rid} not delivered (posted={c['posted']})")
            if [(bool(v["valid"]), v["signature"].lower()) for v in held] != [(bool(c["valid"]),
                                                                                c["signature"].lower())]:
                problems.append(f"verdict on {rid}: the verifier signed valid={bool(c['valid'])}, the relayer "
                                f"holds {[(bool(v['valid']), v['signature'][:12]) for v in held]}")
        if c["withheld"] and (c["reported"] != 1 or h not in reports):
            problems.append(f"withholding report on {rid} not delivered (reported={c['reported']})")
        if c["flag_state"] == "pending":
            problems.append(f"flag of {rid} still pending")
        flagged = staking.functions.flagged_by(bytes.fromhex(h[2:]), payer_address(verifier)).call()
        if c["valid"] is not None and not c["valid"] and bool(flagged) != (c["flag_state"] == "sent"):
            problems.append(f"flag of {rid}: on-chain flagged_by={bool(flagged)}, the store says {c['flag_state']}")
        if c["flag_state"] == "sent" and not c["flag_tx"]:
            problems.append(f"flag of {rid} sent without its transaction recorded")
    for h in sorted(set(verdicts) - decided):
        problems.append(f"the relayer holds a verdict on {h} that the verifier's store does not")
    return problems


def until_consistent(problems: Callable[[], list[str]], timeout: float = 30, interval: float = 0.3) -> list[str]:
    """Ask ``problems()`` until it finds none (the daemons catching up: outboxes draining, batches mining) or
    ``timeout`` s passed; the problems it found last (empty: consistent)."""
    deadline = time.monotonic() + timeout
    while (found := problems()) and time.monotonic() < deadline:
        time.sleep(interval)
    return found


def payer_address(address: str) -> str:
    """A checksummed address (contract calls want one)."""
    from web3 import Web3

    return Web3.to_checksum_address(address)
