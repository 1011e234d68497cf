"""Durable state: SQLite in WAL mode with ``synchronous=FULL``, written by exactly one thread.

Every change is a *job* (a function of the writer's connection) handed to the writer thread. The writer takes all
jobs queued at that moment, runs each inside its own savepoint and commits them together: one fsync acknowledges
many concurrent submissions (group commit). A caller learns its job's result only after that commit, so nothing is
acknowledged before it is durable. Each thread that reads has its own read-only connection (WAL readers never block
the writer). Amounts are stored as decimal text (uint256 does not fit SQLite integers).

A commit that fails (disk full, I/O error) is fatal: the process exits, and on restart everything acknowledged is
still in the database while nothing unacknowledged was promised.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..messages import SignedReceipt, SignedVoucher
from .ledger import Ledger

log = logging.getLogger("opg.relayer.store")

SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (
    id TEXT PRIMARY KEY,                 -- EIP-712 digest of the Receipt (NodeStaking domain)
    struct_hash TEXT NOT NULL,           -- what Verdicts sign
    request_id TEXT NOT NULL,
    payer TEXT NOT NULL,
    node TEXT NOT NULL,
    model_id TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    output_hash TEXT NOT NULL,
    amount TEXT NOT NULL,
    cumulative TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    signature TEXT NOT NULL,
    voucher_cap TEXT NOT NULL,
    voucher_signature TEXT NOT NULL,
    status TEXT NOT NULL,                -- pending | settled | rejected
    reason TEXT,
    batch_id INTEGER,
    accepted_at REAL NOT NULL,
    settled_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS receipts_request ON receipts(node, request_id);
CREATE INDEX IF NOT EXISTS receipts_struct ON receipts(struct_hash);
CREATE INDEX IF NOT EXISTS receipts_unbatched ON receipts(accepted_at) WHERE status = 'pending' AND batch_id IS NULL;
CREATE INDEX IF NOT EXISTS receipts_batch ON receipts(batch_id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS receipts_channel ON receipts(payer, node) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS conflicting_receipts (  -- a second receipt of a node for a requestId: evidence
    id TEXT PRIMARY KEY,
    conflicts_with TEXT NOT NULL,
    struct_hash TEXT NOT NULL,
    request_id TEXT NOT NULL,
    payer TEXT NOT NULL,
    node TEXT NOT NULL,
    model_id TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    output_hash TEXT NOT NULL,
    amount TEXT NOT NULL,
    cumulative TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    signature TEXT NOT NULL,
    voucher_cap TEXT NOT NULL,
    voucher_signature TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    batch_id INTEGER,
    accepted_at REAL NOT NULL,
    settled_at REAL
);
CREATE TABLE IF NOT EXISTS channels (
    payer TEXT NOT NULL,
    node TEXT NOT NULL,
    charged TEXT NOT NULL,
    cap TEXT NOT NULL,
    voucher_signature TEXT NOT NULL,
    settled TEXT NOT NULL,
    signer TEXT NOT NULL DEFAULT '',          -- the best voucher's signer ('' = the payer)
    payer_cap TEXT NOT NULL DEFAULT '0',      -- the best voucher signed by the payer itself
    payer_signature TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (payer, node)
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL,                -- built | sent | confirmed | failed | skipped
    receipts_root TEXT NOT NULL,
    claims TEXT NOT NULL,                -- JSON list of claims (and their outcomes once confirmed)
    receipt_count INTEGER NOT NULL,
    created_at REAL NOT NULL,
    sent_at REAL,
    confirmed_at REAL,
    tx_hash TEXT,
    nonce INTEGER,
    block_number INTEGER,
    gas_used INTEGER,
    gas_price TEXT,
    settled_amount TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT
);
CREATE TABLE IF NOT EXISTS transactions (
    tx_hash TEXT PRIMARY KEY,            -- recorded before broadcast (write-ahead)
    kind TEXT NOT NULL,                  -- batch | slash | exact
    ref TEXT NOT NULL,
    nonce INTEGER NOT NULL,
    raw TEXT NOT NULL,
    sent_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS transactions_ref ON transactions(kind, ref);
CREATE TABLE IF NOT EXISTS verdicts (
    receipt_hash TEXT NOT NULL,
    verifier TEXT NOT NULL,
    valid INTEGER NOT NULL,
    signature TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (receipt_hash, verifier, valid)
);
CREATE TABLE IF NOT EXISTS slashes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,                  -- equivocation | fraud | lazy_verifier
    evidence TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,               -- the node or verifier slashed
    args TEXT NOT NULL,                  -- JSON: what the transaction needs
    status TEXT NOT NULL,                -- queued | sent | confirmed | skipped | failed
    tx_hash TEXT,
    amount TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS withholding_reports (  -- verifiers' signed reports of payloads a node did not release
    receipt_hash TEXT NOT NULL,
    node TEXT NOT NULL,
    verifier TEXT NOT NULL,
    signature TEXT NOT NULL,             -- the verifier's Verdict(receiptHash, valid=false) signature
    reason TEXT,
    reported_at REAL NOT NULL,
    PRIMARY KEY (receipt_hash, verifier)
);
CREATE INDEX IF NOT EXISTS withholding_node ON withholding_reports(node);
CREATE TABLE IF NOT EXISTS exact_payments (
    id TEXT PRIMARY KEY,                 -- payer:nonce of the EIP-3009 authorisation
    payer TEXT NOT NULL,
    payee TEXT NOT NULL,
    value TEXT NOT NULL,
    authorization TEXT NOT NULL,         -- JSON payload (authorization + signature)
    status TEXT NOT NULL,                -- sent | confirmed | failed
    tx_hash TEXT,
    block_number INTEGER,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""

_STOP = object()
_INSERT_RECEIPT = (
    "INSERT INTO receipts (id, struct_hash, request_id, payer, node, model_id, input_hash, output_hash, amount,"
    " cumulative, timestamp, signature, voucher_cap, voucher_signature, accepted_at, status)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?, 'pending') ON CONFLICT DO NOTHING"
)


class StoreMismatch(Exception):
    """The database belongs to another chain or deployment."""


@dataclass
class ValidReceipt:
    """A receipt that passed every stateless check, ready to be stored."""

    id: str
    struct_hash: str
    receipt: SignedReceipt
    voucher: SignedVoucher
    voucher_signer: str = ""  # the payer or its session key


@dataclass
class AcceptOutcome:
    id: str
    status: str  # pending | settled | rejected
    reason: str | None = None
    batch_id: int | None = None
    duplicate: bool = False
    conflicts_with: str | None = None  # set when the receipt is rejected as equivocation


@dataclass
class ClaimResult:
    """What happened to one claim of a batch: outcome as CreditEscrow numbers it."""

    payer: str
    node: str
    outcome: int
    total: int
    spent_after: int | None = None


@dataclass
class _Job:
    fn: Callable[..., Any]
    args: tuple
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


def _connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA cache_size = -65536")  # 64 MiB
    if readonly:
        conn.execute("PRAGMA query_only = 1")
    conn.row_factory = sqlite3.Row
    return conn


class Store:
    """The relayer's database: one writer thread (group commit) plus per-thread readers."""

    def __init__(self, path: Path, ledger: Ledger, max_group: int = 1024):
        self.path = Path(path)
        self.ledger = ledger
        self.max_group = max_group
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._local = threading.local()
        self._writer: threading.Thread | None = None
        self.commits = 0
        self.jobs_committed = 0
        self.on_commit: Callable[[float, float, int], None] | None = None  # (work s, fsync s, jobs)

    # Lifecycle -----------------------------------------------------------------------------------------------
    def open(self, chain_id: int, escrow: str, staking: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = _connect(self.path)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"SQLite refused WAL mode for {self.path} (got {mode})")
        conn.executescript(SCHEMA)
        columns = {r[1] for r in conn.execute("PRAGMA table_info(channels)")}
        for column, decl in (("signer", "TEXT NOT NULL DEFAULT ''"), ("payer_cap", "TEXT NOT NULL DEFAULT '0'"),
                             ("payer_signature", "TEXT NOT NULL DEFAULT ''")):
            if column not in columns:  # a store made before session-signed channels were tracked
                conn.execute(f"ALTER TABLE channels ADD COLUMN {column} {decl}")
        meta = {r["key"]: r["value"] for r in conn.execute("SELECT key, value FROM meta")}
        expected = {"schema": str(SCHEMA_VERSION), "chain_id": str(chain_id), "escrow": escrow, "staking": staking}
        if not meta:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", list(expected.items()))
            conn.execute("COMMIT")
        else:
            for key, value in expected.items():
                if meta.get(key) != value:
                    conn.close()
                    raise StoreMismatch(
                        f"store {self.path} was made for {key}={meta.get(key)}, not {value}: use another --store"
                    )
        self._load_ledger(conn)
        conn.close()
        self._writer = threading.Thread(target=self._write_loop, name="store-writer", daemon=True)
        self._writer.start()

    def close(self) -> None:
        if self._writer and self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join(timeout=10)

    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = _connect(self.path, readonly=True)
        return conn

    # Writing -------------------------------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        """Queue a job ``fn(conn, *args)``; its future resolves once the job is committed."""
        job = _Job(fn, args)
        self._queue.put(job)
        return job.future

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a job and wait for its commit (from a thread that is not the event loop)."""
        return self.submit(fn, *args).result()

    def _write_loop(self) -> None:
        conn = _connect(self.path)
        conn.execute("PRAGMA synchronous = FULL")
        while True:
            first = self._queue.get()
            if first is _STOP:
                break
            jobs = [first]
            stop = False
            while len(jobs) < self.max_group:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                jobs.append(nxt)
            results: list[tuple[bool, Any]] = []
            started = time.perf_counter()
            try:
                conn.execute("BEGIN IMMEDIATE")
                for job in jobs:
                    conn.execute("SAVEPOINT job")
                    try:
                        results.append((True, job.fn(conn, *job.args)))
                        conn.execute("RELEASE job")
                    except Exception as exc:  # the job's own failure: undo it, keep the others
                        conn.execute("ROLLBACK TO job")
                        conn.execute("RELEASE job")
                        results.append((False, exc))
                work = time.perf_counter()
                conn.execute("COMMIT")
            except Exception:
                log.critical("store commit failed; exiting so that nothing unacknowledged is promised", exc_info=True)
                os._exit(70)
            self.commits += 1
            self.jobs_committed += len(jobs)
            if self.on_commit is not None:
                self.on_commit(work - started, time.perf_counter() - work, len(jobs))
            for job, (ok, value) in zip(jobs, results, strict=True):
                if ok:
                    job.future.set_result(value)
                else:
                    job.future.set_exception(value)
            if stop:
                break
        conn.close()

    # Ledger --------------------------------------------------------------------------------------------------
    def _load_ledger(self, conn: sqlite3.Connection) -> None:
        for row in conn.execute("SELECT * FROM channels"):
            ch = self.ledger.channel(row["payer"], row["node"])
            ch.charged, ch.cap = int(row["charged"]), int(row["cap"])
            ch.voucher_signature, ch.settled = row["voucher_signature"], int(row["settled"])
            ch.signer, ch.payer_cap, ch.payer_signature = row["signer"], int(row["payer_cap"]), row["payer_signature"]
        for row in conn.execute(
            "SELECT payer, node, count(*) AS n FROM receipts WHERE status = 'pending' GROUP BY payer, node"
        ):
            self.ledger.add_pending(row["payer"], row["node"], row["n"])

    # Jobs: receipts ------------------------------------------------------------------------------------------
    @staticmethod
    def _conflict(conn: sqlite3.Connection, item: ValidReceipt, values: tuple, now: float) -> AcceptOutcome:
        """The receipt collides with a stored one: the same receipt (same answer), or the node's other receipt
        for this requestId (equivocation: kept as evidence and queued for slashing)."""
        for table in ("receipts", "conflicting_receipts"):
            row = conn.execute(f"SELECT status, reason, batch_id FROM {table} WHERE id = ?", (item.id,)).fetchone()
            if row is not None:
                return AcceptOutcome(item.id, row[0], row[1], row[2], duplicate=True,
                                     conflicts_with=None)
        r = item.receipt
        other = conn.execute(
            "SELECT id FROM receipts WHERE node = ? AND request_id = ?", (r.node, r.request_id)
        ).fetchone()[0]
        reason = f"equivocation: the node signed receipt {other} for this requestId"
        conn.execute(
            "INSERT INTO conflicting_receipts (id, struct_hash, request_id, payer, node, model_id, input_hash,"
            " output_hash, amount, cumulative, timestamp, signature, voucher_cap, voucher_signature, accepted_at,"
            " conflicts_with, status, reason) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?, 'rejected', ?)",
            values + (other, reason),
        )
        conn.execute(
            "INSERT OR IGNORE INTO slashes (kind, evidence, subject, args, status, created_at, updated_at)"
            " VALUES ('equivocation', ?, ?, ?, 'queued', ?, ?)",
            (f"equivocation:{r.node}:{r.request_id}", r.node, json.dumps({"a": other, "b": item.id}), now, now),
        )
        return AcceptOutcome(item.id, "rejected", reason, conflicts_with=other)

    @staticmethod
    def job_accept(conn: sqlite3.Connection, ledger: Ledger, items: list[ValidReceipt], now: float) -> list[AcceptOutcome]:
        """Store new receipts (pending), answer duplicates as before, reject and record equivocations."""
        out: list[AcceptOutcome] = []
        touched: dict[tuple[str, str], list] = {}  # channel -> [charged, cap, signature, new pending]
        for item in items:
            r, v = item.receipt, item.voucher
            values = (
                item.id, item.struct_hash, r.request_id, r.payer, r.node, r.model_id, r.input_hash, r.output_hash,
                str(r.amount), str(r.cumulative), r.timestamp, r.signature, str(v.max_cumulative), v.signature, now,
            )
            if conn.execute(_INSERT_RECEIPT, values).rowcount == 0:  # rare: already stored, or equivocation
                out.append(Store._conflict(conn, item, values, now))
                continue
            key = (r.payer, r.node)
            t = touched.get(key)
            if t is None:
                ch = ledger.get(*key)
                t = touched[key] = ([ch.charged, ch.cap, ch.voucher_signature, 0, ch.settled, ch.signer, ch.payer_cap,
                                     ch.payer_signature] if ch else [0, 0, "", 0, 0, "", 0, ""])
            if r.cumulative > t[0]:
                t[0] = r.cumulative
            by_payer = not item.voucher_signer or item.voucher_signer == r.payer
            if v.max_cumulative > t[1] or (v.max_cumulative == t[1] and by_payer and t[5]):
                t[1], t[2], t[5] = v.max_cumulative, v.signature, "" if by_payer else item.voucher_signer
            if by_payer and v.max_cumulative > t[6]:
                t[6], t[7] = v.max_cumulative, v.signature
            t[3] += 1
            out.append(AcceptOutcome(item.id, "pending"))
        for (payer, node), (charged, cap, sig, _n, settled, signer, pcap, psig) in touched.items():
            conn.execute(
                "INSERT INTO channels (payer, node, charged, cap, voucher_signature, settled, signer, payer_cap,"
                " payer_signature) VALUES (?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT (payer, node) DO UPDATE SET charged = excluded.charged, cap = excluded.cap,"
                " voucher_signature = excluded.voucher_signature, signer = excluded.signer,"
                " payer_cap = excluded.payer_cap, payer_signature = excluded.payer_signature",
                (payer, node, str(charged), str(cap), sig, str(settled), signer, str(pcap), psig),
            )
        for (payer, node), (charged, cap, sig, n, _settled, signer, pcap, psig) in touched.items():
            ch = ledger.channel(payer, node)
            ch.charged, ch.cap, ch.voucher_signature = charged, cap, sig
            ch.signer, ch.payer_cap, ch.payer_signature = signer, pcap, psig
            ledger.add_pending(payer, node, n)
        return out

    async def accept(self, items: list[ValidReceipt]) -> list[AcceptOutcome]:
        """Store receipts (job_accept) and wait, without blocking the event loop, for the commit."""
        return await asyncio.wrap_future(self.submit(self.job_accept, self.ledger, items, time.time()))

    # Jobs: batches -------------------------------------------------------------------------------------------
    @staticmethod
    def _resolve_claims(
        conn: sqlite3.Connection, ledger: Ledger, batch_id: int | None, results: list[ClaimResult],
        receipt_ids: dict[tuple[str, str], list[str]] | None, now: float,
    ) -> list[float]:
        """Mark the receipts of claims that are done: settled (paid now or already paid) or rejected.

        ``receipt_ids`` gives each claim's receipts; without it they are the batch's pending receipts. Returns how
        long the receipts settled by this batch waited since acceptance (for the latency metric)."""
        from ..chain import SKIP_REASONS

        if not results:
            return []
        accepted_at: dict[str, float] = {}
        if receipt_ids is None:
            receipt_ids = {}
            for rid, payer, node, at in conn.execute(
                "SELECT id, payer, node, accepted_at FROM receipts WHERE batch_id = ? AND status = 'pending'",
                (batch_id,),
            ):
                receipt_ids.setdefault((payer, node), []).append(rid)
                accepted_at[rid] = at
        latencies: list[float] = []
        updates: list[tuple] = []
        for res in results:
            key = (res.payer, res.node)
            ids = receipt_ids.get(key, [])
            if not ids:
                continue
            if res.outcome in (0, 1):
                status, reason = "settled", None if res.outcome == 0 else "already settled on-chain"
            else:
                status, reason = "rejected", SKIP_REASONS.get(res.outcome, f"skipped ({res.outcome})")
            bid = batch_id if res.outcome == 0 else None
            ch = ledger.channel(res.payer, res.node)
            if res.outcome == 0 and ch.signer and res.total < ch.charged:
                # Paid only up to the claim's total (e.g. the payer-signed part of a channel whose session-signed
                # claim was skipped): receipts above it go back to the queue, to be claimed again.
                wanted = set(ids)
                above = [i for i, cum in conn.execute(
                    "SELECT id, cumulative FROM receipts WHERE payer = ? AND node = ? AND status = 'pending'",
                    (res.payer, res.node)) if i in wanted and int(cum) > res.total]
                if above:
                    conn.executemany("UPDATE receipts SET batch_id = NULL WHERE id = ?", [(i,) for i in above])
                    released = set(above)
                    ids = [i for i in ids if i not in released]
            if res.outcome == 0:
                latencies += [now - accepted_at[i] for i in ids if i in accepted_at]
            settled_at = now if status == "settled" else None
            updates += [(status, reason, bid, settled_at, i) for i in ids]
            settled = ch.settled
            if res.outcome == 0:
                settled = max(settled, res.total)
            if res.spent_after is not None:
                settled = max(settled, res.spent_after)
            conn.execute(
                "UPDATE channels SET settled = ? WHERE payer = ? AND node = ?", (str(settled), res.payer, res.node)
            )
            ch.settled = settled
            ch.pending -= len(ids)
            ledger.pending -= len(ids)
        conn.executemany(
            "UPDATE receipts SET status = ?, reason = ?, batch_id = coalesce(?, batch_id), settled_at = ?"
            " WHERE id = ? AND status = 'pending'",
            updates,
        )
        return latencies

    @classmethod
    def job_build_batch(
        cls, conn: sqlite3.Connection, ledger: Ledger, claims: list[dict], root: str,
        receipt_ids: dict[tuple[str, str], list[str]], skipped: list[ClaimResult],
        skipped_ids: dict[tuple[str, str], list[str]], now: float,
    ) -> int | None:
        """Record a built batch (its receipts point to it) and resolve the claims simulation skipped."""
        cls._resolve_claims(conn, ledger, None, skipped, skipped_ids, now)
        if not claims:
            return None
        count = sum(len(v) for v in receipt_ids.values())
        cur = conn.execute(
            "INSERT INTO batches (status, receipts_root, claims, receipt_count, created_at) VALUES ('built',?,?,?,?)",
            (root, json.dumps(claims), count, now),
        )
        batch_id = cur.lastrowid
        conn.executemany(
            "UPDATE receipts SET batch_id = ? WHERE id = ? AND status = 'pending'",
            [(batch_id, i) for ids in receipt_ids.values() for i in ids],
        )
        return batch_id

    @classmethod
    def job_rebuild_batch(
        cls, conn: sqlite3.Connection, ledger: Ledger, batch_id: int, claims: list[dict], root: str,
        skipped: list[ClaimResult], now: float,
    ) -> None:
        """A re-simulated batch: drop the claims now skipped (resolving their receipts), keep the rest."""
        cls._resolve_claims(conn, ledger, batch_id, skipped, None, now)
        if claims:
            count = conn.execute(
                "SELECT count(*) FROM receipts WHERE batch_id = ? AND status = 'pending'", (batch_id,)
            ).fetchone()[0]
            conn.execute(
                "UPDATE batches SET claims = ?, receipts_root = ?, receipt_count = ?, status = 'built' WHERE id = ?",
                (json.dumps(claims), root, count, batch_id),
            )
        else:
            conn.execute(
                "UPDATE batches SET status = 'skipped', claims = ?, error = ?, confirmed_at = ? WHERE id = ?",
                (json.dumps(claims), "every claim was skipped at simulation", now, batch_id),
            )

    @staticmethod
    def job_tx_recorded(
        conn: sqlite3.Connection, kind: str, ref: str, tx_hash: str, nonce: int, raw: str, now: float
    ) -> None:
        """Write-ahead record of a signed transaction, before it is broadcast."""
        conn.execute(
            "INSERT OR REPLACE INTO transactions (tx_hash, kind, ref, nonce, raw, sent_at) VALUES (?,?,?,?,?,?)",
            (tx_hash, kind, ref, nonce, raw, now),
        )
        if kind == "batch":
            conn.execute(
                "UPDATE batches SET status = 'sent', tx_hash = ?, nonce = ?, sent_at = ?, attempts = attempts + 1,"
                " error = NULL WHERE id = ?",
                (tx_hash, nonce, now, int(ref)),
            )
        elif kind == "slash":
            conn.execute(
                "UPDATE slashes SET status = 'sent', tx_hash = ?, attempts = attempts + 1, updated_at = ? WHERE id = ?",
                (tx_hash, now, int(ref)),
            )
        elif kind == "exact":
            conn.execute(
                "UPDATE exact_payments SET status = 'sent', tx_hash = ?, updated_at = ? WHERE id = ?",
                (tx_hash, now, ref),
            )

    @classmethod
    def job_batch_confirmed(
        cls, conn: sqlite3.Connection, ledger: Ledger, batch_id: int, tx_hash: str, block: int, gas_used: int,
        gas_price: int, results: list[ClaimResult], settled_amount: int, now: float,
    ) -> list[float]:
        latencies = cls._resolve_claims(conn, ledger, batch_id, results, None, now)
        claims = json.loads(conn.execute("SELECT claims FROM batches WHERE id = ?", (batch_id,)).fetchone()[0])
        by_key = {(r.payer, r.node): r.outcome for r in results}
        for c in claims:
            c["outcome"] = by_key.get((c["payer"], c["node"]))
        conn.execute(
            "UPDATE batches SET status = 'confirmed', tx_hash = ?, block_number = ?, gas_used = ?, gas_price = ?,"
            " settled_amount = ?, claims = ?, confirmed_at = ?, error = NULL WHERE id = ?",
            (tx_hash, block, gas_used, str(gas_price), str(settled_amount), json.dumps(claims), now, batch_id),
        )
        return latencies

    @staticmethod
    def job_batch_failed(conn: sqlite3.Connection, ledger: Ledger, batch_id: int, error: str, now: float) -> None:
        """The batch's transaction reverted: record it and release the receipts to be batched again."""
        conn.execute("UPDATE batches SET status = 'failed', error = ?, confirmed_at = ? WHERE id = ?",
                     (error, now, batch_id))
        conn.execute("UPDATE receipts SET batch_id = NULL WHERE batch_id = ? AND status = 'pending'", (batch_id,))

    @classmethod
    def job_reject_batch(cls, conn: sqlite3.Connection, ledger: Ledger, batch_id: int, error: str, now: float) -> None:
        """The batch cannot ever go through (its simulation reverts): reject its receipts."""
        rows = conn.execute(
            "SELECT payer, node, count(*) FROM receipts WHERE batch_id = ? AND status = 'pending' GROUP BY payer, node",
            (batch_id,),
        ).fetchall()
        conn.execute(
            "UPDATE receipts SET status = 'rejected', reason = ? WHERE batch_id = ? AND status = 'pending'",
            (f"batch simulation reverted: {error}", batch_id),
        )
        conn.execute("UPDATE batches SET status = 'failed', error = ?, confirmed_at = ? WHERE id = ?",
                     (error, now, batch_id))
        for payer, node, n in rows:
            ledger.channel(payer, node).pending -= n
            ledger.pending -= n

    # Jobs: slashing and verdicts -----------------------------------------------------------------------------
    @staticmethod
    def job_verdict(conn: sqlite3.Connection, receipt_hash: str, verifier: str, valid: bool, signature: str,
                    now: float) -> bool:
        cur = conn.execute(
            "INSERT OR IGNORE INTO verdicts (receipt_hash, verifier, valid, signature, received_at) VALUES (?,?,?,?,?)",
            (receipt_hash, verifier, int(valid), signature, now),
        )
        return cur.rowcount == 1

    @staticmethod
    def job_queue_slash(conn: sqlite3.Connection, kind: str, evidence: str, subject: str, args: dict,
                        now: float) -> bool:
        cur = conn.execute(
            "INSERT OR IGNORE INTO slashes (kind, evidence, subject, args, status, created_at, updated_at)"
            " VALUES (?,?,?,?, 'queued', ?, ?)",
            (kind, evidence, subject, json.dumps(args), now, now),
        )
        return cur.rowcount == 1

    @staticmethod
    def job_slash_update(conn: sqlite3.Connection, slash_id: int, status: str, amount: int | None, error: str | None,
                         args: dict | None, now: float) -> None:
        conn.execute(
            "UPDATE slashes SET status = ?, amount = coalesce(?, amount), error = ?, args = coalesce(?, args),"
            " updated_at = ? WHERE id = ?",
            (status, None if amount is None else str(amount), error, None if args is None else json.dumps(args),
             now, slash_id),
        )

    @staticmethod
    def job_withholding_report(conn: sqlite3.Connection, receipt_hash: str, node: str, verifier: str, signature: str,
                               reason: str | None, now: float) -> bool:
        """A verifier's report that ``node`` did not release a payload (a ``PayloadWithheld`` signature). Never stored
        as a verdict: withholding says nothing about the answer, and a vote would make an honest verifier a slashable
        false accuser whenever the node releases the payload to the others (attack R4)."""
        cur = conn.execute(
            "INSERT OR IGNORE INTO withholding_reports (receipt_hash, node, verifier, signature, reason, reported_at)"
            " VALUES (?,?,?,?,?,?)", (receipt_hash, node, verifier, signature, reason, now),
        )
        return cur.rowcount == 1

    # Jobs: exact payments ------------------------------------------------------------------------------------
    @staticmethod
    def job_exact_new(conn: sqlite3.Connection, key: str, payer: str, payee: str, value: int, authorization: dict,
                      now: float) -> dict | None:
        """Claim the authorisation for settlement; returns the existing record if there already is one in flight."""
        row = conn.execute("SELECT * FROM exact_payments WHERE id = ?", (key,)).fetchone()
        if row is not None and row["status"] != "failed":
            return dict(row)
        conn.execute(
            "INSERT OR REPLACE INTO exact_payments (id, payer, payee, value, authorization, status, created_at,"
            " updated_at) VALUES (?,?,?,?,?, 'new', ?, ?)",
            (key, payer, payee, str(value), json.dumps(authorization), now, now),
        )
        return None

    @staticmethod
    def job_exact_update(conn: sqlite3.Connection, key: str, status: str, block: int | None, error: str | None,
                         now: float) -> None:
        conn.execute(
            "UPDATE exact_payments SET status = ?, block_number = ?, error = ?, updated_at = ? WHERE id = ?",
            (status, block, error, now, key),
        )

    # Reads ---------------------------------------------------------------------------------------------------
    def receipt(self, receipt_id: str) -> dict | None:
        """A stored receipt (accepted, or kept as equivocation evidence) with its batch's transaction."""
        row = self.reader().execute(
            "SELECT r.*, b.tx_hash AS batch_tx, b.status AS batch_status FROM receipts r"
            " LEFT JOIN batches b ON b.id = r.batch_id WHERE r.id = ?",
            (receipt_id.lower(),),
        ).fetchone()
        if row is None:
            row = self.reader().execute(
                "SELECT *, NULL AS batch_tx, NULL AS batch_status FROM conflicting_receipts WHERE id = ?",
                (receipt_id.lower(),),
            ).fetchone()
        return dict(row) if row else None

    def receipt_by_struct_hash(self, struct_hash: str) -> dict | None:
        row = self.reader().execute(
            "SELECT * FROM receipts WHERE struct_hash = ? ORDER BY accepted_at LIMIT 1", (struct_hash,)
        ).fetchone()
        return dict(row) if row else None

    def pending_of_channel(self, payer: str, node: str, limit: int = 100) -> list[dict]:
        rows = self.reader().execute(
            "SELECT id, cumulative, amount, batch_id, accepted_at FROM receipts"
            " WHERE payer = ? AND node = ? AND status = 'pending' ORDER BY accepted_at LIMIT ?",
            (payer, node, limit),
        )
        return [dict(r) for r in rows]

    def unbatched_summary(self) -> tuple[int, float | None]:
        row = self.reader().execute(
            "SELECT count(*), min(accepted_at) FROM receipts WHERE status = 'pending' AND batch_id IS NULL"
        ).fetchone()
        return row[0], row[1]

    def unbatched(self, limit: int, first: list[str] | None = None) -> list[sqlite3.Row]:
        """The oldest unbatched receipts; those of the payers ``first`` (settled early) ahead of the others."""
        rows: list[sqlite3.Row] = []
        for payer in first or ():
            rows += self.reader().execute(
                "SELECT id, payer, node, cumulative FROM receipts WHERE status = 'pending' AND batch_id IS NULL"
                " AND payer = ? ORDER BY accepted_at LIMIT ?", (payer, limit - len(rows)),
            ).fetchall()
            if len(rows) >= limit:
                return rows
        seen = {r["id"] for r in rows}
        rest = self.reader().execute(
            "SELECT id, payer, node, cumulative FROM receipts WHERE status = 'pending' AND batch_id IS NULL"
            " ORDER BY accepted_at LIMIT ?",
            (limit,),
        ).fetchall()
        return (rows + [r for r in rest if r["id"] not in seen])[:limit]

    def batch_receipt_ids(self, batch_id: int) -> list[tuple[str, str, str]]:
        return [
            (r[0], r[1], r[2])
            for r in self.reader().execute(
                "SELECT id, payer, node FROM receipts WHERE batch_id = ? AND status = 'pending'", (batch_id,)
            )
        ]

    def inflight_batch(self) -> dict | None:
        row = self.reader().execute(
            "SELECT * FROM batches WHERE status IN ('built', 'sent') ORDER BY id LIMIT 1"
        ).fetchone()
        return dict(row) if row else None

    def transactions(self, kind: str, ref: str) -> list[dict]:
        rows = self.reader().execute(
            "SELECT * FROM transactions WHERE kind = ? AND ref = ? ORDER BY sent_at", (kind, str(ref))
        )
        return [dict(r) for r in rows]

    def batch(self, batch_id: int) -> dict | None:
        row = self.reader().execute("SELECT * FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return dict(row) if row else None

    def batches(self, status: str | None, limit: int, before: int | None) -> list[dict]:
        sql, args = "SELECT * FROM batches WHERE 1=1", []
        if status:
            sql, args = sql + " AND status = ?", args + [status]
        if before:
            sql, args = sql + " AND id < ?", args + [before]
        rows = self.reader().execute(sql + " ORDER BY id DESC LIMIT ?", args + [limit])
        return [dict(r) for r in rows]

    def batch_counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.reader().execute("SELECT status, count(*) FROM batches GROUP BY status")}

    def batch_totals(self) -> tuple[int, int]:
        row = self.reader().execute(
            "SELECT coalesce(sum(gas_used), 0), count(*) FROM batches WHERE status = 'confirmed'"
        ).fetchone()
        return row[0], row[1]

    def slashes(self, status: str | None = None, limit: int = 100) -> list[dict]:
        sql, args = "SELECT * FROM slashes", []
        if status:
            sql, args = sql + " WHERE status = ?", [status]
        rows = self.reader().execute(sql + " ORDER BY id DESC LIMIT ?", args + [limit])
        return [dict(r) for r in rows]

    def open_slashes(self) -> list[dict]:
        rows = self.reader().execute("SELECT * FROM slashes WHERE status IN ('queued', 'sent') ORDER BY id")
        return [dict(r) for r in rows]

    def proofs_done(self, kind: str, since: float) -> list[dict]:
        """Proof submissions of ``kind`` (fraud | prove_valid) confirmed or found done on-chain since ``since``."""
        rows = self.reader().execute(
            "SELECT * FROM slashes WHERE kind = ? AND status IN ('confirmed', 'skipped') AND updated_at >= ?",
            (kind, since))
        return [dict(r) for r in rows]

    def slash_by_evidence(self, evidence: str) -> dict | None:
        row = self.reader().execute("SELECT * FROM slashes WHERE evidence = ?", (evidence,)).fetchone()
        return dict(row) if row else None

    def verdicts(self, receipt_hash: str, valid: bool | None = None) -> list[dict]:
        sql, args = "SELECT * FROM verdicts WHERE receipt_hash = ?", [receipt_hash]
        if valid is not None:
            sql, args = sql + " AND valid = ?", args + [int(valid)]
        return [dict(r) for r in self.reader().execute(sql + " ORDER BY verifier", args)]

    def verdict_candidates(self, valid: bool, prefix: str) -> list[str]:
        """Receipt hashes with verdicts of ``valid``, held here, without a ``prefix:<hash>`` submission yet."""
        rows = self.reader().execute(
            "SELECT DISTINCT v.receipt_hash FROM verdicts v WHERE v.valid = ?"
            " AND EXISTS (SELECT 1 FROM receipts r WHERE r.struct_hash = v.receipt_hash)"
            " AND NOT EXISTS (SELECT 1 FROM slashes s WHERE s.evidence = ? || ':' || v.receipt_hash)",
            (int(valid), prefix),
        )
        return [r[0] for r in rows]

    def fraud_candidates(self) -> list[str]:
        """Receipt hashes with valid=false verdicts, held here, without a fraud submission yet."""
        return self.verdict_candidates(False, "fraud")

    def contrary_candidates(self, proof: str, valid: bool, kind: str) -> list[dict]:
        """Verdicts of ``valid`` on receipts whose ``proof`` submission (fraud | valid) is done, without a ``kind``
        slash yet: valid=true after fraud (lazy), valid=false after validity (false accuser)."""
        rows = self.reader().execute(
            "SELECT v.* FROM verdicts v JOIN slashes s ON s.evidence = ? || ':' || v.receipt_hash"
            " AND s.status IN ('confirmed', 'skipped')"
            " WHERE v.valid = ? AND NOT EXISTS"
            " (SELECT 1 FROM slashes l WHERE l.evidence = ? || ':' || v.receipt_hash || ':' || v.verifier)",
            (proof, int(valid), kind),
        )
        return [dict(r) for r in rows]

    def lazy_candidates(self) -> list[dict]:
        """valid=true verdicts on receipts proven fraudulent, without a lazy-verifier slash yet."""
        return self.contrary_candidates("fraud", True, "lazy")

    def double_votes(self) -> list[dict]:
        """Verifiers that signed both verdicts on one receipt, without a double-vote slash yet."""
        rows = self.reader().execute(
            "SELECT t.receipt_hash, t.verifier, t.signature AS sig_true, f.signature AS sig_false FROM verdicts t"
            " JOIN verdicts f ON f.receipt_hash = t.receipt_hash AND f.verifier = t.verifier AND f.valid = 0"
            " WHERE t.valid = 1 AND NOT EXISTS (SELECT 1 FROM slashes s"
            " WHERE s.evidence = 'double:' || t.receipt_hash || ':' || t.verifier)"
        )
        return [dict(r) for r in rows]

    def feed(self, after: int, limit: int) -> list[dict]:
        """Accepted receipts in acceptance order (``seq`` = the row's rowid, which only grows: receipts are never
        deleted and the relayer never runs VACUUM), those after ``after``."""
        rows = self.reader().execute(
            "SELECT rowid AS seq, id, struct_hash, request_id, payer, node, model_id, input_hash, output_hash, amount,"
            " cumulative, timestamp, signature, accepted_at FROM receipts WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (after, limit),
        )
        return [dict(r) for r in rows]

    def node_summary(self, node: str) -> dict:
        """Counts about one node: receipts accepted (and pending), withholding reports, slashes by kind and status."""
        db = self.reader()
        receipts, pending = db.execute(
            "SELECT count(*), coalesce(sum(status = 'pending'), 0) FROM receipts WHERE node = ?", (node,)
        ).fetchone()
        reports, withheld = db.execute(
            "SELECT count(*), count(DISTINCT receipt_hash) FROM withholding_reports WHERE node = ?", (node,)
        ).fetchone()
        slashes = [dict(r) for r in db.execute(
            "SELECT kind, status, count(*) AS n, group_concat(amount) AS amounts FROM slashes WHERE subject = ?"
            " GROUP BY kind, status", (node,))]
        return {"receipts": receipts, "pending": pending, "reports": reports, "withheld": withheld,
                "slashes": slashes}

    def exact_payment(self, key: str) -> dict | None:
        row = self.reader().execute("SELECT * FROM exact_payments WHERE id = ?", (key,)).fetchone()
        return dict(row) if row else None

    def exact_in_flight(self) -> list[dict]:
        rows = self.reader().execute("SELECT * FROM exact_payments WHERE status IN ('new', 'sent')")
        return [dict(r) for r in rows]

    def ping(self) -> bool:
        return self.reader().execute("SELECT 1").fetchone()[0] == 1
