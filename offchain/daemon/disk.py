"""A daemon's disk reserve: new work that a local (SQLite) store would have to keep is refused with 503
``store_full`` while the store's file system has less free space than the reserve, and accepted again as soon as
space returns (no restart).

Why: a commit that cannot be written (disk full) fails half-way through a unit of work, and the relayer exits on a
failed commit (``storage.writer``: its jobs changed its in-memory ledger). Refusing new receipts while the disk is
nearly full keeps the reserve for what was already accepted (building, sending and confirming its batches are small
writes), so the relayer keeps answering, keeps settling and loses nothing; the node holding a refused receipt keeps
it in its outbox and hands it over again later. A PostgreSQL store lives elsewhere: no reserve here.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..storage.database import is_postgres_url
from .errors import ApiError

MIB = 2**20
FREE_SPACE_TTL = 0.5  # s a reading of the free space is reused


class DiskReserve:
    """Free space of the file system holding ``path``, read at most every ``ttl`` seconds, against ``reserve`` bytes."""

    def __init__(self, path: Path, reserve: int, ttl: float = FREE_SPACE_TTL):
        self.path, self.reserve, self.ttl = path, reserve, ttl
        self._read_at, self._free = float("-inf"), 0

    @classmethod
    def of(cls, store: Path | str, reserve_mb: float) -> DiskReserve | None:
        """The reserve of a store location (None for a PostgreSQL store or a reserve of 0)."""
        if reserve_mb <= 0 or is_postgres_url(store):
            return None
        return cls(Path(store).resolve().parent, int(reserve_mb * MIB))

    def free(self) -> int:
        now = time.monotonic()
        if now - self._read_at > self.ttl:
            st = os.statvfs(self.path)
            self._free, self._read_at = st.f_bavail * st.f_frsize, now
        return self._free

    def check(self) -> None:
        """Raise 503 ``store_full`` while the free space is under the reserve."""
        free = self.free()
        if free < self.reserve:
            raise ApiError(503, "store_full", None,
                           f"the store's disk has {free / MIB:.1f} MiB free, under the {self.reserve / MIB:.1f} MiB "
                           "reserve kept for the work already accepted: nothing new is accepted until space is "
                           "freed; retry later")
