"""The season distributor's Merkle tree: double-hashed ``(account, cumulative)`` leaves, sorted pairs.

The leaf is OpenZeppelin ``StandardMerkleTree``'s, ``keccak256(keccak256(abi.encode(account, cumulative)))``, and
inner nodes hash their two children in ascending order, as snekmate's ``merkle_proof_verification`` expects. The
tree is built over the leaf hashes sorted ascending, pairing neighbours level by level and carrying an odd last node
up unchanged, so the root depends only on the set of leaves.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_abi import encode
from eth_utils import keccak, to_checksum_address


def leaf_hash(account: str, cumulative: int) -> bytes:
    return keccak(keccak(encode(["address", "uint256"], [to_checksum_address(account), int(cumulative)])))


def _pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a <= b else keccak(b + a)


@dataclass(frozen=True)
class MerkleTree:
    """A tree of ``{account: cumulative}``; ``root`` is zero bytes for an empty tree."""

    levels: tuple[tuple[bytes, ...], ...]
    index: dict[str, int]

    @classmethod
    def build(cls, amounts: dict[str, int]) -> MerkleTree:
        hashed = sorted((leaf_hash(a, v), to_checksum_address(a)) for a, v in amounts.items())
        level = tuple(h for h, _ in hashed)
        index = {account: i for i, (_, account) in enumerate(hashed)}
        levels = [level]
        while len(level) > 1:
            nxt = [_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            level = tuple(nxt)
            levels.append(level)
        return cls(levels=tuple(levels), index=index)

    @property
    def root(self) -> bytes:
        return self.levels[-1][0] if self.levels[0] else b"\x00" * 32

    def proof(self, account: str) -> list[bytes]:
        i = self.index[to_checksum_address(account)]
        proof = []
        for level in self.levels[:-1]:
            sibling = i ^ 1
            if sibling < len(level):
                proof.append(level[sibling])
            i //= 2
        return proof


def verify(proof: list[bytes], root: bytes, leaf: bytes) -> bool:
    node = leaf
    for sibling in proof:
        node = _pair(node, sibling)
    return node == root
