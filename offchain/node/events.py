"""The node's event hub (``daemon.events.Signal``): the steps of a paid request's receipt, announced where they
happen, so a test's fault plug-in (``daemon.plugins``, ``OPG_NODE_PLUGINS``) can kill the process at each one:
receipt committed (before its answer leaves), answer sent, receipt handed over (before the outbox records it),
an ``exact`` transfer made by the relayer (before the store records it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..daemon.events import Signal


@dataclass
class NodeEvents:
    """Every step a node announces."""

    # A signed receipt (its id) was committed to the store, in the outbox's queue; its answer has not left yet.
    receipt_stored: Signal[str] = field(default_factory=lambda: Signal("receipt_stored"))
    # A paid answer's last byte was handed to the HTTP server (its payment result, PAYMENT-RESPONSE).
    answered: Signal[dict] = field(default_factory=lambda: Signal("answered"))
    # The relayer took these receipts (ids); the outbox has not yet recorded them as delivered.
    handed_over: Signal[list[str]] = field(default_factory=lambda: Signal("handed_over"))
    # The relayer made an exact payment's transfer (its authorization, "payer:nonce"); the store still says claimed.
    exact_settled: Signal[str] = field(default_factory=lambda: Signal("exact_settled"))
