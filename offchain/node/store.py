"""The node's durable store (SQLite, WAL, ``synchronous=FULL``, through ``offchain.daemon.store``).

Tables:
  receipts        every signed receipt with the exact JSON item handed to the relayer (``{receipt, voucher}``, stored
                  once and resent byte for byte), its payload (request, output, usage, pricing) and its outbox state
                  (``pending`` -> ``delivered`` | ``refused``)
  vouchers        the best (highest maxCumulative) voucher of each payer's channel with this node
  exact_payments  ``exact`` authorisations claimed (one request per authorisation) and their settlement

A receipt is committed (fsync) before the answer carrying it is released. Receipts are written by one thread with
group commit: every receipt queued while a commit is on disk goes into the next transaction (one savepoint each),
so one fsync serves many concurrent requests. One connection, one lock; the other writes are rare and short.
"""

from __future__ import annotations

import json
import queue
import sqlite3
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..daemon.store import StoreMismatch, bind_meta, connect

__all__ = ["NodeStore", "StoreMismatch", "StoredReceipt", "OutboxItem"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS receipts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    request_id TEXT NOT NULL UNIQUE,
    payer TEXT NOT NULL,
    amount TEXT NOT NULL,
    cumulative TEXT NOT NULL,
    voucher_cap TEXT NOT NULL,
    item BLOB NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL,
    outbox TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    relayer_status TEXT,
    error TEXT,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS receipts_outbox ON receipts (outbox, seq);
CREATE INDEX IF NOT EXISTS receipts_payer ON receipts (payer, seq);
CREATE TABLE IF NOT EXISTS vouchers (
    payer TEXT PRIMARY KEY,
    max_cumulative TEXT NOT NULL,
    voucher TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS exact_payments (
    key TEXT PRIMARY KEY,
    payer TEXT NOT NULL,
    value TEXT NOT NULL,
    status TEXT NOT NULL,
    tx_hash TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""


@dataclass
class StoredReceipt:
    id: str
    payer: str
    amount: int
    cumulative: int
    receipt: dict
    payload: dict
    outbox: str
    error: str | None


@dataclass
class OutboxItem:
    seq: int
    id: str
    item: bytes
    attempts: int
    created_at: float


class NodeStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.conn: sqlite3.Connection | None = None
        self.lock = threading.Lock()
        self.on_commit = lambda seconds: None  # observes each receipt commit's duration (metrics)

    def open(self, chain_id: int, escrow: str, staking: str, node: str) -> None:
        self.conn = connect(self.path)
        bind_meta(self.conn, {"chain_id": str(chain_id), "escrow": escrow.lower(), "staking": staking.lower(),
                              "node": node.lower(), "kind": "opg-node"})
        self.conn.executescript(SCHEMA)
        self._jobs: queue.Queue = queue.Queue()
        self._writer = threading.Thread(target=self._write_receipts, name="store-writer", daemon=True)
        self._writer.start()

    def open_readonly(self) -> dict[str, str]:
        """Open for reading only (another process may be running the node); returns the store's ``meta``."""
        if not self.path.exists():
            raise FileNotFoundError(f"no node store at {self.path}")
        self.conn = connect(self.path, readonly=True)
        return dict(self.conn.execute("SELECT key, value FROM meta").fetchall())

    def close(self) -> None:
        writer = getattr(self, "_writer", None)
        if writer is not None:
            self._jobs.put(None)
            writer.join(timeout=30)
            self._writer = None
        with self.lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None

    def _db(self) -> sqlite3.Connection:
        if self.conn is None:
            raise RuntimeError("the node store is closed")
        return self.conn

    def ping(self) -> bool:
        with self.lock:
            self._db().execute("SELECT 1").fetchone()
        return True

    # Receipts ----------------------------------------------------------------------------------------------------
    def add_receipt(self, *, receipt_id: str, request_id: str, payer: str, amount: int, cumulative: int,
                    voucher_cap: int, item: bytes, payload: dict, best_voucher: dict | None) -> None:
        """Commit a signed receipt (and, if it is new, the channel's best voucher) durably; raises on failure.
        Blocks until the group commit holding it is on disk."""
        if getattr(self, "_writer", None) is None:
            raise RuntimeError("the node store is closed")
        row = (receipt_id, request_id, payer, str(amount), str(cumulative), str(voucher_cap), item,
               json.dumps(payload, separators=(",", ":")), time.time())
        voucher = None if best_voucher is None else \
            (payer, str(best_voucher["maxCumulative"]), json.dumps(best_voucher), time.time())
        done: Future = Future()
        self._jobs.put((row, voucher, done))
        done.result()

    def _write_receipts(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            jobs = [job]
            while True:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)  # stop after this group
                    break
                jobs.append(more)
            started = time.perf_counter()
            outcomes: list[BaseException | None] = []
            try:
                with self.lock:
                    db = self._db()
                    db.execute("BEGIN IMMEDIATE")
                    try:
                        for row, voucher, _done in jobs:
                            db.execute("SAVEPOINT receipt")
                            try:
                                db.execute(
                                    "INSERT INTO receipts (id, request_id, payer, amount, cumulative, voucher_cap, "
                                    "item, payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                                if voucher is not None:
                                    db.execute(
                                        "INSERT INTO vouchers (payer, max_cumulative, voucher, updated_at) "
                                        "VALUES (?, ?, ?, ?) ON CONFLICT (payer) DO UPDATE SET "
                                        "max_cumulative = excluded.max_cumulative, voucher = excluded.voucher, "
                                        "updated_at = excluded.updated_at", voucher)
                                db.execute("RELEASE receipt")
                                outcomes.append(None)
                            except Exception as exc:
                                db.execute("ROLLBACK TO receipt")
                                db.execute("RELEASE receipt")
                                outcomes.append(exc)
                        db.execute("COMMIT")
                    except BaseException:
                        if db.in_transaction:
                            db.execute("ROLLBACK")
                        raise
            except Exception as exc:  # the commit failed: nothing of this group is stored
                for _row, _voucher, done in jobs:
                    done.set_exception(exc)
                continue
            self.on_commit(time.perf_counter() - started)
            for (_row, _voucher, done), outcome in zip(jobs, outcomes, strict=True):
                if outcome is None:
                    done.set_result(None)
                else:
                    done.set_exception(outcome)

    def receipt(self, receipt_id: str) -> StoredReceipt | None:
        with self.lock:
            row = self._db().execute("SELECT * FROM receipts WHERE id = ?", (receipt_id.lower(),)).fetchone()
        if row is None:
            return None
        item = json.loads(row["item"])
        return StoredReceipt(id=row["id"], payer=row["payer"], amount=int(row["amount"]),
                             cumulative=int(row["cumulative"]), receipt=item["receipt"],
                             payload=json.loads(row["payload"]), outbox=row["outbox"], error=row["error"])

    def channels(self) -> list[tuple[str, int, dict | None]]:
        """Every payer's channel as ``(payer, highest cumulative, best voucher JSON or None)``, to rebuild state."""
        with self.lock:
            db = self._db()
            cumulative: dict[str, int] = {}
            for row in db.execute("SELECT payer, cumulative FROM receipts"):
                cumulative[row["payer"]] = max(cumulative.get(row["payer"], 0), int(row["cumulative"]))
            vouchers = {row["payer"]: json.loads(row["voucher"]) for row in db.execute("SELECT * FROM vouchers")}
        payers = sorted(set(cumulative) | set(vouchers))
        return [(p, cumulative.get(p, 0), vouchers.get(p)) for p in payers]

    def receipt_ids_above(self, payer: str, cumulative: int) -> list[str]:
        """Ids of the payer's receipts whose cumulative exceeds ``cumulative`` (not yet paid on-chain)."""
        with self.lock:
            rows = self._db().execute("SELECT id, cumulative FROM receipts WHERE payer = ?", (payer,)).fetchall()
        return [r["id"] for r in rows if int(r["cumulative"]) > cumulative]

    # Outbox ------------------------------------------------------------------------------------------------------
    def outbox_pending(self, limit: int) -> list[OutboxItem]:
        with self.lock:
            rows = self._db().execute(
                "SELECT seq, id, item, attempts, created_at FROM receipts WHERE outbox = 'pending' "
                "ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [OutboxItem(r["seq"], r["id"], bytes(r["item"]), r["attempts"], r["created_at"]) for r in rows]

    def outbox_counts(self) -> dict[str, int]:
        with self.lock:
            rows = self._db().execute("SELECT outbox, COUNT(*) AS n FROM receipts GROUP BY outbox").fetchall()
        return {r["outbox"]: r["n"] for r in rows}

    def outbox_oldest(self) -> float | None:
        with self.lock:
            row = self._db().execute(
                "SELECT MIN(created_at) AS t FROM receipts WHERE outbox = 'pending'").fetchone()
        return row["t"] if row and row["t"] is not None else None

    def outbox_attempted(self, seqs: list[int], error: str) -> None:
        with self.lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            db.executemany("UPDATE receipts SET attempts = attempts + 1, error = ? WHERE seq = ?",
                           [(error[:500], s) for s in seqs])
            db.execute("COMMIT")

    def outbox_done(self, results: list[tuple[int, str, str | None, str | None]]) -> None:
        """``(seq, 'delivered' | 'refused', relayer status, error)`` per receipt."""
        now = time.time()
        with self.lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "UPDATE receipts SET outbox = ?, relayer_status = ?, error = ?, attempts = attempts + 1, "
                "delivered_at = ? WHERE seq = ?",
                [(state, status, (error or None) and error[:500], now, seq) for seq, state, status, error in results])
            db.execute("COMMIT")

    # exact -------------------------------------------------------------------------------------------------------
    def exact_claim(self, key: str, payer: str, value: int) -> dict[str, Any] | None:
        """Claim an exact authorisation for one request: None if claimed now, else the existing record."""
        now = time.time()
        with self.lock:
            db = self._db()
            row = db.execute("SELECT * FROM exact_payments WHERE key = ?", (key,)).fetchone()
            if row is not None:
                return dict(row)
            db.execute("INSERT INTO exact_payments (key, payer, value, status, created_at, updated_at) "
                       "VALUES (?, ?, ?, 'claimed', ?, ?)", (key, payer, str(value), now, now))
        return None

    def exact_release(self, key: str) -> None:
        """Forget a claim whose request was never served (model error): the authorisation may be used again."""
        with self.lock:
            self._db().execute("DELETE FROM exact_payments WHERE key = ? AND status = 'claimed'", (key,))

    def exact_update(self, key: str, status: str, tx_hash: str | None, error: str | None) -> None:
        with self.lock:
            self._db().execute("UPDATE exact_payments SET status = ?, tx_hash = ?, error = ?, updated_at = ? "
                               "WHERE key = ?", (status, tx_hash, error, time.time(), key))
