"""The verifier's event hub (``daemon.events.Signal``): the steps of a verdict, announced where they happen, so a
test's fault plug-in (``daemon.plugins``, ``OPG_VERIFIER_PLUGINS``) can kill the process at each one: verdict signed
(before it is stored), verdict posted and withholding report sent (the relayer took it; not yet recorded), flag
mined (not yet recorded), and any transaction recorded in the journal (before its broadcast)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..daemon.events import Signal
from ..sdk.tx import SentTx


@dataclass
class VerifierEvents:
    """Every step a verifier announces (the receipt id of the check, unless said otherwise)."""

    # A Verdict was signed; it is not stored yet (nothing has left the process).
    verdict_signed: Signal[str] = field(default_factory=lambda: Signal("verdict_signed"))
    # The relayer answered 200 to the verdict; the store still says "to send".
    verdict_posted: Signal[str] = field(default_factory=lambda: Signal("verdict_posted"))
    # The relayer answered 200 to the withholding report; the store still says "to send".
    report_sent: Signal[str] = field(default_factory=lambda: Signal("report_sent"))
    # This verifier's flag transaction was mined; the store still says "pending".
    flag_sent: Signal[str] = field(default_factory=lambda: Signal("flag_sent"))
    # A transaction (flag, heartbeat) signed and recorded in the journal, about to be broadcast.
    tx_recorded: Signal[SentTx] = field(default_factory=lambda: Signal("tx_recorded"))
