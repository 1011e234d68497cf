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
KIND_EQUIVOCATION = 1
KIND_FRAUD = 2
KIND_LAZY_VERIFIER = 3
KIND_INVALID_RECEIPT = 4
KIND_DOUBLE_VOTE = 5
KIND_FALSE_ACCUSER = 6
SLASH_KINDS = {KIND_EQUIVOCATION: "equivocation", KIND_FRAUD: "fraud", KIND_LAZY_VERIFIER: "lazy_verifier",
               KIND_INVALID_RECEIPT: "invalid_receipt", KIND_DOUBLE_VOTE: "double_vote",
               KIND_FALSE_ACCUSER: "false_accuser"}
NODE_OFFENCE_KINDS = (KIND_EQUIVOCATION, KIND_FRAUD, KIND_INVALID_RECEIPT)  # prove a node's work dishonest
MAX_ENDPOINT_LENGTH = 256  # NodeStaking._MAX_ENDPOINT_LENGTH


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

# Governance (modules/timelock.vy) ---------------------------------------------------------------------------------
MIN_GOVERNANCE_DELAY = 7 * 86_400  # timelock.MIN_DELAY: the least delay of a parameter change off the devnet

# RewardDistributor ------------------------------------------------------------------------------------------------
BPS = 10_000  # RewardDistributor.BPS (and NodeStaking._BPS): basis-point denominator
