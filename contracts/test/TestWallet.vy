# pragma version ~=0.4.3
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title Minimal ERC-1271 smart wallet (tests and devnet only)
@custom:contract-name TestWallet
@license GNU Affero General Public License v3.0 only
@notice A contract account owned by one EOA: it accepts the owner's
        ECDSA signatures through ERC-1271 `isValidSignature` and lets
        the owner make arbitrary calls (approve, deposit, ...). The
        owner can make it refuse every signature, to test wallets
        that change their mind.
"""

from snekmate.utils import ecdsa


# @dev The EOA whose signatures this wallet accepts.
owner: public(address)


# @dev While set, every signature is refused.
refuse_all: public(bool)


# @dev The ERC-1271 magic value.
_MAGIC: constant(bytes4) = 0x1626BA7E


@deploy
def __init__(owner_: address):
    """
    @dev Sets the owner.
    @param owner_ The owning EOA.
    """
    self.owner = owner_


@external
@view
def isValidSignature(hash: bytes32, signature: Bytes[65]) -> bytes4:
    """
    @dev ERC-1271: the magic value if the owner signed `hash`.
    @param hash The digest.
    @param signature The owner's 65-byte ECDSA signature.
    @return bytes4 The magic value or 0xffffffff.
    """
    if not self.refuse_all and ecdsa._recover_sig(hash, signature) == self.owner:
        return _MAGIC
    return 0xFFFFFFFF


@external
def set_refuse_all(refuse: bool):
    """
    @dev Makes the wallet refuse (or accept again) every signature.
    @param refuse Whether to refuse.
    """
    assert msg.sender == self.owner, "TestWallet: caller is not the owner"
    self.refuse_all = refuse


@external
def execute(target: address, data: Bytes[1024]) -> Bytes[256]:
    """
    @dev Calls `target` with `data` on the owner's behalf.
    @param target The contract called.
    @param data The call data.
    @return Bytes The call's return data.
    """
    assert msg.sender == self.owner, "TestWallet: caller is not the owner"
    return raw_call(target, data, max_outsize=256)
