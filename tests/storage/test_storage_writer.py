"""The shared group-commit writer on a real SQLite file and on a real PostgreSQL database: many concurrent writers
share commits, a failing job is undone alone, callbacks see every commit, close drains the queue, a commit failure
fails its group; and (SQLite) a process killed mid-stream loses nothing it had reported committed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from offchain.storage import CommitStats, Database, GroupCommitWriter, Migration, WriterClosed

_ITEMS = "CREATE TABLE items (id INTEGER PRIMARY KEY, who TEXT NOT NULL);"
TABLE = [Migration(1, "items", _ITEMS, _ITEMS)]


def _insert(conn, i: int, who: str) -> int:
    conn.execute("INSERT INTO items (id, who) VALUES (?, ?)", (i, who))
    return i


def _open(location: str | Path, **kw) -> tuple[Database, GroupCommitWriter]:
    db = Database.at(location)
    db.open(TABLE)
    return db, GroupCommitWriter(db, **kw)


def _integrity_error(db: Database) -> type[Exception]:
    return sqlite3.IntegrityError if db.dialect.name == "sqlite" else psycopg.IntegrityError


def test_concurrent_writers_share_commits_and_every_result_arrives_after_its_commit(store_location):
    stats: list[CommitStats] = []
    db, writer = _open(store_location, on_commit=stats.append)
    seen_committed: list[bool] = []

    def worker(t: int) -> None:
        probe = db.connect(readonly=True)  # another connection, autocommit: its own snapshot per query
        for k in range(50):
            i = t * 1000 + k
            assert writer.call(_insert, i, f"t{t}") == i
            # visible to another connection as soon as the call returned: it was committed
            seen_committed.append([tuple(r) for r in probe.execute("SELECT 1 FROM items WHERE id = ?", (i,))]
                                  == [(1,)])
        probe.close()

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    assert all(seen_committed) and len(seen_committed) == 800
    assert db.read_one("SELECT count(*) FROM items")[0] == 800
    assert sum(s.jobs for s in stats) == 800 == writer.jobs_committed
    assert writer.commits == len(stats) < 800  # group commit: fewer commits than jobs
    assert all(s.durable for s in stats)


def test_a_failing_job_is_undone_alone_and_its_caller_gets_the_error(store_location):
    db, writer = _open(store_location)

    def half_then_fail(conn):
        conn.execute("INSERT INTO items (id, who) VALUES (1, 'half')")
        raise ValueError("refused")

    futures = [writer.submit(_insert, 10, "a"), writer.submit(half_then_fail), writer.submit(_insert, 11, "b"),
               writer.submit(_insert, 10, "dup")]
    assert futures[0].result() == 10 and futures[2].result() == 11
    with pytest.raises(ValueError, match="refused"):
        futures[1].result()
    with pytest.raises(_integrity_error(db)):
        futures[3].result()
    writer.close()
    assert [tuple(r) for r in db.read("SELECT id, who FROM items ORDER BY id")] == [(10, "a"), (11, "b")]


def test_close_drains_the_queue_and_then_refuses(store_location):
    db, writer = _open(store_location)
    gate = threading.Event()
    first = writer.submit(lambda conn: gate.wait(5))  # hold the writer while the queue fills
    futures = [writer.submit(_insert, i, "q", durable=False) for i in range(200)]
    closer = threading.Thread(target=writer.close)
    closer.start()
    gate.set()
    closer.join()
    assert first.result() is True and [f.result() for f in futures] == list(range(200))
    assert db.read_one("SELECT count(*) FROM items")[0] == 200
    with pytest.raises(WriterClosed):
        writer.submit(_insert, 999, "late")


def test_a_commit_failure_fails_the_group_and_reports_it(store_location):
    failures: list[BaseException] = []
    db, writer = _open(store_location, on_failure=failures.append)
    integrity = _integrity_error(db)

    def poison(conn):  # leaves the transaction unable to commit: COMMIT fails for the whole group
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE child (p INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)")
        conn.execute("INSERT INTO child (p) VALUES (42)")

    if db.dialect.name == "sqlite":  # PostgreSQL always checks foreign keys
        writer._conn.execute("PRAGMA foreign_keys = ON")  # outside a transaction (a job's PRAGMA would be ignored)
    gate = threading.Event()
    writer.submit(lambda conn: gate.wait(5))
    a, b = writer.submit(_insert, 1, "a"), writer.submit(poison)
    gate.set()
    with pytest.raises(integrity):
        a.result()
    with pytest.raises(integrity):
        b.result()
    assert failures and isinstance(failures[0], integrity)
    assert writer.call(_insert, 2, "after") == 2  # the writer goes on
    writer.close()
    assert [r[0] for r in db.read("SELECT id FROM items")] == [2]


CHILD = """
import sys
from pathlib import Path
from offchain.storage import Database, GroupCommitWriter, Migration

db = Database.sqlite(Path(sys.argv[1]))
db.open([Migration(1, "items", "CREATE TABLE items (id INTEGER PRIMARY KEY, who TEXT NOT NULL);")])
writer = GroupCommitWriter(db)
durable = sys.argv[2] == "durable"

def insert(conn, i):
    conn.execute("INSERT INTO items (id, who) VALUES (?, 'child')", (i,))

def report(i):
    return lambda future: (future.result(), print(i, flush=True))

i = 0
while True:
    for _ in range(20):
        writer.submit(insert, i, durable=durable).add_done_callback(report(i))
        i += 1
"""


@pytest.mark.parametrize("mode", ["durable", "lazy"])
def test_a_killed_process_loses_nothing_it_reported_committed(tmp_path, mode):
    path = tmp_path / "crash.sqlite3"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), mode], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    reported: list[int] = []
    deadline = time.time() + 60
    while len(reported) < 2000 and time.time() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        reported.append(int(line))
    os.kill(child.pid, signal.SIGKILL)  # mid-stream: jobs queued, a group in flight
    child.wait()
    child.stdout.close()
    assert len(reported) >= 2000, "the child did not commit fast enough"
    conn = sqlite3.connect(path)
    stored = {r[0] for r in conn.execute("SELECT id FROM items")}
    conn.close()
    assert set(reported) <= stored
