"""The verifier's durable state (``offchain.storage``: SQLite in WAL mode, numbered migrations, the shared
group-commit writer; reads on per-thread connections).

- ``state``: the feed cursor, the last block searched for ``Flagged`` events.
- ``receipts``: every signed receipt seen (feed, flags, disputes), so a flag naming a receipt by hash can be checked.
- ``flags``: ``Flagged`` events seen (receipt hash, flagger).
- ``checks``: one row per receipt to judge: its source (sample | flag | dispute), the payer's payload of a dispute,
  fetch attempts, and the verdict. The verdict is written once (``valid`` set only while NULL) and signed before it is
  sent anywhere, so a verifier never signs both verdicts on one receipt, even across restarts; the outbox columns
  (``posted``, ``reported``, ``flag_state``) say what still has to reach the relayer and the chain. A payload the
  node did not release by the deadline ends the check as ``withheld`` with NO verdict (``valid`` stays NULL): only a
  ``PayloadWithheld`` report is signed (``report_signature``), which is not a vote. A payer's payload arriving later
  re-opens it.
- ``drift``: teacher-forced token statistics per node (the statistical test, never a slash).
- ``transactions``: the write-ahead journal of its transactions (``tx_journal()`` for the SDK's ``TxManager``).

Durability: every write is durable (fsync'd) before the call returns, in particular a verdict before its signature
leaves the process (signing both verdicts after a crash would be slashable). A crash loses only work not yet
returned: a feed page whose cursor did not move is read again, a check not yet decided is judged again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..storage import Database, GroupCommitWriter, Migration, add_missing_columns, journal, typed_row
from ..storage.database import bind_meta

MIGRATIONS = [
    Migration(1, "initial schema", """CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS receipts (
    id TEXT PRIMARY KEY,
    receipt_hash TEXT NOT NULL,
    node TEXT NOT NULL,
    model_id TEXT NOT NULL,
    receipt TEXT NOT NULL,           -- signed receipt JSON (camelCase)
    seq INTEGER,                     -- the relayer feed's seq, if from the feed
    seen_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS receipts_hash ON receipts(receipt_hash);
CREATE TABLE IF NOT EXISTS flags (
    receipt_hash TEXT NOT NULL,
    flagger TEXT NOT NULL,
    block INTEGER NOT NULL,
    bond TEXT NOT NULL,
    PRIMARY KEY (receipt_hash, flagger)
);
CREATE TABLE IF NOT EXISTS checks (
    id TEXT PRIMARY KEY,             -- receipt id (EIP-712 digest)
    receipt_hash TEXT NOT NULL,
    node TEXT NOT NULL,
    source TEXT NOT NULL,            -- sample | flag | dispute
    status TEXT NOT NULL,            -- queued | done | skipped
    payload TEXT,                    -- a payer's payload (dispute), JSON
    attempts INTEGER NOT NULL DEFAULT 0,
    first_attempt_at REAL,
    next_at REAL NOT NULL,
    last_error TEXT,
    valid INTEGER,                   -- the verdict, once decided (never changes)
    reason TEXT,
    withheld INTEGER NOT NULL DEFAULT 0,
    signature TEXT,                  -- Verdict(receipt_hash, valid) signature
    seconds REAL,                    -- re-execution time
    posted INTEGER NOT NULL DEFAULT 0,   -- 0 to send | 1 stored by the relayer | -1 refused
    post_error TEXT,
    reported INTEGER NOT NULL DEFAULT 0, -- withholding report: 0 to send (if withheld) | 1 sent | -1 refused
    flag_state TEXT,                 -- NULL | pending | sent | skipped | failed
    flag_tx TEXT,
    created_at REAL NOT NULL,
    decided_at REAL
);
CREATE INDEX IF NOT EXISTS checks_due ON checks(next_at) WHERE status = 'queued';
CREATE TABLE IF NOT EXISTS drift (   -- teacher-forced tokens per node (the statistical test, never a slash)
    node TEXT PRIMARY KEY,
    receipts INTEGER NOT NULL DEFAULT 0,
    scored INTEGER NOT NULL DEFAULT 0,   -- tokens scored
    drifted INTEGER NOT NULL DEFAULT 0,  -- tokens beyond the drift margin
    max_margin REAL NOT NULL DEFAULT 0,
    flagged_at REAL                      -- when the binomial test flagged the node (then sampled at rate 1)
);
CREATE INDEX IF NOT EXISTS checks_hash ON checks(receipt_hash);
"""),
    Migration(2, "checks: the withholding report's signature (a report, never a verdict)", lambda conn, d: (
        add_missing_columns(conn, d, "checks", [("report_signature", "TEXT")]))),
    Migration(3, "transactions: the write-ahead journal of the verifier's transactions (flags)", journal.TABLE),
]



def _json_or_none(text: str | None) -> Any:
    return json.loads(text) if text is not None else None


def _bool_or_none(value: int | None) -> bool | None:
    return None if value is None else bool(value)


@dataclass(frozen=True)
class SeenReceipt:
    """A signed receipt this verifier has seen (``receipt``: the signed receipt's JSON, camelCase)."""
    id: str
    receipt_hash: str
    node: str
    model_id: str
    receipt: dict
    seq: int | None
    seen_at: float

    @classmethod
    def from_row(cls, row: Any) -> SeenReceipt:
        return typed_row(cls, row, receipt=json.loads)


@dataclass(frozen=True)
class Check:
    """One receipt to judge and what became of it (see the module docstring): ``valid`` is the verdict (None until
    decided, and for ever on a withheld check); ``posted``/``reported`` are 0 to send, 1 stored, -1 refused."""
    id: str
    receipt_hash: str
    node: str
    source: str
    status: str
    payload: dict | None
    attempts: int
    first_attempt_at: float | None
    next_at: float
    last_error: str | None
    valid: bool | None
    reason: str | None
    withheld: bool
    signature: str | None
    report_signature: str | None
    seconds: float | None
    posted: int
    post_error: str | None
    reported: int
    flag_state: str | None
    flag_tx: str | None
    created_at: float
    decided_at: float | None

    @classmethod
    def from_row(cls, row: Any) -> Check:
        return typed_row(cls, row, payload=_json_or_none, valid=_bool_or_none, withheld=bool)


@dataclass(frozen=True)
class DriftTotals:
    """A node's teacher-forced totals: receipts and tokens scored, tokens beyond the drift margin, the largest
    margin, and when the binomial test flagged it (None if not)."""
    node: str
    receipts: int
    scored: int
    drifted: int
    max_margin: float
    flagged_at: float | None

    @classmethod
    def from_row(cls, row: Any) -> DriftTotals:
        return typed_row(cls, row)


_ADD_RECEIPT = ("INSERT INTO receipts (id, receipt_hash, node, model_id, receipt, seq, seen_at) VALUES (?,?,?,?,?,?,?)"
                " ON CONFLICT DO NOTHING")


def _receipt_values(it: dict, now: float) -> tuple:
    return (it["id"], it["receipt_hash"], it["node"], it["model_id"], json.dumps(it["receipt"]), it.get("seq"), now)


def _queue(c: Any, it: dict, source: str, payload: dict | None, now: float, skip_reason: str | None) -> bool:
    status = "skipped" if skip_reason else "queued"
    cur = c.execute(
        "INSERT INTO checks (id, receipt_hash, node, source, status, payload, next_at, reason, created_at)"
        " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
        (it["id"], it["receipt_hash"], it["node"], source, status,
         json.dumps(payload) if payload is not None else None, now, skip_reason, now))
    return cur.rowcount == 1


def _add_feed_page(c: Any, items: list[dict], cursor: int, sampled: set[str], skipped: dict[str, str],
                   now: float) -> None:
    for it in items:
        c.execute(_ADD_RECEIPT, _receipt_values(it, now))
        if it["id"] in sampled:
            _queue(c, it, "sample", None, now, skipped.get(it["id"]))
    _set_state(c, "feed_cursor", cursor)


def _set_state(c: Any, key: str, value: Any) -> None:
    c.execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
              (key, str(value)))


def _queue_check(c: Any, it: dict, source: str, payload: dict | None, skip_reason: str | None, now: float) -> bool:
    c.execute(_ADD_RECEIPT, _receipt_values(it, now))
    new = _queue(c, it, source, payload, now, skip_reason)
    if not new and payload is not None:  # also re-opens a check the node's withholding ended
        c.execute("UPDATE checks SET payload = ?, next_at = ?, status = 'queued' WHERE id = ?"
                  " AND valid IS NULL AND status IN ('queued', 'withheld') AND payload IS NULL",
                  (json.dumps(payload), now, it["id"]))
    return new


def _execute(c: Any, statement: str, args: tuple) -> int:
    return c.execute(statement, args).rowcount


def _add_drift(c: Any, node: str, scored: int, drifted: int, max_margin: float) -> DriftTotals:
    c.execute("INSERT INTO drift (node) VALUES (?) ON CONFLICT DO NOTHING", (node,))
    c.execute("UPDATE drift SET receipts = receipts + 1, scored = scored + ?, drifted = drifted + ?,"
              " max_margin = max(max_margin, ?) WHERE node = ?", (scored, drifted, max_margin, node))
    return DriftTotals.from_row(c.execute("SELECT * FROM drift WHERE node = ?", (node,)).fetchone())


class VerifierStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = Database.sqlite(self.path)
        self.db.open(MIGRATIONS)
        self.writer = GroupCommitWriter(self.db, name="verifier-store-writer")

    def bind(self, chain_id: int, staking: str, verifier: str) -> None:
        conn = self.db.connect()
        try:
            bind_meta(conn, self.db.dialect, {"chain_id": str(chain_id), "staking": staking, "verifier": verifier})
        finally:
            conn.close()

    def tx_journal(self) -> journal.SqlTxJournal:
        """The write-ahead journal for the SDK's ``TxManager`` (durable before broadcast)."""
        return journal.SqlTxJournal(self.db, self.writer)

    def close(self) -> None:
        self.writer.close()
        self.db.close()

    def _write(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.writer.call(fn, *args)

    def _update(self, statement: str, *args: Any) -> int:
        """One write statement, committed; returns the rows it changed."""
        return self._write(_execute, statement, args)

    # State -------------------------------------------------------------------------------------------------------
    def get_state(self, key: str, default: str | None = None) -> str | None:
        row = self.db.read_one("SELECT value FROM state WHERE key = ?", (key,))
        return row[0] if row else default

    def set_state(self, key: str, value: Any) -> None:
        self._write(_set_state, key, value)

    # Receipts and flags ------------------------------------------------------------------------------------------
    def add_feed_page(self, items: list[dict], cursor: int, sampled: set[str], skipped: dict[str, str]) -> None:
        """Record a page of the feed (each ``{id, receipt_hash, node, model_id, receipt, seq}``), queue the sampled
        ones (``skipped`` maps ids of sampled receipts that cannot be checked to the reason), and move the cursor, in
        one transaction."""
        self._write(_add_feed_page, items, cursor, sampled, skipped, time.time())

    def add_receipt(self, it: dict) -> None:
        self._update(_ADD_RECEIPT, *_receipt_values(it, time.time()))

    def receipt(self, rid: str) -> SeenReceipt | None:
        row = self.db.read_one("SELECT * FROM receipts WHERE id = ?", (rid,))
        return SeenReceipt.from_row(row) if row else None

    def receipt_by_hash(self, receipt_hash: str) -> SeenReceipt | None:
        row = self.db.read_one("SELECT * FROM receipts WHERE receipt_hash = ? LIMIT 1", (receipt_hash,))
        return SeenReceipt.from_row(row) if row else None

    def add_flag(self, receipt_hash: str, flagger: str, block: int, bond: int) -> bool:
        return self._update("INSERT INTO flags (receipt_hash, flagger, block, bond) VALUES (?,?,?,?)"
                            " ON CONFLICT DO NOTHING", receipt_hash, flagger, block, str(bond)) == 1

    def flagged(self, receipt_hash: str) -> bool:
        """Whether anyone's ``Flagged`` event on the receipt has been seen."""
        return self.db.read_one("SELECT 1 FROM flags WHERE receipt_hash = ? LIMIT 1", (receipt_hash,)) is not None

    def keep_payload(self, rid: str, payload: dict) -> None:
        """Keep the node's payload of a receipt judged invalid (the evidence shared with the other verifiers)."""
        self._update("UPDATE checks SET payload = coalesce(payload, ?) WHERE id = ?", json.dumps(payload), rid)

    def flagged_by_others(self, receipt_hash: str, me: str) -> bool:
        return self.db.read_one("SELECT 1 FROM flags WHERE receipt_hash = ? AND flagger != ? LIMIT 1",
                                (receipt_hash, me)) is not None

    # Checks ------------------------------------------------------------------------------------------------------
    def queue_check(self, it: dict, source: str, payload: dict | None = None, skip_reason: str | None = None) -> bool:
        """Queue a receipt for checking (once; True if new). A payer's payload given for a receipt already queued
        but not decided is attached to it and the check is made due at once."""
        return self._write(_queue_check, it, source, payload, skip_reason, time.time())

    def check(self, rid: str) -> Check | None:
        row = self.db.read_one("SELECT * FROM checks WHERE id = ?", (rid,))
        return Check.from_row(row) if row else None

    def due_checks(self, now: float, exclude: set[str], limit: int) -> list[Check]:
        rows = self.db.read("SELECT * FROM checks WHERE status = 'queued' AND next_at <= ? ORDER BY next_at LIMIT ?",
                            (now, limit + len(exclude)))
        return [Check.from_row(r) for r in rows if r["id"] not in exclude][:limit]

    def attempt_failed(self, rid: str, error: str, first_attempt_at: float, next_at: float) -> None:
        self._update("UPDATE checks SET attempts = attempts + 1, first_attempt_at = coalesce(first_attempt_at, ?),"
                     " next_at = ?, last_error = ? WHERE id = ? AND status = 'queued'",
                     first_attempt_at, next_at, error[:500], rid)

    def skip(self, rid: str, reason: str) -> None:
        self._update("UPDATE checks SET status = 'skipped', reason = ? WHERE id = ? AND valid IS NULL", reason[:500], rid)

    def decide(self, rid: str, valid: bool, reason: str, signature: str, seconds: float | None,
               flag: bool) -> bool:
        """Record the verdict, once: False if the receipt already has one (which then stands)."""
        return self._update(
            "UPDATE checks SET status = 'done', valid = ?, reason = ?, signature = ?, seconds = ?,"
            " attempts = attempts + 1, flag_state = ?, decided_at = ? WHERE id = ? AND valid IS NULL",
            int(valid), reason[:500], signature, seconds, "pending" if flag else None, time.time(), rid) == 1

    def withheld(self, rid: str, reason: str, report_signature: str) -> bool:
        """End a check whose node did not release the payload: no verdict, a signed ``PayloadWithheld`` report to
        send (False if the check was decided or ended meanwhile)."""
        return self._update(
            "UPDATE checks SET status = 'withheld', withheld = 1, reason = ?, report_signature = ?,"
            " attempts = attempts + 1, decided_at = ? WHERE id = ? AND valid IS NULL AND status = 'queued'",
            reason[:500], report_signature, time.time(), rid) == 1

    def unposted(self, limit: int = 100) -> list[Check]:
        return [Check.from_row(r) for r in self.db.read(
            "SELECT * FROM checks WHERE (valid IS NOT NULL AND posted = 0)"
            " OR (withheld = 1 AND reported = 0 AND report_signature IS NOT NULL)"
            " ORDER BY decided_at LIMIT ?", (limit,))]

    def mark_posted(self, rid: str, posted: int, error: str | None = None) -> None:
        self._update("UPDATE checks SET posted = ?, post_error = ? WHERE id = ?", posted, error, rid)

    def mark_reported(self, rid: str, reported: int) -> None:
        self._update("UPDATE checks SET reported = ? WHERE id = ?", reported, rid)

    def pending_flags(self) -> list[Check]:
        return [Check.from_row(r) for r in self.db.read("SELECT * FROM checks WHERE flag_state = 'pending' ORDER BY decided_at")]

    def set_flag_state(self, rid: str, state: str, tx: str | None = None) -> None:
        self._update("UPDATE checks SET flag_state = ?, flag_tx = coalesce(?, flag_tx) WHERE id = ?", state, tx, rid)

    def add_drift(self, node: str, scored: int, drifted: int, max_margin: float) -> DriftTotals:
        """Add one receipt's teacher-forced statistics to its node's; returns the node's totals."""
        return self._write(_add_drift, node, scored, drifted, max_margin)

    def flag_drift(self, node: str) -> None:
        self._update("UPDATE drift SET flagged_at = coalesce(flagged_at, ?) WHERE node = ?", time.time(), node)

    def drift(self) -> list[DriftTotals]:
        return [DriftTotals.from_row(r) for r in self.db.read("SELECT * FROM drift ORDER BY node")]

    def counts(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.db.read("SELECT status, count(*) FROM checks GROUP BY status")}

    def ping(self) -> bool:
        return self.db.read_one("SELECT 1")[0] == 1
