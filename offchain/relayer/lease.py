"""Leadership among relayer processes sharing one store: a lease with a fencing epoch in the database, so that
exactly one process sends transactions at a time (issue 20).

The lease is one row of ``relayer_lease`` (created here on first use, idempotently, under the storage layer's
schema lock: PostgreSQL's advisory lock, SQLite's write lock): ``holder`` (the instance id, ``--instance``, default
``<hostname>-<pid>``), ``epoch`` (incremented on every take, so each leadership has its own number) and
``expires_at``, all judged by the **database's** clock (PostgreSQL ``clock_timestamp()``; SQLite, one host, the
host's clock read by SQLite), never by a contender's own clock.

- **Take** (``LeaseKeeper`` as a follower): one ``UPDATE ... WHERE expires_at <= now OR holder = me`` sets holder,
  ``epoch + 1`` and the expiry; it succeeds for one contender only. A holder on this host whose process is gone (the
  default instance id names the pid) is taken at once, so a single relayer restarted after a crash does not wait out
  the TTL; a graceful stop releases the lease (expiry set to 0) for the same reason.
- **Renew** (as the leader, every ``ttl / 3`` s): ``UPDATE ... WHERE holder = me AND epoch = mine AND expires_at >
  now``; no row means the lease was lost (expired, or taken): the process becomes a follower, with no error.
- **Never blocked**: the lease's own connection (a writer session: ``idle_in_transaction_session_timeout``) runs
  take and renew with ``lock_timeout`` ``ttl / 3``: a leader frozen inside a fence transaction (its ``FOR SHARE``
  row lock held) makes a contender's take fail fast and retry at its next heartbeat, never hang, until the server
  ends the frozen transaction.
- **Locally**, ``is_leader`` is also false once ``ttl`` has passed on this process's monotonic clock since the last
  renewal began (a process paused past the TTL stops its senders before it even asks the database).
- **Fencing** (``fence(conn, epoch)``): every write-ahead transaction record (``storage.journal.SqlTxJournal``) runs
  this check in its own database transaction, before it is written: the lease row must still say holder = me, epoch
  = the one the send was granted under (``permit()``, read when ``TxManager.send`` decided to send and chose its
  nonce; within a gated worker's tick, the epoch the tick began in: ``tick()``), not expired (PostgreSQL:
  ``SELECT ... FOR SHARE``, so a take waits for the record's commit and a new leader's takeover reads it; SQLite:
  the writer already holds the file's write lock). Otherwise it raises ``Fenced`` and the
  transaction is neither recorded nor broadcast: a zombie leader (alive, lease lost) sends nothing new. Records made
  before the take are in the journal, which the new leader re-broadcasts first (same signed bytes) and allocates
  nonces above (``TxManager.takeover``). The granted epoch, not the one held when the record is written: a send
  that stalled (a slow RPC) across two changes of leadership (A epoch 1, B epoch 2 sends the same batch, A epoch 3)
  would otherwise pass as A's new leadership and put a second transaction for the same subject on the chain.

Why not an advisory lock alone: a session advisory lock lives as long as its connection. When the holder's
connection is cut (network, ``pg_terminate_backend``, a server-side idle timeout) the lock is released at once and
another process takes it, while the old holder's process still runs and may be in the middle of signing and
broadcasting: the lock never told that process it lost anything. A fencing epoch checked by the very commit that
records each transaction closes that gap: the old holder's next record finds another epoch and is refused.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..sdk.tx import NotSender
from ..storage import Database

log = logging.getLogger("opg.relayer.lease")

LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout expired
NAME = "relayer"  # the one lease of a relayer database: who sends its account's transactions
_TABLE = """CREATE TABLE IF NOT EXISTS relayer_lease (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL,
    renewed_at DOUBLE PRECISION NOT NULL
)"""
# The database's clock, in seconds since the epoch.
_NOW = {"postgresql": "extract(epoch from clock_timestamp())",
        "sqlite": "((julianday('now') - 2440587.5) * 86400.0)"}


class Fenced(NotSender):
    """A transaction record refused: the lease row no longer names this process's holder and epoch (or expired)."""

    def __init__(self, instance: str, epoch: int, holder: str | None, held_epoch: int | None):
        super().__init__(f"fenced: this relayer ({instance}, epoch {epoch}) no longer holds the sending lease "
                         f"(holder {holder!r}, epoch {held_epoch}); nothing was recorded or broadcast")
        self.holder, self.epoch = holder, held_epoch


@dataclass(frozen=True)
class LeaseState:
    """What ``/healthz`` shows: this process's role and the lease as last read from the database."""

    role: str  # "leader" | "follower"
    instance: str
    holder: str | None
    epoch: int

    def as_json(self) -> dict:
        return {"role": self.role, "instance": self.instance, "holder": self.holder, "epoch": self.epoch}


def _host_process_gone(holder: str) -> bool:
    """Whether ``holder`` is a default instance id (``<this host>-<pid>``) whose process no longer exists."""
    host, _, pid = holder.rpartition("-")
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class Lease:
    """This process's view of the lease, and the database statements that take, renew, release and fence it."""

    def __init__(self, db: Database, instance: str, ttl: float, name: str = NAME):
        self.db, self.instance, self.ttl, self.name = db, instance, float(ttl), name
        self.dialect = db.dialect.name
        self.now = _NOW[self.dialect]
        self._conn: Any = None
        self._lock = threading.Lock()
        self.epoch = 0  # the epoch this process holds (0: none yet)
        self.holder: str | None = None  # as last read
        self.held_epoch = 0  # the lease row's epoch, as last read
        self._deadline = 0.0  # monotonic time until which this process may act as the leader
        self.fenced = 0  # transaction records refused by the fence
        self.sending = threading.Event()  # set by the keeper once a takeover is done, cleared when the lease is lost
        self._local = threading.local()  # .epoch: the epoch the current thread's gated tick began in (``tick()``)

    # This process's view ---------------------------------------------------------------------------------------
    @property
    def is_leader(self) -> bool:
        return self.epoch > 0 and time.monotonic() < self._deadline

    def may_send(self) -> bool:
        """The gated workers' gate: leader, and its takeover done."""
        return self.permit() > 0

    def permit(self) -> int:
        """The epoch a send decided now is granted under (``TxManager``'s ``may_send``; the journal's fence then
        requires the lease row to hold exactly it), or 0: not the leader, takeover not done, or this thread runs a
        tick that began under another epoch (``tick()``)."""
        epoch = self.epoch
        if not (epoch and self.sending.is_set() and time.monotonic() < self._deadline):
            return 0
        pinned = getattr(self._local, "epoch", None)
        return epoch if pinned is None or pinned == epoch else 0

    @contextmanager
    def tick(self) -> Iterator[None]:
        """One gated worker's tick (``daemon.worker.Gated``): its sends are granted only under the epoch it began in
        (its reading of the store predates any later leader's sends), so a tick that straddles a change of
        leadership sends nothing once the epoch moved, even when this process leads again."""
        previous = getattr(self._local, "epoch", None)
        self._local.epoch = self.permit()
        try:
            yield
        finally:
            self._local.epoch = previous

    def state(self) -> LeaseState:
        leader = self.is_leader
        return LeaseState("leader" if leader else "follower", self.instance, self.holder,
                          self.epoch if leader else self.held_epoch)

    # The database ----------------------------------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._conn is not None and self.db.dialect.broken(self._conn):
            self._close()
        if self._conn is None:
            self._conn = self.db.connect()
            self._create(self._conn)
            if self.dialect == "postgresql":  # a take or renewal never waits on a frozen leader's fence (FOR SHARE)
                self._conn.execute(f"SET lock_timeout = {max(100, int(self.ttl * 1000 / 3))}")
        return self._conn

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _create(self, conn: Any) -> None:
        """The table and its one row, idempotently; concurrent first starts serialise on the storage layer's schema
        lock (PostgreSQL's advisory lock; SQLite's write lock, taken by ``begin``)."""
        dialect = self.db.dialect
        with dialect.schema_lock(conn):
            dialect.begin(conn)
            try:
                conn.execute(_TABLE)
                conn.execute("INSERT INTO relayer_lease (name, holder, epoch, expires_at, renewed_at)"
                             " VALUES (?, '', 0, 0, 0) ON CONFLICT (name) DO NOTHING", (self.name,))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def _run(self, statement: str, args: tuple) -> Any:
        """One statement in its own (autocommit) transaction; the connection is dropped if the server lost it."""
        with self._lock:
            conn = self._connection()
            try:
                return conn.execute(statement, args).fetchone()
            except Exception:
                if self.db.dialect.broken(conn):
                    self._close()
                raise

    def read(self) -> tuple[str, int, float] | None:
        """(holder, epoch, seconds until expiry by the database's clock) of the lease row."""
        row = self._run(f"SELECT holder, epoch, expires_at - {self.now} FROM relayer_lease WHERE name = ?",
                        (self.name,))
        if row is None:
            return None
        self.holder, self.held_epoch = row[0] or None, int(row[1])
        return row[0], int(row[1]), float(row[2])

    def try_take(self) -> bool:
        """Take the lease if it expired, is this instance's own or its holder's process is gone; epoch + 1."""
        current = self.read()
        force = current is not None and bool(current[0]) and current[2] > 0 and _host_process_gone(current[0])
        started = time.monotonic()
        try:
            row = self._run(
                f"UPDATE relayer_lease SET holder = ?, epoch = epoch + 1, expires_at = {self.now} + ?,"
                f" renewed_at = {self.now} WHERE name = ? AND (expires_at <= {self.now} OR holder = ? OR holder = ?)"
                " RETURNING epoch", (self.instance, self.ttl, self.name, self.instance,
                                     current[0] if force and current else self.instance))
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            log.info("lease: a record of the holder's is in flight (row locked past lock_timeout): not taken yet")
            return False
        if row is None:
            return False
        self.epoch = self.held_epoch = int(row[0])
        self.holder = self.instance
        self._deadline = started + self.ttl
        if force and current:
            log.warning("lease: the holder %s's process is gone: taken at once", current[0])
        return True

    def renew(self) -> bool:
        """Extend this leadership; False (and no longer the leader) if the row names another holder or epoch, or
        expired."""
        started = time.monotonic()
        row = self._run(
            f"UPDATE relayer_lease SET expires_at = {self.now} + ?, renewed_at = {self.now} WHERE name = ? AND"
            f" holder = ? AND epoch = ? AND expires_at > {self.now} RETURNING epoch",
            (self.ttl, self.name, self.instance, self.epoch))
        if row is None:
            self.lose()
            return False
        self._deadline = started + self.ttl
        return True

    def lose(self) -> None:
        self.sending.clear()
        self.epoch, self._deadline = 0, 0.0

    def release(self) -> None:
        """Give the lease up at once (a graceful stop): a follower takes it at its next heartbeat."""
        if self.epoch:
            epoch = self.epoch
            self.lose()
            self._run("UPDATE relayer_lease SET expires_at = 0 WHERE name = ? AND holder = ? AND epoch = ?"
                      " RETURNING epoch", (self.name, self.instance, epoch))

    def close(self) -> None:
        with self._lock:
            self._close()

    # Fencing ---------------------------------------------------------------------------------------------------
    def fence(self, conn: Any, epoch: int | None = None) -> None:
        """In the writer's transaction that records a transaction: refuse (``Fenced``) unless the lease row says
        this holder, ``epoch`` (the one the send was granted under, ``permit()``; default: the epoch held now), not
        expired. PostgreSQL locks the row until that transaction ends. A send granted under an earlier epoch of this
        same process is refused too (its decision predates another leader's sends), without giving up the lease it
        holds now."""
        current = self.epoch
        granted = current if epoch is None else epoch
        if not granted or (epoch is not None and not self.sending.is_set()):  # never held, given up, taking over
            self.fenced += 1
            raise Fenced(self.instance, granted, self.holder, self.held_epoch)
        lock = " FOR SHARE" if self.dialect == "postgresql" else ""
        row = conn.execute(f"SELECT holder, epoch, expires_at > {self.now} FROM relayer_lease WHERE name = ?{lock}",
                           (self.name,)).fetchone()
        held = row is not None and row[0] == self.instance and bool(row[2])
        if held and int(row[1]) == granted:
            return
        self.fenced += 1
        if row is not None:
            self.holder, self.held_epoch = row[0] or None, int(row[1])
        if not (held and int(row[1]) == current):  # the lease itself is lost, not just this send's grant
            self.lose()
        raise Fenced(self.instance, granted, row[0] if row else None, int(row[1]) if row else None)


class LeaseKeeper:
    """The supervised worker (``daemon.worker``) keeping the lease: a follower tries to take it, the leader renews
    it, every ``ttl / 3`` s. On taking it, ``takeover()`` runs before the senders are let go (re-broadcast the
    journal's unconfirmed transactions, allocate nonces above them); each change of role is logged. A database
    error leaves the role to the local deadline (a leader that cannot renew stops sending once its TTL has passed
    on its own clock) and is retried with the supervisor's backoff."""

    name = "lease"

    def __init__(self, lease: Lease, takeover: Callable[[], None]):
        self.lease, self.takeover = lease, takeover
        self._was_leader = False

    def tick(self) -> float:
        lease = self.lease
        try:
            if lease.is_leader:
                lease.renew()
            elif lease.try_take():
                log.warning("lease: %s is the leader (epoch %d); taking over", lease.instance, lease.epoch)
                try:
                    self.takeover()
                except BaseException:
                    lease.lose()  # taken again (epoch + 1) at the next tick, the takeover run again
                    raise
                lease.renew()  # False if it was lost during the takeover (it took longer than the TTL)
        finally:
            self._settle_role()
        return lease.ttl / 3

    def _settle_role(self) -> None:
        leader = self.lease.is_leader
        if leader:
            self.lease.sending.set()
        else:
            self.lease.sending.clear()
        if leader != self._was_leader:
            self._was_leader = leader
            if not leader:
                log.warning("lease: %s is a follower now (holder %s, epoch %d)", self.lease.instance,
                            self.lease.holder, self.lease.held_epoch)

    def shutdown(self) -> None:
        try:
            self.lease.release()
        except Exception as exc:
            log.warning("lease: release failed (%s); it expires in %.0f s", exc, self.lease.ttl)
        self.lease.close()
