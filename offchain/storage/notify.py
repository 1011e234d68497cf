"""Wake-ups between processes sharing one database: ``Listener``, a supervised worker that hears
``Database.notify`` and catches up.

A writer job calls ``db.notify(conn, channel, payload)`` inside its transaction; on PostgreSQL every process
listening on ``channel`` hears it once that transaction commits (never for a rolled-back one). Notifications are a
hint, never the record: a listener whose connection was cut misses what was sent meanwhile, so the consumer's
``catch_up`` callback (a query for whatever it has not handled yet) runs on every (re)connect and every
``poll`` seconds as a backstop. On SQLite (one file, no server) there is nothing to listen to: the listener only polls.

``Listener`` is a ``daemon.worker.Worker`` (``name``, ``tick``, ``shutdown``): add it to the role's ``Supervisor``,
which runs it on its own thread, backs off after a failed tick (a refused connection) and reports its health. Each
tick connects if it has no connection (its own dedicated psycopg connection, ``application_name`` ``opg-listener``,
then ``LISTEN`` and ``catch_up``), then waits at most ``wait`` seconds for notifications, calling ``on_notify(channel,
payload)`` for each, and calls ``catch_up`` when the poll interval has passed. A lost connection
(``pg_terminate_backend``, a server restart) or an ``on_notify`` that raises fails the tick and drops the connection
(what a failed callback left unhandled is not lost: the next tick reconnects and catches up); a ``catch_up`` that
raises is called again on the next tick. Callbacks run on
the listener's thread: an asyncio consumer hands them over with ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .database import Database, close_quietly

__all__ = ["Listener"]


class Listener:
    """Hears ``channels`` of ``db`` and catches up (see the module docstring)."""

    def __init__(self, db: Database, channels: Sequence[str], *, on_notify: Callable[[str, str], None],
                 catch_up: Callable[[], None], poll: float = 5.0, wait: float = 0.5, name: str = "listener"):
        self.name = name
        self.channels = tuple(channels)
        self.on_notify = on_notify
        self.catch_up = catch_up
        self.poll = poll
        self.wait = min(wait, poll)
        self.connects = 0  # connections made (the first and every reconnect)
        self._raw_connection = getattr(db.dialect, "raw_connection", None)  # None: a SQLite file, nothing to hear
        self._conn: Any = None
        self._next_poll = 0.0

    def tick(self) -> float | None:
        if self._raw_connection is None:
            self.catch_up()
            return self.poll
        if self._conn is None:
            self._connect()
        try:
            wait = max(0.0, min(self.wait, self._next_poll - time.monotonic()))
            for n in self._conn.notifies(timeout=wait):
                self.on_notify(n.channel, n.payload)
        except Exception:
            self._drop()
            raise
        if time.monotonic() >= self._next_poll:  # connected just now, or the backstop poll is due
            self.catch_up()  # if it raises, the next tick tries again
            self._next_poll = time.monotonic() + self.poll
        return 0

    def _connect(self) -> None:
        from psycopg import sql

        conn = self._raw_connection("opg-listener")
        try:
            for channel in self.channels:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except Exception:
            conn.close()
            raise
        self._conn = conn
        self.connects += 1
        self._next_poll = 0.0  # catch up at once on whatever was notified while nobody listened

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            close_quietly(conn)

    def shutdown(self) -> None:
        self._drop()
