"""Plain helpers of the CreditEscrow tests: vouchers and claims, the packed batch log, governance calls."""

from __future__ import annotations

from eth_utils import keccak

from offchain.messages import (
    Claim,
    Domain,
    Voucher,
    merkle_root,
)

OPG = 10**18


DEPOSIT = 1_000 * OPG


DAY = 86_400


ZERO = "0x0000000000000000000000000000000000000000"


LOW_96 = 2**96 - 1


(
    SETTLED,
    SKIP_STALE,
    SKIP_NODE_NOT_PAYABLE,
    SKIP_BAD_SIGNATURE,
    SKIP_INSUFFICIENT_BALANCE,
    SKIP_ALLOWANCE_EXCEEDED,
) = range(6)


ROOT = merkle_root([keccak(text=f"receipt-{i}") for i in range(3)])


def sign_voucher(key, domain: Domain, payer: str, node: str, max_cumulative: int) -> str:
    return Voucher(payer=payer, node=node, max_cumulative=max_cumulative).sign_with(key, domain)


def claim(payer: str, node: str, max_cumulative: int, signature: str, total: int) -> tuple:
    return Claim(payer=payer, node=node, max_cumulative=max_cumulative, signature=signature, total=total).as_tuple()


def signed_claim(key, domain: Domain, payer: str, node: str, max_cumulative: int, total: int | None = None) -> tuple:
    sig = sign_voucher(key, domain, payer, node, max_cumulative)
    return claim(payer, node, max_cumulative, sig, max_cumulative if total is None else total)


def outcomes(escrow, tx) -> list[int]:
    """Each claim's outcome, as `settle_batch` returned it."""
    return list(tx.return_value)


def batch_log(escrow, tx):
    """The batch's one BatchSettled log, decoded: (amount, [(payer, delta)], [(node, settled claims)])."""
    [event] = escrow.BatchSettled.from_receipt(tx)
    settled = [(address_of(word >> 96), word & LOW_96) for word in event.settled]
    runs = [(address_of(word >> 96), word & LOW_96) for word in event.runs]
    return event.amount, settled, runs


def address_of(value: int) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(value.to_bytes(20, "big"))
