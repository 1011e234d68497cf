# pragma version ~=0.4.3
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title Non-reverting signature checks (ECDSA + ERC-1271)
@custom:contract-name signatures
@license GNU Affero General Public License v3.0 only
@notice snekmate's `ecdsa` and `signature_checker` revert on a
        malformed signature and accept at most 65 bytes. Batch
        settlement must *skip* a claim with a bad signature instead
        of reverting the whole batch, and EIP-3009's bytes overload
        must forward longer smart-wallet signatures, so this module
        offers the same checks as booleans:
        - ECDSA signatures must be exactly 65 bytes `r || s || v`,
          `v` in {27, 28} and `s` in the lower half order
          (EIP-2: no malleable twins);
        - contract signers are asked through ERC-1271
          `isValidSignature` with a bounded gas stipend, so a
          griefing wallet cannot burn a whole batch's gas.
"""


# @dev The `s` upper bound of EIP-2 (secp256k1n / 2).
_MALLEABILITY_THRESHOLD: constant(uint256) = (
    57_896_044_618_658_097_711_785_492_504_343_953_926_418_782_139_537_452_191_302_581_570_759_080_747_168
)


# @dev The ERC-1271 magic value `isValidSignature(bytes32,bytes)`.
_ERC1271_MAGIC: constant(bytes4) = 0x1626BA7E


# @dev The gas an ERC-1271 wallet may spend answering.
_ERC1271_GAS: constant(uint256) = 60_000


# @dev The longest signature accepted anywhere in the protocol.
MAX_SIGNATURE_LENGTH: constant(uint256) = 256


@deploy
@payable
def __init__():
    """
    @dev Nothing to initialise.
    """
    pass


@internal
@pure
def _try_recover(hash: bytes32, signature: Bytes[MAX_SIGNATURE_LENGTH]) -> address:
    """
    @dev Recovers the ECDSA signer of `hash`, or returns the zero
         address if `signature` is not a canonical 65-byte signature.
    @param hash The 32-byte digest that was signed.
    @param signature The signature bytes `r || s || v`.
    @return address The signer, or the zero address.
    """
    if len(signature) != 65:
        return empty(address)
    return self._try_recover_vrs(
        hash,
        convert(slice(signature, 64, 1), uint256),
        extract32(signature, 0, output_type=uint256),
        extract32(signature, 32, output_type=uint256),
    )


@internal
@pure
def _try_recover_vrs(hash: bytes32, v: uint256, r: uint256, s: uint256) -> address:
    """
    @dev Recovers the ECDSA signer of `hash` from `v`, `r`, `s`,
         or returns the zero address for a non-canonical signature.
    @param hash The 32-byte digest that was signed.
    @param v The recovery id, 27 or 28.
    @param r The signature's `r` value.
    @param s The signature's `s` value (lower half order only).
    @return address The signer, or the zero address.
    """
    if s > _MALLEABILITY_THRESHOLD or (v != 27 and v != 28):
        return empty(address)
    return ecrecover(hash, v, r, s)


@internal
@view
def _is_valid_erc1271(signer: address, hash: bytes32, signature: Bytes[MAX_SIGNATURE_LENGTH]) -> bool:
    """
    @dev Asks the contract `signer` whether `signature` over `hash`
         is valid (ERC-1271), with a bounded gas stipend.
    @param signer The wallet contract.
    @param hash The 32-byte digest.
    @param signature The wallet-specific signature bytes.
    @return bool True only for the exact magic value.
    """
    success: bool = False
    response: Bytes[32] = b""
    success, response = raw_call(
        signer,
        abi_encode(hash, signature, method_id=_ERC1271_MAGIC),
        max_outsize=32,
        gas=_ERC1271_GAS,
        is_static_call=True,
        revert_on_failure=False,
    )
    return success and len(response) == 32 and convert(response, bytes32) == convert(_ERC1271_MAGIC, bytes32)


@internal
@view
def _is_valid_signature_now(signer: address, hash: bytes32, signature: Bytes[MAX_SIGNATURE_LENGTH]) -> bool:
    """
    @dev True if `signature` over `hash` is `signer`'s: an ECDSA
         signature for an account without code, ERC-1271 otherwise.
    @param signer The claimed signer.
    @param hash The 32-byte digest.
    @param signature The signature bytes.
    @return bool Whether the signature is valid now.
    """
    if signer == empty(address):
        return False
    if signer.is_contract:
        return self._is_valid_erc1271(signer, hash, signature)
    return self._try_recover(hash, signature) == signer
