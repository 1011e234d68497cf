"""The protocol's constants that off-chain code must agree with, in one place.

Each value mirrors a contract constant (named in its comment); ``tests/sdk/test_constants.py`` reads the deployed
contracts' public getters and the Vyper sources and fails when one drifts.
"""

from __future__ import annotations

# NodeStaking ------------------------------------------------------------------------------------------------------
MAX_FUTURE = 300  # NodeStaking.MAX_FUTURE: a receipt dated later than block.timestamp + this is invalid (slashable)
FUTURE_MARGIN = 240  # off-chain: a node dates receipts at most this far after the chain's clock (< MAX_FUTURE)
ROLE_NONE = 0  # NodeStaking._ROLE_NONE
ROLE_INFERENCE = 1  # NodeStaking.ROLE_INFERENCE
ROLE_VERIFIER = 2  # NodeStaking.ROLE_VERIFIER
ROLE_NAMES = {ROLE_NONE: "none", ROLE_INFERENCE: "inference", ROLE_VERIFIER: "verifier"}
# NodeStaking._KIND_*: the ``kind`` of a ``Slashed`` event (display forms replace "_" by " ")
SLASH_KINDS = {1: "equivocation", 2: "fraud", 3: "lazy_verifier", 4: "invalid_receipt", 5: "double_vote",
               6: "false_accuser"}


def slash_kind(kind: int) -> str:
    """A ``Slashed`` event's kind for people (``lazy verifier``)."""
    return SLASH_KINDS.get(int(kind), str(kind)).replace("_", " ")


# CreditEscrow -----------------------------------------------------------------------------------------------------
MAX_CLAIMS = 256  # CreditEscrow.MAX_CLAIMS: claims per settle_batch
AMOUNT_BITS = 96  # CreditEscrow._AMOUNT_BITS: BatchSettled packs ``address << 96 | amount``
AMOUNT_MASK = (1 << AMOUNT_BITS) - 1
SETTLED = 0  # CreditEscrow.SETTLED and the SKIP_* reasons of ClaimSkipped
SKIP_STALE = 1
SKIP_NODE_NOT_PAYABLE = 2
SKIP_BAD_SIGNATURE = 3
SKIP_INSUFFICIENT_BALANCE = 4
SKIP_ALLOWANCE_EXCEEDED = 5
SKIP_CHANNEL_HELD = 6
SKIP_REASONS = {
    SETTLED: "settled",
    SKIP_STALE: "stale: the channel already paid this total",
    SKIP_NODE_NOT_PAYABLE: "node not payable (unregistered or jailed)",
    SKIP_BAD_SIGNATURE: "bad voucher signature (not the payer's, or an expired session key's)",
    SKIP_INSUFFICIENT_BALANCE: "payer balance too low",
    SKIP_ALLOWANCE_EXCEEDED: "session key allowance exceeded",
    SKIP_CHANNEL_HELD: "channel held by a recent settlement through a proposal (see held_until)",
}

# RewardDistributor ------------------------------------------------------------------------------------------------
BPS = 10_000  # RewardDistributor.BPS (and NodeStaking._BPS): basis-point denominator
