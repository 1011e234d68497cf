"""Numbered migrations: a fresh store and a store created by the code before migrations were numbered (the schema
of commit baf669f, in ``schemas/``) both end at the same schema, recorded in ``schema_migrations``; the old store's
rows survive; a store from a newer version is refused; a failing migration leaves nothing behind."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from offchain.node.store import MIGRATIONS as NODE
from offchain.node.store import NodeStore
from offchain.relayer.ledger import Ledger
from offchain.relayer.store import MIGRATIONS as RELAYER
from offchain.relayer.store import Store
from offchain.storage import Database, Migration, StoreMismatch
from offchain.verifier.store import MIGRATIONS as VERIFIER
from offchain.verifier.store import VerifierStore

SCHEMAS = Path(__file__).parent / "schemas"
ESCROW, STAKING, NODE_ADDR = "0x" + "e" * 40, "0x" + "5" * 40, "0x" + "a" * 40


def _schema(path: Path) -> dict[str, set[str]]:
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"
                                         " AND name NOT LIKE 'sqlite_%'")]
    out = {t: {r[1] for r in conn.execute(f"PRAGMA table_info({t})")} for t in tables}
    out["indexes"] = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'"
                                                 " AND name NOT LIKE 'sqlite_%'")}
    conn.close()
    return out


def _legacy(path: Path, name: str, drop: str = "") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    script = (SCHEMAS / f"{name}_baf669f.sql").read_text()
    conn.executescript(script.replace(drop, "") if drop else script)
    assert drop == "" or drop in script
    return conn


def _versions(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
    finally:
        conn.close()


def test_relayer_store_made_before_numbered_migrations_upgrades_in_place(tmp_path):
    fresh = tmp_path / "fresh.sqlite3"
    Store(fresh, Ledger()).open(31337, ESCROW, STAKING)
    for label, drop in (("head", ""), ("pre-session-keys", (  # a store older still: channels without signer columns
            "    signer TEXT NOT NULL DEFAULT '',          -- the best voucher's signer ('' = the payer)\n"
            "    payer_cap TEXT NOT NULL DEFAULT '0',      -- the best voucher signed by the payer itself\n"
            "    payer_signature TEXT NOT NULL DEFAULT '',\n"))):
        old = tmp_path / f"{label}.sqlite3"
        conn = _legacy(old, "relayer", drop)
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                         [("schema", "2"), ("chain_id", "31337"), ("escrow", ESCROW), ("staking", STAKING)])
        conn.execute("INSERT INTO channels (payer, node, charged, cap, voucher_signature, settled)"
                     " VALUES ('0xp', '0xn', '30', '100', '0xsig', '10')")
        conn.execute("INSERT INTO receipts (id, struct_hash, request_id, payer, node, model_id, input_hash, output_hash,"
                     " amount, cumulative, timestamp, signature, voucher_cap, voucher_signature, status, accepted_at)"
                     " VALUES ('0x1', '0xs', '0xr', '0xp', '0xn', 'm', '0xi', '0xo', '20', '30', 1, '0xg', '100',"
                     " '0xsig', 'pending', 1.0)")
        conn.close()
        ledger = Ledger()
        store = Store(old, ledger)
        store.open(31337, ESCROW, STAKING)
        store.close()
        assert _schema(old) == _schema(fresh), label
        assert _versions(old) == [m.version for m in RELAYER]
        ch = ledger.get("0xp", "0xn")
        assert (ch.charged, ch.cap, ch.settled, ch.signer, ch.payer_cap, ch.pending) == (30, 100, 10, "", 0, 1)
        with pytest.raises(StoreMismatch):
            Store(old, Ledger()).open(1, ESCROW, STAKING)


def test_node_and_verifier_stores_made_before_numbered_migrations_upgrade_in_place(tmp_path):
    NodeStore(tmp_path / "node-fresh.sqlite3").open(31337, ESCROW, STAKING, NODE_ADDR)
    conn = _legacy(tmp_path / "node.sqlite3", "node")
    conn.execute("INSERT INTO vouchers (payer, max_cumulative, voucher, updated_at) VALUES ('0xp', '5', '{}', 1)")
    conn.close()
    node = NodeStore(tmp_path / "node.sqlite3")
    node.open(31337, ESCROW, STAKING, NODE_ADDR)
    assert node.channels() == [("0xp", 0, {})]
    node.close()
    assert _schema(tmp_path / "node.sqlite3") == _schema(tmp_path / "node-fresh.sqlite3")
    assert _versions(tmp_path / "node.sqlite3") == [m.version for m in NODE]

    VerifierStore(tmp_path / "v-fresh.sqlite3").close()
    conn = _legacy(tmp_path / "v.sqlite3", "verifier", drop=(
        "    report_signature TEXT,           -- PayloadWithheld(receipt_hash, node) signature (never a Verdict)\n"))
    conn.execute("INSERT INTO state (key, value) VALUES ('feed_cursor', '7')")
    conn.close()
    verifier = VerifierStore(tmp_path / "v.sqlite3")
    assert verifier.get_state("feed_cursor") == "7"
    verifier.close()
    assert _schema(tmp_path / "v.sqlite3") == _schema(tmp_path / "v-fresh.sqlite3")
    assert "report_signature" in _schema(tmp_path / "v.sqlite3")["checks"]
    assert _versions(tmp_path / "v.sqlite3") == [m.version for m in VERIFIER]


def test_migrations_run_once_in_order_and_a_failing_one_leaves_nothing(store_location):
    db = Database.at(store_location)
    steps = [Migration(1, "a", "CREATE TABLE a (x INTEGER);", "CREATE TABLE a (x BIGINT);"),
             Migration(2, "b", lambda conn, d: conn.execute("INSERT INTO a (x) VALUES (2)"),
                       lambda conn, d: conn.execute("INSERT INTO a (x) VALUES (2)"))]
    assert db.open(steps) == [1, 2] and db.open(steps) == []
    failing = "CREATE TABLE c (y INTEGER);\nINSERT INTO nowhere VALUES (1);"
    broken = steps + [Migration(3, "c", failing, failing)]
    with pytest.raises((sqlite3.OperationalError, psycopg.errors.UndefinedTable)):
        db.open(broken)
    conn = db.connect()
    try:
        assert db.dialect.columns(conn, "c") == set()  # the migration's first statement was undone with it
    finally:
        conn.close()
    assert [r[0] for r in db.read("SELECT version FROM schema_migrations ORDER BY version")] == [1, 2]
    with pytest.raises(StoreMismatch, match="newer"):
        db.open(steps[:1])  # this version knows only migration 1; the store has 2
    with pytest.raises(ValueError):
        db.open([steps[1], steps[0]])
    assert db.read_one("SELECT x FROM a")[0] == 2
    db.close()


def test_relayer_store_on_postgresql_has_the_sqlite_schema_and_is_bound_to_its_deployment(tmp_path, postgres_cluster):
    url = postgres_cluster.database()
    for location in (tmp_path / "fresh.sqlite3", url):
        store = Store(location, Ledger())
        store.open(31337, ESCROW, STAKING)
        store.close()  # a store left open would outlive the test's server
    db = Database.at(url)
    assert db.dialect.name == "postgresql"
    conn = db.connect()
    try:
        tables = [r[0] for r in conn.execute("SELECT table_name FROM information_schema.tables"
                                             " WHERE table_schema = current_schema()")]
        schema = {t: db.dialect.columns(conn, t) for t in tables}
    finally:
        conn.close()
    sqlite_schema = _schema(tmp_path / "fresh.sqlite3")
    del sqlite_schema["indexes"]
    schema["receipts"].remove("seq")  # the feed's order: SQLite's rowid
    assert schema == sqlite_schema
    assert [r[0] for r in db.read("SELECT version FROM schema_migrations ORDER BY version")] == \
        [m.version for m in RELAYER]
    assert db.open(RELAYER, {"chain_id": "31337"}) == []  # reopened: nothing to apply
    with pytest.raises(StoreMismatch):
        Store(url, Ledger()).open(1, ESCROW, STAKING)
    db.close()
