"""The one group-commit writer every daemon's store writes through.

Every change is a *job*: a function ``fn(conn, *args)`` of the writer's connection. One thread takes every job queued
at that moment (up to ``max_group``), runs each inside its own savepoint (a job that raises is undone alone and its
caller gets the exception) and commits them together: one commit (one fsync) acknowledges many concurrent callers. A
job's future resolves only after that commit returned, so nothing is acknowledged before it is stored.

Durability (the fsync policy): a job submitted with ``durable=True`` (the default) is committed with the dialect's
durable setting (SQLite ``synchronous=FULL``: on disk when its future resolves; survives power loss). A group holding
only ``durable=False`` jobs is committed with ``synchronous=NORMAL``: it survives the process being killed (the WAL
is in the OS page cache) and reaches the disk at the next durable commit or checkpoint, so a power loss or kernel
crash may lose it. Stores choose per write what a crash must not lose (see each store's module docstring).

A commit that fails (disk full, I/O error, a lost connection) fails every future of its group and calls
``on_failure``; the relayer exits there (its in-memory ledger was changed by the jobs), the node and verifier report
the error to the caller. The writer itself goes on: a connection the dialect reports lost (``broken``: the server
terminated it or restarted) is closed, and the next group opens a new one (a group that cannot connect fails the same
way); no failure leaves the thread stuck or later jobs hanging. A COMMIT cut off by a lost connection may have been
applied: its callers hear a failure, so an idempotent job is safe to resubmit, others must check.
``close`` stops taking jobs and drains the queue: everything submitted before it is committed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .database import Database, close_quietly

log = logging.getLogger("opg.storage.writer")

_STOP = object()


class WriterClosed(RuntimeError):
    """The writer is closed (or its thread died): the job was not run."""


@dataclass
class _Job:
    fn: Callable[..., Any]
    args: tuple
    durable: bool
    future: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


@dataclass(frozen=True)
class CommitStats:
    """One group commit: seconds running the jobs (SQL), seconds in COMMIT (WAL write, fsync), jobs, durable."""

    work: float
    sync: float
    jobs: int
    durable: bool


class GroupCommitWriter:
    """One writer thread and its connection for one ``Database``."""

    def __init__(self, db: Database, *, name: str = "store-writer", max_group: int = 1024,
                 on_commit: Callable[[CommitStats], None] | None = None,
                 on_failure: Callable[[BaseException], None] | None = None):
        self.db = db
        self.max_group = max_group
        self.on_commit = on_commit
        self.on_failure = on_failure
        self.commits = 0
        self.jobs_committed = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._conn: Any = db.connect()  # None after it was lost, until the next group connects
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # Submitting ------------------------------------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *args: Any, durable: bool = True) -> concurrent.futures.Future:
        """Queue ``fn(conn, *args)``; the future resolves with its result once it is committed."""
        if self._closed or not self._thread.is_alive():
            raise WriterClosed("the store is closed")
        job = _Job(fn, args, durable)
        self._queue.put(job)
        return job.future

    def call(self, fn: Callable[..., Any], *args: Any, durable: bool = True) -> Any:
        """Run a job and wait for its commit (from any thread but the writer's and an event loop's)."""
        return self.submit(fn, *args, durable=durable).result()

    async def run(self, fn: Callable[..., Any], *args: Any, durable: bool = True) -> Any:
        """Run a job and await its commit without blocking the event loop."""
        return await asyncio.wrap_future(self.submit(fn, *args, durable=durable))

    def close(self, timeout: float = 30) -> None:
        """Stop taking jobs, commit every job already queued, stop the thread and close its connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # The thread ------------------------------------------------------------------------------------------------
    def _take(self) -> tuple[list[_Job], bool]:
        first = self._queue.get()
        if first is _STOP:
            return [], True
        jobs = [first]
        while len(jobs) < self.max_group:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is _STOP:
                return jobs, True
            jobs.append(nxt)
        return jobs, False

    def _loop(self) -> None:
        dialect = self.db.dialect
        try:
            while True:
                jobs, stop = self._take()
                if jobs:
                    self._commit(dialect, jobs)
                if stop:
                    break
        finally:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
            while True:  # whatever was queued after a stop or a fatal failure is refused, never left hanging
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is not _STOP:
                    job.future.set_exception(WriterClosed("the store is closed"))

    def _commit(self, dialect: Any, jobs: list[_Job]) -> None:
        durable = any(j.durable for j in jobs)
        results: list[tuple[bool, Any]] = []
        started = time.perf_counter()
        conn = self._conn
        try:
            if conn is None:  # the last one was lost
                conn = self._conn = self.db.connect()
            dialect.durability(conn, durable)
            dialect.begin(conn)
            released = True  # the last job's savepoint is released (or there was none)
            for job in jobs:
                # one round trip between two jobs on PostgreSQL; the last savepoint is left to the COMMIT
                dialect.script(conn, ("SAVEPOINT job",) if released else ("RELEASE job", "SAVEPOINT job"))
                try:
                    results.append((True, job.fn(conn, *job.args)))
                    released = False
                except Exception as exc:  # the job's own failure: undo it, keep the others
                    dialect.script(conn, ("ROLLBACK TO job", "RELEASE job"))
                    released = True
                    results.append((False, exc))
            work = time.perf_counter()
            conn.execute("COMMIT")
        except BaseException as exc:  # the group failed: undone (a COMMIT cut off with its connection: maybe not)
            if conn is not None and dialect.broken(conn):
                self._conn = None  # the next group connects again
                close_quietly(conn)
            elif conn is not None:
                try:
                    conn.execute("ROLLBACK")
                except Exception:
                    pass
            log.critical("store commit failed", exc_info=True)
            if self.on_failure is not None:  # first: a store that exits here answers nobody
                self.on_failure(exc)
            for job in jobs:
                job.future.set_exception(exc)
            return
        self.commits += 1
        self.jobs_committed += len(jobs)
        if self.on_commit is not None:
            try:
                self.on_commit(CommitStats(work - started, time.perf_counter() - work, len(jobs), durable))
            except Exception:
                log.exception("commit observer failed")
        for job, (ok, value) in zip(jobs, results, strict=True):
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)
