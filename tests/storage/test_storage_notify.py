"""``Database.notify`` and ``storage.notify.Listener`` under the daemons' ``Supervisor``: on PostgreSQL a
notification reaches the listener when the writer's transaction commits (not before, never for a rolled-back job),
the listener catches up on connecting and every poll, and it survives ``pg_terminate_backend`` of its connection
(reconnects, catches up, hears again); on SQLite it only polls."""

from __future__ import annotations

import queue
import threading
import time

import psycopg
import pytest

from offchain.daemon.worker import Backoff, Supervisor
from offchain.storage import Database, GroupCommitWriter, Migration
from offchain.storage.notify import Listener

_ITEMS = "CREATE TABLE items (id TEXT PRIMARY KEY);"
ITEMS = [Migration(1, "items", _ITEMS, _ITEMS)]


def _until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


class Consumer:
    """What a role attaches: a notification wakes it, and it (like every catch-up) reads what it has not seen."""

    def __init__(self, db: Database):
        self.db = db
        self.heard: queue.Queue = queue.Queue()
        self.seen: set[str] = set()
        self.catch_ups = 0

    def on_notify(self, channel: str, payload: str) -> None:
        self.catch_up_reads()
        self.heard.put((channel, payload))

    def catch_up(self) -> None:
        self.catch_ups += 1
        self.catch_up_reads()

    def catch_up_reads(self) -> None:
        self.seen |= {r[0] for r in self.db.read("SELECT id FROM items")}


def _insert_and_notify(db: Database):
    def job(conn, item: str, hold: threading.Event | None = None, fail: bool = False) -> None:
        conn.execute("INSERT INTO items (id) VALUES (?)", (item,))
        db.notify(conn, "items", item)
        if hold is not None:
            hold.wait(5)
        if fail:
            raise ValueError("refused")
    return job


def test_notifications_arrive_on_commit_and_the_listener_survives_its_connection_being_killed(postgres_cluster):
    url = postgres_cluster.database()
    db = Database.at(url)
    db.open(ITEMS)
    writer = GroupCommitWriter(db)
    job = _insert_and_notify(db)
    consumer = Consumer(db)
    listener = Listener(db, ["items"], on_notify=consumer.on_notify, catch_up=consumer.catch_up, poll=0.4, wait=0.05)
    supervisor = Supervisor()
    supervisor.add(listener, backoff=Backoff(0.2, 1.0))
    supervisor.start()
    try:
        _until(lambda: listener.connects == 1 and consumer.catch_ups == 1)

        hold = threading.Event()
        pending = writer.submit(job, "one", hold)
        time.sleep(0.3)  # the transaction is open, the notification queued in it
        assert consumer.heard.empty()
        hold.set()
        pending.result(5)
        assert consumer.heard.get(timeout=5) == ("items", "one") and "one" in consumer.seen

        with pytest.raises(ValueError):
            writer.call(job, "undone", None, True)  # rolled back to its savepoint: nobody hears it
        writer.call(job, "two")
        assert consumer.heard.get(timeout=5) == ("items", "two")
        assert consumer.heard.empty() and "undone" not in consumer.seen

        polls = consumer.catch_ups
        _until(lambda: consumer.catch_ups >= polls + 2)  # the backstop poll, without any notification

        with psycopg.connect(url, autocommit=True) as admin:
            killed = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                   " WHERE application_name = 'opg-listener' AND datname = current_database()"
                                   ).fetchall()
        assert killed == [(True,)]
        writer.call(job, "while-cut")  # may be sent while nobody listens: the reconnect's catch-up reads it
        _until(lambda: listener.connects == 2 and "while-cut" in consumer.seen)
        health = supervisor.worker_health("listener")
        assert health.alive
        writer.call(job, "three")
        _until(lambda: ("items", "three") in list(consumer.heard.queue))
    finally:
        assert supervisor.stop(5)
        writer.close()
        db.close()


def test_on_sqlite_notify_is_nothing_and_the_listener_polls(tmp_path):
    db = Database.at(tmp_path / "n.sqlite3")
    db.open(ITEMS)
    writer = GroupCommitWriter(db)
    consumer = Consumer(db)
    supervisor = Supervisor()
    supervisor.add(Listener(db, ["items"], on_notify=consumer.on_notify, catch_up=consumer.catch_up, poll=0.05))
    supervisor.start()
    try:
        writer.call(_insert_and_notify(db), "one")
        _until(lambda: "one" in consumer.seen and consumer.catch_ups >= 2)
        assert consumer.heard.empty()
    finally:
        assert supervisor.stop(5)
        writer.close()
        db.close()
