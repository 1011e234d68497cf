"""The NodeStaking views v2 cut for size and v3 brings back (the Evidence split made room; the EIP-712 digests are
Evidence views in NodeStaking's domain), and the new ones."""

from __future__ import annotations

from eth_utils import keccak
from node_staking_kit import OPG, VERIFIER, make_receipt, relive

from offchain.messages import Registration, Verdict


def staking_domain_separator(staking) -> bytes:
    """NodeStaking's EIP-712 domain separator, from its ERC-5267 ``eip712Domain``."""
    _, name, version, chain_id, contract, _, _ = staking.eip712Domain()
    return keccak(
        keccak(text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
        + keccak(text=name)
        + keccak(text=version)
        + chain_id.to_bytes(32, "big")
        + bytes.fromhex(contract[2:]).rjust(32, b"\0")
    )


def test_digest_views_match_the_signed_messages(staking, project, node, payer, chain, staking_domain):
    # The digests live in the Evidence contract (NodeStaking's code room), in NodeStaking's domain.
    evidence, separator = project.Evidence.at(staking.evidence()), staking_domain_separator(staking)
    receipt = make_receipt(node, payer, chain)
    assert bytes(evidence.receipt_digest(separator, receipt.as_tuple())) == receipt.digest(staking_domain)
    assert bytes(staking.receipt_hash(receipt.as_tuple())) == receipt.struct_hash()
    verdict = Verdict(receipt_hash="0x" + receipt.struct_hash().hex(), valid=False)
    assert bytes(evidence.verdict_digest(separator, receipt.struct_hash(), False)) == verdict.digest(staking_domain)
    registration = Registration(account=node.address)
    assert bytes(evidence.registration_digest(separator, node.address)) == registration.digest(staking_domain)


def test_evidence_contract_recovers_the_signers(staking, project, node, payer, chain, staking_domain):
    evidence = project.Evidence.at(staking.evidence())
    receipt = make_receipt(node, payer, chain)
    signature = bytes.fromhex(receipt.sign_with(node.key, staking_domain)[2:])
    separator = staking_domain_separator(staking)
    struct_hash, signer = evidence.receipt_signer(separator, receipt.as_tuple(), signature)
    assert bytes(struct_hash) == receipt.struct_hash() and signer == node.address
    # A malformed signature recovers no one (the caller refuses it with its own reason).
    assert evidence.receipt_signer(separator, receipt.as_tuple(), signature[:64])[1] == "0x" + "00" * 20


def test_is_active_warm_stake_and_total_vote_weight(staking, distributor, register, make_actor, chain, params):
    verifier = make_actor()
    register(verifier, VERIFIER, 700 * OPG, "http://v.invalid")
    assert staking.is_active(verifier.address)
    assert staking.warm_stake(verifier.address) == 0  # fresh until the warm-up
    chain.pending_timestamp += params.warmup
    chain.mine()
    assert staking.warm_stake(verifier.address) == 700 * OPG
    relive(chain, staking, distributor, [verifier])
    assert staking.vote_weight(verifier.address) == 700 * OPG
    assert staking.total_vote_weight() == staking.total_weight_in(distributor.epoch_now()) >= 700 * OPG
    staking.request_unbond(700 * OPG, sender=verifier.account)
    assert not staking.is_active(verifier.address)
