"""The write-ahead transaction journal in a store's database: the SDK's ``TxJournal`` (``offchain.sdk.tx``) on the
``transactions`` table, written through the store's group-commit writer.

``record`` returns only once the signed transaction is durably committed (fsync'd), so ``TxManager`` broadcasts
nothing a crash could make the store forget; ``also(conn, tx)`` lets the owning store change the transaction's
subject in the same commit (the relayer marks a batch, slash or exact payment ``sent``). ``done`` marks the mined
transaction and every other record of its nonce (the replacements it retired); ``unconfirmed`` is what
``TxManager.resume`` re-broadcasts or retires after a restart (or a takeover). ``fence(conn, epoch)``, when set, runs
first in the record's own database transaction and raises to refuse it (the relayer's sending lease,
``relayer.lease``: a process that lost the lease, or whose send was granted under an earlier epoch than the lease
holds now, records, and so broadcasts, nothing). ``TABLE`` is the migration that creates the table in
a store that has none (the relayer's predates it and gains the new columns by its own migration).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..sdk.tx import SentTx
from .database import Database
from .writer import GroupCommitWriter

TABLE = """
CREATE TABLE IF NOT EXISTS transactions (
    tx_hash TEXT PRIMARY KEY,            -- recorded before broadcast (write-ahead)
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    nonce INTEGER NOT NULL,
    raw TEXT NOT NULL,
    sent_at REAL NOT NULL,
    max_fee TEXT,
    tip TEXT,
    gas INTEGER,
    done_at REAL                         -- mined (this one or another of its nonce)
);
CREATE INDEX IF NOT EXISTS transactions_ref ON transactions(kind, ref);
CREATE INDEX IF NOT EXISTS transactions_open ON transactions(nonce) WHERE done_at IS NULL;
"""

# The columns a relayer store made before this journal lacks (its ``transactions`` had only the first six).
COLUMNS = [("max_fee", "TEXT"), ("tip", "TEXT"), ("gas", "INTEGER"), ("done_at", "REAL")]


def record(conn: Any, tx: SentTx) -> None:
    """Write one record (a job of the writer: commit it before broadcasting)."""
    conn.execute(
        "INSERT INTO transactions (tx_hash, kind, ref, nonce, raw, sent_at, max_fee, tip, gas) VALUES"
        " (?,?,?,?,?,?,?,?,?) ON CONFLICT (tx_hash) DO UPDATE SET kind = excluded.kind, ref = excluded.ref,"
        " nonce = excluded.nonce, raw = excluded.raw, sent_at = excluded.sent_at, max_fee = excluded.max_fee,"
        " tip = excluded.tip, gas = excluded.gas",
        (tx.tx_hash, tx.kind, tx.ref, tx.nonce, tx.raw, tx.sent_at, str(tx.max_fee) if tx.max_fee else None,
         str(tx.tip) if tx.max_fee else None, tx.gas or None))  # a sender that does not say its fees leaves NULL


def _done(conn: Any, tx_hash: str, now: float) -> None:
    row = conn.execute("SELECT nonce FROM transactions WHERE tx_hash = ?", (tx_hash,)).fetchone()
    if row is not None:
        conn.execute("UPDATE transactions SET done_at = ? WHERE nonce = ? AND done_at IS NULL", (now, row[0]))


def sent_tx(row: Any) -> SentTx:
    return SentTx(kind=row["kind"], ref=row["ref"], tx_hash=row["tx_hash"], nonce=row["nonce"], raw=row["raw"],
                  max_fee=int(row["max_fee"] or 0), tip=int(row["tip"] or 0), gas=int(row["gas"] or 0),
                  sent_at=row["sent_at"])


class SqlTxJournal:
    """``TxJournal`` on a store's ``transactions`` table."""

    def __init__(self, db: Database, writer: GroupCommitWriter,
                 also: Callable[[Any, SentTx], None] | None = None,
                 fence: Callable[[Any, int | None], None] | None = None):
        self.db, self.writer, self.also, self.fence = db, writer, also, fence

    def _record(self, conn: Any, tx: SentTx, epoch: int | None) -> None:
        if self.fence is not None:
            self.fence(conn, epoch)
        record(conn, tx)
        if self.also is not None:
            self.also(conn, tx)

    def record(self, tx: SentTx, epoch: int | None = None) -> None:
        self.writer.call(self._record, tx, epoch)

    def done(self, tx_hash: str) -> None:
        self.writer.call(_done, tx_hash, time.time())

    def unconfirmed(self) -> list[SentTx]:
        return [sent_tx(r) for r in self.db.read(
            "SELECT * FROM transactions WHERE done_at IS NULL ORDER BY nonce, sent_at")]

    def of(self, kind: str, ref: str) -> list[SentTx]:
        """Every record of one subject, oldest first (its first transaction and the replacements)."""
        return [sent_tx(r) for r in self.db.read(
            "SELECT * FROM transactions WHERE kind = ? AND ref = ? ORDER BY sent_at", (kind, str(ref)))]
