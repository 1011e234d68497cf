"""The relayer's settlement rules as plain functions (no SQL, no I/O): how an accepted receipt moves its channel's
state, and what a claim's on-chain outcome makes of the claim's receipts and of the channel's settled amount. The
store's units of work (``store.Store.job_*``) apply them and write the results through the repositories."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..sdk.constants import SKIP_REASONS


@dataclass(frozen=True)
class ChannelState:
    """What the relayer keeps of a (payer, node) channel (the ``channels`` row and the ledger's mirror of it)."""

    payer: str
    node: str
    charged: int = 0  # highest cumulative of an accepted receipt
    cap: int = 0  # best voucher's maxCumulative
    voucher_signature: str = ""
    settled: int = 0
    signer: str = ""  # the best voucher's signer ("" = the payer)
    payer_cap: int = 0  # best voucher signed by the payer itself
    payer_signature: str = ""


@dataclass(frozen=True)
class ClaimResult:
    """What happened to one claim of a batch: outcome as CreditEscrow numbers it."""

    payer: str
    node: str
    outcome: int
    total: int
    spent_after: int | None = None


@dataclass(frozen=True)
class Resolution:
    """A claim's receipts' fate: status and reason for all of them, ``release_above`` (receipts whose cumulative
    exceeds it go back to the queue instead), whether the batch keeps them, and the channel's new settled amount."""

    status: str  # settled | rejected
    reason: str | None
    in_batch: bool
    release_above: int | None
    settled: int


def after_receipt(ch: ChannelState, cumulative: int, max_cumulative: int, voucher_signature: str,
                  voucher_signer: str) -> ChannelState:
    """The channel after accepting a receipt: charged is the highest cumulative; the best voucher is the highest
    maxCumulative (a payer-signed one replaces a session-signed one of the same cap); the payer's own best voucher is
    tracked apart (settled first when the best is session-signed)."""
    by_payer = not voucher_signer or voucher_signer == ch.payer
    charged, cap, sig, signer = max(ch.charged, cumulative), ch.cap, ch.voucher_signature, ch.signer
    if max_cumulative > cap or (max_cumulative == cap and by_payer and signer):
        cap, sig, signer = max_cumulative, voucher_signature, "" if by_payer else voucher_signer
    payer_cap, payer_sig = ch.payer_cap, ch.payer_signature
    if by_payer and max_cumulative > payer_cap:
        payer_cap, payer_sig = max_cumulative, voucher_signature
    return replace(ch, charged=charged, cap=cap, voucher_signature=sig, signer=signer, payer_cap=payer_cap,
                   payer_signature=payer_sig)


def resolve_claim(res: ClaimResult, ch: ChannelState) -> Resolution:
    """Outcome 0 pays the claim (its receipts are settled by this batch), 1 finds it paid already (settled, not by
    this batch), anything else rejects the receipts with the escrow's skip reason. A paid session-signed channel
    paid only up to the claim's total (the payer-signed part) releases the receipts above it to be claimed again."""
    if res.outcome in (0, 1):
        status, reason = "settled", None if res.outcome == 0 else "already settled on-chain"
    else:
        status, reason = "rejected", SKIP_REASONS.get(res.outcome, f"skipped ({res.outcome})")
    release = res.total if res.outcome == 0 and ch.signer and res.total < ch.charged else None
    settled = ch.settled
    if res.outcome == 0:
        settled = max(settled, res.total)
    if res.spent_after is not None:
        settled = max(settled, res.spent_after)
    return Resolution(status, reason, res.outcome == 0, release, settled)
