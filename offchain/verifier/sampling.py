"""Which receipts a verifier re-executes.

A receipt is sampled when ``keccak(secret || receipt_id) < rate * 2**256``, with ``secret`` derived from the verifier's
private key. The draw is deterministic (a restarted verifier samples the same receipts, and anyone holding the key can
audit it afterwards) but unpredictable to the node: without the verifier's key it cannot tell which receipts will be
checked, so it has to answer every request honestly. The node chooses receipt ids (request ids), yet grinding them
does not help either: each verifier's draw is independent of the others' and of the id's structure.
"""

from __future__ import annotations

from fractions import Fraction

from eth_utils import keccak

DOMAIN_TAG = b"OPG verifier sampling v1"
SPACE = 2**256


def sampling_secret(private_key: bytes | str) -> bytes:
    """The 32-byte sampling secret of a verifier key (never leaves the verifier)."""
    key = bytes.fromhex(private_key[2:] if private_key.startswith("0x") else private_key) \
        if isinstance(private_key, str) else bytes(private_key)
    return keccak(DOMAIN_TAG + key)


def threshold(rate: float) -> int:
    """``floor(rate * 2**256)`` exactly (rate 1 samples everything, 0 nothing)."""
    if not 0 <= rate <= 1:
        raise ValueError("sampling rate must be within 0..1")
    return int(Fraction(rate) * SPACE)


def draw(secret: bytes, receipt_id: str | bytes) -> int:
    rid = bytes.fromhex(receipt_id[2:]) if isinstance(receipt_id, str) else bytes(receipt_id)
    return int.from_bytes(keccak(secret + rid), "big")


def is_sampled(secret: bytes, receipt_id: str | bytes, rate: float) -> bool:
    return draw(secret, receipt_id) < threshold(rate)


class Sampler:
    """``sampler(receipt_id) -> bool`` for one key and rate."""

    def __init__(self, private_key: bytes | str, rate: float):
        self.secret = sampling_secret(private_key)
        self.rate = rate
        self.limit = threshold(rate)

    def __call__(self, receipt_id: str | bytes) -> bool:
        return draw(self.secret, receipt_id) < self.limit
