"""The verifier's durable state (SQLite, WAL, ``synchronous=FULL``; one connection behind a lock).

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
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from ..daemon.store import bind_meta, connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
    report_signature TEXT,           -- PayloadWithheld(receipt_hash, node) signature (never a Verdict)
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
"""


class VerifierStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.conn = connect(self.path)
        self.lock = threading.RLock()
        self.conn.executescript(SCHEMA)
        columns = {r[1] for r in self.conn.execute("PRAGMA table_info(checks)")}
        if "report_signature" not in columns:  # a store written before withholding reports were not votes
            self.conn.execute("ALTER TABLE checks ADD COLUMN report_signature TEXT")

    def bind(self, chain_id: int, staking: str, verifier: str) -> None:
        bind_meta(self.conn, {"chain_id": chain_id, "staking": staking, "verifier": verifier})

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    def _tx(self):
        return _Tx(self)

    # State -------------------------------------------------------------------------------------------------------
    def get_state(self, key: str, default: str | None = None) -> str | None:
        with self.lock:
            row = self.conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_state(self, key: str, value: Any) -> None:
        with self.lock:
            self.conn.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, str(value)))

    # Receipts and flags ------------------------------------------------------------------------------------------
    def add_feed_page(self, items: list[dict], cursor: int, sampled: set[str], skipped: dict[str, str]) -> None:
        """Record a page of the feed (each ``{id, receipt_hash, node, model_id, receipt, seq}``), queue the sampled
        ones (``skipped`` maps ids of sampled receipts that cannot be checked to the reason), and move the cursor, in
        one transaction."""
        now = time.time()
        with self._tx() as c:
            for it in items:
                c.execute("INSERT OR IGNORE INTO receipts (id, receipt_hash, node, model_id, receipt, seq, seen_at)"
                          " VALUES (?,?,?,?,?,?,?)", (it["id"], it["receipt_hash"], it["node"], it["model_id"],
                                                      json.dumps(it["receipt"]), it.get("seq"), now))
                if it["id"] in sampled:
                    self._queue(c, it, "sample", None, now, skipped.get(it["id"]))
            c.execute("INSERT OR REPLACE INTO state (key, value) VALUES ('feed_cursor', ?)", (str(cursor),))

    def add_receipt(self, it: dict) -> None:
        with self.lock:
            self.conn.execute("INSERT OR IGNORE INTO receipts (id, receipt_hash, node, model_id, receipt, seq, seen_at)"
                              " VALUES (?,?,?,?,?,?,?)", (it["id"], it["receipt_hash"], it["node"], it["model_id"],
                                                          json.dumps(it["receipt"]), it.get("seq"), time.time()))

    def receipt(self, rid: str) -> dict | None:
        with self.lock:
            row = self.conn.execute("SELECT * FROM receipts WHERE id = ?", (rid,)).fetchone()
        return _receipt_row(row)

    def receipt_by_hash(self, receipt_hash: str) -> dict | None:
        with self.lock:
            row = self.conn.execute("SELECT * FROM receipts WHERE receipt_hash = ? LIMIT 1", (receipt_hash,)).fetchone()
        return _receipt_row(row)

    def add_flag(self, receipt_hash: str, flagger: str, block: int, bond: int) -> bool:
        with self.lock:
            cur = self.conn.execute("INSERT OR IGNORE INTO flags (receipt_hash, flagger, block, bond) VALUES (?,?,?,?)",
                                    (receipt_hash, flagger, block, str(bond)))
        return cur.rowcount == 1

    def flagged(self, receipt_hash: str) -> bool:
        """Whether anyone's ``Flagged`` event on the receipt has been seen."""
        with self.lock:
            row = self.conn.execute("SELECT 1 FROM flags WHERE receipt_hash = ? LIMIT 1", (receipt_hash,)).fetchone()
        return row is not None

    def keep_payload(self, rid: str, payload: dict) -> None:
        """Keep the node's payload of a receipt judged invalid (the evidence shared with the other verifiers)."""
        with self.lock:
            self.conn.execute("UPDATE checks SET payload = coalesce(payload, ?) WHERE id = ?", (json.dumps(payload), rid))

    def flagged_by_others(self, receipt_hash: str, me: str) -> bool:
        with self.lock:
            row = self.conn.execute("SELECT 1 FROM flags WHERE receipt_hash = ? AND flagger != ? LIMIT 1",
                                    (receipt_hash, me)).fetchone()
        return row is not None

    # Checks ------------------------------------------------------------------------------------------------------
    @staticmethod
    def _queue(c, it: dict, source: str, payload: dict | None, now: float, skip_reason: str | None) -> bool:
        status = "skipped" if skip_reason else "queued"
        cur = c.execute(
            "INSERT OR IGNORE INTO checks (id, receipt_hash, node, source, status, payload, next_at, reason, created_at)"
            " VALUES (?,?,?,?,?,?,?,?,?)",
            (it["id"], it["receipt_hash"], it["node"], source, status,
             json.dumps(payload) if payload is not None else None, now, skip_reason, now))
        return cur.rowcount == 1

    def queue_check(self, it: dict, source: str, payload: dict | None = None, skip_reason: str | None = None) -> bool:
        """Queue a receipt for checking (once; True if new). A payer's payload given for a receipt already queued
        but not decided is attached to it and the check is made due at once."""
        now = time.time()
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO receipts (id, receipt_hash, node, model_id, receipt, seq, seen_at)"
                      " VALUES (?,?,?,?,?,?,?)", (it["id"], it["receipt_hash"], it["node"], it["model_id"],
                                                  json.dumps(it["receipt"]), it.get("seq"), now))
            new = self._queue(c, it, source, payload, now, skip_reason)
            if not new and payload is not None:  # also re-opens a check the node's withholding ended
                c.execute("UPDATE checks SET payload = ?, next_at = ?, status = 'queued' WHERE id = ?"
                          " AND valid IS NULL AND status IN ('queued', 'withheld') AND payload IS NULL",
                          (json.dumps(payload), now, it["id"]))
        return new

    def check(self, rid: str) -> dict | None:
        with self.lock:
            row = self.conn.execute("SELECT * FROM checks WHERE id = ?", (rid,)).fetchone()
        return dict(row) if row else None

    def due_checks(self, now: float, exclude: set[str], limit: int) -> list[dict]:
        with self.lock:
            rows = self.conn.execute(
                "SELECT * FROM checks WHERE status = 'queued' AND next_at <= ? ORDER BY next_at LIMIT ?",
                (now, limit + len(exclude))).fetchall()
        return [dict(r) for r in rows if r["id"] not in exclude][:limit]

    def attempt_failed(self, rid: str, error: str, first_attempt_at: float, next_at: float) -> None:
        with self.lock:
            self.conn.execute(
                "UPDATE checks SET attempts = attempts + 1, first_attempt_at = coalesce(first_attempt_at, ?),"
                " next_at = ?, last_error = ? WHERE id = ? AND status = 'queued'",
                (first_attempt_at, next_at, error[:500], rid))

    def skip(self, rid: str, reason: str) -> None:
        with self.lock:
            self.conn.execute("UPDATE checks SET status = 'skipped', reason = ? WHERE id = ? AND valid IS NULL",
                              (reason[:500], rid))

    def decide(self, rid: str, valid: bool, reason: str, signature: str, seconds: float | None,
               flag: bool) -> bool:
        """Record the verdict, once: False if the receipt already has one (which then stands)."""
        with self.lock:
            cur = self.conn.execute(
                "UPDATE checks SET status = 'done', valid = ?, reason = ?, signature = ?, seconds = ?,"
                " attempts = attempts + 1, flag_state = ?, decided_at = ? WHERE id = ? AND valid IS NULL",
                (int(valid), reason[:500], signature, seconds, "pending" if flag else None,
                 time.time(), rid))
        return cur.rowcount == 1

    def withheld(self, rid: str, reason: str, report_signature: str) -> bool:
        """End a check whose node did not release the payload: no verdict, a signed ``PayloadWithheld`` report to
        send (False if the check was decided or ended meanwhile)."""
        with self.lock:
            cur = self.conn.execute(
                "UPDATE checks SET status = 'withheld', withheld = 1, reason = ?, report_signature = ?,"
                " attempts = attempts + 1, decided_at = ? WHERE id = ? AND valid IS NULL AND status = 'queued'",
                (reason[:500], report_signature, time.time(), rid))
        return cur.rowcount == 1

    def unposted(self, limit: int = 100) -> list[dict]:
        with self.lock:
            rows = self.conn.execute(
                "SELECT * FROM checks WHERE (valid IS NOT NULL AND posted = 0)"
                " OR (withheld = 1 AND reported = 0 AND report_signature IS NOT NULL)"
                " ORDER BY decided_at LIMIT ?", (limit,)).fetchall()
        return [dict(r) for r in rows]

    def mark_posted(self, rid: str, posted: int, error: str | None = None) -> None:
        with self.lock:
            self.conn.execute("UPDATE checks SET posted = ?, post_error = ? WHERE id = ?", (posted, error, rid))

    def mark_reported(self, rid: str, reported: int) -> None:
        with self.lock:
            self.conn.execute("UPDATE checks SET reported = ? WHERE id = ?", (reported, rid))

    def pending_flags(self) -> list[dict]:
        with self.lock:
            rows = self.conn.execute("SELECT * FROM checks WHERE flag_state = 'pending' ORDER BY decided_at").fetchall()
        return [dict(r) for r in rows]

    def set_flag_state(self, rid: str, state: str, tx: str | None = None) -> None:
        with self.lock:
            self.conn.execute("UPDATE checks SET flag_state = ?, flag_tx = coalesce(?, flag_tx) WHERE id = ?",
                              (state, tx, rid))

    def add_drift(self, node: str, scored: int, drifted: int, max_margin: float) -> dict:
        """Add one receipt's teacher-forced statistics to its node's; returns the node's totals."""
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO drift (node) VALUES (?)", (node,))
            c.execute("UPDATE drift SET receipts = receipts + 1, scored = scored + ?, drifted = drifted + ?,"
                      " max_margin = max(max_margin, ?) WHERE node = ?", (scored, drifted, max_margin, node))
            return dict(c.execute("SELECT * FROM drift WHERE node = ?", (node,)).fetchone())

    def flag_drift(self, node: str) -> None:
        with self.lock:
            self.conn.execute("UPDATE drift SET flagged_at = coalesce(flagged_at, ?) WHERE node = ?",
                              (time.time(), node))

    def drift(self) -> list[dict]:
        with self.lock:
            return [dict(r) for r in self.conn.execute("SELECT * FROM drift ORDER BY node").fetchall()]

    def counts(self) -> dict[str, int]:
        with self.lock:
            rows = self.conn.execute("SELECT status, count(*) FROM checks GROUP BY status").fetchall()
        return {r[0]: r[1] for r in rows}

    def ping(self) -> bool:
        with self.lock:
            return self.conn.execute("SELECT 1").fetchone()[0] == 1


class _Tx:
    def __init__(self, store: VerifierStore):
        self.store = store

    def __enter__(self):
        self.store.lock.acquire()
        self.store.conn.execute("BEGIN IMMEDIATE")
        return self.store.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            self.store.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.store.lock.release()
        return False


def _receipt_row(row) -> dict | None:
    if row is None:
        return None
    out = dict(row)
    out["receipt"] = json.loads(out["receipt"])
    return out
