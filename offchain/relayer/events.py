"""The relayer's event hub: small typed subscriptions (``daemon.events.Signal``) through which components learn what
another saw, instead of reaching into each other (the batcher does not clear /verify's caches; it announces a
withdrawal request, and the credit scheme, subscribed, drops what it cached for that payer)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..daemon.events import Signal
from ..sdk.tx import SentTx


@dataclass
class Events:
    """Every event one relayer component announces to the others."""

    # A payer's on-chain funds moved in a way the relayer did not cause (a WithdrawalRequested, a BatchProposed
    # claiming from it): /verify re-reads its balance (credit.CreditScheme subscribes).
    payer_funds_changed: Signal[str] = field(default_factory=lambda: Signal("payer_funds_changed"))
    # A slash of this node confirmed: /verify and /settle re-read its status (credit).
    node_slashed: Signal[str] = field(default_factory=lambda: Signal("node_slashed"))
    # A new verdict on this receipt hash was stored: the slasher counts its quorum again at its next tick.
    verdict_stored: Signal[str] = field(default_factory=lambda: Signal("verdict_stored"))
    # A transaction signed and recorded (write-ahead, kind batch | exact | slash | deposit), about to be broadcast
    # (test fault plug-ins subscribe here: daemon.plugins).
    tx_recorded: Signal[SentTx] = field(default_factory=lambda: Signal("tx_recorded"))
