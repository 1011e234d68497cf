"""The database seam: a ``Dialect`` (how to connect, how SQL is spelled) and a ``Database`` (one store's file or
server, its per-thread readers, its ``meta`` binding and its numbered migrations).

Repositories are written against this seam only: they receive a connection (the writer's, inside a job, or a
reader) and spell statements with ``?`` placeholders and the portable forms ``INSERT ... ON CONFLICT (...) DO
NOTHING``, ``INSERT ... ON CONFLICT (...) DO UPDATE SET c = excluded.c`` and ``... RETURNING id`` (SQLite >= 3.35 and
PostgreSQL spell these the same). What differs between engines lives in the dialect:

  ``connect(readonly)``   a connection in autocommit mode that runs the repositories' statements as written
                          (``execute``/``executemany`` with ``?`` placeholders, ``rowcount``, ``fetchone``/``fetchall``)
                          and whose rows read by column name and by index (``row["col"]``, ``row[0]``); a
                          PostgreSQL dialect wraps psycopg's connection to translate ``?`` into ``%s``
  ``begin`` / ``durability(conn, durable)``  how a write transaction starts and whether its commit is flushed to disk
  ``columns(conn, table)``  the columns of a table (used by migrations that reconcile stores made before them)
  ``migration(m)``        the statements of a numbered migration for this engine (``Migration.sqlite`` / ``.postgresql``)

  ``ddl(text)``           a schema statement or column declaration in this engine's spelling (SQLite's as written)
  ``broken(conn)``        whether a connection was lost (a server restarted): a reader reconnects and reads again, the
                          writer fails that group and opens a new connection for the next
  ``schema_lock(conn)``   held around ``Database.open`` (meta binding and migrations): several processes opening one
                          database at once apply each migration exactly once (PostgreSQL: a session advisory lock;
                          SQLite: each migration re-checks its record inside its ``BEGIN IMMEDIATE`` transaction,
                          which holds the file's one write lock)
  ``notify(conn, channel, payload)``  inside a write job: listeners hear it once the transaction commits (PostgreSQL
                          ``pg_notify``; SQLite nothing: a file has no listeners, pollers catch up, ``storage.notify``)
  ``reads()``             a context manager lending a read-only connection: SQLite this thread's own (``reader()``,
                          which ``Database`` calls directly: the hot path), PostgreSQL one of a ``psycopg_pool`` pool
  ``row_order``           the column that numbers a table's rows in insertion order (SQLite ``rowid``; PostgreSQL
                          has none, so a table that needs it declares an identity column ``seq`` in its migration)

``Database.at(location)`` picks the engine from one setting: a ``postgresql://`` URL is ``storage.postgres``'s
``PostgresDialect`` (psycopg 3, imported only then), anything else a SQLite file. The relayer's repositories run on
both (``tests/storage`` runs them against each); the node's and the verifier's stores are SQLite only (their
migrations have no ``postgresql`` text: ``verifier.store._add_drift``'s scalar ``max(a, b)`` would be ``greatest``).
Concurrency: a SQLite file has one write transaction at a time (across processes too: ``BEGIN IMMEDIATE`` waits
for the file's write lock), so a read-check-write job is atomic; on PostgreSQL several processes write at once, so
such jobs need ``SELECT ... FOR UPDATE`` or a unique constraint (``ON CONFLICT``), and an order that readers follow
(a feed) must be commit order: ``storage.postgres.commit_ordered`` stamps a table's order column just before commit.

Durability per commit: ``durability(conn, True)`` makes the commit reach stable storage before COMMIT returns;
``False`` lets it survive the process being killed but not necessarily a power loss (PostgreSQL:
``synchronous_commit = off``). Each store's module docstring says which of its writes are which.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


def is_postgres_url(location: object) -> bool:
    """True for a PostgreSQL connection URL (a store location that is not a file path)."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def close_quietly(conn: Any) -> None:
    """Close a connection that may already be lost (or belong to another thread): a failure to close is moot."""
    try:
        conn.close()
    except Exception:
        pass


class StoreMismatch(Exception):
    """The store belongs to another chain, deployment or identity."""


Step = str | Callable[[Any, "Dialect"], None]


@dataclass(frozen=True)
class Migration:
    """One numbered schema change. ``sqlite`` and ``postgresql`` (None: not available there) are scripts or functions
    ``step(conn, dialect)`` for changes that must look at the schema first (stores made before migrations were
    numbered carry some columns already)."""

    version: int
    name: str
    sqlite: Step
    postgresql: Step | None = None


class Dialect(Protocol):
    name: str

    def connect(self, readonly: bool) -> Any: ...

    def begin(self, conn: Any) -> None: ...

    def script(self, conn: Any, statements: Sequence[str]) -> None: ...

    def durability(self, conn: Any, durable: bool) -> None: ...

    def columns(self, conn: Any, table: str) -> set[str]: ...

    def migration(self, m: Migration) -> Step | None: ...

    def ddl(self, text: str) -> str: ...

    def broken(self, conn: Any) -> bool: ...

    def schema_lock(self, conn: Any) -> AbstractContextManager[None]: ...

    def notify(self, conn: Any, channel: str, payload: str) -> None: ...

    def reads(self) -> AbstractContextManager[Any]: ...

    def close(self) -> None: ...

    row_order: str


class SQLiteDialect:
    """SQLite in WAL mode: one writer, readers that never block it. ``durability(durable=True)`` is
    ``synchronous=FULL`` (the commit's WAL frames are fsync'd before COMMIT returns); ``durable=False`` is
    ``synchronous=NORMAL`` (the commit survives the process being killed, and reaches the disk at the next
    durable commit or checkpoint: a power loss may lose it)."""

    name = "sqlite"
    row_order = "rowid"

    def __init__(self, path: Path):
        self.path = Path(path)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def connect(self, readonly: bool) -> sqlite3.Connection:
        if readonly:
            conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30, isolation_level=None,
                                   check_same_thread=False)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None, check_same_thread=False)
            mode = self._wal(conn)
            if str(mode).lower() != "wal":
                conn.close()
                raise RuntimeError(f"SQLite refused WAL mode for {self.path} (got {mode})")
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA cache_size = -65536")  # 64 MiB
        conn.execute("PRAGMA synchronous = FULL")
        if readonly:
            conn.execute("PRAGMA query_only = 1")
        return conn

    @staticmethod
    def _wal(conn: sqlite3.Connection, patience: float = 30.0) -> str:
        """Switch ``conn``'s database to WAL mode. The switch needs the file's exclusive lock and SQLite does not wait
        for it through the busy timeout: when several processes open a new file at once (relayers started together
        on one ``--shared-store`` file) all but one get "database is locked" at once. Retry with a short backoff
        instead, for up to ``patience`` seconds."""
        deadline, pause = time.monotonic() + patience, 0.01
        while True:
            try:
                return conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    conn.close()
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.2)

    def begin(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def script(self, conn: sqlite3.Connection, statements: Sequence[str]) -> None:
        """Parameterless statements in order (in process: no round trips to save)."""
        for statement in statements:
            conn.execute(statement)

    def durability(self, conn: sqlite3.Connection, durable: bool) -> None:
        conn.execute("PRAGMA synchronous = FULL" if durable else "PRAGMA synchronous = NORMAL")

    def columns(self, conn: sqlite3.Connection, table: str) -> set[str]:
        return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}

    def migration(self, m: Migration) -> Step | None:
        return m.sqlite

    def ddl(self, text: str) -> str:
        return text

    def broken(self, conn: sqlite3.Connection) -> bool:
        return False  # a file: nothing to lose

    def schema_lock(self, conn: sqlite3.Connection) -> AbstractContextManager[None]:
        return contextlib.nullcontext()  # ``migrate`` re-checks each migration under the file's write lock

    def notify(self, conn: sqlite3.Connection, channel: str, payload: str) -> None:
        """Nothing: a SQLite file has no listeners (``storage.notify.Listener`` polls it)."""

    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection (opened on first use, closed by ``close``)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.connect(True)
            with self._lock:
                self._readers.append(conn)
        return conn

    @contextlib.contextmanager
    def reads(self) -> Iterator[sqlite3.Connection]:
        yield self.reader()

    def close(self) -> None:
        with self._lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            close_quietly(conn)  # another thread's connection: closing it may be refused; it dies with the process
        self._local = threading.local()


class Database:
    """One store: its dialect (which lends read connections), the ``meta`` binding and the migrations."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        # A dialect whose readers are kept per thread (SQLite) lends them without a context manager: the hot path.
        self._thread_reader: Callable[[], Any] | None = getattr(dialect, "reader", None)

    @classmethod
    def sqlite(cls, path: Path) -> Database:
        return cls(SQLiteDialect(path))

    @classmethod
    def at(cls, location: str | Path) -> Database:
        """The store at ``location``: a ``postgresql://`` URL (PostgreSQL) or a file path (SQLite)."""
        if is_postgres_url(location):
            from .postgres import PostgresDialect  # psycopg is loaded only by a PostgreSQL store

            return cls(PostgresDialect(location))
        return cls.sqlite(Path(location))

    def connect(self, readonly: bool = False) -> Any:
        return self.dialect.connect(readonly)

    def reader(self) -> Any:
        """This thread's own read-only SQLite connection (a PostgreSQL store lends a pooled connection per read:
        use ``read``/``read_one``)."""
        if self._thread_reader is None:
            raise TypeError("only a SQLite store keeps a reader per thread: use read() or read_one()")
        return self._thread_reader()

    def read(self, statement: str, args: Sequence[Any] = ()) -> list[Any]:
        return self._read(statement, args, False)

    def read_one(self, statement: str, args: Sequence[Any] = ()) -> Any:
        return self._read(statement, args, True)

    def _read(self, statement: str, args: Sequence[Any], one: bool) -> Any:
        """Run a read; once more on another connection if the first was lost (reads are idempotent)."""
        if self._thread_reader is not None:  # SQLite: a file, no connection to lose
            cur = self._thread_reader().execute(statement, tuple(args))
            return cur.fetchone() if one else cur.fetchall()
        conn = None
        try:
            with self.dialect.reads() as conn:
                cur = conn.execute(statement, tuple(args))
                return cur.fetchone() if one else cur.fetchall()
        except Exception:
            if conn is None or not self.dialect.broken(conn):
                raise
        with self.dialect.reads() as conn:  # the dialect dropped the lost connection
            cur = conn.execute(statement, tuple(args))
            return cur.fetchone() if one else cur.fetchall()

    def notify(self, conn: Any, channel: str, payload: str = "") -> None:
        """Inside a write job on ``conn``: tell ``channel``'s listeners ``payload`` once this transaction commits
        (PostgreSQL ``pg_notify``; a rolled-back job or group tells nobody; SQLite: nothing)."""
        self.dialect.notify(conn, channel, payload)

    def close(self) -> None:
        self.dialect.close()

    def open(self, migrations: Sequence[Migration], meta: dict[str, str] | None = None) -> list[int]:
        """Bind the store (``meta``) and bring its schema up to date; returns the migrations applied now."""
        conn = self.connect()
        try:
            with self.dialect.schema_lock(conn):  # several processes may open one database at once
                if meta:
                    bind_meta(conn, self.dialect, meta)
                return migrate(conn, self.dialect, migrations)
        finally:
            conn.close()


def bind_meta(conn: Any, dialect: Dialect, expected: dict[str, str]) -> None:
    """Record ``expected`` in the store's ``meta`` table on first use; StoreMismatch if it holds other values."""
    conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    dialect.begin(conn)  # read and write in one transaction: a process binding at the same moment is seen
    try:
        have = {r[0]: r[1] for r in conn.execute("SELECT key, value FROM meta").fetchall()}
        for key, value in expected.items():
            if key in have and have[key] != str(value):
                raise StoreMismatch(f"store was made for {key} {have[key]}, not {value}: use another --store")
        for key, value in expected.items():
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, str(value)))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def read_meta(conn: Any, dialect: Dialect) -> dict[str, str]:
    return {r[0]: r[1] for r in conn.execute("SELECT key, value FROM meta").fetchall()}


def migrate(conn: Any, dialect: Dialect, migrations: Sequence[Migration]) -> list[int]:
    """Apply the migrations not yet recorded in ``schema_migrations``, in version order, each in its own transaction
    together with its record (a crash leaves it applied and recorded, or neither). Returns the versions applied."""
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise ValueError(f"migrations must have increasing, distinct versions: {versions}")
    conn.execute(dialect.ddl("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                             " name TEXT NOT NULL, applied_at REAL NOT NULL)"))
    done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
    newer = [v for v in done if v > max(versions, default=0)]
    if newer:
        raise StoreMismatch(f"store has schema migrations {sorted(newer)} this version does not know: use a newer one")
    applied: list[int] = []
    for m in migrations:
        if m.version in done:
            continue
        step = dialect.migration(m)
        if step is None:
            raise RuntimeError(f"migration {m.version} ({m.name}) has no {dialect.name} form")
        dialect.begin(conn)
        try:
            if conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (m.version,)).fetchone():
                conn.execute("ROLLBACK")  # another process applied it since we looked
                continue
            if callable(step):
                step(conn, dialect)
            else:
                for statement in _statements(step):
                    conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                         (m.version, m.name, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(m.version)
    return applied


def _statements(script: str) -> list[str]:
    """A migration script split into statements (``executescript`` would commit the migration's transaction)."""
    out, current = [], []
    for line in script.splitlines():
        current.append(line.split("--", 1)[0])
        text = "\n".join(current).strip()
        if text.endswith(";") and sqlite3.complete_statement(text):
            out.append(text)
            current = []
    rest = "\n".join(current).strip()
    if rest:
        out.append(rest)
    return out


def add_missing_columns(conn: Any, dialect: Dialect, table: str, columns: Sequence[tuple[str, str]]) -> None:
    """Add ``(name, declaration)`` columns ``table`` lacks (for stores made before a column was numbered)."""
    have = dialect.columns(conn, table)
    for name, decl in columns:
        if name not in have:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {dialect.ddl(decl)}")
