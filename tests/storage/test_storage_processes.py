"""Several processes on one database (a SQLite file or a PostgreSQL database): concurrent starts apply each numbered
migration exactly once, and a reader paging a table in its row order (the relayer's receipt feed, ``seq > after``)
never skips a row while two writer processes commit in any order (PostgreSQL: ``postgres.commit_ordered``)."""

from __future__ import annotations

import multiprocessing
import random
import threading
import time

from offchain.relayer.ledger import Ledger
from offchain.relayer.store import Receipts, Store
from offchain.storage import Database, GroupCommitWriter, Migration, postgres

FORK = multiprocessing.get_context("fork")  # children inherit the imports: a start costs milliseconds


def _slow_step(conn, dialect) -> None:
    time.sleep(0.05)  # widens the window in which a second process could apply the same migration
    conn.execute("INSERT INTO applied (what) VALUES ('2')")


_APPLIED = "CREATE TABLE applied (what TEXT NOT NULL);"
STEPS = [
    Migration(1, "applied", _APPLIED + "\nINSERT INTO applied (what) VALUES ('1');",
              postgres.ddl(_APPLIED) + "\nINSERT INTO applied (what) VALUES ('1');"),
    Migration(2, "slow", _slow_step, _slow_step),
    Migration(3, "not idempotent", "ALTER TABLE applied ADD COLUMN extra INTEGER;",
              "ALTER TABLE applied ADD COLUMN extra BIGINT;"),
]


def _open_at_once(location: str, barrier, errors, chain_id: str = "31337") -> None:
    try:
        barrier.wait(10)
        db = Database.at(location)
        db.open(STEPS, {"chain_id": chain_id})
        db.close()
    except BaseException as exc:  # reported to the parent, which fails the test with it
        errors.put(f"{chain_id} {exc.__class__.__name__}")
        raise


def test_processes_starting_at_once_apply_each_migration_exactly_once(store_location):
    n = 6
    barrier, errors = FORK.Barrier(n), FORK.Queue()
    procs = [FORK.Process(target=_open_at_once, args=(str(store_location), barrier, errors)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    failures = [errors.get() for _ in range(errors.qsize())]
    assert failures == [] and [p.exitcode for p in procs] == [0] * n
    db = Database.at(store_location)
    assert [tuple(r) for r in db.read("SELECT version, name FROM schema_migrations ORDER BY version")] == \
        [(1, "applied"), (2, "slow"), (3, "not idempotent")]
    assert sorted(r[0] for r in db.read("SELECT what FROM applied")) == ["1", "2"]
    assert [tuple(r) for r in db.read("SELECT key, value FROM meta")] == [("chain_id", "31337")]
    assert db.open(STEPS) == []
    db.close()


def test_processes_opening_one_new_sqlite_file_at_once_never_get_database_is_locked(tmp_path):
    """Switching a new SQLite file to WAL needs its exclusive lock, and SQLite does not wait for it through the busy
    timeout: of several processes opening one new file at once (relayers started together on one
    ``--shared-store`` file) some got "database is locked" at once (3 of 120 opens in 20 rounds before the fix; the
    test above failed on it in CI). Opening now waits for the lock: 20 rounds of 6 processes, none fails."""
    n = 6
    for round_ in range(20):
        location = str(tmp_path / f"round{round_}.sqlite3")
        barrier, errors = FORK.Barrier(n), FORK.Queue()
        procs = [FORK.Process(target=_open_at_once, args=(location, barrier, errors)) for _ in range(n)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        failures = [errors.get() for _ in range(errors.qsize())]
        assert failures == [] and [p.exitcode for p in procs] == [0] * n, (round_, failures)


def test_processes_binding_one_database_to_two_deployments_at_once_leave_one_and_refuse_the_other(store_location):
    n = 6
    barrier, errors = FORK.Barrier(n), FORK.Queue()
    procs = [FORK.Process(target=_open_at_once, args=(str(store_location), barrier, errors, str(1 + i % 2)))
             for i in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    db = Database.at(store_location)
    [(bound,)] = db.read("SELECT value FROM meta WHERE key = 'chain_id'")
    other = "2" if bound == "1" else "1"
    assert sorted(errors.get() for _ in range(errors.qsize())) == [f"{other} StoreMismatch"] * (n // 2)
    db.close()


# Feed order -----------------------------------------------------------------------------------------------------------
_ITEMS = "CREATE TABLE items (id TEXT PRIMARY KEY, who TEXT NOT NULL);"


def _pg_items(conn, dialect) -> None:
    conn.execute(postgres.ddl(_ITEMS))
    conn.execute("ALTER TABLE items ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY")
    postgres.commit_ordered("items", "id")(conn, dialect)


ITEMS = [Migration(1, "items", _ITEMS, _pg_items)]


def _write(location: str, who: str, count: int) -> None:
    """One writer process: a few threads share its group-commit writer; each job holds its transaction open a
    random moment after its insert, so the two processes' commits interleave in every order."""
    db = Database.at(location)
    writer = GroupCommitWriter(db)

    def insert(conn, i: int) -> None:
        conn.execute("INSERT INTO items (id, who) VALUES (?, ?)", (f"{who}-{i}", who))
        time.sleep(random.random() * 0.003)

    def thread(t: int) -> None:
        for i in range(t, count, 3):
            writer.call(insert, i)

    threads = [threading.Thread(target=thread, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    db.close()


def test_a_reader_paging_by_row_order_never_skips_a_row_of_two_concurrent_writer_processes(store_location):
    db = Database.at(store_location)
    db.open(ITEMS)
    order = db.dialect.row_order
    count = 200
    writers = [FORK.Process(target=_write, args=(str(store_location), who, count)) for who in ("a", "b")]
    for p in writers:
        p.start()
    seen: list[str] = []
    after = 0

    def page() -> int:
        nonlocal after
        rows = db.read(f"SELECT {order}, id FROM items WHERE {order} > ? ORDER BY {order} LIMIT 50", (after,))
        for seq, item in rows:
            assert seq > after
            after = seq
            seen.append(item)
        return len(rows)

    while any(p.is_alive() for p in writers):
        page()
    for p in writers:
        p.join()
    while page():
        pass
    assert [p.exitcode for p in writers] == [0, 0]
    assert len(seen) == len(set(seen)) == 2 * count  # every row read once: none skipped by the moving cursor
    db.close()


def test_a_row_committed_after_a_higher_one_was_read_is_not_skipped(postgres_cluster):
    """Two processes' transactions, step by step: A inserts, B inserts and commits, a reader pages past B's row,
    then A commits. With a plain identity column A's row has the lower number and the reader never sees it; with
    ``commit_ordered`` it is numbered when it commits, after B's."""
    db = Database.at(postgres_cluster.database())
    db.open(ITEMS)
    a, b = db.connect(), db.connect()
    try:
        a.execute("CREATE TABLE plain (id TEXT PRIMARY KEY, seq BIGINT GENERATED ALWAYS AS IDENTITY)")
        for conn in (a, b):
            conn.execute("BEGIN")
        for conn, name in ((a, "first"), (b, "second")):
            conn.execute("INSERT INTO items (id, who) VALUES (?, ?)", (name, name))
            conn.execute("INSERT INTO plain (id) VALUES (?)", (name,))
        b.execute("COMMIT")
        ((ordered_after, ordered_id),) = db.read("SELECT seq, id FROM items WHERE seq > 0 ORDER BY seq")
        ((plain_after, plain_id),) = db.read("SELECT seq, id FROM plain WHERE seq > 0 ORDER BY seq")
        assert ordered_id == plain_id == "second"
        a.execute("COMMIT")
        assert [r[0] for r in db.read("SELECT id FROM items WHERE seq > ?", (ordered_after,))] == ["first"]
        assert [r[0] for r in db.read("SELECT id FROM plain WHERE seq > ?", (plain_after,))] == []  # the hazard
    finally:
        a.close()
        b.close()
        db.close()


def _receipt(n: int) -> tuple:
    """A receipts row as ``Receipts.insert`` takes it (the feed only orders rows: nothing here need verify)."""
    return (f"0x{n:064x}", f"0xs{n}", f"0xr{n}", "0xpayer", "0xnode", "m", "0xi", "0xo", "1", str(n), n, "0xsig",
            "100", "0xvsig", float(n))


def test_the_relayer_feed_on_postgresql_follows_commit_order(postgres_cluster):
    """The same steps on the relayer's own receipts table and feed read (its migrations make ``seq`` commit-ordered)."""
    store = Store(postgres_cluster.database(), Ledger())
    store.open(31337, "0x" + "e" * 40, "0x" + "5" * 40)
    a, b = store.db.connect(), store.db.connect()
    try:
        for conn in (a, b):
            conn.execute("BEGIN")
        assert Receipts.insert(a, _receipt(1)) and Receipts.insert(b, _receipt(2))
        b.execute("COMMIT")
        [second] = store.receipts.feed(0, 10)
        a.execute("COMMIT")
        assert second.cumulative == 2 and [e.cumulative for e in store.receipts.feed(second.seq, 10)] == [1]
    finally:
        a.close()
        b.close()
        store.close()
