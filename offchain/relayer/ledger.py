"""The in-memory view of every (payer, node) channel the relayer knows.

Only the store's writer thread changes it, always in the same transaction that changes the database, so it mirrors
what is committed; request handlers read it (plain ints under the GIL) to answer ``/verify`` without a query.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass


@dataclass
class Channel:
    payer: str
    node: str
    charged: int = 0  # highest cumulative of an accepted receipt
    cap: int = 0  # best voucher: the highest maxCumulative seen
    voucher_signature: str = ""
    settled: int = 0  # what the channel has been paid on-chain, as far as the relayer knows
    pending: int = 0  # receipts accepted and neither settled nor rejected yet

    @property
    def outstanding(self) -> int:
        """Charged but not (known to be) paid on-chain."""
        return max(0, self.charged - self.settled)


class Ledger:
    def __init__(self) -> None:
        self.channels: dict[tuple[str, str], Channel] = {}
        self.by_payer: dict[str, set[str]] = defaultdict(set)
        self.pending = 0

    def get(self, payer: str, node: str) -> Channel | None:
        return self.channels.get((payer, node))

    def channel(self, payer: str, node: str) -> Channel:
        found = self.channels.get((payer, node))
        if found is None:
            found = self.channels[(payer, node)] = Channel(payer, node)
            self.by_payer[payer].add(node)
        return found

    def outstanding(self, payer: str) -> int:
        """Accepted-but-unsettled charges across all the payer's channels."""
        return sum(self.channels[(payer, node)].outstanding for node in list(self.by_payer.get(payer, ())))

    def add_pending(self, payer: str, node: str, count: int) -> None:
        self.channel(payer, node).pending += count
        self.pending += count
