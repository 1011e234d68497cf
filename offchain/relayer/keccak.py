"""The keccak implementation eth-hash uses in the relayer's processes."""

from __future__ import annotations


def use_fast_keccak() -> bool:
    """Give eth-hash the C keccak of safe-pysha3 (in the lock file) instead of pycryptodome's: the relayer hashes
    every receipt, voucher and checksummed address, and this is about ten times faster for the same digests."""
    try:
        from eth_hash.auto import keccak
        from eth_hash.backends import pysha3
    except ImportError:
        return False
    keccak.hasher, keccak.preimage = pysha3.keccak256, pysha3.preimage
    return True
