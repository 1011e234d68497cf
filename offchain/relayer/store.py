"""The relayer's durable state: repositories over one database (``offchain.storage``), numbered migrations, the
shared group-commit writer, and the units of work (``Store.job_*``) that apply the settlement rules
(``relayer.rules``) and write their results.

Repositories (SQL only, one per aggregate; writes take the writer's connection inside a job, reads use the thread's
reader): ``Receipts`` (accepted receipts and the equivocation evidence of ``conflicting_receipts``), ``Channels``
(charged, best vouchers, settled), ``Batches``, the ``transactions`` journal (``storage.journal``),
``Slashes`` (slashes, verdicts, withholding reports), ``ExactPayments``. Amounts are decimal text (uint256 does
not fit SQL integers). ``Store`` holds them as attributes (``store.receipts``, ``store.slashes``, ``store.exact``,
...): components read through the repository, e.g. ``store.receipts.get(id)``. Reads return frozen dataclasses
defined here, one per row shape, each built by ``from_row`` (amounts as ints, JSON columns as dicts):
``StoredReceipt``, ``PendingEntry``, ``FeedEntry``, ``NodeSummary``/``SlashGroup``, ``Slash``, ``StoredVerdict``,
``DoubleVote``, ``ExactPayment``; batch reads (``Store.batch``, ``batches``, ``inflight_batch``, ``unbatched``,
``transactions``) still return dicts.

Engines: ``Store(location)`` is a SQLite file (the embedded default) or a ``postgresql://`` database
(``storage.postgres``). Several relayer processes may share one store (always assumed on PostgreSQL; on one SQLite
file with ``shared=True``, ``--shared-store``): every job that decides on channels (accepting receipts, resolving
claims, /verify's promise: ``job_promise``) takes the intake lock (``lock_intake``) and reads the channels it decides
on from the store, so it decides on what every process committed; each process's ledger and reservations follow the
others' changes incrementally (``catch_up``: channel and promise rows whose ``version`` is newer than the last one
seen), under the intake lock, before a batch is built and every ``FOLLOW_INTERVAL`` as a backstop. The single-process
default keeps its promises in memory and decides on its ledger (exact there: it is the only writer). Durability: every relayer write is durable (SQLite ``synchronous=FULL``, PostgreSQL
``synchronous_commit=on``) before it is acknowledged. An accepted receipt is
on disk before ``/settle`` answers (the node then marks it delivered and will not resend it); a signed transaction
is in the journal before it is broadcast (a restart finds and reconciles every transaction that may be mined); batch,
slash and exact-payment state changes are on disk before the next step acts on them. A crash loses only requests
that were not answered yet. A commit that fails (disk full, I/O error) is fatal: the jobs already changed the
in-memory ledger, so the process exits and rebuilds the ledger from the database on restart.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..daemon.errors import ApiError
from ..messages import Receipt, SignedReceipt, SignedVoucher
from ..sdk.tx import SentTx
from ..storage import Database, Dialect, GroupCommitWriter, Migration, add_missing_columns, journal, postgres, typed_row
from ..storage.database import is_postgres_url
from ..storage.journal import SqlTxJournal
from ..storage.writer import CommitStats
from .handover import HANDOVERS
from .ledger import Ledger
from .proposals import Reservations
from .rules import ChannelState, ClaimResult, after_receipt, resolve_claim

log = logging.getLogger("opg.relayer.store")

__all__ = ["Store", "ValidReceipt", "AcceptOutcome", "StoredReceipt", "PendingEntry", "FeedEntry", "NodeSummary",
           "SlashGroup", "Slash", "StoredVerdict", "DoubleVote", "ExactPayment", "MIGRATIONS"]

_RECEIPT_COLUMNS = """
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
    settled_at REAL"""

_INITIAL = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (
    id TEXT PRIMARY KEY,{_RECEIPT_COLUMNS}
);
CREATE UNIQUE INDEX IF NOT EXISTS receipts_request ON receipts(node, request_id);
CREATE INDEX IF NOT EXISTS receipts_struct ON receipts(struct_hash);
CREATE INDEX IF NOT EXISTS receipts_unbatched ON receipts(accepted_at) WHERE status = 'pending' AND batch_id IS NULL;
CREATE INDEX IF NOT EXISTS receipts_batch ON receipts(batch_id) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS receipts_channel ON receipts(payer, node) WHERE status = 'pending';
CREATE TABLE IF NOT EXISTS conflicting_receipts (
    id TEXT PRIMARY KEY,
    conflicts_with TEXT NOT NULL,{_RECEIPT_COLUMNS}
);
CREATE TABLE IF NOT EXISTS channels (
    payer TEXT NOT NULL,
    node TEXT NOT NULL,
    charged TEXT NOT NULL,
    cap TEXT NOT NULL,
    voucher_signature TEXT NOT NULL,
    settled TEXT NOT NULL,
    PRIMARY KEY (payer, node)
);
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL,
    receipts_root TEXT NOT NULL,
    claims TEXT NOT NULL,
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
    tx_hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
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
    kind TEXT NOT NULL,
    evidence TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    args TEXT NOT NULL,
    status TEXT NOT NULL,
    tx_hash TEXT,
    amount TEXT,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS withholding_reports (
    receipt_hash TEXT NOT NULL,
    node TEXT NOT NULL,
    verifier TEXT NOT NULL,
    signature TEXT NOT NULL,
    reason TEXT,
    reported_at REAL NOT NULL,
    PRIMARY KEY (receipt_hash, verifier)
);
CREATE INDEX IF NOT EXISTS withholding_node ON withholding_reports(node);
CREATE TABLE IF NOT EXISTS exact_payments (
    id TEXT PRIMARY KEY,
    payer TEXT NOT NULL,
    payee TEXT NOT NULL,
    value TEXT NOT NULL,
    "authorization" TEXT NOT NULL,           -- quoted: a reserved word in PostgreSQL
    status TEXT NOT NULL,
    tx_hash TEXT,
    block_number INTEGER,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
"""

def _session_columns(conn: Any, d: Dialect) -> None:
    add_missing_columns(conn, d, "channels", [("signer", "TEXT NOT NULL DEFAULT ''"),
                                              ("payer_cap", "TEXT NOT NULL DEFAULT '0'"),
                                              ("payer_signature", "TEXT NOT NULL DEFAULT ''")])


def _journal_columns(conn: Any, d: Dialect) -> None:
    add_missing_columns(conn, d, "transactions", journal.COLUMNS)
    conn.execute("CREATE INDEX IF NOT EXISTS transactions_open ON transactions(nonce) WHERE done_at IS NULL")


# Status columns: receipts pending | settled | rejected; batches built | sent | confirmed | failed | skipped;
# slashes queued | sent | confirmed | skipped | failed; exact_payments queued | new | sent | confirmed | failed.
# transactions is written before broadcast; slashes.evidence names what the slash proves (unique).
# PostgreSQL: the same schema in its spelling, plus the feed's order column (SQLite numbers rows by ``rowid``).
_PG_FEED_ORDER = """
ALTER TABLE receipts ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX IF NOT EXISTS receipts_seq ON receipts(seq);
"""

def _shared_intake(conn: Any, d: Dialect) -> None:
    """Several relayer processes on one store: each channel row carries its pending count and a change ``version``
    (what a process's ledger catches up on), and /verify promises live in ``promises`` (every relayer counts them)."""
    add_missing_columns(conn, d, "channels", [("pending", "INTEGER NOT NULL DEFAULT 0"),
                                              ("version", "INTEGER NOT NULL DEFAULT 0")])
    conn.execute("UPDATE channels SET pending = (SELECT count(*) FROM receipts r WHERE r.payer = channels.payer"
                 " AND r.node = channels.node AND r.status = 'pending')")
    conn.execute("CREATE INDEX IF NOT EXISTS channels_version ON channels(version)")
    conn.execute(d.ddl("CREATE TABLE IF NOT EXISTS promises (payer TEXT NOT NULL, node TEXT NOT NULL,"
                       " cap TEXT NOT NULL, signer TEXT NOT NULL, until REAL NOT NULL,"
                       " version INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (payer, node))"))
    conn.execute("CREATE INDEX IF NOT EXISTS promises_version ON promises(version)")


def _version_counter(conn: Any, d: Dialect) -> None:
    """Change versions from a counter that never falls (``_version``), starting above every version stored."""
    top = ("(SELECT max(v) FROM (SELECT coalesce(max(version), 0) AS v FROM channels"
           " UNION ALL SELECT coalesce(max(version), 0) FROM promises) AS t)")
    if _on_postgres(conn):
        conn.execute("CREATE SEQUENCE IF NOT EXISTS change_version")
        conn.execute(f"SELECT setval('change_version', greatest(1, {top}))")
        return
    conn.execute(f"INSERT INTO meta (key, value) VALUES ('change_version', {top}) ON CONFLICT (key) DO NOTHING")


MIGRATIONS = [
    Migration(1, "initial schema", _INITIAL, postgres.ddl(_INITIAL) + _PG_FEED_ORDER),
    Migration(2, "channels: session-signed best voucher and the payer's own best voucher", _session_columns,
              _session_columns),
    Migration(3, "transactions: the SDK journal's fees, gas and mined mark", _journal_columns, _journal_columns),
    Migration(4, "channels: pending count and change version; /verify promises shared by every relayer",
              _shared_intake, _shared_intake),
    Migration(5, "receipts: the feed's seq follows commit order", "", postgres.commit_ordered("receipts", "id")),
    Migration(6, "change versions from a counter that never falls", _version_counter, _version_counter),
    Migration(7, "handovers: work a follower hands to the sending relayer (gasless deposits)", HANDOVERS,
              postgres.ddl(HANDOVERS)),
]

_RECEIPT_FIELDS = ("id, struct_hash, request_id, payer, node, model_id, input_hash, output_hash, amount, cumulative,"
                   " timestamp, signature, voucher_cap, voucher_signature, accepted_at")


@dataclass(frozen=True)
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


@dataclass(frozen=True)
class PendingReceipt:
    """A pending receipt as batching sees it."""

    id: str
    payer: str
    node: str
    cumulative: int
    accepted_at: float


def _int_or_none(text: str | None) -> int | None:
    return None if text is None else int(text)


@dataclass(frozen=True)
class ReceiptRow:
    """A stored receipt's id, struct hash, the fields its node signed, the signature and when it was accepted (what
    ``StoredReceipt`` and ``FeedEntry`` share)."""

    id: str
    struct_hash: str
    request_id: str
    payer: str
    node: str
    model_id: str
    input_hash: str
    output_hash: str
    amount: int
    cumulative: int
    timestamp: int
    signature: str
    accepted_at: float

    def message(self) -> Receipt:
        """The receipt the node signed (without its signature), as the contracts take it."""
        return Receipt(request_id=self.request_id, payer=self.payer, node=self.node, model_id=self.model_id,
                       input_hash=self.input_hash, output_hash=self.output_hash, amount=self.amount,
                       cumulative=self.cumulative, timestamp=self.timestamp)


@dataclass(frozen=True)
class StoredReceipt(ReceiptRow):
    """A stored receipt: accepted (``conflicts_with`` None), or kept as equivocation evidence (``conflicts_with`` the
    accepted one, ``status`` rejected), with its batch's transaction and status if it is in one."""

    voucher_cap: int
    voucher_signature: str
    status: str  # pending | settled | rejected
    reason: str | None
    batch_id: int | None
    settled_at: float | None
    batch_tx: str | None
    batch_status: str | None
    conflicts_with: str | None

    @classmethod
    def from_row(cls, row: Any) -> StoredReceipt:
        return typed_row(cls, row, amount=int, cumulative=int, voucher_cap=int)


@dataclass(frozen=True)
class PendingEntry:
    """A pending receipt as a payer's or a channel's view lists it."""

    id: str
    node: str
    amount: int
    cumulative: int
    voucher_cap: int
    timestamp: int
    accepted_at: float
    batch_id: int | None

    @classmethod
    def from_row(cls, row: Any) -> PendingEntry:
        return typed_row(cls, row, amount=int, cumulative=int, voucher_cap=int)


@dataclass(frozen=True)
class FeedEntry(ReceiptRow):
    """An accepted receipt as the verifiers' feed gives it, with ``seq`` (its place in acceptance order)."""

    seq: int

    @classmethod
    def from_row(cls, row: Any) -> FeedEntry:
        return typed_row(cls, row, amount=int, cumulative=int)


@dataclass(frozen=True)
class SlashGroup:
    """A node's slashes of one kind and status: how many, and the amounts slashed (confirmed ones)."""

    kind: str
    status: str
    n: int
    amounts: tuple[int, ...]


@dataclass(frozen=True)
class NodeSummary:
    """What the relayer holds about one node (or verifier): receipts accepted and pending, withholding reports
    (and on how many receipts), its slashes by kind and status."""

    receipts: int
    pending: int
    reports: int
    withheld: int
    slashes: tuple[SlashGroup, ...]


@dataclass(frozen=True)
class Slash:
    """A slashing submission: ``evidence`` names what it proves (unique), ``args`` what the contract call takes,
    ``amount`` what the chain slashed once confirmed."""

    id: int
    kind: str  # equivocation | fraud | prove_valid | invalid_receipt | lazy_verifier | false_accuser | double_vote
    evidence: str
    subject: str
    args: dict
    status: str  # queued | sent | confirmed | skipped | failed
    tx_hash: str | None
    amount: int | None
    error: str | None
    attempts: int
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Any) -> Slash:
        return typed_row(cls, row, args=json.loads, amount=_int_or_none)


@dataclass(frozen=True)
class StoredVerdict:
    """A verifier's signed verdict on a receipt (by its struct hash)."""

    receipt_hash: str
    verifier: str
    valid: bool
    signature: str
    received_at: float

    @classmethod
    def from_row(cls, row: Any) -> StoredVerdict:
        return typed_row(cls, row, valid=bool)


@dataclass(frozen=True)
class DoubleVote:
    """A verifier's two signatures, one for each verdict, on one receipt."""

    receipt_hash: str
    verifier: str
    sig_true: str
    sig_false: str

    @classmethod
    def from_row(cls, row: Any) -> DoubleVote:
        return typed_row(cls, row)


@dataclass(frozen=True)
class ExactPayment:
    """An EIP-3009 authorisation claimed for settlement (``id`` = ``payer:nonce``; ``authorization``: the x402
    payload as received) and its outcome."""

    id: str
    payer: str
    payee: str
    value: int
    authorization: dict
    status: str  # new | sent | confirmed | failed
    tx_hash: str | None
    block_number: int | None
    error: str | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Any) -> ExactPayment:
        return typed_row(cls, row, value=int, authorization=json.loads)


_STORED = ("SELECT r.*, b.tx_hash AS batch_tx, b.status AS batch_status, NULL AS conflicts_with FROM receipts r"
           " LEFT JOIN batches b ON b.id = r.batch_id")
_PENDING = "SELECT id, node, amount, cumulative, voucher_cap, timestamp, accepted_at, batch_id FROM receipts"


def _rows(cursor: Any) -> list[dict]:
    return [dict(r) for r in cursor]


def _row(row: Any) -> dict | None:
    return dict(row) if row is not None else None


# Repositories --------------------------------------------------------------------------------------------------------
class Receipts:
    """``receipts`` (accepted) and ``conflicting_receipts`` (a node's second receipt for a requestId: evidence)."""

    def __init__(self, db: Database):
        self.db = db

    @staticmethod
    def values(item: ValidReceipt, now: float) -> tuple:
        r, v = item.receipt, item.voucher
        return (item.id, item.struct_hash, r.request_id, r.payer, r.node, r.model_id, r.input_hash, r.output_hash,
                str(r.amount), str(r.cumulative), r.timestamp, r.signature, str(v.max_cumulative), v.signature, now)

    @staticmethod
    def insert(conn: Any, values: tuple) -> bool:
        """Store a pending receipt; False if its id or (node, requestId) is taken."""
        return conn.execute(f"INSERT INTO receipts ({_RECEIPT_FIELDS}, status) VALUES"
                            " (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?, 'pending') ON CONFLICT DO NOTHING", values).rowcount == 1

    @staticmethod
    def insert_conflicting(conn: Any, values: tuple, conflicts_with: str, reason: str) -> None:
        conn.execute(f"INSERT INTO conflicting_receipts ({_RECEIPT_FIELDS}, conflicts_with, status, reason)"
                     " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?, 'rejected', ?)", values + (conflicts_with, reason))

    @staticmethod
    def stored_outcome(conn: Any, receipt_id: str) -> tuple[str, str | None, int | None] | None:
        """(status, reason, batch id) of a receipt already stored, accepted or as evidence."""
        for table in ("receipts", "conflicting_receipts"):
            row = conn.execute(f"SELECT status, reason, batch_id FROM {table} WHERE id = ?", (receipt_id,)).fetchone()
            if row is not None:
                return row[0], row[1], row[2]
        return None

    @staticmethod
    def id_for_request(conn: Any, node: str, request_id: str) -> str:
        return conn.execute("SELECT id FROM receipts WHERE node = ? AND request_id = ?", (node, request_id)).fetchone()[0]

    @staticmethod
    def pending_of_batch(conn: Any, batch_id: int) -> list[PendingReceipt]:
        return [PendingReceipt(r[0], r[1], r[2], int(r[3]), r[4]) for r in conn.execute(
            "SELECT id, payer, node, cumulative, accepted_at FROM receipts WHERE batch_id = ? AND status = 'pending'",
            (batch_id,))]

    @staticmethod
    def pending_cumulatives(conn: Any, payer: str, node: str) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in conn.execute(
            "SELECT id, cumulative FROM receipts WHERE payer = ? AND node = ? AND status = 'pending'", (payer, node))}

    @staticmethod
    def assign(conn: Any, batch_id: int | None, ids: list[str]) -> None:
        """Put pending receipts that are in no batch into a batch (``None``: back in the queue). The guard keeps a
        receipt in the batch it is in: a stale builder (a leader that just lost the lease) cannot move it out of
        the batch the new leader sent.

        PostgreSQL: one statement for all the ids. Row by row, each UPDATE's ``status = 'pending' AND batch_id IS
        NULL`` matches the partial index ``receipts_unbatched`` and, before the table's first ANALYZE (a fresh or
        fast-growing table: no statistics), the planner scans that whole index per row instead of the primary key:
        a 1,000-receipt batch took seconds on the writer, stalling every intake job queued behind it."""
        guard = " AND batch_id IS NULL" if batch_id is not None else ""
        if _on_postgres(conn):
            conn.execute(f"UPDATE receipts SET batch_id = ? WHERE id = ANY(?) AND status = 'pending'{guard}",
                         (batch_id, ids))
            return
        conn.executemany(f"UPDATE receipts SET batch_id = ? WHERE id = ? AND status = 'pending'{guard}",
                         [(batch_id, i) for i in ids])

    @staticmethod
    def release_batch(conn: Any, batch_id: int) -> None:
        conn.execute("UPDATE receipts SET batch_id = NULL WHERE batch_id = ? AND status = 'pending'", (batch_id,))

    @staticmethod
    def resolve(conn: Any, updates: list[tuple[str, str | None, int | None, float | None, str]]) -> None:
        """``(status, reason, batch id or None to keep, settled_at, id)`` for pending receipts."""
        conn.executemany("UPDATE receipts SET status = ?, reason = ?, batch_id = coalesce(?, batch_id), settled_at = ?"
                         " WHERE id = ? AND status = 'pending'", updates)

    @staticmethod
    def reject_batch(conn: Any, batch_id: int, reason: str) -> list[tuple[str, str, int]]:
        """Reject a batch's pending receipts; returns ``(payer, node, count)`` of those rejected."""
        counts = [(r[0], r[1], r[2]) for r in conn.execute(
            "SELECT payer, node, count(*) FROM receipts WHERE batch_id = ? AND status = 'pending' GROUP BY payer, node",
            (batch_id,))]
        conn.execute("UPDATE receipts SET status = 'rejected', reason = ? WHERE batch_id = ? AND status = 'pending'",
                     (reason, batch_id))
        return counts

    @staticmethod
    def pending_count_of_batch(conn: Any, batch_id: int) -> int:
        return conn.execute("SELECT count(*) FROM receipts WHERE batch_id = ? AND status = 'pending'",
                            (batch_id,)).fetchone()[0]

    # Reads
    def get(self, receipt_id: str) -> StoredReceipt | None:
        """A stored receipt (accepted, or kept as equivocation evidence) with its batch's transaction."""
        rid = receipt_id.lower()
        row = self.db.read_one(_STORED + " WHERE r.id = ?", (rid,))
        if row is None:
            row = self.db.read_one("SELECT *, NULL AS batch_tx, NULL AS batch_status FROM conflicting_receipts"
                                   " WHERE id = ?", (rid,))
        return StoredReceipt.from_row(row) if row is not None else None

    def by_struct_hash(self, struct_hash: str) -> StoredReceipt | None:
        """The first accepted receipt with this struct hash."""
        row = self.db.read_one(_STORED + " WHERE r.struct_hash = ? ORDER BY r.accepted_at LIMIT 1", (struct_hash,))
        return StoredReceipt.from_row(row) if row is not None else None

    def pending_of_channel(self, payer: str, node: str, limit: int = 100) -> list[PendingEntry]:
        return [PendingEntry.from_row(r) for r in self.db.read(
            _PENDING + " WHERE payer = ? AND node = ? AND status = 'pending' ORDER BY accepted_at LIMIT ?",
            (payer, node, limit))]

    def pending_of_payer(self, payer: str, limit: int) -> list[PendingEntry]:
        return [PendingEntry.from_row(r) for r in self.db.read(
            _PENDING + " WHERE payer = ? AND status = 'pending' ORDER BY accepted_at LIMIT ?", (payer, limit))]

    def unbatched_summary(self) -> tuple[int, float | None]:
        row = self.db.read_one("SELECT count(*), min(accepted_at) FROM receipts WHERE status = 'pending'"
                               " AND batch_id IS NULL")
        return row[0], row[1]

    def unbatched(self, limit: int, first: list[str] | None = None) -> list[dict]:
        """The oldest unbatched receipts; those of the payers ``first`` (settled early) ahead of the others."""
        query = ("SELECT id, payer, node, cumulative FROM receipts WHERE status = 'pending' AND batch_id IS NULL{}"
                 " ORDER BY accepted_at LIMIT ?")
        rows: list[dict] = []
        for payer in first or ():
            rows += _rows(self.db.read(query.format(" AND payer = ?"), (payer, limit - len(rows))))
            if len(rows) >= limit:
                return rows
        seen = {r["id"] for r in rows}
        rest = _rows(self.db.read(query.format(""), (limit,)))
        return (rows + [r for r in rest if r["id"] not in seen])[:limit]

    def of_batch(self, batch_id: int) -> list[tuple[str, str, str]]:
        return [(r[0], r[1], r[2]) for r in self.db.read(
            "SELECT id, payer, node FROM receipts WHERE batch_id = ? AND status = 'pending'", (batch_id,))]

    def feed(self, after: int, limit: int) -> list[FeedEntry]:
        """Accepted receipts in acceptance order (``seq`` = the dialect's row order: SQLite's rowid, which only grows
        as receipts are never deleted and the relayer never runs VACUUM; PostgreSQL's identity column ``seq``),
        those after ``after``."""
        seq = self.db.dialect.row_order
        return [FeedEntry.from_row(r) for r in self.db.read(
            f"SELECT {seq} AS seq, id, struct_hash, request_id, payer, node, model_id, input_hash, output_hash, amount,"
            f" cumulative, timestamp, signature, accepted_at FROM receipts WHERE {seq} > ? ORDER BY {seq} LIMIT ?",
            (after, limit))]


@dataclass(frozen=True)
class ChannelRow:
    """A ``channels`` row: the rules' state of the channel and how many of its receipts are pending."""

    state: ChannelState
    pending: int

    @classmethod
    def from_row(cls, r: Any) -> ChannelRow:
        return cls(ChannelState(r["payer"], r["node"], int(r["charged"]), int(r["cap"]), r["voucher_signature"],
                                int(r["settled"]), r["signer"], int(r["payer_cap"]), r["payer_signature"]),
                   int(r["pending"]))


def _on_postgres(conn: Any) -> bool:
    return not isinstance(conn, sqlite3.Connection)


def _version(conn: Any) -> str:
    """The SQL of a row's next change version, what ``Store.catch_up`` follows. Every write of a channel or promise
    row holds the intake lock (``lock_intake``; SQLite: the file's write lock) until it commits, so versions drawn
    under it grow in commit order. They come from a counter that never falls, shared by both tables: a PostgreSQL
    sequence, on SQLite the ``meta`` row ``change_version`` (bumped here), never from the rows themselves (pruning
    expired promises would lower a ``max(version) + 1`` and hide new rows from the other processes' cursors)."""
    if _on_postgres(conn):
        return "nextval('change_version')"
    return str(int(conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'change_version'"
                                " RETURNING value").fetchone()[0]))


def _clock(conn: Any) -> str:
    """The SQL of the database's clock (seconds since the epoch): promises' ``until`` is written and compared with
    it, so relayers on several hosts agree on when a promise ends whatever their own clocks say (SQLite: one host)."""
    if _on_postgres(conn):
        return "extract(epoch from clock_timestamp())::float8"
    return "((julianday('now') - 2440587.5) * 86400.0)"


def _changed(conn: Any, table: str, seen: int, columns: str = "*") -> tuple[list[Any], int]:
    """The rows of ``table`` changed since the cursor ``seen`` (the highest version read before), and the cursor for
    next time. Versions are drawn in commit order (``_version``), so a row committed later never has a lower one."""
    rows = conn.execute(f"SELECT {columns} FROM {table} WHERE version > ?", (seen,)).fetchall()
    return rows, max([seen] + [int(r["version"]) for r in rows])


class Channels:
    """``channels``: per (payer, node) what was charged, the best vouchers, what was paid on-chain, how many receipts
    are pending, and the change ``version`` other relayer processes catch up on."""

    def __init__(self, db: Database):
        self.db = db

    @staticmethod
    def read(conn: Any, payer: str, node: str) -> ChannelRow | None:
        """The committed row (inside a job: with this transaction's own changes)."""
        row = conn.execute("SELECT * FROM channels WHERE payer = ? AND node = ?", (payer, node)).fetchone()
        return ChannelRow.from_row(row) if row is not None else None

    @staticmethod
    def save(conn: Any, ch: ChannelState, new_pending: int) -> ChannelRow:
        """Store what a receipt made of the channel (not ``settled``: the batcher's) with ``new_pending`` more
        pending receipts; returns the row as stored."""
        v = _version(conn)
        return ChannelRow.from_row(conn.execute(
            "INSERT INTO channels (payer, node, charged, cap, voucher_signature, settled, signer, payer_cap,"
            f" payer_signature, pending, version) VALUES (?,?,?,?,?,?,?,?,?,?, {v}) ON CONFLICT (payer, node) DO UPDATE"
            " SET charged = excluded.charged, cap = excluded.cap, voucher_signature = excluded.voucher_signature,"
            " signer = excluded.signer, payer_cap = excluded.payer_cap, payer_signature = excluded.payer_signature,"
            f" pending = channels.pending + excluded.pending, version = {v} RETURNING *",
            (ch.payer, ch.node, str(ch.charged), str(ch.cap), ch.voucher_signature, str(ch.settled), ch.signer,
             str(ch.payer_cap), ch.payer_signature, new_pending)).fetchone())

    @staticmethod
    def set_settled(conn: Any, payer: str, node: str, settled: int, resolved: int) -> ChannelRow | None:
        """The channel was paid up to ``settled``; ``resolved`` of its receipts are no longer pending."""
        row = conn.execute(f"UPDATE channels SET settled = ?, pending = pending - ?, version = {_version(conn)}"
                           " WHERE payer = ? AND node = ? RETURNING *", (str(settled), resolved, payer, node)).fetchone()
        return ChannelRow.from_row(row) if row is not None else None

    @staticmethod
    def resolved(conn: Any, payer: str, node: str, n: int) -> ChannelRow | None:
        """``n`` of the channel's receipts are no longer pending (rejected)."""
        row = conn.execute(f"UPDATE channels SET pending = pending - ?, version = {_version(conn)}"
                           " WHERE payer = ? AND node = ? RETURNING *", (n, payer, node)).fetchone()
        return ChannelRow.from_row(row) if row is not None else None


class Batches:
    def __init__(self, db: Database):
        self.db = db

    @staticmethod
    def create(conn: Any, root: str, claims: list[dict], count: int, now: float) -> int:
        return conn.execute("INSERT INTO batches (status, receipts_root, claims, receipt_count, created_at)"
                            " VALUES ('built',?,?,?,?) RETURNING id", (root, json.dumps(claims), count, now)).fetchone()[0]

    @staticmethod
    def claims(conn: Any, batch_id: int) -> list[dict]:
        return json.loads(conn.execute("SELECT claims FROM batches WHERE id = ?", (batch_id,)).fetchone()[0])

    @staticmethod
    def rebuilt(conn: Any, batch_id: int, claims: list[dict], root: str, count: int) -> None:
        conn.execute("UPDATE batches SET claims = ?, receipts_root = ?, receipt_count = ?, status = 'built'"
                     " WHERE id = ?", (json.dumps(claims), root, count, batch_id))

    @staticmethod
    def sent(conn: Any, batch_id: int, tx_hash: str, nonce: int, now: float) -> None:
        conn.execute("UPDATE batches SET status = 'sent', tx_hash = ?, nonce = ?, sent_at = ?, attempts = attempts + 1,"
                     " error = NULL WHERE id = ?", (tx_hash, nonce, now, batch_id))

    @staticmethod
    def confirmed(conn: Any, batch_id: int, tx_hash: str, block: int, gas_used: int, gas_price: int,
                  settled_amount: int, claims: list[dict], now: float) -> None:
        conn.execute("UPDATE batches SET status = 'confirmed', tx_hash = ?, block_number = ?, gas_used = ?,"
                     " gas_price = ?, settled_amount = ?, claims = ?, confirmed_at = ?, error = NULL WHERE id = ?",
                     (tx_hash, block, gas_used, str(gas_price), str(settled_amount), json.dumps(claims), now, batch_id))

    @staticmethod
    def ended(conn: Any, batch_id: int, status: str, error: str, now: float, claims: list[dict] | None = None) -> None:
        """A batch that will not be (re)sent: ``failed`` or ``skipped``."""
        conn.execute("UPDATE batches SET status = ?, error = ?, confirmed_at = ?, claims = coalesce(?, claims)"
                     " WHERE id = ?", (status, error, now, None if claims is None else json.dumps(claims), batch_id))

    # Reads
    def get(self, batch_id: int) -> dict | None:
        return _row(self.db.read_one("SELECT * FROM batches WHERE id = ?", (batch_id,)))

    def inflight(self) -> dict | None:
        return _row(self.db.read_one("SELECT * FROM batches WHERE status IN ('built', 'sent') ORDER BY id LIMIT 1"))

    def list(self, status: str | None, limit: int, before: int | None) -> list[dict]:
        sql, args = "SELECT * FROM batches WHERE 1=1", []
        if status:
            sql, args = sql + " AND status = ?", args + [status]
        if before:
            sql, args = sql + " AND id < ?", args + [before]
        return _rows(self.db.read(sql + " ORDER BY id DESC LIMIT ?", args + [limit]))

    def counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.db.read("SELECT status, count(*) FROM batches GROUP BY status")}

    def totals(self) -> tuple[int, int]:
        row = self.db.read_one("SELECT coalesce(sum(gas_used), 0), count(*) FROM batches WHERE status = 'confirmed'")
        return int(row[0]), row[1]  # PostgreSQL sums BIGINT as NUMERIC (a Decimal)


class Slashes:
    """``slashes`` (queued evidence and its transaction), ``verdicts`` and ``withholding_reports``."""

    def __init__(self, db: Database):
        self.db = db

    @staticmethod
    def queue(conn: Any, kind: str, evidence: str, subject: str, args: dict, now: float) -> bool:
        return conn.execute(
            "INSERT INTO slashes (kind, evidence, subject, args, status, created_at, updated_at)"
            " VALUES (?,?,?,?, 'queued', ?, ?) ON CONFLICT DO NOTHING",
            (kind, evidence, subject, json.dumps(args), now, now)).rowcount == 1

    @staticmethod
    def update(conn: Any, slash_id: int, status: str, amount: int | None, error: str | None, args: dict | None,
               now: float) -> None:
        conn.execute("UPDATE slashes SET status = ?, amount = coalesce(?, amount), error = ?, args = coalesce(?, args),"
                     " updated_at = ? WHERE id = ?",
                     (status, None if amount is None else str(amount), error, None if args is None else json.dumps(args),
                      now, slash_id))

    @staticmethod
    def sent(conn: Any, slash_id: int, tx_hash: str, now: float) -> None:
        conn.execute("UPDATE slashes SET status = 'sent', tx_hash = ?, attempts = attempts + 1, updated_at = ?"
                     " WHERE id = ?", (tx_hash, now, slash_id))

    @staticmethod
    def add_verdict(conn: Any, receipt_hash: str, verifier: str, valid: bool, signature: str, now: float) -> bool:
        return conn.execute(
            "INSERT INTO verdicts (receipt_hash, verifier, valid, signature, received_at) VALUES (?,?,?,?,?)"
            " ON CONFLICT DO NOTHING", (receipt_hash, verifier, int(valid), signature, now)).rowcount == 1

    @staticmethod
    def add_withholding_report(conn: Any, receipt_hash: str, node: str, verifier: str, signature: str,
                               reason: str | None, now: float) -> bool:
        return conn.execute(
            "INSERT INTO withholding_reports (receipt_hash, node, verifier, signature, reason, reported_at)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (receipt_hash, node, verifier, signature, reason, now)).rowcount == 1

    # Reads
    def list(self, status: str | None = None, limit: int = 100) -> list[Slash]:
        sql, args = "SELECT * FROM slashes", []
        if status:
            sql, args = sql + " WHERE status = ?", [status]
        return [Slash.from_row(r) for r in self.db.read(sql + " ORDER BY id DESC LIMIT ?", args + [limit])]

    def open(self) -> list[Slash]:
        return [Slash.from_row(r) for r in self.db.read(
            "SELECT * FROM slashes WHERE status IN ('queued', 'sent') ORDER BY id")]

    def proofs_done(self, kind: str, since: float) -> list[Slash]:
        """Proof submissions of ``kind`` (fraud | prove_valid) confirmed or found done on-chain since ``since``."""
        return [Slash.from_row(r) for r in self.db.read(
            "SELECT * FROM slashes WHERE kind = ? AND status IN ('confirmed', 'skipped') AND updated_at >= ?",
            (kind, since))]

    def by_evidence(self, evidence: str) -> Slash | None:
        row = self.db.read_one("SELECT * FROM slashes WHERE evidence = ?", (evidence,))
        return Slash.from_row(row) if row is not None else None

    def verdicts(self, receipt_hash: str, valid: bool | None = None) -> list[StoredVerdict]:
        sql, args = "SELECT * FROM verdicts WHERE receipt_hash = ?", [receipt_hash]
        if valid is not None:
            sql, args = sql + " AND valid = ?", args + [int(valid)]
        return [StoredVerdict.from_row(r) for r in self.db.read(sql + " ORDER BY verifier", args)]

    def verdict_candidates(self, valid: bool, prefix: str) -> list[str]:
        """Receipt hashes with verdicts of ``valid``, held here, without a ``prefix:<hash>`` submission yet."""
        return [r[0] for r in self.db.read(
            "SELECT DISTINCT v.receipt_hash FROM verdicts v WHERE v.valid = ?"
            " AND EXISTS (SELECT 1 FROM receipts r WHERE r.struct_hash = v.receipt_hash)"
            " AND NOT EXISTS (SELECT 1 FROM slashes s WHERE s.evidence = ? || ':' || v.receipt_hash)",
            (int(valid), prefix))]

    def fraud_candidates(self) -> list[str]:
        """Receipt hashes with valid=false verdicts, held here, without a fraud submission yet."""
        return self.verdict_candidates(False, "fraud")

    def contrary_candidates(self, proof: str, valid: bool, kind: str) -> list[StoredVerdict]:
        """Verdicts of ``valid`` on receipts whose ``proof`` submission (fraud | valid) is done, without a ``kind``
        slash yet: valid=true after fraud (lazy), valid=false after validity (false accuser)."""
        return [StoredVerdict.from_row(r) for r in self.db.read(
            "SELECT v.* FROM verdicts v JOIN slashes s ON s.evidence = ? || ':' || v.receipt_hash"
            " AND s.status IN ('confirmed', 'skipped')"
            " WHERE v.valid = ? AND NOT EXISTS"
            " (SELECT 1 FROM slashes l WHERE l.evidence = ? || ':' || v.receipt_hash || ':' || v.verifier)",
            (proof, int(valid), kind))]

    def double_votes(self) -> list[DoubleVote]:
        """Verifiers that signed both verdicts on one receipt, without a double-vote slash yet."""
        return [DoubleVote.from_row(r) for r in self.db.read(
            "SELECT t.receipt_hash, t.verifier, t.signature AS sig_true, f.signature AS sig_false FROM verdicts t"
            " JOIN verdicts f ON f.receipt_hash = t.receipt_hash AND f.verifier = t.verifier AND f.valid = 0"
            " WHERE t.valid = 1 AND NOT EXISTS (SELECT 1 FROM slashes s"
            " WHERE s.evidence = 'double:' || t.receipt_hash || ':' || t.verifier)")]

    def node_summary(self, node: str) -> NodeSummary:
        """Counts about one node: receipts accepted (and pending), withholding reports, slashes by kind and status."""
        receipts, pending = self.db.read_one(
            "SELECT count(*), count(*) FILTER (WHERE status = 'pending') FROM receipts WHERE node = ?", (node,))
        reports, withheld = self.db.read_one(
            "SELECT count(*), count(DISTINCT receipt_hash) FROM withholding_reports WHERE node = ?", (node,))
        groups: dict[tuple[str, str], list[str | None]] = {}  # (kind, status) -> amounts
        for kind, status, amount in self.db.read("SELECT kind, status, amount FROM slashes WHERE subject = ?"
                                                 " ORDER BY kind, status, id", (node,)):
            groups.setdefault((kind, status), []).append(amount)
        slashes = tuple(SlashGroup(kind, status, len(amounts), tuple(int(a) for a in amounts if a is not None))
                        for (kind, status), amounts in groups.items())
        return NodeSummary(receipts, pending, reports, withheld, slashes)


class ExactPayments:
    """``exact_payments``: EIP-3009 authorisations claimed for settlement and their outcome."""

    def __init__(self, db: Database):
        self.db = db

    @staticmethod
    def find(conn: Any, key: str) -> ExactPayment | None:
        row = conn.execute("SELECT * FROM exact_payments WHERE id = ?", (key,)).fetchone()
        return ExactPayment.from_row(row) if row is not None else None

    @staticmethod
    def claim(conn: Any, key: str, payer: str, payee: str, value: int, authorization: dict, now: float,
              status: str = "new") -> bool:
        """Claim an authorisation for settlement (status ``new``; ``queued``: a follower hands it to the leader), or
        re-claim one whose settlement failed; False if it is claimed already (by this relayer or another on the same
        store: the row is the one claim, its key unique; a concurrent claim waits for the first one's commit and then
        finds it)."""
        return conn.execute(
            "INSERT INTO exact_payments (id, payer, payee, value, \"authorization\", status, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?, ?, ?) ON CONFLICT (id) DO UPDATE SET payer = excluded.payer,"
            " payee = excluded.payee, value = excluded.value, \"authorization\" = excluded.\"authorization\","
            " status = excluded.status, tx_hash = NULL, block_number = NULL, error = NULL,"
            " created_at = excluded.created_at, updated_at = excluded.updated_at WHERE exact_payments.status = 'failed'",
            (key, payer, payee, str(value), json.dumps(authorization), status, now, now)).rowcount == 1

    @staticmethod
    def take(conn: Any, key: str, now: float) -> bool:
        """The leader takes a ``queued`` authorisation to send it (``new``); False if another take got it first."""
        return conn.execute("UPDATE exact_payments SET status = 'new', updated_at = ? WHERE id = ? AND"
                            " status = 'queued'", (now, key)).rowcount == 1

    @staticmethod
    def update(conn: Any, key: str, status: str, block: int | None, error: str | None, now: float) -> None:
        conn.execute("UPDATE exact_payments SET status = ?, block_number = ?, error = ?, updated_at = ? WHERE id = ?",
                     (status, block, error, now, key))

    @staticmethod
    def sent(conn: Any, key: str, tx_hash: str, now: float) -> None:
        conn.execute("UPDATE exact_payments SET status = 'sent', tx_hash = ?, updated_at = ? WHERE id = ?",
                     (tx_hash, now, key))

    def get(self, key: str) -> ExactPayment | None:
        row = self.db.read_one("SELECT * FROM exact_payments WHERE id = ?", (key,))
        return ExactPayment.from_row(row) if row is not None else None

    def in_flight(self) -> list[ExactPayment]:
        return [ExactPayment.from_row(r) for r in self.db.read(
            "SELECT * FROM exact_payments WHERE status IN ('new', 'sent')")]

    def queued(self) -> list[ExactPayment]:
        """Authorisations a follower handed to the leader, oldest first."""
        return [ExactPayment.from_row(r) for r in self.db.read(
            "SELECT * FROM exact_payments WHERE status = 'queued' ORDER BY created_at")]


class Promises:
    """``promises``: what ``/verify`` promised on a channel (the highest voucher cap, its signer, until when: the
    database's clock, ``_clock``), written by the relayer that promised it and counted by every relayer on the
    store."""

    @staticmethod
    def save(conn: Any, payer: str, node: str, cap: int, signer: str, remaining: float) -> None:
        """Store the promise, lasting ``remaining`` s from now by the database's clock."""
        v, now = _version(conn), _clock(conn)
        conn.execute(f"INSERT INTO promises (payer, node, cap, signer, until, version) VALUES (?,?,?,?, {now} + ?, {v})"
                     " ON CONFLICT (payer, node) DO UPDATE SET cap = excluded.cap, signer = excluded.signer,"
                     f" until = excluded.until, version = {v}", (payer, node, str(cap), signer, remaining))

    @staticmethod
    def changed(conn: Any, seen: int) -> tuple[list[Any], int]:
        """Promises changed since ``seen`` with ``remaining``: seconds they still last by the database's clock."""
        return _changed(conn, "promises", seen, f"*, until - {_clock(conn)} AS remaining")

    @staticmethod
    def prune(conn: Any, grace: float) -> None:
        """Delete the promises that ended more than ``grace`` s ago by the database's clock."""
        conn.execute(f"DELETE FROM promises WHERE until < {_clock(conn)} - ?", (grace,))


# The store -----------------------------------------------------------------------------------------------------------
INTAKE_LOCK = 0x6F70675F696E74  # the PostgreSQL advisory lock of the transactions that decide on channels
INTAKE_LOCK_WAIT = 5.0  # s a job waits for the intake lock before it is refused (IntakeBusy)
_intake_stalled_until = 0.0  # monotonic: until then a job finding the intake lock taken is refused without waiting


class IntakeBusy(ApiError):
    """The intake lock stayed held by another relayer's transaction (frozen or stuck) for ``INTAKE_LOCK_WAIT``: the
    job is undone and its request answered 503 with this reason."""


def lock_intake(conn: Any) -> None:
    """Serialise, over every relayer process on the store, the transactions that decide on channels or promise
    credits (accepting receipts, resolving claims, /verify's promises on a shared store): each then reads what the
    others committed and decides on it. PostgreSQL: a transaction-scoped advisory lock, taken before any channel row
    is written (one lock, so two relayers' groups never wait for each other's rows in opposite orders; it also keeps
    the feed's ``seq`` in commit order). SQLite: the writer's ``BEGIN IMMEDIATE`` already holds the file's one write
    lock over every process."""
    global _intake_stalled_until
    if not _on_postgres(conn) or conn.execute("SELECT pg_try_advisory_xact_lock(?)", (INTAKE_LOCK,)).fetchone()[0]:
        return
    busy = IntakeBusy(503, "store_busy", None, f"another relayer has held the store's intake lock for over "
                      f"{INTAKE_LOCK_WAIT:g} s; retry shortly")
    if time.monotonic() < _intake_stalled_until:  # a wait just timed out: the jobs queued behind it fail at once
        raise busy
    # Held by another relayer's transaction: wait at most INTAKE_LOCK_WAIT (a relayer frozen mid-transaction holds it
    # until the server ends its session, idle_in_transaction_session_timeout), then refuse with 503 (the job undone).
    conn.execute(f"SET LOCAL lock_timeout = {int(INTAKE_LOCK_WAIT * 1000)}")
    try:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (INTAKE_LOCK,))
    except Exception as exc:
        if getattr(exc, "sqlstate", None) == "55P03":  # lock_not_available
            _intake_stalled_until = time.monotonic() + INTAKE_LOCK_WAIT
            raise busy from None
        raise
    conn.execute("SET LOCAL lock_timeout = DEFAULT")


def _state(ch: Any) -> ChannelState:
    return ChannelState(ch.payer, ch.node, ch.charged, ch.cap, ch.voucher_signature, ch.settled, ch.signer,
                        ch.payer_cap, ch.payer_signature)


def _mirror(ledger: Ledger, row: ChannelRow) -> Any:
    """Copy a channel's stored row into the ledger (in the job that stores or reads it); returns the ledger's
    channel."""
    state = row.state
    ch = ledger.channel(state.payer, state.node)
    ch.charged, ch.cap, ch.voucher_signature, ch.settled = state.charged, state.cap, state.voucher_signature, \
        state.settled
    ch.signer, ch.payer_cap, ch.payer_signature = state.signer, state.payer_cap, state.payer_signature
    if ch.pending != row.pending:
        ledger.pending += row.pending - ch.pending
        ch.pending = row.pending
    return ch


FOLLOW_INTERVAL = 0.25  # s between two catch-ups with the other relayers on a shared store


def _exit_on_failure(exc: BaseException) -> None:
    log.critical("store commit failed; exiting so that nothing unacknowledged is promised: %r", exc)
    os._exit(70)


class Store:
    """The relayer's database: its repositories, the shared group-commit writer, and the units of work below."""

    def __init__(self, location: str | Path, ledger: Ledger, max_group: int = 1024,
                 reservations: Reservations | None = None, shared: bool | None = None,
                 follow_interval: float = FOLLOW_INTERVAL):
        """``location``: a SQLite file or a ``postgresql://`` URL (``Database.at``). ``shared``: other relayer
        processes write to the store too (None: on PostgreSQL, not on SQLite); this process then follows their
        changes into ``ledger`` and ``reservations`` (``catch_up``) and /verify promises go through the store."""
        self.ledger, self.reservations = ledger, reservations
        self.max_group = max_group
        self.shared = is_postgres_url(str(location)) if shared is None else shared
        self.follow_interval = follow_interval
        self._seen = {"channels": -1, "promises": -1}  # catch_up's cursors (the writer thread's)
        self._stop = threading.Event()
        self._follower: threading.Thread | None = None
        self._pruned = 0.0
        self.db = Database.at(location)
        self.receipts, self.channels = Receipts(self.db), Channels(self.db)
        self.batches_repo = Batches(self.db)
        self.slashes, self.exact = Slashes(self.db), ExactPayments(self.db)
        self.writer: GroupCommitWriter | None = None
        self.journal: SqlTxJournal | None = None
        self.on_commit: Callable[[float, float, int], None] | None = None  # (work s, fsync s, jobs)

    # Lifecycle -----------------------------------------------------------------------------------------------------
    def open(self, chain_id: int, escrow: str, staking: str) -> None:
        self.db.open(MIGRATIONS, {"chain_id": str(chain_id), "escrow": escrow, "staking": staking})
        conn = self.db.connect(readonly=True)
        try:
            self.catch_up(conn)
        finally:
            conn.close()
        self.writer = GroupCommitWriter(self.db, max_group=self.max_group, on_commit=self._observe,
                                        on_failure=_exit_on_failure)
        self.journal = SqlTxJournal(self.db, self.writer, also=Store.mark_sent)
        if self.shared:
            self._follower = threading.Thread(target=self._follow, name="store-follower", daemon=True)
            self._follower.start()

    # Several processes on one store ----------------------------------------------------------------------------
    def catch_up(self, conn: Any) -> int:
        """Apply what was committed to channels (and, shared, to promises) since the last catch-up to the ledger
        (and the reservations): incremental (``_changed``), absolute values, so applying a row twice does nothing.
        Run at open and then, shared, as a writer job (``_follow``, ``job_promise``, ``sync``): the ledger changes
        only in the writer thread, and a job's read sees every commit before it and this transaction's own writes,
        so the ledger never goes back. Returns how many channel rows were applied."""
        rows, self._seen["channels"] = _changed(conn, "channels", self._seen["channels"])
        for r in rows:
            _mirror(self.ledger, ChannelRow.from_row(r))
        if self.shared and self.reservations is not None:
            promised, self._seen["promises"] = Promises.changed(conn, self._seen["promises"])
            for p in promised:
                self.reservations.load_promise(p["payer"], p["node"], int(p["cap"]), p["signer"], p["remaining"])
        return len(rows)

    def _follow(self) -> None:
        """Shared: catch up with the other processes every ``follow_interval`` (the backstop of the catch-ups
        done under the intake lock and before each batch is built)."""
        while not self._stop.wait(self.follow_interval):
            try:
                self.sync()
            except Exception as exc:  # the writer closed (shutting down) or the store unreachable: try again
                if self._stop.is_set():
                    return
                log.warning("catching up with the shared store failed: %r", exc)

    def sync(self) -> int:
        """Catch up now (blocking: not from the event loop), pruning expired promises once a minute."""
        now = time.time()
        prune = self.shared and now - self._pruned > 60
        if prune:
            self._pruned = now
        return self.submit_job(self._job_sync, prune, durable=prune).result()

    def _job_sync(self, conn: Any, prune: bool) -> int:
        if prune:
            Promises.prune(conn, 60)
        return self.catch_up(conn)

    def job_promise(self, conn: Any, decide: Callable[[], tuple[Any, Any, tuple[str, str, int, str] | None]]
                    ) -> tuple[Any, Any]:
        """/verify on a shared store: under the intake lock, catch up with every relayer's channels and promises,
        run ``decide`` (the verdict on what is now committed) and store the promise it makes, ``(payer, node, cap,
        signer)``, for every relayer to count; returns ``decide``'s (refusal, extra)."""
        lock_intake(conn)
        self.catch_up(conn)
        refusal, extra, promise = decide()
        if promise is not None and self.reservations is not None:
            cap, signer, remaining = self.reservations.promise(*promise)
            Promises.save(conn, promise[0], promise[1], cap, signer, remaining)
        return refusal, extra

    def _observe(self, stats: CommitStats) -> None:
        if self.on_commit is not None:
            self.on_commit(stats.work, stats.sync, stats.jobs)

    def close(self) -> None:
        self._stop.set()
        if self._follower is not None:
            self._follower.join(5)
        if self.writer is not None:
            self.writer.close()
        self.db.close()

    def tx_journal(self) -> SqlTxJournal:
        """The write-ahead journal for the SDK's ``TxManager``: a record commits with its subject marked sent."""
        if self.journal is None:
            raise RuntimeError("the relayer store is not open")
        return self.journal

    @property
    def commits(self) -> int:
        return self.writer.commits if self.writer else 0

    def ping(self) -> bool:
        return self.db.read_one("SELECT 1")[0] == 1

    # Writing -------------------------------------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
        """Queue a unit of work ``fn(conn, *args)``; its future resolves once it is committed (durably)."""
        return self.submit_job(fn, *args)

    def submit_job(self, fn: Callable[..., Any], *args: Any, durable: bool = True) -> concurrent.futures.Future:
        """``submit`` with the commit's durability (``durable=False``: survives the process, not a power loss)."""
        if self.writer is None:
            raise RuntimeError("the relayer store is not open")
        return self.writer.submit(fn, *args, durable=durable)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a unit of work and wait for its commit (from a thread that is not the event loop)."""
        return self.submit(fn, *args).result()

    # Units of work: receipts ---------------------------------------------------------------------------------------
    @staticmethod
    def _conflict(conn: Any, item: ValidReceipt, values: tuple, now: float) -> AcceptOutcome:
        """The receipt collides with a stored one: the same receipt (same answer), or the node's other receipt
        for this requestId (equivocation: kept as evidence and queued for slashing)."""
        stored = Receipts.stored_outcome(conn, item.id)
        if stored is not None:
            return AcceptOutcome(item.id, *stored, duplicate=True)
        r = item.receipt
        other = Receipts.id_for_request(conn, r.node, r.request_id)
        reason = f"equivocation: the node signed receipt {other} for this requestId"
        Receipts.insert_conflicting(conn, values, other, reason)
        Slashes.queue(conn, "equivocation", f"equivocation:{r.node}:{r.request_id}", r.node,
                      {"a": other, "b": item.id}, now)
        return AcceptOutcome(item.id, "rejected", reason, conflicts_with=other)

    @staticmethod
    def job_accept(conn: Any, ledger: Ledger, items: list[ValidReceipt], now: float,
                   shared: bool) -> list[AcceptOutcome]:
        """Store new receipts (pending), answer duplicates as before, reject and record equivocations. ``shared``:
        the channels are read from the store under the intake lock (another relayer may have changed them), not
        from this process's ledger; the ledger then mirrors what was read and written."""
        lock_intake(conn)
        out: list[AcceptOutcome] = []
        touched: dict[tuple[str, str], tuple[ChannelState, int]] = {}  # channel -> (new state, new pending)
        for item in items:
            r, v = item.receipt, item.voucher
            values = Receipts.values(item, now)
            if not Receipts.insert(conn, values):  # rare: already stored, or equivocation
                out.append(Store._conflict(conn, item, values, now))
                continue
            key = (r.payer, r.node)
            if key in touched:
                state, n = touched[key]
            elif shared:
                stored = Channels.read(conn, *key)
                state, n = (stored.state if stored else ChannelState(*key)), 0
            else:
                ch = ledger.get(*key)
                state, n = (_state(ch) if ch else ChannelState(*key)), 0
            touched[key] = (after_receipt(state, r.cumulative, v.max_cumulative, v.signature, item.voucher_signer),
                            n + 1)
            out.append(AcceptOutcome(item.id, "pending"))
        for state, n in touched.values():
            _mirror(ledger, Channels.save(conn, state, n))
        return out

    async def accept(self, items: list[ValidReceipt]) -> list[AcceptOutcome]:
        """Store receipts (job_accept) and wait, without blocking the event loop, for the commit."""
        return await asyncio.wrap_future(self.submit(self.job_accept, self.ledger, items, time.time(), self.shared))

    # Units of work: batches ----------------------------------------------------------------------------------------
    @staticmethod
    def _resolve_claims(conn: Any, ledger: Ledger, batch_id: int | None, results: list[ClaimResult],
                        receipt_ids: dict[tuple[str, str], list[str]] | None, now: float) -> list[float]:
        """Mark the receipts of claims that are done: settled (paid now or already paid) or rejected.

        ``receipt_ids`` gives each claim's receipts; without it they are the batch's pending receipts. Returns how
        long the receipts settled by this batch waited since acceptance (for the latency metric)."""
        if not results:
            return []
        lock_intake(conn)
        accepted_at: dict[str, float] = {}
        if receipt_ids is None:
            receipt_ids = {}
            for p in Receipts.pending_of_batch(conn, batch_id):
                receipt_ids.setdefault((p.payer, p.node), []).append(p.id)
                accepted_at[p.id] = p.accepted_at
        latencies: list[float] = []
        updates: list[tuple] = []
        for res in results:
            ids = receipt_ids.get((res.payer, res.node), [])
            if not ids:
                continue
            stored = Channels.read(conn, res.payer, res.node)
            fate = resolve_claim(res, stored.state if stored else ChannelState(res.payer, res.node))
            if fate.release_above is not None:
                cumulative = Receipts.pending_cumulatives(conn, res.payer, res.node)
                above = {i for i in ids if cumulative.get(i, 0) > fate.release_above and i in cumulative}
                if above:
                    Receipts.assign(conn, None, sorted(above))
                    ids = [i for i in ids if i not in above]
            if fate.in_batch:
                latencies += [now - accepted_at[i] for i in ids if i in accepted_at]
            settled_at = now if fate.status == "settled" else None
            updates += [(fate.status, fate.reason, batch_id if fate.in_batch else None, settled_at, i) for i in ids]
            row = Channels.set_settled(conn, res.payer, res.node, fate.settled, len(ids))
            if row is not None:
                _mirror(ledger, row)
        Receipts.resolve(conn, updates)
        return latencies

    @classmethod
    def job_build_batch(cls, conn: Any, ledger: Ledger, claims: list[dict], root: str,
                        receipt_ids: dict[tuple[str, str], list[str]], skipped: list[ClaimResult],
                        skipped_ids: dict[tuple[str, str], list[str]], now: float) -> int | None:
        """Record a built batch (its receipts point to it) and resolve the claims simulation skipped."""
        lock_intake(conn)  # first, as every job touching channels and receipts (one lock order: no deadlock)
        cls._resolve_claims(conn, ledger, None, skipped, skipped_ids, now)
        if not claims:
            return None
        batch_id = Batches.create(conn, root, claims, sum(len(v) for v in receipt_ids.values()), now)
        Receipts.assign(conn, batch_id, [i for ids in receipt_ids.values() for i in ids])
        return batch_id

    @classmethod
    def job_rebuild_batch(cls, conn: Any, ledger: Ledger, batch_id: int, claims: list[dict], root: str,
                          skipped: list[ClaimResult], now: float) -> None:
        """A re-simulated batch: drop the claims now skipped (resolving their receipts), keep the rest."""
        lock_intake(conn)
        cls._resolve_claims(conn, ledger, batch_id, skipped, None, now)
        if claims:
            Batches.rebuilt(conn, batch_id, claims, root, Receipts.pending_count_of_batch(conn, batch_id))
        else:
            Batches.ended(conn, batch_id, "skipped", "every claim was skipped at simulation", now, claims)

    @staticmethod
    def mark_sent(conn: Any, tx: SentTx) -> None:
        """A signed transaction's subject is ``sent`` (in the commit that records the transaction)."""
        kind, ref, tx_hash, nonce, now = tx.kind, tx.ref, tx.tx_hash, tx.nonce, tx.sent_at
        if kind == "batch":
            Batches.sent(conn, int(ref), tx_hash, nonce, now)
        elif kind == "slash":
            Slashes.sent(conn, int(ref), tx_hash, now)
        elif kind == "exact":
            ExactPayments.sent(conn, ref, tx_hash, now)

    @classmethod
    def job_batch_confirmed(cls, conn: Any, ledger: Ledger, batch_id: int, tx_hash: str, block: int, gas_used: int,
                            gas_price: int, results: list[ClaimResult], settled_amount: int,
                            now: float) -> list[float]:
        lock_intake(conn)
        latencies = cls._resolve_claims(conn, ledger, batch_id, results, None, now)
        by_key = {(r.payer, r.node): r.outcome for r in results}
        claims = [{**c, "outcome": by_key.get((c["payer"], c["node"]))} for c in Batches.claims(conn, batch_id)]
        Batches.confirmed(conn, batch_id, tx_hash, block, gas_used, gas_price, settled_amount, claims, now)
        return latencies

    @staticmethod
    def job_batch_failed(conn: Any, ledger: Ledger, batch_id: int, error: str, now: float) -> None:
        """The batch's transaction reverted: record it and release the receipts to be batched again."""
        lock_intake(conn)
        Batches.ended(conn, batch_id, "failed", error, now)
        Receipts.release_batch(conn, batch_id)

    @staticmethod
    def job_reject_batch(conn: Any, ledger: Ledger, batch_id: int, error: str, now: float) -> None:
        """The batch can never go through (its simulation keeps reverting): reject its receipts for good and end
        the batch as failed. The batch policy decides when; this only records it."""
        lock_intake(conn)
        for payer, node, n in Receipts.reject_batch(conn, batch_id, f"batch simulation reverted: {error}"):
            row = Channels.resolved(conn, payer, node, n)
            if row is not None:
                _mirror(ledger, row)
        Batches.ended(conn, batch_id, "failed", error, now)

    # Units of work: slashing, verdicts, exact payments -------------------------------------------------------------
    job_verdict = staticmethod(Slashes.add_verdict)
    job_queue_slash = staticmethod(Slashes.queue)
    job_slash_update = staticmethod(Slashes.update)
    job_withholding_report = staticmethod(Slashes.add_withholding_report)
    job_exact_update = staticmethod(ExactPayments.update)
    job_exact_take = staticmethod(ExactPayments.take)

    @staticmethod
    def job_exact_new(conn: Any, key: str, payer: str, payee: str, value: int, authorization: dict,
                      now: float, status: str = "new") -> ExactPayment | None:
        """Claim the authorisation for settlement (None); returns the existing record if it is claimed already and
        its settlement did not fail (by this relayer or another one on the store: ``ExactPayments.claim``)."""
        if ExactPayments.claim(conn, key, payer, payee, value, authorization, now, status):
            return None
        return ExactPayments.find(conn, key)

    # Reads (the names the components use; each is one repository read) --------------------------------------------

    def unbatched_summary(self) -> tuple[int, float | None]:
        return self.receipts.unbatched_summary()

    def unbatched(self, limit: int, first: list[str] | None = None) -> list[dict]:
        """The oldest unbatched receipts (``Receipts.unbatched``). Shared: the ledger then catches up, so the
        channels of every receipt returned (possibly accepted by another relayer) are known as committed with it."""
        rows = self.receipts.unbatched(limit, first)
        if self.shared and rows:
            self.sync()
        return rows

    def batch_receipt_ids(self, batch_id: int) -> list[tuple[str, str, str]]:
        return self.receipts.of_batch(batch_id)

    def inflight_batch(self) -> dict | None:
        return self.batches_repo.inflight()

    def batch(self, batch_id: int) -> dict | None:
        return self.batches_repo.get(batch_id)

    def batches(self, status: str | None, limit: int, before: int | None) -> list[dict]:
        return self.batches_repo.list(status, limit, before)

    def batch_counts(self) -> dict[str, int]:
        return self.batches_repo.counts()

    def transactions(self, kind: str, ref: str) -> list[dict]:
        """The journal's records of one subject, oldest first, as dicts (``tx_hash``, ``nonce``, ``sent_at``, ...)."""
        return [asdict(t) for t in self.tx_journal().of(kind, ref)]



