"""NodeStaking slashing: digests."""

from __future__ import annotations

from node_staking_kit import make_receipt, rhash


def test_receipt_hash_matches_offchain_struct_hash(staking, node, payer, chain):
    receipt = make_receipt(node, payer, chain)
    assert staking.receipt_hash(receipt.as_tuple()) == rhash(receipt)
