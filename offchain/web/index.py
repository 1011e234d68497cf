"""What the web app knows, read from the chain's events and the relayer's API, kept up to date by one refresher.

Chain: ``BatchSettled`` (with each transaction's gas), ``FeesCredited``, ``EmissionCollected``, ``EpochFinalized``,
``Slashed``, ``Jailed``/``Unjailed``, ``FraudProven``/``ValidityProven``, ``Registered``/``EndpointUpdated``, the
payer's ``Deposited``/``WithdrawalRequested``/``Withdrawn``/``WithdrawalCanceled``/``SignerAuthorized``, and OPG's
``AuthorizationUsed`` in transactions sent to the token (the ``exact`` payments, for their gas). Logs are read
incrementally from the last block seen.

Relayer: every receipt from ``/feed/receipts`` (in acceptance order), each one's status and batch from
``/receipts/{id}`` until it is final (settled or rejected), and ``/batches``. That map of receipts to batches is what
the Merkle proofs are computed from: a batch's leaves are the ids of its settled receipts, as the relayer's
``root_of`` builds them (``offchain.messages.merkle_root``: sorted leaves, sorted pairs), and the root computed here is
checked against the ``receipts_root`` of the batch's ``BatchSettled`` log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..chain import Chain
from ..daemon.worker import Supervisor
from ..messages import merkle_proof, merkle_root, verify_merkle_proof
from ..sdk.constants import slash_kind
from ..sdk.contracts import BatchSettled, NodeRecord
from ..sdk.relayer_client import RelayerClient, RelayerError

log = logging.getLogger("opg.web")

FINAL = ("settled", "rejected")


def _hex(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    text = value.hex() if hasattr(value, "hex") and not isinstance(value, str) else str(value)
    return text if text.startswith("0x") else "0x" + text


@dataclass
class Snapshot:
    """Everything read so far (replaced, never mutated, by each refresh: readers need no lock)."""

    block: int = -1
    batches: list[dict] = field(default_factory=list)  # on-chain BatchSettled, oldest first
    relayer_batches: dict[int, Any] = field(default_factory=dict)  # id -> BatchView
    fees: list[dict] = field(default_factory=list)
    emissions: list[dict] = field(default_factory=list)
    finalized: dict[int, dict] = field(default_factory=dict)
    slashes: list[dict] = field(default_factory=list)
    jails: list[dict] = field(default_factory=list)
    proofs: dict[str, dict] = field(default_factory=dict)  # receipt hash -> FraudProven/ValidityProven
    accounts: dict[str, dict] = field(default_factory=dict)  # address -> {role, endpoint, registeredAt}
    payer_events: list[dict] = field(default_factory=list)
    exact_txs: list[dict] = field(default_factory=list)
    receipts: dict[str, dict] = field(default_factory=dict)  # receipt id -> feed item + relayer status
    updated_at: float = 0.0
    error: str | None = None


class Index:
    def __init__(self, chain: Chain, relayer: RelayerClient, payer: str):
        self.chain = chain
        self.relayer = relayer
        self.payer = payer
        self.snap = Snapshot()
        self._lock = threading.Lock()
        self._cursor = 0
        self._times: dict[int, int] = {}
        self._gas: dict[str, tuple[int, int]] = {}
        self.every = 1.5
        self._supervisor = Supervisor([self])

    # Refreshing: the index is a worker (offchain.daemon.worker), refreshed every ``every`` seconds ----------------
    name = "web-index"

    def start(self, every: float = 1.5) -> None:
        self.every = every
        self._supervisor.start()

    def stop(self) -> None:
        self._supervisor.stop(timeout=10)

    def tick(self) -> float:
        self.refresh()
        return self.every

    def refresh(self) -> Snapshot:
        with self._lock:
            old = self.snap
            new = Snapshot(**{k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
                              for k, v in old.__dict__.items()})
            new.receipts = {k: dict(v) for k, v in old.receipts.items()}
            try:
                self._chain(new)
                new.error = None
            except Exception as exc:  # the chain went away: keep what we have, say so
                log.warning("chain read failed: %s", exc)
                new.error = f"chain: {exc.__class__.__name__}: {str(exc)[:120]}"
            try:
                self._relayer(new)
            except RelayerError as exc:
                new.error = f"relayer: {exc}"
            new.updated_at = time.time()
            self.snap = new
            return new

    def block_time(self, number: int) -> int:
        if number not in self._times:
            self._times[number] = int(self.chain.w3.eth.get_block(number)["timestamp"])
        return self._times[number]

    def tx_gas(self, tx: str) -> tuple[int, int]:
        """(gasUsed, effectiveGasPrice) of a transaction."""
        if tx not in self._gas:
            r = self.chain.w3.eth.get_transaction_receipt(tx)
            self._gas[tx] = (int(r["gasUsed"]), int(r.get("effectiveGasPrice") or 0))
        return self._gas[tx]

    def _logs(self, event: Any, start: int, end: int, **filters: Any) -> list:
        kw: dict[str, Any] = {"from_block": start, "to_block": end}
        if filters:
            kw["argument_filters"] = filters
        return list(event.get_logs(**kw))

    def _chain(self, s: Snapshot) -> None:
        w3 = self.chain.w3
        latest = w3.eth.block_number
        if latest <= s.block:
            return
        start, end = s.block + 1, latest
        esc, stk, dist = self.chain.escrow.events, self.chain.staking.events, self.chain.distributor.events
        for lg in self._logs(stk.Registered, start, end):
            s.accounts[lg.args.node] = {"address": lg.args.node, "role": int(lg.args.role),
                                        "endpoint": lg.args.endpoint, "block": lg.blockNumber}
        for lg in self._logs(stk.EndpointUpdated, start, end):
            if lg.args.node in s.accounts:
                s.accounts[lg.args.node]["endpoint"] = lg.args.endpoint
        for lg in self._logs(esc.BatchSettled, start, end):
            tx = _hex(lg.transactionHash)
            gas, price = self.tx_gas(tx)
            settled = [{"payer": c.payer, "node": c.node, "amount": c.amount}
                       for c in BatchSettled.from_event(lg).claims]
            s.batches.append({"tx": tx, "block": lg.blockNumber, "time": self.block_time(lg.blockNumber),
                              "root": _hex(lg.args.receipts_root), "amount": int(lg.args.amount),
                              "claims": len(settled), "settled": settled, "gas": gas, "gasPrice": price})
        for lg in self._logs(dist.FeesCredited, start, end):
            s.fees.append({"tx": _hex(lg.transactionHash), "block": lg.blockNumber,
                           "time": self.block_time(lg.blockNumber), "node": lg.args.node, "epoch": int(lg.args.epoch),
                           "gross": int(lg.args.gross), "nodeShare": int(lg.args.node_share),
                           "protocolFee": int(lg.args.protocol_fee), "verifierFee": int(lg.args.verifier_fee)})
        for lg in self._logs(dist.EmissionCollected, start, end):
            s.emissions.append({"tx": _hex(lg.transactionHash), "node": lg.args.node, "epoch": int(lg.args.epoch),
                                "amount": int(lg.args.amount)})
        for lg in self._logs(dist.EpochFinalized, start, end):
            s.finalized[int(lg.args.epoch)] = {"fees": int(lg.args.fees), "emission": int(lg.args.emission)}
        for lg in self._logs(stk.Slashed, start, end):
            s.slashes.append({"tx": _hex(lg.transactionHash), "block": lg.blockNumber,
                              "time": self.block_time(lg.blockNumber), "node": lg.args.node,
                              "evidence": _hex(lg.args.evidence), "payer": lg.args.payer,
                              "kind": slash_kind(lg.args.kind),
                              "amount": int(lg.args.amount), "refund": int(lg.args.refund),
                              "reward": int(lg.args.reward), "burned": int(lg.args.burned)})
        for name, jailed in (("Jailed", True), ("Unjailed", False)):
            for lg in self._logs(getattr(stk, name), start, end):
                s.jails.append({"node": lg.args.node, "jailed": jailed, "block": lg.blockNumber,
                                "time": self.block_time(lg.blockNumber), "tx": _hex(lg.transactionHash)})
        for name, verdict in (("FraudProven", "fraud"), ("ValidityProven", "valid")):
            for lg in self._logs(getattr(stk, name), start, end):
                s.proofs[_hex(lg.args.receipt_hash)] = {
                    "verdict": verdict, "node": lg.args.node, "weight": int(lg.args.weight),
                    "totalWeight": int(lg.args.total_weight), "tx": _hex(lg.transactionHash),
                    "block": lg.blockNumber}
        payer = {"payer": self.payer}
        for name in ("Deposited", "WithdrawalRequested", "Withdrawn", "WithdrawalCanceled", "SignerAuthorized"):
            for lg in self._logs(getattr(esc, name), start, end, **payer):
                s.payer_events.append({"event": name, "tx": _hex(lg.transactionHash), "block": lg.blockNumber,
                                       "time": self.block_time(lg.blockNumber),
                                       **{k: (int(v) if isinstance(v, int) else v) for k, v in lg.args.items()}})
        opg_address = self.chain.deployment.address("OPG")
        for lg in self._logs(self.chain.opg.events.AuthorizationUsed, start, end):
            tx = _hex(lg.transactionHash)
            if (w3.eth.get_transaction(tx)["to"] or "").lower() == opg_address.lower():
                s.exact_txs.append({"tx": tx, "payer": lg.args.authorizer, "gas": self.tx_gas(tx)[0],
                                    "block": lg.blockNumber})
        s.payer_events.sort(key=lambda e: (e["block"]))
        s.block = latest

    def _relayer(self, s: Snapshot) -> None:
        while True:
            page = self.relayer.feed(after=self._cursor, limit=1000)
            for item in page.receipts:
                s.receipts[item.id] = {"id": item.id, "seq": item.seq, "receiptHash": item.receipt_hash,
                                       "receipt": item.receipt, "acceptedAt": item.accepted_at,
                                       "status": "pending", "batchId": None, "tx": None}
            if not page.receipts or page.next == self._cursor:
                break
            self._cursor = page.next
        open_ids = [rid for rid, r in s.receipts.items() if r["status"] not in FINAL][:400]
        for rid in open_ids:
            view = self.relayer.receipt(rid)
            if view is not None:
                s.receipts[rid].update(status=view.status, batchId=view.batch_id, tx=view.tx, reason=view.reason,
                                       batchStatus=view.batch_status)
        s.relayer_batches = {b.id: b for b in self.relayer.batches(limit=1000)}

    # Derived views -------------------------------------------------------------------------------------------
    def batch_for(self, s: Snapshot, batch_id: int | None = None, tx: str | None = None) -> dict | None:
        """One batch: the relayer's view joined with its on-chain log (by transaction)."""
        view = s.relayer_batches.get(batch_id) if batch_id is not None else None
        if view is None and tx:
            view = next((b for b in s.relayer_batches.values() if (b.tx_hash or "").lower() == tx.lower()), None)
        tx = (view.tx_hash if view else tx) or ""
        onchain = next((b for b in s.batches if b["tx"].lower() == tx.lower()), None) if tx else None
        if view is None and onchain is None:
            return None
        return {"view": view, "chain": onchain}

    def proof(self, s: Snapshot, receipt_id: str) -> dict | None:
        """The Merkle proof of a settled receipt under its batch's root, computed from the batch's settled receipts
        and verified against the root of the batch's ``BatchSettled`` log."""
        r = s.receipts.get(receipt_id)
        if not r or r["status"] != "settled" or r["batchId"] is None:
            return None
        leaves_hex = sorted(i for i, x in s.receipts.items() if x["batchId"] == r["batchId"]
                            and x["status"] == "settled")
        leaves = [bytes.fromhex(i[2:]) for i in leaves_hex]
        leaf = bytes.fromhex(receipt_id[2:])
        root = merkle_root(leaves)
        proof = merkle_proof(leaves, leaf)
        batch = self.batch_for(s, r["batchId"])
        chain_root = batch["chain"]["root"] if batch and batch["chain"] else None
        relayer_root = batch["view"].receipts_root if batch and batch["view"] else None
        return {"leaf": receipt_id, "leaves": len(leaves), "root": "0x" + root.hex(),
                "proof": ["0x" + p.hex() for p in proof], "chainRoot": chain_root, "relayerRoot": relayer_root,
                "verified": chain_root is not None and verify_merkle_proof(bytes.fromhex(chain_root[2:]), leaf, proof),
                "expectedLeaves": batch["view"].receipt_count if batch and batch["view"] else None}

    def account_rows(self, s: Snapshot, role: int) -> list[dict]:
        """Nodes (ROLE_INFERENCE) or verifiers (ROLE_VERIFIER) with their on-chain state and record."""
        stk, dist = self.chain.staking.functions, self.chain.distributor.functions
        rows = []
        earned: dict[str, int] = defaultdict(int)
        fees_of: dict[str, int] = defaultdict(int)
        for f in s.fees:
            earned[f["node"]] += f["nodeShare"]
            fees_of[f["node"]] += f["gross"]
        emitted: dict[str, int] = defaultdict(int)
        for e in s.emissions:
            emitted[e["node"]] += e["amount"]
        for address, acct in s.accounts.items():
            if acct["role"] != role:
                continue
            state = NodeRecord.of(stk.nodes(address).call())
            slashes = [x for x in s.slashes if x["node"] == address]
            rows.append({
                "address": address, "endpoint": stk.endpoint(address).call() or acct["endpoint"],
                "stake": state.stake, "jailed": state.jailed,
                "active": bool(stk.is_active_as(address, role).call()),
                "slashes": len(slashes), "slashed": sum(x["amount"] for x in slashes),
                "claimable": int(dist.claimable(address).call()), "earned": earned[address],
                "fees": fees_of[address], "emission": emitted[address],
                "fraudProven": sum(1 for p in s.proofs.values() if p["node"] == address and p["verdict"] == "fraud"),
                "validProven": sum(1 for p in s.proofs.values() if p["node"] == address and p["verdict"] == "valid"),
                "receipts": sum(1 for r in s.receipts.values() if r["receipt"]["node"] == address),
            })
        return rows


__all__ = ["FINAL", "Index", "Snapshot"]
