"""Work a follower hands to the leader through the store (issue 20: any relayer answers ``/settle``).

Of several relayer processes on one store only the lease holder sends transactions (``relayer.lease``). A follower
that accepts an x402 ``exact`` payment does not refuse it: it claims the authorisation's row in state ``queued``
(``Store.job_exact_new``) and tells the leader in the same transaction (``tell``: PostgreSQL ``NOTIFY`` on
``CHANNEL`` once it commits); the leader's exact worker takes each queued row (``queued`` -> ``new``, one taker)
and sends it under its fence, then tells the waiting follower, which follows the transaction on the chain and answers
what the leader's own ``/settle`` would have answered (the same transaction).

Notifications are hints, never the record: ``Handover.listener`` is a ``storage.notify.Listener`` whose backstop
poll (``POLL`` s; on SQLite the only wake-up) wakes the leader's worker too, and a waiting request re-reads its row
at least every ``WAIT_STEP`` s whatever it hears.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..storage import Database
from ..storage.notify import Listener

CHANNEL = "opg_relayer_handover"
QUEUED, SENT = "queued", "sent"  # the payload's first word: what changed
POLL = 1.0  # s: the listener's backstop (wakes the leader's worker, re-checks the waiting requests)
WAIT_STEP = 0.25  # s: a waiting request re-reads its row at least this often

T = TypeVar("T")


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
