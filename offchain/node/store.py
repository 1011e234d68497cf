"""The node's durable store (``offchain.storage``: SQLite in WAL mode, numbered migrations, the shared group-commit
writer; reads on per-thread connections).

Tables:
  receipts        every signed receipt with the exact JSON item handed to the relayer (``{receipt, voucher}``, stored
                  once and resent byte for byte), its payload (request, output, usage, pricing) and its outbox state
                  (``pending`` -> ``delivered`` | ``refused``)
  vouchers        the best (highest maxCumulative) voucher of each payer's channel with this node
  exact_payments  ``exact`` authorisations claimed (one request per authorisation) and their settlement
  transactions    the write-ahead journal of the node's own transactions (``tx_journal()`` for ``TxManager``)

Durability: a receipt is committed before the answer carrying it is released. With ``durable=True`` (the default)
that commit is fsync'd: the receipt survives a power loss, and every receipt queued meanwhile shares the fsync (group
commit). With ``durable=False`` the commit survives the node process being killed but a power loss may lose the last
receipts and best vouchers before the next fsync; what that loses is recoverable: the relayer holds every receipt the
outbox delivered, and the payer's next request carries its voucher again (the node's corrective 402 names the
channel's state). Outbox progress and exact-payment states are durable; losing one only resends (the relayer
deduplicates) or re-checks an authorisation on-chain.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..storage import CommitStats, Database, GroupCommitWriter, Migration, journal
from ..storage.database import read_meta

__all__ = ["NodeStore", "StoredReceipt", "OutboxItem", "MIGRATIONS"]

MIGRATIONS = [Migration(1, "initial schema", """
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
"""), Migration(2, "transactions: the write-ahead journal of the node's own transactions", journal.TABLE)]


@dataclass(frozen=True)
class StoredReceipt:
    id: str
    payer: str
    amount: int
    cumulative: int
    receipt: dict
    payload: dict
    outbox: str
    error: str | None


@dataclass(frozen=True)
class OutboxItem:
    seq: int
    id: str
    item: bytes
    attempts: int
    created_at: float


# Writes (jobs of the group-commit writer) ----------------------------------------------------------------------------
def _add_receipt(conn: Any, row: tuple, voucher: tuple | None) -> None:
    conn.execute("INSERT INTO receipts (id, request_id, payer, amount, cumulative, voucher_cap, item, payload,"
                 " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    if voucher is not None:
        conn.execute("INSERT INTO vouchers (payer, max_cumulative, voucher, updated_at) VALUES (?, ?, ?, ?)"
                     " ON CONFLICT (payer) DO UPDATE SET max_cumulative = excluded.max_cumulative,"
                     " voucher = excluded.voucher, updated_at = excluded.updated_at", voucher)


def _outbox_attempted(conn: Any, seqs: list[int], error: str) -> None:
    conn.executemany("UPDATE receipts SET attempts = attempts + 1, error = ? WHERE seq = ?",
                     [(error[:500], s) for s in seqs])


def _outbox_done(conn: Any, results: list[tuple[int, str, str | None, str | None]], now: float) -> None:
    conn.executemany(
        "UPDATE receipts SET outbox = ?, relayer_status = ?, error = ?, attempts = attempts + 1, delivered_at = ?"
        " WHERE seq = ?",
        [(state, status, (error or None) and error[:500], now, seq) for seq, state, status, error in results])


def _exact_claim(conn: Any, key: str, payer: str, value: int, now: float) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM exact_payments WHERE key = ?", (key,)).fetchone()
    if row is not None:
        return dict(row)
    conn.execute("INSERT INTO exact_payments (key, payer, value, status, created_at, updated_at)"
                 " VALUES (?, ?, ?, 'claimed', ?, ?)", (key, payer, str(value), now, now))
    return None


def _exact_release(conn: Any, key: str) -> None:
    conn.execute("DELETE FROM exact_payments WHERE key = ? AND status IN ('claimed', 'unknown')", (key,))


def _exact_update(conn: Any, key: str, status: str, tx_hash: str | None, error: str | None, now: float) -> None:
    conn.execute("UPDATE exact_payments SET status = ?, tx_hash = ?, error = ?, updated_at = ? WHERE key = ?",
                 (status, tx_hash, error, now, key))


class NodeStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = Database.sqlite(self.path)
        self.writer: GroupCommitWriter | None = None
        self.readonly = False
        self.on_commit: Callable[[float], None] = lambda seconds: None  # each commit's duration (metrics)

    def open(self, chain_id: int, escrow: str, staking: str, node: str) -> None:
        self.db.open(MIGRATIONS, {"chain_id": str(chain_id), "escrow": escrow.lower(), "staking": staking.lower(),
                                  "node": node.lower(), "kind": "opg-node"})
        self.writer = GroupCommitWriter(self.db, name="node-store-writer", on_commit=self._observe)

    def _observe(self, stats: CommitStats) -> None:
        self.on_commit(stats.work + stats.sync)

    def open_readonly(self) -> dict[str, str]:
        """Open for reading only (another process may be running the node); returns the store's ``meta``."""
        if not self.path.exists():
            raise FileNotFoundError(f"no node store at {self.path}")
        self.readonly = True
        return read_meta(self.db.reader(), self.db.dialect)

    def tx_journal(self) -> journal.SqlTxJournal:
        """The write-ahead journal for the SDK's ``TxManager`` (durable before broadcast)."""
        if self.writer is None:
            raise RuntimeError("the node store is closed")
        return journal.SqlTxJournal(self.db, self.writer)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.db.close()

    def _write(self, fn: Callable[..., Any], *args: Any, durable: bool = True) -> Any:
        if self.writer is None:
            raise RuntimeError("the node store is closed")
        return self.writer.call(fn, *args, durable=durable)

    def ping(self) -> bool:
        return self.db.read_one("SELECT 1")[0] == 1

    # Receipts ----------------------------------------------------------------------------------------------------
    def add_receipt(self, *, receipt_id: str, request_id: str, payer: str, amount: int, cumulative: int,
                    voucher_cap: int, item: bytes, payload: dict, best_voucher: dict | None,
                    durable: bool = True) -> None:
        """Commit a signed receipt (and, if it is new, the channel's best voucher); raises on failure. Blocks until
        the group commit holding it returned (fsync'd if ``durable``)."""
        now = time.time()
        row = (receipt_id, request_id, payer, str(amount), str(cumulative), str(voucher_cap), item,
               json.dumps(payload, separators=(",", ":")), now)
        voucher = None if best_voucher is None else \
            (payer, str(best_voucher["maxCumulative"]), json.dumps(best_voucher), now)
        self._write(_add_receipt, row, voucher, durable=durable)

    def receipt(self, receipt_id: str) -> StoredReceipt | None:
        row = self.db.read_one("SELECT * FROM receipts WHERE id = ?", (receipt_id.lower(),))
        if row is None:
            return None
        item = json.loads(row["item"])
        return StoredReceipt(id=row["id"], payer=row["payer"], amount=int(row["amount"]),
                             cumulative=int(row["cumulative"]), receipt=item["receipt"],
                             payload=json.loads(row["payload"]), outbox=row["outbox"], error=row["error"])

    def channels(self) -> list[tuple[str, int, dict | None]]:
        """Every payer's channel as ``(payer, highest cumulative, best voucher JSON or None)``, to rebuild state."""
        cumulative: dict[str, int] = {}
        for row in self.db.read("SELECT payer, cumulative FROM receipts"):
            cumulative[row["payer"]] = max(cumulative.get(row["payer"], 0), int(row["cumulative"]))
        vouchers = {row["payer"]: json.loads(row["voucher"]) for row in self.db.read("SELECT * FROM vouchers")}
        payers = sorted(set(cumulative) | set(vouchers))
        return [(p, cumulative.get(p, 0), vouchers.get(p)) for p in payers]

    def receipt_ids_above(self, payer: str, cumulative: int) -> list[str]:
        """Ids of the payer's receipts whose cumulative exceeds ``cumulative`` (not yet paid on-chain)."""
        rows = self.db.read("SELECT id, cumulative FROM receipts WHERE payer = ?", (payer,))
        return [r["id"] for r in rows if int(r["cumulative"]) > cumulative]

    # Outbox ------------------------------------------------------------------------------------------------------
    def outbox_pending(self, limit: int) -> list[OutboxItem]:
        rows = self.db.read("SELECT seq, id, item, attempts, created_at FROM receipts WHERE outbox = 'pending'"
                            " ORDER BY seq LIMIT ?", (limit,))
        return [OutboxItem(r["seq"], r["id"], bytes(r["item"]), r["attempts"], r["created_at"]) for r in rows]

    def outbox_counts(self) -> dict[str, int]:
        return {r["outbox"]: r["n"] for r in self.db.read("SELECT outbox, COUNT(*) AS n FROM receipts GROUP BY outbox")}

    def outbox_oldest(self) -> float | None:
        row = self.db.read_one("SELECT MIN(created_at) AS t FROM receipts WHERE outbox = 'pending'")
        return row["t"] if row and row["t"] is not None else None

    def outbox_attempted(self, seqs: list[int], error: str) -> None:
        self._write(_outbox_attempted, seqs, error)

    def outbox_done(self, results: list[tuple[int, str, str | None, str | None]]) -> None:
        """``(seq, 'delivered' | 'refused', relayer status, error)`` per receipt."""
        self._write(_outbox_done, results, time.time())

    # exact -------------------------------------------------------------------------------------------------------
    def exact_claim(self, key: str, payer: str, value: int) -> dict[str, Any] | None:
        """Claim an exact authorisation for one request: None if claimed now, else the existing record."""
        return self._write(_exact_claim, key, payer, value, time.time())

    def exact_release(self, key: str) -> None:
        """Forget a claim whose request was never served (model error), or whose transfer was never made (found at a
        restart): the authorisation may be used again."""
        self._write(_exact_release, key)

    def exact_update(self, key: str, status: str, tx_hash: str | None, error: str | None) -> None:
        self._write(_exact_update, key, status, tx_hash, error, time.time())

    def exact_unresolved(self) -> list[str]:
        """Keys of the exact authorizations claimed but never recorded settled or failed (the node stopped, or the
        relayer did not answer, in between)."""
        return [r["key"] for r in self.db.read("SELECT key FROM exact_payments WHERE status IN ('claimed', 'unknown')"
                                               " ORDER BY created_at")]
