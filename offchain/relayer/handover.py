"""Work a follower hands to the leader through the store (issue 20: any relayer answers ``/settle``).

Of several relayer processes on one store only the lease holder sends transactions (``relayer.lease``). A follower
that accepts an x402 ``exact`` payment does not refuse it: it claims the authorisation's row in state ``queued``
(``Store.job_exact_new``) and tells the leader in the same transaction (``tell``: PostgreSQL ``NOTIFY`` on
``CHANNEL`` once it commits); the leader's exact worker takes each queued row (``queued`` -> ``new``, one taker)
and sends it under its fence, then tells the waiting follower, which follows the transaction on the chain and answers
what the leader's own ``/settle`` would have answered (the same transaction).

A gasless deposit has no row of its own before its transaction: a follower queues its body in ``handovers``
(``queue``; kind ``deposit``, ref ``payer:nonce``), the leader's deposit worker takes it (``take``), checks and sends
it like a deposit posted to itself and ends the row (``end``: ``sent``, or ``failed`` with the refusal it would
have answered), and the follower answers from the journal's transaction or that refusal.

Notifications are hints, never the record: ``Handover.listener`` is a ``storage.notify.Listener`` whose backstop
poll (``POLL`` s; on SQLite the only wake-up) wakes the leader's worker too, and a waiting request re-reads its row
at least every ``WAIT_STEP`` s whatever it hears.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from ..storage import Database
from ..storage.notify import Listener

CHANNEL = "opg_relayer_handover"
QUEUED, SENT = "queued", "sent"  # the payload's first word: what changed
POLL = 1.0  # s: the listener's backstop (wakes the leader's worker, re-checks the waiting requests)
WAIT_STEP = 0.25  # s: a waiting request re-reads its row at least this often

T = TypeVar("T")

HANDOVERS = """CREATE TABLE IF NOT EXISTS handovers (
    kind TEXT NOT NULL,
    ref TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    updated_at REAL NOT NULL,
    PRIMARY KEY (kind, ref)
);
"""  # status: queued | taken | sent | failed (error: the refusal, as JSON)


@dataclass(frozen=True)
class Handed:
    """One ``handovers`` row."""

    kind: str
    ref: str
    body: str
    status: str
    error: str | None

    @classmethod
    def from_row(cls, r: Any) -> Handed:
        return cls(r["kind"], r["ref"], r["body"], r["status"], r["error"])


class Handover:
    """The wake-ups between a follower handing work over and the leader sending it. ``db``: the shared store's
    database; ``wake_sender``: wakes the leader's worker that sends queued work (a ``Supervisor`` slot's event)."""

    def __init__(self, db: Database):
        self.db = db
        self.wake_sender: Callable[[], None] = lambda: None
        self._changed = threading.Condition()

    def tell(self, conn: Any, what: str, key: str) -> None:
        """Inside a write job: the listeners hear ``what key`` once it commits (SQLite: nobody; they poll)."""
        self.db.notify(conn, CHANNEL, f"{what} {key}")

    # The handovers table (work with no row of its own: gasless deposits) ------------------------------------------
    def job_queue(self, conn: Any, kind: str, ref: str, body: str, now: float) -> bool:
        """Queue ``body`` for the leader (or again, after it failed or its transaction did not go through: the
        leader's worker first looks for a live one in the journal) and tell it; False if it is queued or taken."""
        queued = conn.execute(
            "INSERT INTO handovers (kind, ref, body, status, updated_at) VALUES (?, ?, ?, 'queued', ?)"
            " ON CONFLICT (kind, ref) DO UPDATE SET body = excluded.body, status = 'queued', error = NULL,"
            " updated_at = excluded.updated_at WHERE handovers.status IN ('failed', 'sent')",
            (kind, ref, body, now)).rowcount == 1
        if queued:
            self.tell(conn, QUEUED, f"{kind}:{ref}")
        return queued

    @staticmethod
    def job_take(conn: Any, kind: str, ref: str, now: float) -> bool:
        """The leader takes a queued row (one taker)."""
        return conn.execute("UPDATE handovers SET status = 'taken', updated_at = ? WHERE kind = ? AND ref = ? AND"
                            " status = 'queued'", (now, kind, ref)).rowcount == 1

    def job_end(self, conn: Any, kind: str, ref: str, status: str, error: str | None, now: float) -> None:
        """The leader sent it (``sent``) or refused it (``failed``, ``error``); the waiting follower is told."""
        conn.execute("UPDATE handovers SET status = ?, error = ?, updated_at = ? WHERE kind = ? AND ref = ?",
                     (status, error, now, kind, ref))
        self.tell(conn, SENT, f"{kind}:{ref}")

    @staticmethod
    def job_requeue_taken(conn: Any, kind: str, now: float) -> int:
        """A new leader's start: rows a previous leader took and never ended are queued again (its worker finds a
        transaction the old leader recorded in the journal and sends nothing twice)."""
        return conn.execute("UPDATE handovers SET status = 'queued', updated_at = ? WHERE kind = ? AND"
                            " status = 'taken'", (now, kind)).rowcount

    def queued(self, kind: str) -> list[Handed]:
        return [Handed.from_row(r) for r in self.db.read(
            "SELECT kind, ref, body, status, error FROM handovers WHERE kind = ? AND status = 'queued'"
            " ORDER BY updated_at", (kind,))]

    def get(self, kind: str, ref: str) -> Handed | None:
        row = self.db.read_one("SELECT kind, ref, body, status, error FROM handovers WHERE kind = ? AND ref = ?",
                               (kind, ref))
        return Handed.from_row(row) if row is not None else None

    def heard(self, channel: str, payload: str) -> None:
        """A notification: queued work wakes the sender, any change wakes the waiting requests."""
        if payload.startswith(QUEUED):
            self.wake_sender()
        self._wake_waiters()

    def poll(self) -> None:
        """The backstop (every ``POLL`` s and on every reconnect): as if something changed."""
        self.wake_sender()
        self._wake_waiters()

    def _wake_waiters(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, check: Callable[[], T | None], timeout: float) -> T | None:
        """``check()``'s first non-None answer, re-checked on each wake-up (and at least every WAIT_STEP s), or None
        once ``timeout`` s have passed."""
        deadline = time.monotonic() + timeout
        while True:
            found = check()
            if found is not None:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            with self._changed:
                self._changed.wait(min(left, WAIT_STEP))

    def listener(self) -> Listener:
        """The supervised worker hearing ``CHANNEL`` (its catch-up is the backstop poll)."""
        return Listener(self.db, [CHANNEL], on_notify=self.heard, catch_up=self.poll, poll=POLL, name="handover")
