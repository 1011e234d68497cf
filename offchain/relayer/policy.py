"""When the relayer settles: the batch policy, apart from the batcher that carries it out.

A batch's transaction has a fixed cost (about 150,000 gas: the call, the batch record, the fee forwarding) shared by
its claims, and a claim's cost (about 19,000 gas) is shared by every request its channel served since the last
settlement. So the longer receipts wait, the less each request pays: about 200 gas per request when 100 claims each
cover 100 requests (bench/gas.py), tens of thousands when a batch holds one or two fresh receipts.

Waiting is safe as long as nothing urges settlement, and the batcher watches for what does: a payer's withdrawal
request (its credits leave the escrow after the thaw) and a session key's coming expiry (the escrow refuses an
expired key's vouchers) make a payer *urgent*, and its receipts are settled at once. Otherwise a batch is built when
it is full (``batch_size`` receipts) or when its oldest receipt has waited ``batch_age`` seconds, which an operator
sets from what the batch should save (the demo waits most of its run; production minutes to hours, always well
below the thaw period, the bound the withdrawal trigger relies on).

A batch whose simulation reverts as a whole (which settle_batch's per-claim skips should make impossible) is never
given up for a reason no claim causes: when the relayer is no facilitator (a wrong key, a facilitator rotated out by
the owner) the batcher stops, keeps every receipt pending and says why in /healthz until the account is a
facilitator again. A revert the relayer is authorised for is retried with the worker's backoff and, once it reverted
``reject_after`` times in a row for the same reason, the batch's channels are bisected (``culprits``) and only those
whose claims revert on their own are rejected; if no channel reverts alone, settlement blocks as above.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

REJECT_AFTER = 5  # consecutive simulation reverts with the same reason after which a batch is bisected


@dataclass(frozen=True)
class BatchPolicy:
    batch_size: int  # receipts that fill a batch
    batch_age: float  # the longest the oldest pending receipt waits when nothing urges settlement (s)
    reject_after: int = REJECT_AFTER  # consecutive same-reason simulation reverts after which a batch is rejected

    @classmethod
    def of(cls, settings: Any) -> BatchPolicy:
        """The policy of the relayer's settings (``batch_size``, ``batch_age``)."""
        return cls(batch_size=int(settings.batch_size), batch_age=float(settings.batch_age))

    def give_up(self, streak: RevertStreak) -> bool:
        """Whether a batch whose simulation reverted ``streak.count`` times in a row for ``streak.reason`` (the
        relayer being a facilitator) is bisected now, its reverting claims rejected, instead of simulated again."""
        return streak.count >= self.reject_after

    def reason(self, pending: int, oldest_age: float, urgent: bool) -> str | None:
        """Why a batch is due now (``urgent``, ``full``, ``age``), or None to keep waiting: ``pending`` receipts are
        waiting, the oldest for ``oldest_age`` seconds; ``urgent``: a payer's receipts must be settled now."""
        if pending <= 0:
            return None
        if urgent:
            return "urgent"
        if pending >= self.batch_size:
            return "full"
        if oldest_age >= self.batch_age:
            return "age"
        return None


@dataclass(frozen=True)
class RevertStreak:
    """Consecutive simulation reverts of the batch being built, all for ``reason`` (a new reason starts over)."""

    reason: str = ""
    count: int = 0

    def after(self, reason: str) -> RevertStreak:
        """The streak once the simulation reverted again, for ``reason``."""
        return RevertStreak(reason, self.count + 1 if reason == self.reason else 1)


def culprits(items: Sequence[T], reverts: Callable[[list[T]], bool]) -> list[T]:
    """The items that make ``reverts`` true on their own, found by bisection (``reverts(items)`` for halves, down
    to single items): about 2k log(n) calls for k culprits among n. Items that revert only together are not found
    (a caller that finds none must not blame anyone)."""
    items = list(items)
    if not items or not reverts(items):
        return []
    if len(items) == 1:
        return items
    mid = len(items) // 2
    return culprits(items[:mid], reverts) + culprits(items[mid:], reverts)
