"""The in-memory view of every (payer, node) channel the relayer knows.

Only the store's writer thread changes it, always in the same transaction that changes the database, so it mirrors
what is committed; request handlers read it (plain ints under the GIL) to answer ``/verify`` without a query.
Per-node running totals (what the node's channels may still be paid, what they were paid) follow every change of a
channel's ``charged`` or ``settled``, so ``/verify`` never walks a node's payers.
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
    signer: str = ""  # who signed the best voucher: the payer or a session key ("" = the payer)
    payer_cap: int = 0  # best voucher signed by the payer itself (settled first when the best is session-signed)
    payer_signature: str = ""
    settled: int = 0  # what the channel has been paid on-chain, as far as the relayer knows
    pending: int = 0  # receipts accepted and neither settled nor rejected yet

    @property
    def outstanding(self) -> int:
        """Charged but not (known to be) paid on-chain."""
        return max(0, self.charged - self.settled)

    def __setattr__(self, name: str, value: object) -> None:
        totals = self.__dict__.get("_totals") if name in ("charged", "settled") else None
        if totals is None:
            object.__setattr__(self, name, value)
            return
        open_before, settled_before = self.outstanding, self.settled
        object.__setattr__(self, name, value)
        totals.moved(self.node, self.outstanding - open_before, self.settled - settled_before)


class Ledger:
    def __init__(self) -> None:
        self.channels: dict[tuple[str, str], Channel] = {}
        self.by_payer: dict[str, set[str]] = defaultdict(set)
        self.by_node: dict[str, set[str]] = defaultdict(set)  # node -> its payers (for its pay capacity)
        self.node_open: dict[str, int] = defaultdict(int)  # node -> sum of its channels' outstanding
        self.node_settled: dict[str, int] = defaultdict(int)  # node -> sum of its channels' settled
        self.pending = 0

    def moved(self, node: str, open_delta: int, settled_delta: int) -> None:
        """A channel of ``node`` changed its outstanding / settled amounts by these deltas."""
        self.node_open[node] += open_delta
        self.node_settled[node] += settled_delta

    def get(self, payer: str, node: str) -> Channel | None:
        return self.channels.get((payer, node))

    def channel(self, payer: str, node: str) -> Channel:
        found = self.channels.get((payer, node))
        if found is None:
            found = self.channels[(payer, node)] = Channel(payer, node)
            found.__dict__["_totals"] = self  # from now on its charged/settled changes move the node's totals
            self.by_payer[payer].add(node)
            self.by_node[node].add(payer)
        return found

    def outstanding(self, payer: str) -> int:
        """Accepted-but-unsettled charges across all the payer's channels."""
        return sum(self.channels[(payer, node)].outstanding for node in list(self.by_payer.get(payer, ())))

    def reserved(self, payer: str, exclude_node: str | None = None) -> int:
        """What the payer's accepted vouchers still let nodes charge: sum of (cap - paid) over its channels."""
        total = 0
        for node in list(self.by_payer.get(payer, ())):
            if node != exclude_node:
                ch = self.channels[(payer, node)]
                total += max(0, ch.cap - ch.settled)
        return total

    def key_reserved(self, payer: str, key: str, exclude_node: str | None = None) -> int:
        """What a session key's vouchers still let nodes charge to its allowance, over all the payer's channels
        (above what a payer-signed voucher of the channel covers)."""
        total = 0
        for node in list(self.by_payer.get(payer, ())):
            ch = self.channels[(payer, node)]
            if node != exclude_node and ch.signer and ch.signer.lower() == key.lower():
                total += max(0, ch.cap - max(ch.settled, ch.payer_cap))
        return total

    def add_pending(self, payer: str, node: str, count: int) -> None:
        self.channel(payer, node).pending += count
        self.pending += count
