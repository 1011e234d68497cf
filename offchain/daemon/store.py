"""SQLite helpers for the daemons' durable stores: WAL journal, ``synchronous=FULL`` (a commit is on disk before
anything is acknowledged), and a ``meta`` table that binds a store to one chain and deployment so a daemon never
mixes two."""

from __future__ import annotations

import sqlite3
from pathlib import Path


class StoreMismatch(Exception):
    """The store belongs to another chain, deployment or identity."""


def connect(path: Path, *, readonly: bool = False, check_same_thread: bool = False) -> sqlite3.Connection:
    """A connection to the SQLite file at ``path`` (parent folders created), in WAL mode with full fsync."""
    path = Path(path)
    if not readonly:
        path.parent.mkdir(parents=True, exist_ok=True)
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None, check_same_thread=check_same_thread)
    conn.row_factory = sqlite3.Row
    if not readonly:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def bind_meta(conn: sqlite3.Connection, expected: dict[str, str]) -> None:
    """Record ``expected`` in the store's ``meta`` table on first use; StoreMismatch if it holds other values."""
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    have = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    for key, value in expected.items():
        if key in have and have[key] != str(value):
            raise StoreMismatch(f"store was made for {key} {have[key]}, not {value}: use another --store")
    conn.execute("BEGIN IMMEDIATE")
    for key, value in expected.items():
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, str(value)))
    conn.execute("COMMIT")
