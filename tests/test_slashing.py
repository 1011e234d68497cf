"""NodeStaking slashing: equivocation, fraud (verifier quorum), lazy verifiers, freshness, replay, bounds.

Every signature is made with eth-account through the ``offchain.messages`` models.
"""

from __future__ import annotations

import ape
import pytest
from eth_abi import encode
from eth_utils import keccak

from offchain.ape_deploy import deploy_system
from offchain.messages import Claim, Domain, Receipt, Verdict, Voucher

OPG = 10**18
BPS = 10_000
INFERENCE = 1
VERIFIER = 2
KIND_EQUIVOCATION = 1
KIND_FRAUD = 2
KIND_LAZY_VERIFIER = 3
SKIP_NODE_NOT_ACTIVE = 2
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ZERO_ROOT = b"\x00" * 32


# ---------------------------------------------------------------- helpers


def b32(label: str) -> str:
    return "0x" + keccak(text=label).hex()


def make_receipt(
    node, payer, chain, *, request="req-1", output="out-1", amount=10 * OPG, cumulative=None, timestamp=None
):
    return Receipt(
        request_id=b32(request),
        payer=payer.address,
        node=node.address,
        model_id=b32("model"),
        input_hash=b32("input"),
        output_hash=b32(output),
        amount=amount,
        cumulative=amount if cumulative is None else cumulative,
        timestamp=chain.pending_timestamp if timestamp is None else timestamp,
    )


def sig(message, key, domain) -> bytes:
    return bytes.fromhex(message.sign_with(key, domain)[2:])


def prove_fraud(staking, receipt, node, voters, challenger, domain):
    """Submit `slash_fraud` for `receipt` (signed by `node`) with `Verdict(valid=false)` from `voters`."""
    return staking.slash_fraud(
        receipt.as_tuple(), sig(receipt, node.key, domain), verdicts(receipt, voters, domain), sender=challenger.account
    )


def verdict_sig(receipt: Receipt, valid: bool, verifier, domain) -> bytes:
    return sig(Verdict(receipt_hash="0x" + receipt.struct_hash().hex(), valid=valid), verifier.key, domain)


def verdicts(receipt: Receipt, signers, domain, valid: bool = False) -> list[tuple]:
    """``SignedVerdict`` tuples, verifiers in ascending address order."""
    ordered = sorted(signers, key=lambda a: int(a.address, 16))
    return [(v.address, verdict_sig(receipt, valid, v, domain)) for v in ordered]


def settle(opg, escrow, escrow_domain, payer, node_address, total, deposit=0):
    """Deposit for ``payer`` (if asked), sign a voucher for ``total`` and settle it through ``settle_batch``."""
    if deposit:
        opg.approve(escrow, deposit, sender=payer.account)
        escrow.deposit(deposit, sender=payer.account)
    voucher = Voucher(payer=payer.address, node=node_address, max_cumulative=total)
    claim = Claim(
        payer=payer.address,
        node=node_address,
        max_cumulative=total,
        signature=voucher.sign_with(payer.key, escrow_domain),
        total=total,
    )
    return escrow.settle_batch([claim.as_tuple()], ZERO_ROOT, sender=payer.account)


def register(opg, staking, actor, role, stake):
    opg.approve(staking, stake, sender=actor.account)
    staking.register(role, stake, "http://n.invalid", sender=actor.account)


def total_stake(staking, account) -> int:
    record = staking.nodes(account)
    return record.stake + record.unbonding


def slash_amount(total: int, bps: int) -> int:
    return min((total * bps + BPS - 1) // BPS, total)


def equivocation_key(node: str, request_id: str) -> bytes:
    return keccak(
        encode(["uint8", "address", "bytes32"], [KIND_EQUIVOCATION, node, bytes.fromhex(request_id[2:])])
    )


def lazy_key(receipt_hash: bytes, verifier: str) -> bytes:
    return keccak(encode(["uint8", "bytes32", "address"], [KIND_LAZY_VERIFIER, receipt_hash, verifier]))


def high_s_twin(signature: bytes) -> bytes:
    """The malleable twin (r, n - s, v ^ 1) of a canonical signature: the same signer, a different encoding."""
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    return r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])


@pytest.fixture
def challenger(make_actor):
    return make_actor(0)


@pytest.fixture
def equivocation(node, payer, chain, staking_domain):
    """Two different receipts of ``node`` for the same request id, both signed."""
    ts = chain.pending_timestamp
    a = make_receipt(node, payer, chain, output="out-a", timestamp=ts)
    b = make_receipt(node, payer, chain, output="out-b", timestamp=ts)
    return a, sig(a, node.key, staking_domain), b, sig(b, node.key, staking_domain)


@pytest.fixture
def settled_receipt(opg, escrow, escrow_domain, payer, node, chain, staking_domain):
    """A receipt for 10 OPG (cumulative 10 OPG) whose voucher has been settled through the escrow."""
    receipt = make_receipt(node, payer, chain, amount=10 * OPG)
    settle(opg, escrow, escrow_domain, payer, node.address, 10 * OPG, deposit=100 * OPG)
    assert escrow.spent(payer.address, node.address) == 10 * OPG
    return receipt, sig(receipt, node.key, staking_domain)


# ---------------------------------------------------------------- digests agree with offchain.messages


def test_receipt_hash_matches_offchain_struct_hash(staking, node, payer, chain):
    receipt = make_receipt(node, payer, chain, amount=123, cumulative=456, timestamp=2**64 - 1)
    assert bytes(staking.receipt_hash(receipt.as_tuple())) == receipt.struct_hash()


def test_receipt_digest_matches_offchain_digest(staking, staking_domain, node, payer, chain):
    receipt = make_receipt(node, payer, chain, amount=7, cumulative=70)
    assert bytes(staking.receipt_digest(receipt.as_tuple())) == receipt.digest(staking_domain)


@pytest.mark.parametrize("valid", [True, False])
def test_verdict_digest_matches_offchain_digest(staking, staking_domain, node, payer, chain, valid):
    receipt = make_receipt(node, payer, chain)
    verdict = Verdict(receipt_hash="0x" + receipt.struct_hash().hex(), valid=valid)
    assert bytes(staking.verdict_digest(receipt.struct_hash(), valid)) == verdict.digest(staking_domain)


def test_verdict_digests_differ_by_validity(staking, node, payer, chain):
    h = make_receipt(node, payer, chain).struct_hash()
    assert staking.verdict_digest(h, True) != staking.verdict_digest(h, False)


# ---------------------------------------------------------------- equivocation


def test_equivocation_slashes_rewards_challenger_burns_rest_and_jails(
    opg, staking, distributor, node, challenger, equivocation, params
):
    a, sa, b, sb = equivocation
    before_total = total_stake(staking, node.address)
    supply = opg.totalSupply()
    held = opg.balanceOf(staking)
    amount = slash_amount(before_total, params.equivocation_slash_bps)
    reward = amount * params.challenger_reward_bps // BPS
    burned = amount - reward

    tx = staking.slash_equivocation(a.as_tuple(), sa, b.as_tuple(), sb, sender=challenger.account)

    assert tx.return_value == amount
    assert amount == 1_000 * OPG and reward == 200 * OPG and burned == 800 * OPG
    events = tx.decode_logs(staking.Slashed)
    assert len(events) == 1
    ev = events[0]
    assert ev.node == node.address
    assert bytes(ev.evidence) == equivocation_key(node.address, a.request_id)
    assert ev.kind == KIND_EQUIVOCATION
    assert (ev.amount, ev.refund, ev.reward, ev.burned) == (amount, 0, reward, burned)
    jailed = tx.decode_logs(staking.Jailed)
    assert len(jailed) == 1 and jailed[0].node == node.address
    assert opg.balanceOf(challenger.address) == reward
    assert opg.totalSupply() == supply - burned
    assert opg.balanceOf(staking) == held - amount
    record = staking.nodes(node.address)
    assert record.jailed
    assert record.stake == before_total - amount
    assert not staking.is_active(node.address)
    assert staking.evidence_used(equivocation_key(node.address, a.request_id))


def test_equivocation_can_be_submitted_by_the_payer_or_anyone(staking, payer, equivocation):
    a, sa, b, sb = equivocation
    staking.slash_equivocation(a.as_tuple(), sa, b.as_tuple(), sb, sender=payer.account)
    assert staking.nodes(a.node).jailed


def test_equivocation_with_receipts_differing_only_in_amount(
    staking, node, payer, chain, staking_domain, challenger
):
    ts = chain.pending_timestamp
    a = make_receipt(node, payer, chain, amount=1 * OPG, timestamp=ts)
    b = make_receipt(node, payer, chain, amount=2 * OPG, timestamp=ts)
    tx = staking.slash_equivocation(
        a.as_tuple(),
        sig(a, node.key, staking_domain),
        b.as_tuple(),
        sig(b, node.key, staking_domain),
        sender=challenger.account,
    )
    assert tx.return_value > 0


def test_equivocation_of_different_nodes_reverts(
    opg, staking, make_actor, node, payer, chain, staking_domain, params
):
    other = make_actor()
    register(opg, staking, other, INFERENCE, params.min_inference_stake)
    a = make_receipt(node, payer, chain, output="out-a")
    b = make_receipt(other, payer, chain, output="out-b")
    with ape.reverts("NodeStaking: receipts of different nodes"):
        staking.slash_equivocation(
            a.as_tuple(),
            sig(a, node.key, staking_domain),
            b.as_tuple(),
            sig(b, other.key, staking_domain),
            sender=payer.account,
        )


def test_equivocation_with_different_request_ids_reverts(staking, node, payer, chain, staking_domain):
    a = make_receipt(node, payer, chain, request="req-a", output="out-a")
    b = make_receipt(node, payer, chain, request="req-b", output="out-b")
    with ape.reverts("NodeStaking: different request ids"):
        staking.slash_equivocation(
            a.as_tuple(),
            sig(a, node.key, staking_domain),
            b.as_tuple(),
            sig(b, node.key, staking_domain),
            sender=payer.account,
        )


def test_equivocation_with_identical_receipts_reverts(staking, node, payer, chain, staking_domain):
    a = make_receipt(node, payer, chain)
    s = sig(a, node.key, staking_domain)
    with ape.reverts("NodeStaking: identical receipts"):
        staking.slash_equivocation(a.as_tuple(), s, a.as_tuple(), s, sender=payer.account)


def test_equivocation_with_identical_receipts_and_malleable_twin_signature_reverts(
    staking, node, payer, chain, staking_domain
):
    a = make_receipt(node, payer, chain)
    s = sig(a, node.key, staking_domain)
    with ape.reverts("NodeStaking: identical receipts"):
        staking.slash_equivocation(a.as_tuple(), s, a.as_tuple(), high_s_twin(s), sender=payer.account)


def test_equivocation_with_receipt_not_signed_by_node_reverts(
    staking, node, payer, equivocation, staking_domain
):
    a, sa, b, _ = equivocation
    forged = sig(b, payer.key, staking_domain)
    with ape.reverts("NodeStaking: invalid receipt signature"):
        staking.slash_equivocation(a.as_tuple(), sa, b.as_tuple(), forged, sender=payer.account)
    with ape.reverts("NodeStaking: invalid receipt signature"):
        staking.slash_equivocation(b.as_tuple(), forged, a.as_tuple(), sa, sender=payer.account)


def test_equivocation_with_signature_swapped_between_receipts_reverts(staking, payer, equivocation):
    a, sa, b, sb = equivocation
    with ape.reverts("NodeStaking: invalid receipt signature"):
        staking.slash_equivocation(a.as_tuple(), sb, b.as_tuple(), sa, sender=payer.account)


def test_equivocation_with_malleable_high_s_signature_reverts(staking, payer, equivocation):
    a, sa, b, sb = equivocation
    with ape.reverts("NodeStaking: invalid receipt signature"):
        staking.slash_equivocation(a.as_tuple(), sa, b.as_tuple(), high_s_twin(sb), sender=payer.account)


def test_equivocation_with_truncated_signature_reverts(staking, payer, equivocation):
    a, sa, b, sb = equivocation
    with ape.reverts("NodeStaking: invalid receipt signature"):
        staking.slash_equivocation(a.as_tuple(), sa, b.as_tuple(), sb[:64], sender=payer.account)


def test_equivocation_signed_for_another_chain_id_reverts(staking, node, payer, chain, chain_id):
    other_chain = Domain.staking(chain_id + 1, staking.address)
    a = make_receipt(node, payer, chain, output="out-a")
    b = make_receipt(node, payer, chain, output="out-b")
    with ape.reverts("NodeStaking: invalid receipt signature"):
        staking.slash_equivocation(
            a.as_tuple(),
            sig(a, node.key, other_chain),
            b.as_tuple(),
            sig(b, node.key, other_chain),
            sender=payer.account,
        )


def test_equivocation_signed_for_another_contract_address_reverts(
    staking, escrow, node, payer, chain, chain_id
):
    elsewhere = Domain.staking(chain_id, escrow.address)
    a = make_receipt(node, payer, chain, output="out-a")
    b = make_receipt(node, payer, chain, output="out-b")
    with ape.reverts("NodeStaking: invalid receipt signature"):
        staking.slash_equivocation(
            a.as_tuple(),
            sig(a, node.key, elsewhere),
            b.as_tuple(),
            sig(b, node.key, elsewhere),
            sender=payer.account,
        )


def test_equivocation_evidence_exactly_at_dispute_window_edge_is_accepted(
    staking, payer, equivocation, chain, params
):
    a, sa, b, sb = equivocation
    chain.pending_timestamp = a.timestamp + params.dispute_window
    staking.slash_equivocation(a.as_tuple(), sa, b.as_tuple(), sb, sender=payer.account)
    assert staking.nodes(a.node).jailed


def test_equivocation_evidence_older_than_dispute_window_reverts(staking, payer, equivocation, chain, params):
    a, sa, b, sb = equivocation
    chain.pending_timestamp = a.timestamp + params.dispute_window + 1
    with ape.reverts("NodeStaking: evidence too old"):
        staking.slash_equivocation(a.as_tuple(), sa, b.as_tuple(), sb, sender=payer.account)


def test_equivocation_with_one_receipt_too_old_reverts(staking, node, payer, chain, staking_domain, params):
    now = chain.pending_timestamp
    old = make_receipt(node, payer, chain, output="out-a", timestamp=now - params.dispute_window - 10)
    new = make_receipt(node, payer, chain, output="out-b", timestamp=now)
    s_old, s_new = sig(old, node.key, staking_domain), sig(new, node.key, staking_domain)
    with ape.reverts("NodeStaking: evidence too old"):
        staking.slash_equivocation(new.as_tuple(), s_new, old.as_tuple(), s_old, sender=payer.account)
    with ape.reverts("NodeStaking: evidence too old"):
        staking.slash_equivocation(old.as_tuple(), s_old, new.as_tuple(), s_new, sender=payer.account)


def test_equivocation_same_evidence_twice_reverts(staking, payer, equivocation):
    a, sa, b, sb = equivocation
    staking.slash_equivocation(a.as_tuple(), sa, b.as_tuple(), sb, sender=payer.account)
    with ape.reverts("NodeStaking: evidence already used"):
        staking.slash_equivocation(a.as_tuple(), sa, b.as_tuple(), sb, sender=payer.account)
    # The same pair in the other order is the same evidence.
    with ape.reverts("NodeStaking: evidence already used"):
        staking.slash_equivocation(b.as_tuple(), sb, a.as_tuple(), sa, sender=payer.account)


def test_equivocation_another_pair_for_the_same_request_id_reverts(
    staking, node, payer, chain, staking_domain, equivocation
):
    a, sa, b, sb = equivocation
    staking.slash_equivocation(a.as_tuple(), sa, b.as_tuple(), sb, sender=payer.account)
    c = make_receipt(node, payer, chain, output="out-c")
    sc = sig(c, node.key, staking_domain)
    with ape.reverts("NodeStaking: evidence already used"):
        staking.slash_equivocation(a.as_tuple(), sa, c.as_tuple(), sc, sender=payer.account)


def test_equivocation_on_another_request_id_slashes_again(
    staking, node, payer, chain, staking_domain, equivocation
):
    a, sa, b, sb = equivocation
    staking.slash_equivocation(a.as_tuple(), sa, b.as_tuple(), sb, sender=payer.account)
    left = total_stake(staking, node.address)
    c = make_receipt(node, payer, chain, request="req-2", output="out-c")
    d = make_receipt(node, payer, chain, request="req-2", output="out-d")
    tx = staking.slash_equivocation(
        c.as_tuple(),
        sig(c, node.key, staking_domain),
        d.as_tuple(),
        sig(d, node.key, staking_domain),
        sender=payer.account,
    )
    assert tx.return_value == slash_amount(left, 5_000)
    # Already jailed: no second Jailed event.
    assert tx.decode_logs(staking.Jailed) == []


def test_equivocation_by_unregistered_signer_has_nothing_to_slash(
    staking, make_actor, payer, chain, staking_domain
):
    stranger = make_actor(0)
    a = make_receipt(stranger, payer, chain, output="out-a")
    b = make_receipt(stranger, payer, chain, output="out-b")
    with ape.reverts("NodeStaking: nothing to slash"):
        staking.slash_equivocation(
            a.as_tuple(),
            sig(a, stranger.key, staking_domain),
            b.as_tuple(),
            sig(b, stranger.key, staking_domain),
            sender=payer.account,
        )


def test_full_equivocation_slash_takes_whole_stake_and_never_more(
    opg, staking, deployer, node, payer, chain, staking_domain, equivocation, params
):
    staking.set_slashing(10_000, params.fraud_slash_bps, params.challenger_reward_bps, sender=deployer)
    staking.request_unbond(300 * OPG, sender=node.account)
    whole = total_stake(staking, node.address)
    a, sa, b, sb = equivocation
    tx = staking.slash_equivocation(a.as_tuple(), sa, b.as_tuple(), sb, sender=payer.account)
    assert tx.return_value == whole
    record = staking.nodes(node.address)
    assert record.stake == 0 and record.unbonding == 0
    c = make_receipt(node, payer, chain, request="req-2", output="out-c")
    d = make_receipt(node, payer, chain, request="req-2", output="out-d")
    with ape.reverts("NodeStaking: nothing to slash"):
        staking.slash_equivocation(
            c.as_tuple(),
            sig(c, node.key, staking_domain),
            d.as_tuple(),
            sig(d, node.key, staking_domain),
            sender=payer.account,
        )


def test_unbonding_stake_stays_slashable(opg, staking, node, payer, equivocation, params):
    whole = total_stake(staking, node.address)
    staking.request_unbond(whole, sender=node.account)
    assert staking.nodes(node.address).stake == 0
    a, sa, b, sb = equivocation
    tx = staking.slash_equivocation(a.as_tuple(), sa, b.as_tuple(), sb, sender=payer.account)
    amount = slash_amount(whole, params.equivocation_slash_bps)
    assert tx.return_value == amount
    record = staking.nodes(node.address)
    assert record.stake == 0
    assert record.unbonding == whole - amount


def test_slash_takes_active_stake_before_unbonding(staking, node, payer, equivocation, params):
    whole = total_stake(staking, node.address)  # 2,000 OPG
    staking.request_unbond(whole - 500 * OPG, sender=node.account)  # active 500, unbonding 1,500
    a, sa, b, sb = equivocation
    staking.slash_equivocation(a.as_tuple(), sa, b.as_tuple(), sb, sender=payer.account)  # 1,000 OPG
    record = staking.nodes(node.address)
    assert record.stake == 0
    assert record.unbonding == whole - 500 * OPG - (
        slash_amount(whole, params.equivocation_slash_bps) - 500 * OPG
    )


def test_node_cannot_escape_slashing_by_unbonding_before_the_window_closes(
    opg, staking, node, payer, equivocation, chain, params
):
    staking.request_unbond(total_stake(staking, node.address), sender=node.account)
    a, sa, b, sb = equivocation
    # The earliest the node can withdraw is after the dispute window of receipts signed before unbonding.
    ready_at = staking.nodes(node.address).unbond_ready_at
    assert ready_at >= a.timestamp + params.dispute_window
    chain.pending_timestamp = a.timestamp + params.dispute_window
    staking.slash_equivocation(a.as_tuple(), sa, b.as_tuple(), sb, sender=payer.account)
    assert staking.nodes(node.address).unbonding < 2_000 * OPG


def test_slash_rounds_up_in_the_protocols_favour(
    opg, staking, deployer, make_actor, payer, chain, staking_domain
):
    actor = make_actor()
    register(opg, staking, actor, INFERENCE, 1_000 * OPG + 1)
    staking.set_slashing(3, 2_000, 2_000, sender=deployer)  # 0.03% of 1,000 OPG + 1 wei, rounded up
    a = make_receipt(actor, payer, chain, output="out-a")
    b = make_receipt(actor, payer, chain, output="out-b")
    tx = staking.slash_equivocation(
        a.as_tuple(),
        sig(a, actor.key, staking_domain),
        b.as_tuple(),
        sig(b, actor.key, staking_domain),
        sender=payer.account,
    )
    assert tx.return_value == ((1_000 * OPG + 1) * 3 + BPS - 1) // BPS
    assert tx.return_value == 3 * 10**17 + 1


def test_equivocation_replayed_on_another_deployment_reverts(
    project, deployer, treasury, params, chain, chain_id, staking_domain, opg, node, payer
):
    other = deploy_system(deployer, treasury=treasury.address, params=params, project=project)
    # The same key registers as an inference node on the other deployment.
    other.opg.transfer(node.address, params.min_inference_stake, sender=treasury)
    other.opg.approve(other.staking, params.min_inference_stake, sender=node.account)
    other.staking.register(INFERENCE, params.min_inference_stake, "http://n.invalid", sender=node.account)
    a = make_receipt(node, payer, chain, output="out-a")
    b = make_receipt(node, payer, chain, output="out-b")
    here = (a.as_tuple(), sig(a, node.key, staking_domain), b.as_tuple(), sig(b, node.key, staking_domain))
    with ape.reverts("NodeStaking: invalid receipt signature"):
        other.staking.slash_equivocation(*here, sender=payer.account)
    there = Domain.staking(chain_id, other.staking.address)
    tx = other.staking.slash_equivocation(
        a.as_tuple(), sig(a, node.key, there), b.as_tuple(), sig(b, node.key, there), sender=payer.account
    )
    assert tx.return_value > 0


# ---------------------------------------------------------------- fraud


def fraud_split(amount: int, refund: int, count: int, reward_bps: int) -> tuple[int, int]:
    share = (amount - refund) * reward_bps // BPS // count
    return share, amount - refund - share * count


def test_fraud_with_quorum_refunds_payer_pays_verifiers_burns_rest_and_jails(
    opg, staking, node, payer, verifiers, challenger, settled_receipt, staking_domain, params
):
    receipt, rs = settled_receipt
    quorum = verifiers[:2]
    whole = total_stake(staking, node.address)
    amount = slash_amount(whole, params.fraud_slash_bps)
    refund = receipt.amount
    share, burned = fraud_split(amount, refund, 2, params.challenger_reward_bps)
    assert (amount, share, burned) == (400 * OPG, 39 * OPG, 312 * OPG)
    payer_before = opg.balanceOf(payer.address)
    verifier_before = [opg.balanceOf(v.address) for v in quorum]
    supply = opg.totalSupply()

    tx = staking.slash_fraud(
        receipt.as_tuple(), rs, verdicts(receipt, quorum, staking_domain), sender=challenger.account
    )

    assert tx.return_value == amount
    events = tx.decode_logs(staking.Slashed)
    assert len(events) == 1
    ev = events[0]
    assert ev.node == node.address
    assert bytes(ev.evidence) == receipt.struct_hash()
    assert ev.kind == KIND_FRAUD
    assert (ev.amount, ev.refund, ev.reward, ev.burned) == (amount, refund, 2 * share, burned)
    assert len(tx.decode_logs(staking.Jailed)) == 1
    assert opg.balanceOf(payer.address) == payer_before + refund
    assert [opg.balanceOf(v.address) for v in quorum] == [b + share for b in verifier_before]
    assert opg.balanceOf(challenger.address) == 0  # the submitter is not paid for fraud
    assert opg.totalSupply() == supply - burned
    assert staking.nodes(node.address).jailed
    assert staking.nodes(node.address).stake == whole - amount
    assert staking.fraud_proven_at(receipt.struct_hash()) == receipt.timestamp


def test_fraud_shares_the_reward_among_all_signing_verifiers(
    opg, staking, deployer, node, verifiers, challenger, settled_receipt, staking_domain, params
):
    staking.set_fraud_quorum(3, sender=deployer)
    receipt, rs = settled_receipt
    before = [opg.balanceOf(v.address) for v in verifiers]
    tx = staking.slash_fraud(
        receipt.as_tuple(), rs, verdicts(receipt, verifiers, staking_domain), sender=challenger.account
    )
    amount = tx.return_value
    share, burned = fraud_split(amount, receipt.amount, 3, params.challenger_reward_bps)
    assert [opg.balanceOf(v.address) for v in verifiers] == [b + share for b in before]
    ev = tx.decode_logs(staking.Slashed)[0]
    assert ev.reward == 3 * share and ev.burned == burned


def test_fraud_more_verdicts_than_quorum_is_accepted(
    staking, node, verifiers, challenger, settled_receipt, staking_domain
):
    receipt, rs = settled_receipt
    staking.slash_fraud(
        receipt.as_tuple(), rs, verdicts(receipt, verifiers, staking_domain), sender=challenger.account
    )
    assert staking.nodes(node.address).jailed


def test_fraud_on_unsettled_receipt_refunds_nothing(
    opg, staking, node, payer, verifiers, challenger, chain, staking_domain, params
):
    receipt = make_receipt(node, payer, chain, amount=10 * OPG)
    payer_before = opg.balanceOf(payer.address)
    tx = prove_fraud(staking, receipt, node, verifiers[:2], challenger, staking_domain)
    amount = tx.return_value
    share, burned = fraud_split(amount, 0, 2, params.challenger_reward_bps)
    ev = tx.decode_logs(staking.Slashed)[0]
    assert (ev.refund, ev.reward, ev.burned) == (0, 2 * share, burned)
    assert opg.balanceOf(payer.address) == payer_before


def test_fraud_refund_needs_the_receipts_cumulative_settled(
    opg, escrow, escrow_domain, staking, node, payer, verifiers, challenger, chain, staking_domain
):
    # The channel settled 10 OPG but the receipt claims a cumulative of 15: not (yet) settled, no refund.
    settle(opg, escrow, escrow_domain, payer, node.address, 10 * OPG, deposit=100 * OPG)
    receipt = make_receipt(node, payer, chain, amount=5 * OPG, cumulative=15 * OPG)
    payer_before = opg.balanceOf(payer.address)
    tx = prove_fraud(staking, receipt, node, verifiers[:2], challenger, staking_domain)
    assert tx.decode_logs(staking.Slashed)[0].refund == 0
    assert opg.balanceOf(payer.address) == payer_before


def test_fraud_refund_of_an_earlier_receipt_once_later_ones_settled(
    opg, escrow, escrow_domain, staking, node, payer, verifiers, challenger, chain, staking_domain
):
    # Receipt with cumulative 4 OPG, the channel later settled 10 OPG: the receipt is covered, refund its amount.
    settle(opg, escrow, escrow_domain, payer, node.address, 10 * OPG, deposit=100 * OPG)
    receipt = make_receipt(node, payer, chain, amount=3 * OPG, cumulative=4 * OPG)
    payer_before = opg.balanceOf(payer.address)
    tx = prove_fraud(staking, receipt, node, verifiers[:2], challenger, staking_domain)
    assert tx.decode_logs(staking.Slashed)[0].refund == 3 * OPG
    assert opg.balanceOf(payer.address) == payer_before + 3 * OPG


def test_fraud_refund_never_exceeds_the_slash(
    opg,
    escrow,
    escrow_domain,
    staking,
    make_actor,
    payer,
    verifiers,
    challenger,
    chain,
    staking_domain,
    params,
):
    small = make_actor()
    register(opg, staking, small, INFERENCE, params.min_inference_stake)  # slash = 200 OPG
    settle(opg, escrow, escrow_domain, payer, small.address, 500 * OPG, deposit=600 * OPG)
    receipt = make_receipt(small, payer, chain, amount=500 * OPG)
    payer_before = opg.balanceOf(payer.address)
    supply = opg.totalSupply()
    tx = prove_fraud(staking, receipt, small, verifiers[:2], challenger, staking_domain)
    ev = tx.decode_logs(staking.Slashed)[0]
    assert ev.amount == 200 * OPG
    assert (ev.refund, ev.reward, ev.burned) == (200 * OPG, 0, 0)
    assert opg.balanceOf(payer.address) == payer_before + 200 * OPG
    assert opg.totalSupply() == supply


def test_fraud_below_quorum_reverts(staking, verifiers, challenger, settled_receipt, staking_domain):
    receipt, rs = settled_receipt
    with ape.reverts("NodeStaking: quorum not reached"):
        staking.slash_fraud(
            receipt.as_tuple(),
            rs,
            verdicts(receipt, verifiers[:1], staking_domain),
            sender=challenger.account,
        )
    with ape.reverts("NodeStaking: quorum not reached"):
        staking.slash_fraud(receipt.as_tuple(), rs, [], sender=challenger.account)


def test_fraud_with_duplicate_verifier_reverts(
    staking, verifiers, challenger, settled_receipt, staking_domain
):
    receipt, rs = settled_receipt
    one = verdicts(receipt, verifiers[:1], staking_domain)[0]
    with ape.reverts("NodeStaking: verifiers not strictly ascending"):
        staking.slash_fraud(receipt.as_tuple(), rs, [one, one], sender=challenger.account)


def test_fraud_with_descending_verifiers_reverts(
    staking, verifiers, challenger, settled_receipt, staking_domain
):
    receipt, rs = settled_receipt
    descending = list(reversed(verdicts(receipt, verifiers[:2], staking_domain)))
    with ape.reverts("NodeStaking: verifiers not strictly ascending"):
        staking.slash_fraud(receipt.as_tuple(), rs, descending, sender=challenger.account)


def test_fraud_with_unregistered_verifier_reverts(
    staking, make_actor, verifiers, challenger, settled_receipt, staking_domain
):
    receipt, rs = settled_receipt
    outsider = make_actor(0)
    with ape.reverts("NodeStaking: verifier not active"):
        staking.slash_fraud(
            receipt.as_tuple(),
            rs,
            verdicts(receipt, [verifiers[0], outsider], staking_domain),
            sender=challenger.account,
        )


def test_fraud_with_inference_node_as_verifier_reverts(
    opg, staking, make_actor, verifiers, challenger, settled_receipt, staking_domain, params
):
    receipt, rs = settled_receipt
    other_node = make_actor()
    register(opg, staking, other_node, INFERENCE, params.min_inference_stake)
    with ape.reverts("NodeStaking: verifier not active"):
        staking.slash_fraud(
            receipt.as_tuple(),
            rs,
            verdicts(receipt, [verifiers[0], other_node], staking_domain),
            sender=challenger.account,
        )


def test_fraud_with_understaked_verifier_reverts(
    staking, verifiers, challenger, settled_receipt, staking_domain, params
):
    receipt, rs = settled_receipt
    v = verifiers[1]
    staking.request_unbond(staking.nodes(v.address).stake - params.min_verifier_stake + 1, sender=v.account)
    with ape.reverts("NodeStaking: verifier not active"):
        staking.slash_fraud(
            receipt.as_tuple(),
            rs,
            verdicts(receipt, verifiers[:2], staking_domain),
            sender=challenger.account,
        )


def test_fraud_with_jailed_verifier_reverts(
    opg,
    escrow,
    escrow_domain,
    staking,
    node,
    payer,
    verifiers,
    challenger,
    chain,
    staking_domain,
    settled_receipt,
):
    receipt, rs = settled_receipt
    # Jail verifiers[2] as a lazy verifier of another proven receipt.
    other = make_receipt(node, payer, chain, request="req-other", amount=OPG)
    prove_fraud(staking, other, node, verifiers[:2], challenger, staking_domain)
    staking.slash_lazy_verifier(
        other.struct_hash(),
        verifiers[2].address,
        verdict_sig(other, True, verifiers[2], staking_domain),
        sender=challenger.account,
    )
    assert staking.nodes(verifiers[2].address).jailed
    with ape.reverts("NodeStaking: verifier not active"):
        staking.slash_fraud(
            receipt.as_tuple(),
            rs,
            verdicts(receipt, [verifiers[0], verifiers[2]], staking_domain),
            sender=challenger.account,
        )


def test_fraud_with_valid_true_verdict_presented_as_false_reverts(
    staking, verifiers, challenger, settled_receipt, staking_domain
):
    receipt, rs = settled_receipt
    good = verdicts(receipt, verifiers[:2], staking_domain)
    approving = verdicts(receipt, verifiers[:2], staking_domain, valid=True)
    with ape.reverts("NodeStaking: invalid verdict signature"):
        staking.slash_fraud(receipt.as_tuple(), rs, [good[0], approving[1]], sender=challenger.account)


def test_fraud_with_verdict_signed_by_another_key_reverts(
    staking, verifiers, challenger, settled_receipt, staking_domain
):
    receipt, rs = settled_receipt
    ordered = sorted(verifiers[:2], key=lambda a: int(a.address, 16))
    forged = [
        (ordered[0].address, verdict_sig(receipt, False, ordered[0], staking_domain)),
        (ordered[1].address, verdict_sig(receipt, False, ordered[0], staking_domain)),
    ]
    with ape.reverts("NodeStaking: invalid verdict signature"):
        staking.slash_fraud(receipt.as_tuple(), rs, forged, sender=challenger.account)


def test_fraud_with_verdict_for_another_receipt_reverts(
    staking, node, payer, verifiers, challenger, chain, settled_receipt, staking_domain
):
    receipt, rs = settled_receipt
    other = make_receipt(node, payer, chain, request="req-other")
    good = verdicts(receipt, verifiers[:2], staking_domain)
    wrong = verdicts(other, verifiers[:2], staking_domain)
    with ape.reverts("NodeStaking: invalid verdict signature"):
        staking.slash_fraud(receipt.as_tuple(), rs, [good[0], wrong[1]], sender=challenger.account)


def test_fraud_with_malleable_verdict_signature_reverts(
    staking, verifiers, challenger, settled_receipt, staking_domain
):
    receipt, rs = settled_receipt
    good = verdicts(receipt, verifiers[:2], staking_domain)
    with ape.reverts("NodeStaking: invalid verdict signature"):
        staking.slash_fraud(
            receipt.as_tuple(),
            rs,
            [good[0], (good[1][0], high_s_twin(good[1][1]))],
            sender=challenger.account,
        )


def test_fraud_with_verdicts_signed_for_another_chain_id_reverts(
    staking, verifiers, challenger, settled_receipt, chain_id
):
    receipt, rs = settled_receipt
    other_chain = Domain.staking(chain_id + 1, staking.address)
    with ape.reverts("NodeStaking: invalid verdict signature"):
        staking.slash_fraud(
            receipt.as_tuple(), rs, verdicts(receipt, verifiers[:2], other_chain), sender=challenger.account
        )


def test_fraud_with_receipt_signed_for_another_chain_id_reverts(
    staking, node, verifiers, challenger, settled_receipt, staking_domain, chain_id
):
    receipt, _ = settled_receipt
    replayed = sig(receipt, node.key, Domain.staking(chain_id + 1, staking.address))
    with ape.reverts("NodeStaking: invalid receipt signature"):
        staking.slash_fraud(
            receipt.as_tuple(),
            replayed,
            verdicts(receipt, verifiers[:2], staking_domain),
            sender=challenger.account,
        )


def test_fraud_with_receipt_not_signed_by_its_node_reverts(
    staking, payer, verifiers, challenger, settled_receipt, staking_domain
):
    receipt, _ = settled_receipt
    with ape.reverts("NodeStaking: invalid receipt signature"):
        prove_fraud(staking, receipt, payer, verifiers[:2], challenger, staking_domain)


def test_fraud_evidence_replayed_on_another_deployment_reverts(
    project,
    deployer,
    treasury,
    params,
    chain_id,
    node,
    verifiers,
    challenger,
    settled_receipt,
    staking_domain,
):
    receipt, rs = settled_receipt
    other = deploy_system(deployer, treasury=treasury.address, params=params, project=project)
    for actor, role, stake in [(node, INFERENCE, params.min_inference_stake)] + [
        (v, VERIFIER, params.min_verifier_stake) for v in verifiers[:2]
    ]:
        other.opg.transfer(actor.address, stake, sender=treasury)
        other.opg.approve(other.staking, stake, sender=actor.account)
        other.staking.register(role, stake, "http://n.invalid", sender=actor.account)
    there = Domain.staking(chain_id, other.staking.address)
    with ape.reverts("NodeStaking: invalid receipt signature"):
        other.staking.slash_fraud(
            receipt.as_tuple(), rs, verdicts(receipt, verifiers[:2], there), sender=challenger.account
        )
    with ape.reverts("NodeStaking: invalid verdict signature"):
        other.staking.slash_fraud(
            receipt.as_tuple(),
            sig(receipt, node.key, there),
            verdicts(receipt, verifiers[:2], staking_domain),
            sender=challenger.account,
        )


def test_fraud_evidence_older_than_dispute_window_reverts(
    staking, verifiers, challenger, settled_receipt, staking_domain, chain, params
):
    receipt, rs = settled_receipt
    chain.pending_timestamp = receipt.timestamp + params.dispute_window + 1
    with ape.reverts("NodeStaking: evidence too old"):
        staking.slash_fraud(
            receipt.as_tuple(),
            rs,
            verdicts(receipt, verifiers[:2], staking_domain),
            sender=challenger.account,
        )


def test_fraud_same_evidence_twice_reverts(
    staking, node, verifiers, challenger, settled_receipt, staking_domain, opg
):
    receipt, rs = settled_receipt
    staking.slash_fraud(
        receipt.as_tuple(), rs, verdicts(receipt, verifiers[:2], staking_domain), sender=challenger.account
    )
    # Not even with another quorum, and not after the node is released from jail.
    opg.approve(staking, 10 * OPG, sender=node.account)
    staking.add_stake(10 * OPG, sender=node.account)
    with ape.reverts("NodeStaking: evidence already used"):
        staking.slash_fraud(
            receipt.as_tuple(),
            rs,
            verdicts(receipt, verifiers[1:], staking_domain),
            sender=challenger.account,
        )


def test_fraud_on_fully_slashed_node_has_nothing_to_slash(
    staking, deployer, node, payer, verifiers, challenger, chain, staking_domain, params
):
    staking.set_slashing(params.equivocation_slash_bps, 10_000, params.challenger_reward_bps, sender=deployer)
    first = make_receipt(node, payer, chain, request="req-1")
    second = make_receipt(node, payer, chain, request="req-2")
    tx = prove_fraud(staking, first, node, verifiers[:2], challenger, staking_domain)
    assert tx.return_value == 2_000 * OPG
    with ape.reverts("NodeStaking: nothing to slash"):
        prove_fraud(staking, second, node, verifiers[:2], challenger, staking_domain)


def test_fraud_slashes_unbonding_stake(
    staking, node, verifiers, challenger, settled_receipt, staking_domain, params
):
    receipt, rs = settled_receipt
    whole = total_stake(staking, node.address)
    staking.request_unbond(whole, sender=node.account)
    tx = staking.slash_fraud(
        receipt.as_tuple(), rs, verdicts(receipt, verifiers[:2], staking_domain), sender=challenger.account
    )
    amount = slash_amount(whole, params.fraud_slash_bps)
    assert tx.return_value == amount
    assert staking.nodes(node.address).unbonding == whole - amount


def test_jailed_node_cannot_be_paid_by_settle_batch(
    opg,
    escrow,
    escrow_domain,
    staking,
    distributor,
    node,
    payer,
    verifiers,
    challenger,
    settled_receipt,
    staking_domain,
):
    receipt, rs = settled_receipt
    staking.slash_fraud(
        receipt.as_tuple(), rs, verdicts(receipt, verifiers[:2], staking_domain), sender=challenger.account
    )
    claimable = distributor.claimable(node.address)
    balance = escrow.balance_of(payer.address)
    tx = settle(opg, escrow, escrow_domain, payer, node.address, 20 * OPG)
    assert list(tx.return_value) == [SKIP_NODE_NOT_ACTIVE]
    skipped = tx.decode_logs(escrow.ClaimSkipped)
    assert len(skipped) == 1
    assert skipped[0].reason == SKIP_NODE_NOT_ACTIVE
    assert skipped[0].node == node.address
    assert escrow.spent(payer.address, node.address) == 10 * OPG
    assert escrow.balance_of(payer.address) == balance
    assert distributor.claimable(node.address) == claimable


def test_jailed_node_is_released_by_topping_up_to_min_stake(
    opg,
    escrow,
    escrow_domain,
    staking,
    make_actor,
    payer,
    verifiers,
    challenger,
    chain,
    staking_domain,
    params,
):
    fresh = make_actor()
    register(opg, staking, fresh, INFERENCE, params.min_inference_stake)
    receipt = make_receipt(fresh, payer, chain)
    prove_fraud(staking, receipt, fresh, verifiers[:2], challenger, staking_domain)
    missing = params.min_inference_stake - staking.nodes(fresh.address).stake
    assert missing == 200 * OPG
    opg.approve(staking, missing, sender=fresh.account)
    tx = staking.add_stake(missing - 1, sender=fresh.account)
    assert tx.decode_logs(staking.Unjailed) == []
    assert staking.nodes(fresh.address).jailed
    assert not staking.is_active(fresh.address)
    tx = staking.add_stake(1, sender=fresh.account)
    unjailed = tx.decode_logs(staking.Unjailed)
    assert len(unjailed) == 1 and unjailed[0].node == fresh.address
    assert not staking.nodes(fresh.address).jailed
    assert staking.is_active(fresh.address)
    tx = settle(opg, escrow, escrow_domain, payer, fresh.address, 5 * OPG, deposit=5 * OPG)
    assert len(tx.decode_logs(escrow.ClaimSettled)) == 1
    assert escrow.spent(payer.address, fresh.address) == 5 * OPG


def test_jailed_node_above_min_stake_is_released_by_any_top_up(
    opg, staking, node, verifiers, challenger, settled_receipt, staking_domain, params
):
    receipt, rs = settled_receipt
    staking.slash_fraud(
        receipt.as_tuple(), rs, verdicts(receipt, verifiers[:2], staking_domain), sender=challenger.account
    )
    assert staking.nodes(node.address).stake >= params.min_inference_stake
    assert not staking.is_active(node.address)
    opg.approve(staking, 1, sender=node.account)
    tx = staking.add_stake(1, sender=node.account)
    assert len(tx.decode_logs(staking.Unjailed)) == 1
    assert staking.is_active(node.address)


# ---------------------------------------------------------------- lazy verifier


@pytest.fixture
def proven(staking, verifiers, challenger, settled_receipt, staking_domain):
    """The settled receipt proven fraudulent by verifiers[0] and verifiers[1]."""
    receipt, rs = settled_receipt
    staking.slash_fraud(
        receipt.as_tuple(), rs, verdicts(receipt, verifiers[:2], staking_domain), sender=challenger.account
    )
    return receipt


def test_lazy_verifier_is_slashed_jailed_and_removed_from_pool(
    opg, staking, distributor, verifiers, challenger, proven, staking_domain, params
):
    lazy = verifiers[2]
    whole = total_stake(staking, lazy.address)
    amount = slash_amount(whole, params.fraud_slash_bps)
    reward = amount * params.challenger_reward_bps // BPS
    supply = opg.totalSupply()
    pool = distributor.total_verifier_stake()
    before = opg.balanceOf(challenger.address)
    tx = staking.slash_lazy_verifier(
        proven.struct_hash(),
        lazy.address,
        verdict_sig(proven, True, lazy, staking_domain),
        sender=challenger.account,
    )
    assert tx.return_value == amount
    ev = tx.decode_logs(staking.Slashed)[0]
    assert ev.node == lazy.address
    assert ev.kind == KIND_LAZY_VERIFIER
    assert bytes(ev.evidence) == lazy_key(proven.struct_hash(), lazy.address)
    assert (ev.amount, ev.refund, ev.reward, ev.burned) == (amount, 0, reward, amount - reward)
    assert len(tx.decode_logs(staking.Jailed)) == 1
    assert opg.balanceOf(challenger.address) == before + reward
    assert opg.totalSupply() == supply - (amount - reward)
    assert staking.nodes(lazy.address).jailed
    assert staking.nodes(lazy.address).stake == whole - amount
    assert not staking.is_active(lazy.address)
    assert distributor.verifier_stake(lazy.address) == 0
    assert distributor.total_verifier_stake() == pool - whole


def test_lazy_verifier_same_evidence_twice_reverts(staking, verifiers, challenger, proven, staking_domain):
    lazy = verifiers[2]
    s = verdict_sig(proven, True, lazy, staking_domain)
    staking.slash_lazy_verifier(proven.struct_hash(), lazy.address, s, sender=challenger.account)
    with ape.reverts("NodeStaking: evidence already used"):
        staking.slash_lazy_verifier(proven.struct_hash(), lazy.address, s, sender=challenger.account)


def test_lazy_verifier_evidence_is_per_verifier(
    opg, staking, make_actor, verifiers, challenger, proven, staking_domain, params
):
    other = make_actor()
    register(opg, staking, other, VERIFIER, params.min_verifier_stake)
    staking.slash_lazy_verifier(
        proven.struct_hash(),
        verifiers[2].address,
        verdict_sig(proven, True, verifiers[2], staking_domain),
        sender=challenger.account,
    )
    staking.slash_lazy_verifier(
        proven.struct_hash(),
        other.address,
        verdict_sig(proven, True, other, staking_domain),
        sender=challenger.account,
    )
    assert staking.nodes(other.address).jailed


def test_lazy_verifier_for_receipt_not_proven_fraudulent_reverts(
    staking, node, payer, verifiers, challenger, chain, staking_domain
):
    receipt = make_receipt(node, payer, chain, request="honest")
    with ape.reverts("NodeStaking: receipt not proven fraudulent"):
        staking.slash_lazy_verifier(
            receipt.struct_hash(),
            verifiers[2].address,
            verdict_sig(receipt, True, verifiers[2], staking_domain),
            sender=challenger.account,
        )


def test_lazy_verifier_against_a_non_verifier_reverts(
    staking, node, make_actor, challenger, proven, staking_domain
):
    with ape.reverts("NodeStaking: not a verifier"):
        staking.slash_lazy_verifier(
            proven.struct_hash(),
            node.address,
            verdict_sig(proven, True, node, staking_domain),
            sender=challenger.account,
        )
    stranger = make_actor(0)
    with ape.reverts("NodeStaking: not a verifier"):
        staking.slash_lazy_verifier(
            proven.struct_hash(),
            stranger.address,
            verdict_sig(proven, True, stranger, staking_domain),
            sender=challenger.account,
        )


def test_lazy_verifier_with_valid_false_verdict_reverts(
    staking, verifiers, challenger, proven, staking_domain
):
    # The quorum's own (correct) verdicts cannot be turned against them.
    honest = verifiers[0]
    with ape.reverts("NodeStaking: invalid verdict signature"):
        staking.slash_lazy_verifier(
            proven.struct_hash(),
            honest.address,
            verdict_sig(proven, False, honest, staking_domain),
            sender=challenger.account,
        )


def test_lazy_verifier_with_signature_of_another_key_reverts(
    staking, verifiers, challenger, proven, staking_domain
):
    with ape.reverts("NodeStaking: invalid verdict signature"):
        staking.slash_lazy_verifier(
            proven.struct_hash(),
            verifiers[2].address,
            verdict_sig(proven, True, verifiers[1], staking_domain),
            sender=challenger.account,
        )


def test_lazy_verifier_with_verdict_for_another_chain_id_reverts(
    staking, verifiers, challenger, proven, chain_id
):
    other_chain = Domain.staking(chain_id + 1, staking.address)
    with ape.reverts("NodeStaking: invalid verdict signature"):
        staking.slash_lazy_verifier(
            proven.struct_hash(),
            verifiers[2].address,
            verdict_sig(proven, True, verifiers[2], other_chain),
            sender=challenger.account,
        )


def test_lazy_verifier_evidence_older_than_dispute_window_reverts(
    staking, verifiers, challenger, proven, staking_domain, chain, params
):
    chain.pending_timestamp = proven.timestamp + params.dispute_window + 1
    with ape.reverts("NodeStaking: evidence too old"):
        staking.slash_lazy_verifier(
            proven.struct_hash(),
            verifiers[2].address,
            verdict_sig(proven, True, verifiers[2], staking_domain),
            sender=challenger.account,
        )


def test_lazy_verifier_who_unbonded_is_still_slashed(
    staking, verifiers, challenger, proven, staking_domain, params
):
    lazy = verifiers[2]
    whole = total_stake(staking, lazy.address)
    staking.request_unbond(whole, sender=lazy.account)
    tx = staking.slash_lazy_verifier(
        proven.struct_hash(),
        lazy.address,
        verdict_sig(proven, True, lazy, staking_domain),
        sender=challenger.account,
    )
    assert tx.return_value == slash_amount(whole, params.fraud_slash_bps)
    assert staking.nodes(lazy.address).unbonding == whole - tx.return_value


def test_staking_balance_matches_stakes_after_every_kind_of_slash(
    opg, staking, node, payer, verifiers, challenger, proven, staking_domain, chain
):
    staking.slash_lazy_verifier(
        proven.struct_hash(),
        verifiers[2].address,
        verdict_sig(proven, True, verifiers[2], staking_domain),
        sender=challenger.account,
    )
    a = make_receipt(node, payer, chain, request="req-eq", output="out-a")
    b = make_receipt(node, payer, chain, request="req-eq", output="out-b")
    staking.slash_equivocation(
        a.as_tuple(),
        sig(a, node.key, staking_domain),
        b.as_tuple(),
        sig(b, node.key, staking_domain),
        sender=challenger.account,
    )
    accounts = [node.address] + [v.address for v in verifiers]
    assert opg.balanceOf(staking) == sum(total_stake(staking, a) for a in accounts)


def test_fraud_receipt_whose_amount_exceeds_its_cumulative_refunds_nothing(
    opg, staking, node, payer, verifiers, challenger, chain, staking_domain
):
    # A malformed receipt (amount > cumulative, here cumulative 0) is "settled" by any channel; it must not refund.
    receipt = make_receipt(node, payer, chain, amount=5 * OPG, cumulative=0)
    payer_before = opg.balanceOf(payer.address)
    tx = prove_fraud(staking, receipt, node, verifiers[:2], challenger, staking_domain)
    assert tx.decode_logs(staking.Slashed)[0].refund == 0
    assert opg.balanceOf(payer.address) == payer_before


def test_fraud_refunds_on_one_channel_never_exceed_what_it_paid(
    opg, escrow, escrow_domain, staking, node, payer, verifiers, challenger, chain, staking_domain
):
    # The channel paid 10 OPG; a node signing two fraudulent 10-OPG receipts cannot route 20 OPG of its slashed
    # stake to the payer: the second refund is capped at what is left (0), the rest is burned.
    settle(opg, escrow, escrow_domain, payer, node.address, 10 * OPG, deposit=100 * OPG)
    payer_before = opg.balanceOf(payer.address)
    refunds = []
    for request in ("req-a", "req-b"):
        receipt = make_receipt(node, payer, chain, request=request, amount=10 * OPG)
        tx = prove_fraud(staking, receipt, node, verifiers[:2], challenger, staking_domain)
        refunds.append(tx.decode_logs(staking.Slashed)[0].refund)
    assert refunds == [10 * OPG, 0]
    assert staking.refunded(payer.address, node.address) == 10 * OPG
    assert opg.balanceOf(payer.address) == payer_before + 10 * OPG
