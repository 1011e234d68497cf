# pragma version ~=0.4.3
# pragma optimize codesize
# SPDX-License-Identifier: AGPL-3.0-only
"""
@title OPG evidence: EIP-712 hashing and ECDSA recovery
@custom:contract-name Evidence
@license GNU Affero General Public License v3.0 only
@notice A stateless contract NodeStaking calls to hash the messages it
        judges (Receipts, Verdicts, Registrations of the domain "OPG
        Node Staking" "1", whose verifying contract is NodeStaking)
        and recover their ECDSA signers. It holds no state and no
        funds and trusts no caller: the caller passes its own domain
        separator, and every function is a view that answers the zero
        address for a malformed signature (non-canonical `s`, `v` not
        27/28, not 65 bytes), so the caller refuses it with its own
        revert reason. It exists only so that NodeStaking fits the
        24,576-byte code limit with room for its rules.
"""

from .interfaces import IEvidence

implements: IEvidence

from .modules import signatures


# @dev The most verdicts one proof carries.
_MAX_VERDICTS: constant(uint256) = 32


# @dev EIP-712 type hash of `Receipt`.
RECEIPT_TYPEHASH: public(constant(bytes32)) = keccak256(
    "Receipt(bytes32 requestId,address payer,address node,bytes32 modelId,bytes32 inputHash,bytes32 outputHash,uint256 amount,uint256 cumulative,uint64 timestamp)"
)


# @dev EIP-712 type hash of `Verdict`.
VERDICT_TYPEHASH: public(constant(bytes32)) = keccak256("Verdict(bytes32 receiptHash,bool valid)")


# @dev EIP-712 type hash of `Registration` (proof that an account holds its ECDSA key).
REGISTRATION_TYPEHASH: public(constant(bytes32)) = keccak256("Registration(address account)")


# ---------------------------------------------------------------------
# External views
# ---------------------------------------------------------------------


@external
@view
def receipt_hash(receipt: IEvidence.Receipt) -> bytes32:
    """
    @dev The EIP-712 struct hash of a Receipt.
    @param receipt The receipt.
    @return bytes32 Its struct hash.
    """
    return self._receipt_hash(receipt)


@external
@view
def receipt_signer(domain_separator: bytes32, receipt: IEvidence.Receipt, signature: Bytes[65]) -> (bytes32, address):
    """
    @dev A Receipt's struct hash and ECDSA signer.
    @param domain_separator The EIP-712 domain separator.
    @param receipt The receipt.
    @param signature The signature.
    @return (bytes32, address) The struct hash and the signer (zero if malformed).
    """
    receipt_hash: bytes32 = self._receipt_hash(receipt)
    return receipt_hash, signatures._try_recover(self._digest(domain_separator, receipt_hash), signature)


@external
@view
def verdict_signer(domain_separator: bytes32, receipt_hash: bytes32, valid: bool, signature: Bytes[65]) -> address:
    """
    @dev The ECDSA signer of `Verdict(receipt_hash, valid)`.
    @param domain_separator The EIP-712 domain separator.
    @param receipt_hash The receipt's struct hash.
    @param valid The verdict.
    @param signature The signature.
    @return address The signer (zero if malformed).
    """
    return signatures._try_recover(self._verdict_digest(domain_separator, receipt_hash, valid), signature)


@external
@view
def verdict_signers(
    domain_separator: bytes32,
    receipt_hash: bytes32,
    valid: bool,
    verdicts: DynArray[IEvidence.SignedVerdict, _MAX_VERDICTS],
) -> DynArray[address, _MAX_VERDICTS]:
    """
    @dev The ECDSA signer of each verdict's signature of `Verdict(receipt_hash, valid)`.
    @param domain_separator The EIP-712 domain separator.
    @param receipt_hash The receipt's struct hash.
    @param valid The verdict.
    @param verdicts The signed verdicts.
    @return DynArray The signers in order (zero where malformed).
    """
    digest: bytes32 = self._verdict_digest(domain_separator, receipt_hash, valid)
    signers: DynArray[address, _MAX_VERDICTS] = []
    for verdict: IEvidence.SignedVerdict in verdicts:
        signers.append(signatures._try_recover(digest, verdict.signature))
    return signers


@external
@view
def registration_signer(domain_separator: bytes32, account: address, signature: Bytes[65]) -> address:
    """
    @dev The ECDSA signer of `Registration(account)`.
    @param domain_separator The EIP-712 domain separator.
    @param account The registering account.
    @param signature The signature.
    @return address The signer (zero if malformed).
    """
    return signatures._try_recover(
        self._digest(domain_separator, keccak256(abi_encode(REGISTRATION_TYPEHASH, account))), signature
    )


@external
@view
def receipt_digest(domain_separator: bytes32, receipt: IEvidence.Receipt) -> bytes32:
    """
    @dev The EIP-712 digest a node signs for a Receipt.
    @param domain_separator The EIP-712 domain separator (NodeStaking's).
    @param receipt The receipt.
    @return bytes32 The digest.
    """
    return self._digest(domain_separator, self._receipt_hash(receipt))


@external
@view
def verdict_digest(domain_separator: bytes32, receipt_hash: bytes32, valid: bool) -> bytes32:
    """
    @dev The EIP-712 digest a verifier signs for a Verdict.
    @param domain_separator The EIP-712 domain separator (NodeStaking's).
    @param receipt_hash The receipt's struct hash.
    @param valid The verdict.
    @return bytes32 The digest.
    """
    return self._verdict_digest(domain_separator, receipt_hash, valid)


@external
@view
def registration_digest(domain_separator: bytes32, account: address) -> bytes32:
    """
    @dev The EIP-712 digest an account signs to register in NodeStaking.
    @param domain_separator The EIP-712 domain separator (NodeStaking's).
    @param account The account.
    @return bytes32 The digest.
    """
    return self._digest(domain_separator, keccak256(abi_encode(REGISTRATION_TYPEHASH, account)))


# ---------------------------------------------------------------------
# Internal helpers
# ---------------------------------------------------------------------


@internal
@pure
def _receipt_hash(r: IEvidence.Receipt) -> bytes32:
    """
    @dev The EIP-712 struct hash of a Receipt.
    @param r The receipt.
    @return bytes32 Its struct hash.
    """
    return keccak256(
        abi_encode(
            RECEIPT_TYPEHASH,
            r.request_id,
            r.payer,
            r.node,
            r.model_id,
            r.input_hash,
            r.output_hash,
            r.amount,
            r.cumulative,
            r.timestamp,
        )
    )


@internal
@pure
def _verdict_digest(domain_separator: bytes32, receipt_hash: bytes32, valid: bool) -> bytes32:
    """
    @dev The EIP-712 digest of a Verdict.
    @param domain_separator The EIP-712 domain separator.
    @param receipt_hash The receipt's struct hash.
    @param valid The verdict.
    @return bytes32 The digest.
    """
    return self._digest(domain_separator, keccak256(abi_encode(VERDICT_TYPEHASH, receipt_hash, valid)))


@internal
@pure
def _digest(domain_separator: bytes32, struct_hash: bytes32) -> bytes32:
    """
    @dev The EIP-712 digest `keccak256("\x19\x01" || domain || struct)`.
    @param domain_separator The EIP-712 domain separator.
    @param struct_hash The struct hash.
    @return bytes32 The digest.
    """
    return keccak256(concat(b"\x19\x01", domain_separator, struct_hash))
