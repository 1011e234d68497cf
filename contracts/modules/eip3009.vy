# pragma version ~=0.4.3
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title EIP-3009 Transfer With Authorization
@custom:contract-name eip3009
@license GNU Affero General Public License v3.0 only
@notice Gasless transfers for an ERC-20 built on snekmate's `erc20`:
        https://eips.ethereum.org/EIPS/eip-3009.
        - `transferWithAuthorization` (v, r, s), anyone submits;
        - `transferWithAuthorization` (bytes signature) through the
          host contract's `__default__`, which calls
          `_transfer_with_authorization_calldata` (Vyper has no
          overloading by type);
        - `receiveWithAuthorization`, only the payee submits, so a
          front-runner cannot steal a deposit authorisation;
        - `cancelAuthorization`, `authorizationState`.
        Nonces are random 32-byte values, not sequential. EOA and
        ERC-1271 signers are both accepted (like USDC v2.2). The
        EIP-712 domain is the one of the host `erc20`.
"""

from snekmate.tokens import erc20

uses: erc20

from . import signatures


# @dev The EIP-712 type hash of `TransferWithAuthorization`.
TRANSFER_WITH_AUTHORIZATION_TYPEHASH: public(constant(bytes32)) = keccak256(
    "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)


# @dev The EIP-712 type hash of `ReceiveWithAuthorization`.
RECEIVE_WITH_AUTHORIZATION_TYPEHASH: public(constant(bytes32)) = keccak256(
    "ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)


# @dev The EIP-712 type hash of `CancelAuthorization`.
CANCEL_AUTHORIZATION_TYPEHASH: public(constant(bytes32)) = keccak256(
    "CancelAuthorization(address authorizer,bytes32 nonce)"
)


# @dev The 4-byte selector of the bytes-signature overload
# `transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)`.
TRANSFER_WITH_AUTHORIZATION_BYTES_SELECTOR: public(constant(bytes4)) = 0xCF092995


# @dev Whether an authorizer's nonce was used or canceled.
authorizationState: public(HashMap[address, HashMap[bytes32, bool]])


# @dev Emitted when an authorisation's nonce is used.
event AuthorizationUsed:
    authorizer: indexed(address)
    nonce: indexed(bytes32)


# @dev Emitted when an authorisation's nonce is canceled.
event AuthorizationCanceled:
    authorizer: indexed(address)
    nonce: indexed(bytes32)


@deploy
@payable
def __init__():
    """
    @dev Nothing to initialise; the domain is the `erc20`'s.
    """
    pass


@external
def transferWithAuthorization(
    owner: address,
    to: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @dev Executes a transfer `owner` signed off-chain.
    @notice Anyone may submit it. The signature must be `owner`'s
            over `TransferWithAuthorization`, within its validity
            window, with an unused nonce.
    @param owner The payer (EIP-3009 `from`).
    @param to The payee.
    @param amount The token amount.
    @param valid_after The authorisation is valid strictly after this time.
    @param valid_before The authorisation is valid strictly before this time.
    @param nonce The unique 32-byte nonce.
    @param v The secp256k1 recovery id.
    @param r The signature's `r`.
    @param s The signature's `s`.
    """
    self._use_authorization(
        TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
        owner,
        to,
        amount,
        valid_after,
        valid_before,
        nonce,
        concat(r, s, convert(v, bytes1)),
    )


@external
def receiveWithAuthorization(
    owner: address,
    to: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    v: uint8,
    r: bytes32,
    s: bytes32,
):
    """
    @dev Executes a transfer `owner` signed off-chain, submitted
         by the payee itself.
    @notice The caller must be `to`; this stops a front-runner
            from spending an authorisation meant for a contract
            (e.g. a deposit into the credit escrow).
    @param owner The payer (EIP-3009 `from`).
    @param to The payee, who must be the caller.
    @param amount The token amount.
    @param valid_after The authorisation is valid strictly after this time.
    @param valid_before The authorisation is valid strictly before this time.
    @param nonce The unique 32-byte nonce.
    @param v The secp256k1 recovery id.
    @param r The signature's `r`.
    @param s The signature's `s`.
    """
    assert to == msg.sender, "eip3009: caller must be the payee"
    self._use_authorization(
        RECEIVE_WITH_AUTHORIZATION_TYPEHASH,
        owner,
        to,
        amount,
        valid_after,
        valid_before,
        nonce,
        concat(r, s, convert(v, bytes1)),
    )


@external
def cancelAuthorization(authorizer: address, nonce: bytes32, v: uint8, r: bytes32, s: bytes32):
    """
    @dev Cancels an unused authorisation of `authorizer`.
    @param authorizer The authoriser whose nonce is canceled.
    @param nonce The nonce to cancel.
    @param v The secp256k1 recovery id.
    @param r The signature's `r`.
    @param s The signature's `s`.
    """
    assert not self.authorizationState[authorizer][nonce], "eip3009: authorization is used or canceled"
    digest: bytes32 = erc20.eip712_domain_separator._hash_typed_data_v4(
        keccak256(abi_encode(CANCEL_AUTHORIZATION_TYPEHASH, authorizer, nonce))
    )
    assert signatures._is_valid_signature_now(
        authorizer, digest, concat(r, s, convert(v, bytes1))
    ), "eip3009: invalid signature"
    self.authorizationState[authorizer][nonce] = True
    log AuthorizationCanceled(authorizer=authorizer, nonce=nonce)


@internal
def _transfer_with_authorization_calldata():
    """
    @dev Decodes and executes the bytes-signature overload of
         `transferWithAuthorization` from `msg.data`. The host
         contract calls it from `__default__` once it has matched
         the selector. Vyper can only slice `msg.data` by a
         constant length, so standard ABI encodings of signatures
         up to 256 bytes are matched by size.
    """
    size: uint256 = len(msg.data) - 4
    data: Bytes[512] = b""
    if size == 288:
        data = slice(msg.data, 4, 288)
    elif size == 320:
        data = slice(msg.data, 4, 320)
    elif size == 352:
        data = slice(msg.data, 4, 352)
    elif size == 384:
        data = slice(msg.data, 4, 384)
    elif size == 416:
        data = slice(msg.data, 4, 416)
    elif size == 448:
        data = slice(msg.data, 4, 448)
    elif size == 480:
        data = slice(msg.data, 4, 480)
    elif size == 512:
        data = slice(msg.data, 4, 512)
    else:
        raise "eip3009: unsupported signature length"
    owner: address = empty(address)
    to: address = empty(address)
    amount: uint256 = 0
    valid_after: uint256 = 0
    valid_before: uint256 = 0
    nonce: bytes32 = empty(bytes32)
    signature: Bytes[signatures.MAX_SIGNATURE_LENGTH] = b""
    owner, to, amount, valid_after, valid_before, nonce, signature = abi_decode(
        data, (address, address, uint256, uint256, uint256, bytes32, Bytes[signatures.MAX_SIGNATURE_LENGTH])
    )
    self._use_authorization(
        TRANSFER_WITH_AUTHORIZATION_TYPEHASH, owner, to, amount, valid_after, valid_before, nonce, signature
    )


@internal
def _use_authorization(
    typehash: bytes32,
    owner: address,
    to: address,
    amount: uint256,
    valid_after: uint256,
    valid_before: uint256,
    nonce: bytes32,
    signature: Bytes[signatures.MAX_SIGNATURE_LENGTH],
):
    """
    @dev Checks an authorisation, marks its nonce used and moves
         the tokens.
    """
    assert block.timestamp > valid_after, "eip3009: authorization is not yet valid"
    assert block.timestamp < valid_before, "eip3009: authorization is expired"
    assert not self.authorizationState[owner][nonce], "eip3009: authorization is used or canceled"
    digest: bytes32 = erc20.eip712_domain_separator._hash_typed_data_v4(
        keccak256(abi_encode(typehash, owner, to, amount, valid_after, valid_before, nonce))
    )
    assert signatures._is_valid_signature_now(owner, digest, signature), "eip3009: invalid signature"
    self.authorizationState[owner][nonce] = True
    log AuthorizationUsed(authorizer=owner, nonce=nonce)
    erc20._transfer(owner, to, amount)
