"""PostgreSQL behind the storage seam (``storage.database``): ``PostgresDialect`` and the small psycopg 3 adapter that
runs the repositories' statements as written.

``Database.at("postgresql://...")`` picks this dialect; a file path picks SQLite. The adapter (``PgConnection``)
gives what the repositories use of ``sqlite3``: ``execute``/``executemany`` with ``?`` placeholders (translated once
per statement into ``%s`` outside quoted literals; every ``%`` is escaped), cursors with ``rowcount``,
``fetchone``/``fetchall`` and iteration, and rows readable by column name and by index (``Row``; ``dict(row)`` works).
Connections are in autocommit mode: a write transaction is the writer's explicit ``BEGIN`` ... ``COMMIT`` with a
savepoint per job, exactly as on SQLite.

Spelling: ``ddl(text)`` turns the SQLite schema spelling into PostgreSQL's (``INTEGER PRIMARY KEY AUTOINCREMENT`` an
identity column, ``INTEGER`` ``BIGINT``, ``REAL`` ``DOUBLE PRECISION``, ``BLOB`` ``BYTEA``): a migration's
``postgresql`` text is its ``sqlite`` text through ``ddl`` plus what only PostgreSQL needs (the relayer's feed
order column ``seq``, because PostgreSQL has no ``rowid``; ``row_order`` names it). Text compares byte-wise only
under the ``C`` collation: create the database with ``LC_COLLATE 'C'`` (the test cluster is ``initdb --locale=C``).

Durability: ``durability(conn, durable)`` sets the writer session's ``synchronous_commit`` (``on``: the commit is
flushed to the WAL on disk before COMMIT returns; ``off``: it survives the client process being killed but a server
crash may lose the last commits). It is a session setting (the writer calls it before ``BEGIN``), not ``SET LOCAL``,
sent only when it changes.

Readers come from a ``psycopg_pool`` pool (``reads()``; ``pool_size`` connections at most, opened on the first
read) with ``default_transaction_read_only``; each read is its own transaction; a read on a connection the server
dropped (``pg_terminate_backend``, a restart) is retried once on another (``Database``), after the pool has checked
its idle connections. The writer's connection (``storage.writer``): a lost one fails that group's jobs (its
``on_failure`` is told; a COMMIT cut off by the loss may or may not have been applied) and the next group runs on a
new connection. Every connection sends TCP keepalives, so a server that vanishes without closing the socket fails
a waiting call within about half a minute instead of hanging it. A writing connection whose transaction waits on its
client longer than ``idle_in_transaction`` seconds (the process was paused, SIGSTOP, or its thread is stuck between
statements) is ended by the server, so its row locks never stall the other processes' writers; its own next
statement then fails like any lost connection.

Several processes on one database (``docs/architecture.md`` "Several relayers"):
  ``schema_lock``        ``Database.open`` runs under the session advisory lock ``LOCK_MIGRATIONS``: concurrent
                         starts apply each migration exactly once
  ``notify``             ``pg_notify`` inside the writer's transaction, delivered to ``LISTEN``ers on commit
                         (``storage.notify.Listener``)
  ``commit_ordered``     a migration step that makes a table's order column follow commit order, so a reader
                         paging ``WHERE seq > ?`` never skips a row committed late with a lower number
Advisory lock keys are pairs ``(LOCK_SPACE, n)``; ``n`` 1 is the migrations, 2 the commit order, and other
components of this project take theirs from the same space (pick the next free ``n`` and list it here).
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .database import Migration, Step

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

__all__ = ["PostgresDialect", "PgConnection", "Row", "ddl", "placeholders", "commit_ordered", "LOCK_SPACE",
           "LOCK_MIGRATIONS", "LOCK_COMMIT_ORDER"]

LOCK_SPACE = 0x4F5047  # 'OPG': the first half of every advisory lock key this project takes
LOCK_MIGRATIONS = (LOCK_SPACE, 1)
LOCK_COMMIT_ORDER = (LOCK_SPACE, 2)

# Every connection: keepalives so that a peer gone silent fails a blocked call instead of wedging its thread.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}


class Row(tuple):
    """A result row readable by index (a tuple) and by column name, like ``sqlite3.Row``."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


def _row_factory(cursor: Any) -> Any:
    index: dict[str, int] = {}
    for i, column in enumerate(cursor.description or ()):
        index.setdefault(column.name, i)  # like sqlite3.Row: the first column of a repeated name
    return lambda values: Row(values, index)


_LITERAL = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\?|%")


def _translate(m: re.Match[str]) -> str:
    token = m.group(0)
    return "%s" if token == "?" else token.replace("%", "%%")  # psycopg reads '%' even inside quoted text


@functools.lru_cache(maxsize=1024)
def placeholders(statement: str) -> str:
    """``?`` -> ``%s`` outside quoted literals and identifiers; every ``%`` -> ``%%``."""
    return _LITERAL.sub(_translate, statement)


class PgConnection:
    """A psycopg connection that runs SQLite-style statements (see the module docstring)."""

    def __init__(self, raw: psycopg.Connection):
        self.raw = raw
        self.synchronous_commit: bool | None = None  # the session's setting, as last SET by ``durability``

    def execute(self, statement: str, args: Sequence[Any] = ()) -> psycopg.Cursor:
        cur = self.raw.cursor(row_factory=_row_factory)
        if args:
            cur.execute(placeholders(statement), tuple(args))
        else:
            cur.execute(statement)  # no parameters: psycopg leaves '%' alone
        return cur

    def executemany(self, statement: str, rows: Iterable[Sequence[Any]]) -> psycopg.Cursor:
        cur = self.raw.cursor(row_factory=_row_factory)
        cur.executemany(placeholders(statement), [tuple(r) for r in rows])
        return cur

    def close(self) -> None:
        self.raw.close()


_DDL = [
    (re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", re.I), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.I), "BYTEA"),
]


def ddl(text: str) -> str:
    """A schema statement (or a column declaration) in SQLite's spelling, in PostgreSQL's."""
    for pattern, replacement in _DDL:
        text = pattern.sub(replacement, text)
    return text


def commit_ordered(table: str, key: str, column: str = "seq") -> Step:
    """A migration step: ``table``'s identity column ``column`` follows commit order.

    An identity value is drawn at INSERT, but concurrent transactions commit in any order: a reader paging
    ``WHERE seq > after`` could read 8, move past it, and then see 7 commit. Here a deferred constraint trigger
    re-draws the value of each row inserted (``SET column = DEFAULT``) when its transaction commits, under the
    transaction advisory lock ``LOCK_COMMIT_ORDER`` held until the commit is visible: a transaction draws its
    numbers only after every transaction that drew lower ones is visible. The lock is the last one a transaction
    takes (deferred triggers run at COMMIT), so it cannot deadlock; it serialises only the commits of transactions
    that inserted into ``table``. Rows inserted by a job that was rolled back to its savepoint fire nothing."""
    function = f"opg_commit_order_{table}"
    body = f"""
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    PERFORM pg_advisory_xact_lock({LOCK_COMMIT_ORDER[0]}, {LOCK_COMMIT_ORDER[1]});
    UPDATE {table} SET {column} = DEFAULT WHERE {key} = NEW.{key};
    RETURN NULL;
END
$body$;
DROP TRIGGER IF EXISTS {table}_commit_order ON {table};
CREATE CONSTRAINT TRIGGER {table}_commit_order AFTER INSERT ON {table} DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION {function}();
"""

    def step(conn: Any, dialect: Any) -> None:
        conn.execute(body)  # one simple-protocol script (no parameters): the function body holds semicolons

    return step


def _read_only(raw: psycopg.Connection) -> None:
    raw.execute("SET default_transaction_read_only = on")


class PostgresDialect:
    """PostgreSQL through psycopg 3 (see the module docstring)."""

    name = "postgresql"
    row_order = "seq"  # the identity column a table declares where SQLite would use its rowid

    def __init__(self, url: str, connect_timeout: float = 10, pool_size: int = 8, idle_in_transaction: float = 15):
        self.url = url
        self.connect_timeout = connect_timeout
        self.pool_size = pool_size
        self.idle_in_transaction = idle_in_transaction  # seconds a writer's open transaction may wait on its client
        self._pool: psycopg_pool.ConnectionPool | None = None
        self._pool_lock = threading.Lock()

    def __repr__(self) -> str:  # never print a password
        return f"PostgresDialect({re.sub(r'//[^@/]*@', '//***@', self.url)})"

    def _kwargs(self, application_name: str) -> dict[str, Any]:
        return {"autocommit": True, "connect_timeout": int(self.connect_timeout),
                "application_name": application_name, **_KEEPALIVES}

    def raw_connection(self, application_name: str) -> psycopg.Connection:
        """A plain psycopg connection in autocommit mode (the listener's, ``storage.notify``)."""
        import psycopg  # loaded by the first connection: the relayer imports this module for ``ddl`` alone

        return psycopg.connect(self.url, **self._kwargs(application_name))

    def connect(self, readonly: bool) -> PgConnection:
        raw = self.raw_connection("opg-reader" if readonly else "opg-writer")
        if readonly:
            _read_only(raw)
        else:  # a writer process paused or wedged mid-transaction must not hold its row locks over the others
            raw.execute(f"SET idle_in_transaction_session_timeout = {int(self.idle_in_transaction * 1000)}")
        return PgConnection(raw)

    def _reader_pool(self) -> psycopg_pool.ConnectionPool:
        with self._pool_lock:
            if self._pool is None:
                from psycopg_pool import ConnectionPool

                self._pool = ConnectionPool(self.url, kwargs=self._kwargs("opg-reader"), min_size=1,
                                            max_size=self.pool_size, configure=_read_only, open=True,
                                            timeout=self.connect_timeout, num_workers=2, name="opg-readers")
            return self._pool

    @contextlib.contextmanager
    def reads(self) -> Iterator[PgConnection]:
        """A pooled read-only connection for the block; a lost one is discarded and the pool's idle ones checked."""
        pool = self._pool or self._reader_pool()
        lost = False
        try:
            with pool.connection() as raw:
                conn = PgConnection(raw)
                try:
                    yield conn
                except BaseException:
                    lost = self.broken(conn)
                    raise
        finally:
            if lost:  # a restart cuts every connection: drop the pool's other dead ones before the retry
                pool.check()

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    @contextlib.contextmanager
    def schema_lock(self, conn: PgConnection) -> Iterator[None]:
        """The session advisory lock ``LOCK_MIGRATIONS`` on ``conn`` (released with it if the connection dies)."""
        conn.execute("SELECT pg_advisory_lock(?, ?)", LOCK_MIGRATIONS)
        try:
            yield
        finally:
            if not self.broken(conn):
                conn.execute("SELECT pg_advisory_unlock(?, ?)", LOCK_MIGRATIONS)

    def notify(self, conn: PgConnection, channel: str, payload: str) -> None:
        conn.execute("SELECT pg_notify(?, ?)", (channel, payload))

    def begin(self, conn: PgConnection) -> None:
        conn.execute("BEGIN")

    def script(self, conn: PgConnection, statements: Sequence[str]) -> None:
        """Parameterless statements in order, in one round trip (one simple-protocol query)."""
        conn.execute("; ".join(statements))

    def durability(self, conn: PgConnection, durable: bool) -> None:
        if conn.synchronous_commit is not durable:  # one round trip only when the policy changes
            conn.execute("SET synchronous_commit = on" if durable else "SET synchronous_commit = off")
            conn.synchronous_commit = durable

    def columns(self, conn: PgConnection, table: str) -> set[str]:
        return {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND table_name = ?", (table,))}

    def ddl(self, text: str) -> str:
        return ddl(text)

    def broken(self, conn: PgConnection) -> bool:
        return bool(conn.raw.closed or conn.raw.broken)

    def migration(self, m: Migration) -> Step | None:
        return m.postgresql
