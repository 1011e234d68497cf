"""NodeStaking v2 slashing: equivocation, invalid receipts, fraud by stake-weighted live quorum, verifier
accountability (double vote, lazy, false accuser), flags and payer disputes, freshness, replay, and the attack tests
of issue 6 (each performs the attack and shows it fails, next to the honest path).

Every signature is made with eth-account through the ``offchain.messages`` models; digest agreement with the SDK
is shown by the contract accepting those signatures.
"""

from __future__ import annotations

import ape
import pytest
from eth_utils import keccak

from offchain.ape_deploy import deploy_system
from offchain.messages import Claim, Domain, Receipt, Registration, Verdict, Voucher

OPG = 10**18
BPS = 10_000
INFERENCE = 1
VERIFIER = 2
KIND_EQUIVOCATION = 1
KIND_FRAUD = 2
KIND_LAZY_VERIFIER = 3
KIND_INVALID_RECEIPT = 4
KIND_DOUBLE_VOTE = 5
KIND_FALSE_ACCUSER = 6
SKIP_STALE = 1
SKIP_NODE_NOT_PAYABLE = 2
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


def rhash(receipt: Receipt) -> bytes:
    return receipt.struct_hash()


def verdict_sig(receipt: Receipt, valid: bool, verifier, domain) -> bytes:
    return sig(Verdict(receipt_hash="0x" + rhash(receipt).hex(), valid=valid), verifier.key, domain)


def verdicts(receipt: Receipt, signers, domain, valid: bool = False) -> list[tuple]:
    """``SignedVerdict`` tuples, verifiers in ascending address order."""
    ordered = sorted(signers, key=lambda a: int(a.address, 16))
    return [(v.address, verdict_sig(receipt, valid, v, domain)) for v in ordered]


def prove_fraud(staking, receipt, node, voters, challenger, domain):
    """Submit `slash_fraud` for `receipt` (signed by `node`) with `Verdict(valid=false)` from `voters`."""
    return staking.slash_fraud(
        receipt.as_tuple(), sig(receipt, node.key, domain), verdicts(receipt, voters, domain), sender=challenger.account
    )


def prove_valid(staking, receipt, node, voters, sender, domain):
    return staking.prove_valid(
        receipt.as_tuple(), sig(receipt, node.key, domain), verdicts(receipt, voters, domain, True), sender=sender.account
    )


def claim_for(payer, node_address, total, escrow_domain) -> tuple:
    voucher = Voucher(payer=payer.address, node=node_address, max_cumulative=total)
    return Claim(
        payer=payer.address,
        node=node_address,
        max_cumulative=total,
        signature=voucher.sign_with(payer.key, escrow_domain),
        total=total,
    ).as_tuple()


def deposit(opg, escrow, payer, amount):
    opg.approve(escrow, amount, sender=payer.account)
    escrow.deposit(amount, sender=payer.account)


def settle(opg, escrow, escrow_domain, payer, node_address, total, deposit_amount=0, sender=None):
    """Deposit for ``payer`` (if asked), sign a voucher for ``total`` and settle it through ``settle_batch``."""
    if deposit_amount:
        deposit(opg, escrow, payer, deposit_amount)
    claim = claim_for(payer, node_address, total, escrow_domain)
    # The escrow's facilitator submits it whoever ``sender`` names (a node's own settlement would propose first and
    # wait the claim delay: tests/contracts/credit_escrow/test_settlement_priority.py).
    return escrow.settle_batch([claim], ZERO_ROOT, sender=ape.accounts.test_accounts[2])


def total_stake(staking, account) -> int:
    record = staking.nodes(account)
    return record.stake + record.unbonding


def bps_of(total: int, bps: int) -> int:
    return (total * bps + BPS - 1) // BPS


def by_weight(staking, verifiers):
    """The ``verifiers`` fixture ordered by stake: (500, 1,000, 1,500 OPG); quorum 6,667 bps needs the two largest."""
    return sorted(verifiers, key=lambda v: staking.nodes(v.address).stake)


def wait(chain, seconds: int):
    chain.pending_timestamp += seconds
    chain.mine()


def relive(chain, staking, distributor, actors):
    """Heartbeat ``actors`` and move into the next epoch, where their recorded weights count."""
    for actor in actors:
        staking.heartbeat(sender=actor.account)
    epoch = distributor.epoch_now()
    while distributor.epoch_now() == epoch:
        wait(chain, 600)


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
    settle(opg, escrow, escrow_domain, payer, node.address, 10 * OPG, deposit_amount=100 * OPG)
    assert escrow.spent(payer.address, node.address) == 10 * OPG
    return receipt, sig(receipt, node.key, staking_domain)


# ---------------------------------------------------------------- digests


def test_receipt_hash_matches_offchain_struct_hash(staking, node, payer, chain):
    receipt = make_receipt(node, payer, chain)
    assert staking.receipt_hash(receipt.as_tuple()) == rhash(receipt)


# ---------------------------------------------------------------- equivocation


def test_equivocation_slashes_rewards_challenger_burns_rest_and_jails(
    opg, staking, node, challenger, equivocation, params
):
    stake = total_stake(staking, node.address)
    supply = opg.totalSupply()
    tx = staking.slash_equivocation(*equivocation, sender=challenger.account)
    expected = bps_of(stake, params.equivocation_slash_bps)
    reward = expected * params.challenger_reward_bps // BPS
    events = tx.decode_logs(staking.Slashed)
    assert len(events) == 1
    assert events[0].node == node.address
    assert events[0].kind == KIND_EQUIVOCATION
    assert events[0].amount == expected and events[0].reward == reward and events[0].burned == expected - reward
    assert tx.return_value == expected
    assert opg.balanceOf(challenger.address) == reward
    # v3: the rest is the node's refund reserve for two dispute windows, burned only after them.
    assert opg.totalSupply() == supply
    assert staking.reserve(node.address) == expected - reward
    assert total_stake(staking, node.address) == stake - expected
    assert staking.nodes(node.address).jailed
    assert not staking.is_payable(node.address)
    ape.chain.pending_timestamp = staking.reserve_until(node.address) + 1
    staking.burn_reserve(node.address, sender=challenger.account)
    assert opg.totalSupply() == supply - (expected - reward)


def test_equivocation_with_different_request_ids_reverts(staking, node, payer, chain, staking_domain):
    a = make_receipt(node, payer, chain, request="r1", output="a")
    b = make_receipt(node, payer, chain, request="r2", output="b")
    with ape.reverts("NodeStaking: different request ids"):
        staking.slash_equivocation(
            a.as_tuple(), sig(a, node.key, staking_domain), b.as_tuple(), sig(b, node.key, staking_domain),
            sender=payer.account,
        )


def test_equivocation_of_different_nodes_reverts(staking, node, payer, chain, staking_domain, make_actor):
    other = make_actor(0)
    a = make_receipt(node, payer, chain, output="a")
    b = make_receipt(other, payer, chain, output="b")
    with ape.reverts("NodeStaking: different nodes"):
        staking.slash_equivocation(
            a.as_tuple(), sig(a, node.key, staking_domain), b.as_tuple(), sig(b, other.key, staking_domain),
            sender=payer.account,
        )


def test_equivocation_with_identical_receipts_reverts(staking, node, payer, chain, staking_domain):
    a = make_receipt(node, payer, chain)
    s = sig(a, node.key, staking_domain)
    with ape.reverts("NodeStaking: identical receipts"):
        staking.slash_equivocation(a.as_tuple(), s, a.as_tuple(), s, sender=payer.account)


def test_equivocation_with_malleable_high_s_signature_reverts(staking, payer, equivocation):
    a, sa, b, sb = equivocation
    with ape.reverts("NodeStaking: invalid receipt"):
        staking.slash_equivocation(a, sa, b, high_s_twin(sb), sender=payer.account)


def test_equivocation_with_signature_swapped_between_receipts_reverts(staking, payer, equivocation):
    a, sa, b, sb = equivocation
    with ape.reverts("NodeStaking: invalid receipt"):
        staking.slash_equivocation(a, sb, b, sa, sender=payer.account)


def test_equivocation_with_truncated_signature_reverts(staking, payer, equivocation):
    a, sa, b, sb = equivocation
    with ape.reverts("NodeStaking: invalid receipt"):
        staking.slash_equivocation(a, sa, b, sb[:64], sender=payer.account)


def test_equivocation_signed_for_another_chain_id_reverts(staking, node, payer, chain, chain_id):
    wrong = Domain.staking(chain_id + 1, staking.address)
    a = make_receipt(node, payer, chain, output="a")
    b = make_receipt(node, payer, chain, output="b")
    with ape.reverts("NodeStaking: invalid receipt"):
        staking.slash_equivocation(
            a.as_tuple(), sig(a, node.key, wrong), b.as_tuple(), sig(b, node.key, wrong), sender=payer.account
        )


def test_equivocation_same_evidence_twice_reverts(staking, payer, equivocation):
    staking.slash_equivocation(*equivocation, sender=payer.account)
    with ape.reverts("NodeStaking: evidence already used"):
        staking.slash_equivocation(*equivocation, sender=payer.account)


def test_equivocation_evidence_exactly_at_dispute_window_edge_is_accepted(staking, payer, equivocation, chain, params):
    chain.pending_timestamp = equivocation[0].timestamp + params.dispute_window
    staking.slash_equivocation(*equivocation, sender=payer.account)


def test_equivocation_evidence_older_than_dispute_window_reverts(staking, payer, equivocation, chain, params):
    chain.pending_timestamp = equivocation[0].timestamp + params.dispute_window + 1
    with ape.reverts("NodeStaking: evidence too old"):
        staking.slash_equivocation(*equivocation, sender=payer.account)


def test_equivocation_by_unregistered_signer_has_nothing_to_slash(staking, payer, chain, staking_domain, make_actor):
    stranger = make_actor(0)
    a = make_receipt(stranger, payer, chain, output="a")
    b = make_receipt(stranger, payer, chain, output="b")
    with ape.reverts("NodeStaking: nothing to slash"):
        staking.slash_equivocation(
            a.as_tuple(), sig(a, stranger.key, staking_domain), b.as_tuple(), sig(b, stranger.key, staking_domain),
            sender=payer.account,
        )


def test_unbonding_stake_stays_slashable(staking, node, payer, equivocation, params):
    staking.request_unbond(staking.nodes(node.address).stake, sender=node.account)
    before = total_stake(staking, node.address)
    tx = staking.slash_equivocation(*equivocation, sender=payer.account)
    assert tx.return_value == bps_of(before, params.equivocation_slash_bps)
    assert staking.nodes(node.address).unbonding == before - tx.return_value


def test_staking_balance_matches_stakes_after_slash(opg, staking, node, payer, equivocation):
    # Other modules' session fixtures may hold stake here too: compare what the slash moved.
    held, stake = opg.balanceOf(staking), total_stake(staking, node.address)
    reserves = staking.reserves_held()
    staking.slash_equivocation(*equivocation, sender=payer.account)
    moved = stake - total_stake(staking, node.address)
    assert moved > 0
    # What left the stake is the challenger's reward (paid out) plus the reserve (held here until it burns).
    assert held - opg.balanceOf(staking) == moved - (staking.reserves_held() - reserves)


def test_equivocation_replayed_on_another_deployment_reverts(
    project, deployer, treasury, params, chain, chain_id, staking_domain, node, payer
):
    other = deploy_system(deployer, treasury=treasury.address, params=params, project=project)
    there = Domain.staking(chain_id, other.staking.address)
    other.opg.transfer(node.address, params.min_inference_stake, sender=treasury)
    other.opg.approve(other.staking, params.min_inference_stake, sender=node.account)
    registration = sig(Registration(account=node.address), node.key, there)
    other.staking.register(INFERENCE, params.min_inference_stake, "http://n.invalid", registration, sender=node.account)
    a = make_receipt(node, payer, chain, output="out-a")
    b = make_receipt(node, payer, chain, output="out-b")
    here = (a.as_tuple(), sig(a, node.key, staking_domain), b.as_tuple(), sig(b, node.key, staking_domain))
    with ape.reverts("NodeStaking: invalid receipt"):
        other.staking.slash_equivocation(*here, sender=payer.account)
    tx = other.staking.slash_equivocation(
        a.as_tuple(), sig(a, node.key, there), b.as_tuple(), sig(b, node.key, there), sender=payer.account
    )
    assert tx.return_value > 0


def test_registration_signed_for_another_deployment_reverts(
    project, deployer, treasury, params, staking_domain, make_actor
):
    other = deploy_system(deployer, treasury=treasury.address, params=params, project=project)
    actor = make_actor(0)
    other.opg.transfer(actor.address, params.min_inference_stake, sender=treasury)
    other.opg.approve(other.staking, params.min_inference_stake, sender=actor.account)
    with ape.reverts("NodeStaking: invalid registration"):
        other.staking.register(
            INFERENCE, params.min_inference_stake, "http://n.invalid",
            sig(Registration(account=actor.address), actor.key, staking_domain), sender=actor.account,
        )


# ---------------------------------------------------------------- invalid receipts (attack 14)


def test_attack_receipt_dated_far_in_the_future_is_slashable_at_once(
    staking, node, payer, challenger, chain, staking_domain, params
):
    receipt = make_receipt(node, payer, chain, timestamp=chain.pending_timestamp + 365 * 86_400)
    stake = total_stake(staking, node.address)
    tx = staking.slash_invalid_receipt(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=challenger.account)
    events = tx.decode_logs(staking.Slashed)
    assert events[0].kind == KIND_INVALID_RECEIPT
    assert tx.return_value == bps_of(stake, params.equivocation_slash_bps)
    assert staking.nodes(node.address).jailed


def test_attack_receipt_with_amount_above_cumulative_is_slashable(
    staking, node, payer, challenger, chain, staking_domain
):
    receipt = make_receipt(node, payer, chain, amount=10 * OPG, cumulative=5 * OPG)
    tx = staking.slash_invalid_receipt(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=challenger.account)
    assert tx.decode_logs(staking.Slashed)[0].kind == KIND_INVALID_RECEIPT
    with ape.reverts("NodeStaking: evidence already used"):
        staking.slash_invalid_receipt(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=challenger.account)


def test_well_formed_receipt_is_not_an_invalid_receipt(staking, node, payer, chain, staking_domain):
    receipt = make_receipt(node, payer, chain, timestamp=chain.pending_timestamp + 300)
    with ape.reverts("NodeStaking: receipt is well-formed"):
        staking.slash_invalid_receipt(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=payer.account)
    assert total_stake(staking, node.address) == 2 * 1_000 * OPG


# ---------------------------------------------------------------- fraud (honest path)


def test_fraud_with_quorum_refunds_payer_pays_verifiers_burns_rest_and_jails(
    opg, staking, escrow, node, payer, verifiers, challenger, settled_receipt, staking_domain, params
):
    receipt, _ = settled_receipt
    small, mid, big = by_weight(staking, verifiers)
    stake = total_stake(staking, node.address)
    payer_before = opg.balanceOf(payer.address)
    mid_before, big_before = opg.balanceOf(mid.address), opg.balanceOf(big.address)
    tx = prove_fraud(staking, receipt, node, [mid, big], challenger, staking_domain)
    expected = receipt.amount * params.fraud_multiplier + bps_of(stake, params.fraud_slash_bps)
    event = tx.decode_logs(staking.Slashed)[0]
    assert event.kind == KIND_FRAUD and event.payer == payer.address
    assert event.amount == expected == tx.return_value
    assert event.refund == receipt.amount
    reward = (expected - receipt.amount) * params.challenger_reward_bps // BPS
    mid_share, big_share = reward * 1_000 // 2_500, reward * 1_500 // 2_500
    assert event.reward == mid_share + big_share
    assert event.burned == expected - receipt.amount - mid_share - big_share
    assert opg.balanceOf(payer.address) == payer_before + receipt.amount
    assert opg.balanceOf(mid.address) == mid_before + mid_share
    assert opg.balanceOf(big.address) == big_before + big_share
    assert staking.nodes(node.address).jailed
    assert staking.fraud_proven_at(rhash(receipt)) > 0
    fp = tx.decode_logs(staking.FraudProven)[0]
    assert fp.weight == 2_500 * OPG and fp.total_weight == 3_000 * OPG


def test_fraud_below_quorum_reverts(staking, node, verifiers, challenger, settled_receipt, staking_domain):
    receipt, _ = settled_receipt
    small, mid, big = by_weight(staking, verifiers)
    # 2,000 of 3,000 OPG is 6,666 bps, below 6,667.
    with ape.reverts("NodeStaking: quorum not reached"):
        prove_fraud(staking, receipt, node, [small, big], challenger, staking_domain)


def test_fraud_with_duplicate_verifier_reverts(staking, node, verifiers, challenger, settled_receipt, staking_domain):
    receipt, signature = settled_receipt
    _, _, big = by_weight(staking, verifiers)
    one = verdicts(receipt, [big], staking_domain)[0]
    with ape.reverts("NodeStaking: verifiers not ascending"):
        staking.slash_fraud(receipt.as_tuple(), signature, [one, one], sender=challenger.account)


def test_fraud_with_descending_verifiers_reverts(staking, verifiers, challenger, settled_receipt, staking_domain):
    receipt, signature = settled_receipt
    ordered = verdicts(receipt, verifiers, staking_domain)
    with ape.reverts("NodeStaking: verifiers not ascending"):
        staking.slash_fraud(receipt.as_tuple(), signature, list(reversed(ordered)), sender=challenger.account)


def test_fraud_with_valid_true_verdict_presented_as_false_reverts(
    staking, verifiers, challenger, settled_receipt, staking_domain
):
    receipt, signature = settled_receipt
    with ape.reverts("NodeStaking: invalid verdict"):
        staking.slash_fraud(
            receipt.as_tuple(), signature, verdicts(receipt, verifiers, staking_domain, True), sender=challenger.account
        )


def test_fraud_with_receipt_not_signed_by_its_node_reverts(
    staking, verifiers, challenger, settled_receipt, staking_domain, payer
):
    receipt, _ = settled_receipt
    with ape.reverts("NodeStaking: invalid receipt"):
        staking.slash_fraud(
            receipt.as_tuple(), sig(receipt, payer.key, staking_domain), verdicts(receipt, verifiers, staking_domain),
            sender=challenger.account,
        )


def test_fraud_same_evidence_twice_reverts(staking, node, verifiers, challenger, settled_receipt, staking_domain):
    receipt, _ = settled_receipt
    prove_fraud(staking, receipt, node, verifiers, challenger, staking_domain)
    with ape.reverts("NodeStaking: evidence already used"):
        prove_fraud(staking, receipt, node, verifiers, challenger, staking_domain)


def test_fraud_evidence_older_than_dispute_window_reverts(
    staking, escrow, distributor, node, verifiers, challenger, settled_receipt, staking_domain, chain, params
):
    receipt, _ = settled_receipt
    # The window runs from the later of the receipt's time and its channel's settlement (a loaded machine may mine
    # the settlement a second after the receipt's time).
    start = max(receipt.timestamp, escrow.settled_at(receipt.payer, receipt.node))
    chain.pending_timestamp = start + params.dispute_window + 1
    with ape.reverts("NodeStaking: evidence too old"):
        prove_fraud(staking, receipt, node, verifiers, challenger, staking_domain)


def test_fraud_with_no_live_weight_reverts(
    staking, distributor, node, payer, chain, make_actor, register, staking_domain, challenger, params
):
    lone = make_actor()
    register(lone, VERIFIER, 500 * OPG)
    wait(chain, 2 * params.epoch_length)  # an epoch nobody heartbeated for
    assert staking.total_weight_in(distributor.epoch_now()) == 0
    receipt = make_receipt(node, payer, chain)
    with ape.reverts("NodeStaking: no live weight"):
        prove_fraud(staking, receipt, node, [lone], challenger, staking_domain)


def test_fraud_against_a_verifier_account_reverts(staking, verifiers, payer, chain, challenger, staking_domain):
    small, mid, big = by_weight(staking, verifiers)
    receipt = make_receipt(small, payer, chain)
    with ape.reverts("NodeStaking: not an inference node"):
        prove_fraud(staking, receipt, small, [mid, big], challenger, staking_domain)


def test_jailed_node_cannot_be_paid_by_settle_batch(
    opg, staking, escrow, escrow_domain, node, payer, challenger, equivocation
):
    staking.slash_equivocation(*equivocation, sender=challenger.account)
    deposit(opg, escrow, payer, 50 * OPG)
    tx = escrow.settle_batch(
        [claim_for(payer, node.address, 5 * OPG, escrow_domain)], ZERO_ROOT, sender=ape.accounts.test_accounts[2]
    )
    skipped = tx.decode_logs(escrow.ClaimSkipped)
    assert skipped[0].reason == SKIP_NODE_NOT_PAYABLE


def test_jailed_node_is_released_after_a_window_with_stake_restored(
    opg, staking, node, payer, challenger, equivocation, chain, params
):
    before = staking.nodes(node.address).stake
    tx = staking.slash_equivocation(*equivocation, sender=challenger.account)
    lost = tx.return_value
    opg.approve(staking, lost, sender=node.account)
    wait(chain, params.dispute_window)
    tx = staking.add_stake(lost, sender=node.account)
    assert len(tx.decode_logs(staking.Unjailed)) == 1
    assert not staking.nodes(node.address).jailed
    assert staking.nodes(node.address).stake == before
    assert staking.is_payable(node.address)


# ---------------------------------------------------------------- attack 1: sybil verifiers


@pytest.fixture
def sybils(make_actor, register, params):
    out = []
    for _ in range(2):
        actor = make_actor()
        register(actor, VERIFIER, params.min_verifier_stake, "http://sybil.invalid")
        out.append(actor)
    return out


def test_attack_fresh_sybil_verifiers_have_no_weight_and_cannot_slash_honest_node(
    staking, distributor, node, payer, verifiers, sybils, challenger, chain, staking_domain, params
):
    for s in sybils:
        assert staking.heartbeat(sender=s.account).return_value == 0
    receipt = make_receipt(node, payer, chain)
    with ape.reverts("NodeStaking: quorum not reached"):
        prove_fraud(staking, receipt, node, sybils, challenger, staking_domain)
    # Even in the next epoch their fresh stake weighs nothing.
    relive(chain, staking, distributor, verifiers)
    assert all(staking.vote_weight(s.address) == 0 for s in sybils)
    with ape.reverts("NodeStaking: quorum not reached"):
        prove_fraud(staking, receipt, node, sybils, challenger, staking_domain)
    assert total_stake(staking, node.address) == 2 * params.min_inference_stake
    assert not staking.nodes(node.address).jailed


def test_attack_warm_live_sybil_verifiers_below_quorum_cannot_slash_honest_node(
    staking, distributor, node, payer, verifiers, sybils, challenger, chain, staking_domain, params
):
    wait(chain, params.warmup)
    relive(chain, staking, distributor, verifiers + sybils)
    assert all(staking.vote_weight(s.address) == params.min_verifier_stake for s in sybils)
    assert staking.total_weight_in(distributor.epoch_now()) == 4_000 * OPG
    honest = by_weight(staking, verifiers)
    for i in range(8):
        receipt = make_receipt(node, payer, chain, request=f"req-{i}")
        with ape.reverts("NodeStaking: quorum not reached"):
            prove_fraud(staking, receipt, node, sybils, challenger, staking_domain)
    # The sybils plus the smallest honest verifier (1,500 of 4,000) are still short.
    with ape.reverts("NodeStaking: quorum not reached"):
        prove_fraud(staking, receipt, node, sybils + [honest[0]], challenger, staking_domain)
    assert total_stake(staking, node.address) == 2 * params.min_inference_stake
    assert staking.is_payable(node.address)


def test_attack_honest_valid_true_verifier_is_not_lazy_slashable_after_failed_sybil_attack(
    staking, node, payer, verifiers, sybils, challenger, chain, staking_domain
):
    receipt = make_receipt(node, payer, chain)
    with ape.reverts("NodeStaking: quorum not reached"):
        prove_fraud(staking, receipt, node, sybils, challenger, staking_domain)
    honest = verifiers[0]
    with ape.reverts("NodeStaking: receipt not judged"):
        staking.slash_verifier(rhash(receipt), honest.address, verdict_sig(receipt, True, honest, staking_domain),
                               sender=challenger.account)
    # Once the quorum proves it valid, a valid=true verdict is no evidence against its signer either.
    prove_valid(staking, receipt, node, verifiers, challenger, staking_domain)
    with ape.reverts("NodeStaking: invalid verdict"):
        staking.slash_verifier(rhash(receipt), honest.address, verdict_sig(receipt, True, honest, staking_domain),
                               sender=challenger.account)
    assert staking.nodes(honest.address).stake > 0 and not staking.nodes(honest.address).jailed


def test_honest_quorum_still_proves_fraud_beside_sybils(
    staking, distributor, node, payer, verifiers, sybils, challenger, chain, staking_domain, params
):
    wait(chain, params.warmup)
    relive(chain, staking, distributor, verifiers + sybils)
    receipt = make_receipt(node, payer, chain)
    # 500 + 500 + 1,000 + 1,500 = 3,500 of 4,000 reaches the quorum.
    honest = by_weight(staking, verifiers)
    tx = prove_fraud(staking, receipt, node, sybils + honest[1:], challenger, staking_domain)
    assert tx.decode_logs(staking.Slashed)[0].kind == KIND_FRAUD


# ---------------------------------------------------------------- attack 2: code at the node's address


def test_attack_node_with_code_at_its_address_is_still_slashable_for_equivocation(
    chain, staking, node, challenger, equivocation
):
    chain.provider.make_request("anvil_setCode", [node.address, "0x6000"])
    assert len(chain.provider.get_code(node.address)) > 0
    tx = staking.slash_equivocation(*equivocation, sender=challenger.account)
    assert tx.return_value > 0
    assert staking.nodes(node.address).jailed


def test_attack_node_with_code_at_its_address_is_still_slashable_for_fraud(
    chain, staking, node, verifiers, challenger, settled_receipt, staking_domain
):
    receipt, _ = settled_receipt
    chain.provider.make_request("anvil_setCode", [node.address, "0x6000"])
    tx = prove_fraud(staking, receipt, node, verifiers, challenger, staking_domain)
    assert tx.decode_logs(staking.Slashed)[0].kind == KIND_FRAUD


# ---------------------------------------------------------------- attack 6: fraud before settlement


def test_attack_fraud_proven_before_settlement_voids_the_charges(
    opg, staking, escrow, node, payer, verifiers, challenger, chain, staking_domain
):
    deposit(opg, escrow, payer, 100 * OPG)
    receipt = make_receipt(node, payer, chain, amount=10 * OPG, cumulative=10 * OPG)
    tx = prove_fraud(staking, receipt, node, verifiers, challenger, staking_domain)
    voided = tx.decode_logs(escrow.ChargesVoided)
    assert len(voided) == 1 and voided[0].amount == 10 * OPG and voided[0].spent == 10 * OPG
    assert escrow.spent(payer.address, node.address) == 10 * OPG
    assert escrow.voided(payer.address, node.address) == 10 * OPG
    assert tx.decode_logs(staking.Slashed)[0].refund == 0
    assert escrow.balance_of(payer.address) == 100 * OPG


def test_attack_fraudulent_node_cannot_settle_voided_work_after_unjailing(
    opg, staking, escrow, escrow_domain, node, payer, verifiers, challenger, chain, staking_domain, params
):
    deposit(opg, escrow, payer, 100 * OPG)
    receipt = make_receipt(node, payer, chain, amount=10 * OPG, cumulative=10 * OPG)
    claim = claim_for(payer, node.address, 10 * OPG, escrow_domain)
    before = staking.nodes(node.address).stake
    lost = prove_fraud(staking, receipt, node, verifiers, challenger, staking_domain).return_value
    wait(chain, params.dispute_window)
    opg.approve(staking, lost, sender=node.account)
    staking.add_stake(lost, sender=node.account)
    assert staking.nodes(node.address).stake == before and staking.is_payable(node.address)
    tx = escrow.settle_batch([claim], ZERO_ROOT, sender=ape.accounts.test_accounts[2])  # the facilitator
    assert tx.decode_logs(escrow.ClaimSkipped)[0].reason == SKIP_STALE
    assert escrow.balance_of(payer.address) == 100 * OPG


def test_attack_unjail_with_one_wei_fails(opg, staking, node, verifiers, payer, challenger, chain, staking_domain, params):
    receipt = make_receipt(node, payer, chain)
    prove_fraud(staking, receipt, node, verifiers, challenger, staking_domain)
    opg.approve(staking, 2, sender=node.account)
    staking.add_stake(1, sender=node.account)
    assert staking.nodes(node.address).jailed
    with ape.reverts("NodeStaking: jail not over"):
        staking.unjail(sender=node.account)
    # After a dispute window, one wei is still not the pre-slash stake.
    wait(chain, params.dispute_window)
    staking.add_stake(1, sender=node.account)
    assert staking.nodes(node.address).jailed
    with ape.reverts("NodeStaking: jail not over"):
        staking.unjail(sender=node.account)


def test_unjail_when_not_jailed_reverts(staking, node):
    with ape.reverts("NodeStaking: not jailed"):
        staking.unjail(sender=node.account)


def test_unjail_succeeds_after_window_with_stake_restored(
    opg, staking, node, verifiers, payer, challenger, chain, staking_domain, params
):
    receipt = make_receipt(node, payer, chain)
    before = staking.nodes(node.address).stake
    prove_fraud(staking, receipt, node, verifiers, challenger, staking_domain)
    wait(chain, params.dispute_window)
    short = before - staking.nodes(node.address).stake
    opg.approve(staking, short, sender=node.account)
    # All but one wei keeps it jailed; the last wei releases it.
    staking.add_stake(short - 1, sender=node.account)
    assert staking.nodes(node.address).jailed
    staking.add_stake(1, sender=node.account)
    assert not staking.nodes(node.address).jailed


# ---------------------------------------------------------------- attack 7 / 14b: backdated receipts


def test_attack_backdated_receipt_settled_later_stays_admissible(
    opg, staking, escrow, escrow_domain, node, payer, challenger, chain, staking_domain, params
):
    old = chain.pending_timestamp
    a = make_receipt(node, payer, chain, output="a", timestamp=old)
    b = make_receipt(node, payer, chain, output="b", timestamp=old)
    deposit(opg, escrow, payer, 100 * OPG)
    wait(chain, 2 * params.dispute_window)
    settle(opg, escrow, escrow_domain, payer, node.address, 10 * OPG, sender=node)
    settled = escrow.settled_at(payer.address, node.address)
    chain.pending_timestamp = settled + params.dispute_window
    tx = staking.slash_equivocation(
        a.as_tuple(), sig(a, node.key, staking_domain), b.as_tuple(), sig(b, node.key, staking_domain),
        sender=challenger.account,
    )
    assert tx.return_value > 0


def test_backdated_receipt_is_inadmissible_a_window_after_the_settlement(
    opg, staking, escrow, escrow_domain, node, payer, challenger, chain, staking_domain, params
):
    old = chain.pending_timestamp
    a = make_receipt(node, payer, chain, output="a", timestamp=old)
    b = make_receipt(node, payer, chain, output="b", timestamp=old)
    wait(chain, 2 * params.dispute_window)
    settle(opg, escrow, escrow_domain, payer, node.address, 10 * OPG, deposit_amount=100 * OPG, sender=node)
    chain.pending_timestamp = escrow.settled_at(payer.address, node.address) + params.dispute_window + 1
    with ape.reverts("NodeStaking: evidence too old"):
        staking.slash_equivocation(
            a.as_tuple(), sig(a, node.key, staking_domain), b.as_tuple(), sig(b, node.key, staking_domain),
            sender=challenger.account,
        )


def test_attack_settling_one_block_before_withdraw_is_refused_once_unbonding(
    opg, staking, escrow, escrow_domain, node, payer, chain, params
):
    # v3: unbonding stake backs no new pay, so the held-back voucher cannot reopen a dispute window over stake that
    # is about to leave: the claim is skipped (reason 2) and the channel is not charged.
    deposit(opg, escrow, payer, 100 * OPG)
    staking.request_unbond(staking.nodes(node.address).stake, sender=node.account)
    ready = staking.nodes(node.address).unbond_ready_at
    chain.pending_timestamp = ready - 1
    tx = settle(opg, escrow, escrow_domain, payer, node.address, 10 * OPG, sender=node)
    assert [e.reason for e in tx.decode_logs(escrow.ClaimSkipped)] == [SKIP_NODE_NOT_PAYABLE]
    assert escrow.spent(payer.address, node.address) == 0
    chain.pending_timestamp = ready
    assert staking.withdraw_unbonded(sender=node.account).return_value == 2 * params.min_inference_stake


def test_withdraw_unbonded_after_settling_waits_until_the_pay_is_no_longer_provable(
    opg, staking, escrow, escrow_domain, node, payer, chain, params
):
    # Pay settled while the stake was active stays backed until its last provable second (a receipt flagged in its
    # window's last second stays provable one more: two dispute windows + MAX_FUTURE after the settlement), however
    # short the unbonding period (second review, finding 4).
    settle(opg, escrow, escrow_domain, payer, node.address, 10 * OPG, deposit_amount=100 * OPG, sender=node)
    staking.request_unbond(staking.nodes(node.address).stake, sender=node.account)
    ready = staking.nodes(node.address).unbond_ready_at
    provable_until = escrow.node_settled_at(node.address) + 2 * params.dispute_window + staking.MAX_FUTURE()
    assert ready == provable_until + 1
    chain.pending_timestamp = ready - 1
    with ape.reverts("NodeStaking: still unbonding"):
        staking.withdraw_unbonded(sender=node.account)
    chain.pending_timestamp = ready
    before = opg.balanceOf(node.address)
    tx = staking.withdraw_unbonded(sender=node.account)
    assert tx.return_value == 2 * params.min_inference_stake
    assert opg.balanceOf(node.address) == before + 2 * params.min_inference_stake


# ---------------------------------------------------------------- attack 10: cost per proven receipt


def test_attack_each_further_receipt_of_an_offence_costs_the_multiple(
    staking, node, payer, verifiers, challenger, chain, staking_domain, params
):
    stake = total_stake(staking, node.address)
    receipts = [make_receipt(node, payer, chain, request=f"r{i}", amount=(i + 1) * OPG, cumulative=(i + 1) * OPG)
                for i in range(3)]
    first = prove_fraud(staking, receipts[0], node, verifiers, challenger, staking_domain).return_value
    assert first == params.fraud_multiplier * OPG + bps_of(stake, params.fraud_slash_bps)
    jailed = staking.nodes(node.address)
    assert jailed.jailed
    for receipt in receipts[1:]:
        before = total_stake(staking, node.address)
        taken = prove_fraud(staking, receipt, node, verifiers, challenger, staking_domain).return_value
        # Not free after the first slash, and no second per-offence share.
        assert taken == params.fraud_multiplier * receipt.amount
        assert total_stake(staking, node.address) == before - taken
    assert staking.nodes(node.address).jailed_at == jailed.jailed_at
    assert staking.nodes(node.address).restore_stake == jailed.restore_stake


def test_fraud_penalty_never_exceeds_what_is_slashable(
    staking, node, payer, verifiers, challenger, chain, staking_domain, params
):
    stake = total_stake(staking, node.address)
    receipt = make_receipt(node, payer, chain, amount=stake, cumulative=stake)
    taken = prove_fraud(staking, receipt, node, verifiers, challenger, staking_domain).return_value
    assert taken == stake
    assert total_stake(staking, node.address) == 0


def test_receipt_signed_after_release_is_a_new_offence(
    opg, staking, node, payer, verifiers, challenger, chain, staking_domain, params, distributor
):
    r1 = make_receipt(node, payer, chain, request="r1")
    before = staking.nodes(node.address).stake
    lost = prove_fraud(staking, r1, node, verifiers, challenger, staking_domain).return_value
    wait(chain, params.dispute_window)
    opg.approve(staking, lost, sender=node.account)
    staking.add_stake(lost, sender=node.account)
    assert not staking.nodes(node.address).jailed
    relive(chain, staking, distributor, verifiers)
    r2 = make_receipt(node, payer, chain, request="r2")
    taken = prove_fraud(staking, r2, node, verifiers, challenger, staking_domain).return_value
    assert taken == params.fraud_multiplier * r2.amount + bps_of(before, params.fraud_slash_bps)
    assert staking.nodes(node.address).jailed


# ---------------------------------------------------------------- attack 11: idle stake, double votes, false accusers


def test_attack_idle_verifier_stake_does_not_block_fraud_proof(
    staking, distributor, node, payer, verifiers, challenger, chain, staking_domain, make_actor, register, params
):
    idle = make_actor(1_000_000 * OPG)
    register(idle, VERIFIER, 100_000 * OPG)
    wait(chain, params.warmup)
    relive(chain, staking, distributor, verifiers)  # the idle verifier never heartbeats
    assert staking.vote_weight(idle.address) == 0
    assert staking.total_weight_in(distributor.epoch_now()) == 3_000 * OPG
    receipt = make_receipt(node, payer, chain)
    tx = prove_fraud(staking, receipt, node, by_weight(staking, verifiers)[1:], challenger, staking_domain)
    assert tx.decode_logs(staking.Slashed)[0].kind == KIND_FRAUD


def test_attack_verifier_signing_both_ways_is_slashed_for_double_vote(
    opg, staking, node, payer, verifiers, challenger, chain, staking_domain, params
):
    receipt = make_receipt(node, payer, chain)
    v = verifiers[0]
    stake = total_stake(staking, v.address)
    t, f = verdict_sig(receipt, True, v, staking_domain), verdict_sig(receipt, False, v, staking_domain)
    tx = staking.slash_double_vote(rhash(receipt), v.address, t, f, sender=challenger.account)
    event = tx.decode_logs(staking.Slashed)[0]
    assert event.kind == KIND_DOUBLE_VOTE and event.node == v.address
    assert tx.return_value == bps_of(stake, params.fraud_slash_bps)
    assert staking.nodes(v.address).jailed
    assert staking.vote_weight(v.address) == 0
    with ape.reverts("NodeStaking: evidence already used"):
        staking.slash_double_vote(rhash(receipt), v.address, t, f, sender=challenger.account)


def test_double_vote_with_one_way_only_reverts(staking, node, payer, verifiers, challenger, chain, staking_domain):
    receipt = make_receipt(node, payer, chain)
    v = verifiers[0]
    t = verdict_sig(receipt, True, v, staking_domain)
    with ape.reverts("NodeStaking: invalid verdict"):
        staking.slash_double_vote(rhash(receipt), v.address, t, t, sender=challenger.account)


def test_double_vote_against_non_verifier_reverts(staking, node, payer, challenger, chain, staking_domain):
    receipt = make_receipt(node, payer, chain)
    t, f = verdict_sig(receipt, True, node, staking_domain), verdict_sig(receipt, False, node, staking_domain)
    with ape.reverts("NodeStaking: not a verifier"):
        staking.slash_double_vote(rhash(receipt), node.address, t, f, sender=challenger.account)


def test_attack_false_accuser_is_slashed_after_prove_valid(
    staking, node, payer, verifiers, challenger, chain, staking_domain, params
):
    small, mid, big = by_weight(staking, verifiers)
    receipt = make_receipt(node, payer, chain)
    accusation = verdict_sig(receipt, False, small, staking_domain)
    with ape.reverts("NodeStaking: receipt not judged"):
        staking.slash_verifier(rhash(receipt), small.address, accusation, sender=challenger.account)
    tx = prove_valid(staking, receipt, node, [mid, big], challenger, staking_domain)
    assert len(tx.decode_logs(staking.ValidityProven)) == 1
    stake = total_stake(staking, small.address)
    tx = staking.slash_verifier(rhash(receipt), small.address, accusation, sender=challenger.account)
    event = tx.decode_logs(staking.Slashed)[0]
    assert event.kind == KIND_FALSE_ACCUSER and event.node == small.address
    assert tx.return_value == bps_of(stake, params.fraud_slash_bps)
    assert total_stake(staking, node.address) == 2 * params.min_inference_stake
    with ape.reverts("NodeStaking: proven valid"):
        prove_fraud(staking, receipt, node, verifiers, challenger, staking_domain)


def test_attack_false_accuser_by_on_chain_flag_is_slashed_after_prove_valid(
    staking, node, payer, verifiers, challenger, chain, staking_domain
):
    small, mid, big = by_weight(staking, verifiers)
    receipt = make_receipt(node, payer, chain)
    staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=small.account)
    prove_valid(staking, receipt, node, [mid, big], challenger, staking_domain)
    tx = staking.slash_verifier(rhash(receipt), small.address, b"", sender=challenger.account)
    assert tx.decode_logs(staking.Slashed)[0].kind == KIND_FALSE_ACCUSER
    with ape.reverts("NodeStaking: no flag"):
        staking.slash_verifier(rhash(receipt), mid.address, b"", sender=challenger.account)


def test_prove_valid_below_quorum_reverts(staking, node, payer, verifiers, challenger, chain, staking_domain):
    small, mid, big = by_weight(staking, verifiers)
    receipt = make_receipt(node, payer, chain)
    with ape.reverts("NodeStaking: quorum not reached"):
        prove_valid(staking, receipt, node, [small, big], challenger, staking_domain)


def test_prove_valid_after_fraud_proven_reverts(staking, node, payer, verifiers, challenger, chain, staking_domain):
    receipt = make_receipt(node, payer, chain)
    prove_fraud(staking, receipt, node, verifiers, challenger, staking_domain)
    with ape.reverts("NodeStaking: proven fraudulent"):
        prove_valid(staking, receipt, node, verifiers, challenger, staking_domain)


def test_lazy_verifier_is_slashed_and_loses_its_vote(
    staking, node, payer, verifiers, challenger, chain, staking_domain, params
):
    small, mid, big = by_weight(staking, verifiers)
    receipt = make_receipt(node, payer, chain)
    lazy = verdict_sig(receipt, True, small, staking_domain)
    prove_fraud(staking, receipt, node, [mid, big], challenger, staking_domain)
    stake = total_stake(staking, small.address)
    tx = staking.slash_verifier(rhash(receipt), small.address, lazy, sender=challenger.account)
    event = tx.decode_logs(staking.Slashed)[0]
    assert event.kind == KIND_LAZY_VERIFIER
    assert tx.return_value == bps_of(stake, params.fraud_slash_bps)
    assert staking.nodes(small.address).jailed and staking.vote_weight(small.address) == 0


def test_lazy_verifier_with_valid_false_verdict_reverts(
    staking, node, payer, verifiers, challenger, chain, staking_domain
):
    small, mid, big = by_weight(staking, verifiers)
    receipt = make_receipt(node, payer, chain)
    prove_fraud(staking, receipt, node, [mid, big], challenger, staking_domain)
    with ape.reverts("NodeStaking: invalid verdict"):
        staking.slash_verifier(rhash(receipt), mid.address, verdict_sig(receipt, False, mid, staking_domain),
                               sender=challenger.account)


def test_lazy_verifier_evidence_older_than_a_window_after_the_proof_reverts(
    staking, node, payer, verifiers, challenger, chain, staking_domain, params
):
    small, mid, big = by_weight(staking, verifiers)
    receipt = make_receipt(node, payer, chain)
    prove_fraud(staking, receipt, node, [mid, big], challenger, staking_domain)
    chain.pending_timestamp = staking.fraud_proven_at(rhash(receipt)) + params.dispute_window + 1
    with ape.reverts("NodeStaking: evidence too old"):
        staking.slash_verifier(rhash(receipt), small.address, verdict_sig(receipt, True, small, staking_domain),
                               sender=challenger.account)


def test_attack_lazy_evidence_against_many_receipts_slashes_a_verifier_once_per_window(
    staking, node, payer, verifiers, challenger, chain, staking_domain, params
):
    small, mid, big = by_weight(staking, verifiers)
    receipts = [make_receipt(node, payer, chain, request=f"r{i}") for i in range(3)]
    for receipt in receipts:
        prove_fraud(staking, receipt, node, [mid, big], challenger, staking_domain)
    first = staking.slash_verifier(rhash(receipts[0]), small.address,
                                   verdict_sig(receipts[0], True, small, staking_domain), sender=challenger.account)
    assert first.return_value > 0
    for receipt in receipts[1:]:
        with ape.reverts("NodeStaking: slashed this window"):
            staking.slash_verifier(rhash(receipt), small.address, verdict_sig(receipt, True, small, staking_domain),
                                   sender=challenger.account)


# ---------------------------------------------------------------- attack 12: front-running with fresh stake


def test_attack_accused_node_front_running_with_fresh_verifier_stake_does_not_dilute_quorum(
    staking, distributor, node, payer, verifiers, challenger, chain, staking_domain, make_actor, register
):
    epoch = distributor.epoch_now()
    total = staking.total_weight_in(epoch)
    friend = make_actor(1_000_000 * OPG)
    register(friend, VERIFIER, 100_000 * OPG)
    staking.heartbeat(sender=friend.account)
    assert staking.vote_weight(friend.address) == 0
    assert staking.total_weight_in(epoch) == total
    assert staking.weight_in(epoch + 1, friend.address) == 0
    receipt = make_receipt(node, payer, chain)
    tx = prove_fraud(staking, receipt, node, by_weight(staking, verifiers)[1:], challenger, staking_domain)
    assert tx.decode_logs(staking.FraudProven)[0].total_weight == total


def test_attack_fresh_front_run_stake_still_weighs_nothing_next_epoch(
    staking, distributor, node, payer, verifiers, challenger, chain, staking_domain, make_actor, register
):
    friend = make_actor(1_000_000 * OPG)
    register(friend, VERIFIER, 100_000 * OPG)
    relive(chain, staking, distributor, verifiers + [friend])
    assert staking.vote_weight(friend.address) == 0
    assert staking.total_weight_in(distributor.epoch_now()) == 3_000 * OPG
    receipt = make_receipt(node, payer, chain)
    prove_fraud(staking, receipt, node, by_weight(staking, verifiers)[1:], challenger, staking_domain)


# ---------------------------------------------------------------- attack 18: flags and disputes


def test_attack_flag_by_non_verifier_reverts(staking, node, payer, chain, staking_domain, make_actor, register):
    receipt = make_receipt(node, payer, chain)
    stranger = make_actor(0)
    with ape.reverts("NodeStaking: not an active verifier"):
        staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=stranger.account)
    with ape.reverts("NodeStaking: not an active verifier"):
        staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=node.account)


def test_flag_by_active_verifier_is_a_public_event(staking, node, payer, verifiers, chain, staking_domain):
    receipt = make_receipt(node, payer, chain)
    v = verifiers[0]
    tx = staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=v.account)
    event = tx.decode_logs(staking.Flagged)[0]
    assert event.receipt_hash == rhash(receipt) and event.node == node.address and event.flagger == v.address
    assert event.payer == payer.address and event.bond == 0
    assert event.request_id == bytes.fromhex(receipt.request_id[2:])
    assert staking.flagged_by(rhash(receipt), v.address)
    with ape.reverts("NodeStaking: already flagged"):
        staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=v.account)


def test_flag_of_a_judged_receipt_reverts(staking, node, payer, verifiers, challenger, chain, staking_domain):
    receipt = make_receipt(node, payer, chain)
    prove_valid(staking, receipt, node, verifiers, challenger, staking_domain)
    with ape.reverts("NodeStaking: already judged"):
        staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=verifiers[0].account)


def dispute(opg, staking, receipt, node, payer, domain):
    opg.approve(staking, receipt.amount, sender=payer.account)
    return staking.flag(receipt.as_tuple(), sig(receipt, node.key, domain), sender=payer.account)


def test_attack_payer_dispute_posts_a_bond_equal_to_the_amount(opg, staking, node, payer, chain, staking_domain):
    receipt = make_receipt(node, payer, chain, amount=7 * OPG)
    before = opg.balanceOf(payer.address)
    tx = dispute(opg, staking, receipt, node, payer, staking_domain)
    event = tx.decode_logs(staking.Flagged)[0]
    assert event.flagger == payer.address and event.bond == 7 * OPG
    assert opg.balanceOf(payer.address) == before - 7 * OPG
    assert staking.bonds_held() == 7 * OPG
    assert staking.disputes(rhash(receipt)).bond == 7 * OPG
    with ape.reverts("NodeStaking: already disputed"):
        dispute(opg, staking, receipt, node, payer, staking_domain)


def test_payer_dispute_of_zero_amount_receipt_reverts(opg, staking, node, payer, chain, staking_domain):
    receipt = make_receipt(node, payer, chain, amount=0, cumulative=0)
    with ape.reverts("NodeStaking: zero amount"):
        staking.flag(receipt.as_tuple(), sig(receipt, node.key, staking_domain), sender=payer.account)


def test_dispute_bond_is_returned_on_fraud_proof(opg, staking, node, payer, verifiers, challenger, chain, staking_domain):
    receipt = make_receipt(node, payer, chain, amount=7 * OPG)
    dispute(opg, staking, receipt, node, payer, staking_domain)
    before = opg.balanceOf(payer.address)
    tx = prove_fraud(staking, receipt, node, verifiers, challenger, staking_domain)
    resolved = tx.decode_logs(staking.DisputeResolved)[0]
    assert resolved.paid_to == payer.address and resolved.bond == 7 * OPG
    refund = tx.decode_logs(staking.Slashed)[0].refund
    assert opg.balanceOf(payer.address) == before + 7 * OPG + refund
    assert staking.bonds_held() == 0


def test_attack_false_dispute_bond_goes_to_the_node_on_prove_valid(
    opg, staking, node, payer, verifiers, challenger, chain, staking_domain
):
    receipt = make_receipt(node, payer, chain, amount=7 * OPG)
    dispute(opg, staking, receipt, node, payer, staking_domain)
    before = opg.balanceOf(node.address)
    tx = prove_valid(staking, receipt, node, verifiers, challenger, staking_domain)
    assert tx.decode_logs(staking.DisputeResolved)[0].paid_to == node.address
    assert opg.balanceOf(node.address) == before + 7 * OPG
    assert staking.bonds_held() == 0
    with ape.reverts("NodeStaking: no open dispute"):
        staking.reclaim_bond(rhash(receipt), sender=payer.account)


def test_dispute_bond_is_reclaimable_after_two_windows(opg, staking, node, payer, chain, staking_domain, params):
    receipt = make_receipt(node, payer, chain, amount=7 * OPG)
    dispute(opg, staking, receipt, node, payer, staking_domain)
    opened = staking.disputes(rhash(receipt)).opened_at
    chain.pending_timestamp = opened + 2 * params.dispute_window
    with ape.reverts("NodeStaking: dispute still open"):
        staking.reclaim_bond(rhash(receipt), sender=payer.account)
    before = opg.balanceOf(payer.address)
    chain.pending_timestamp = opened + 2 * params.dispute_window + 1
    staking.reclaim_bond(rhash(receipt), sender=node.account)
    assert opg.balanceOf(payer.address) == before + 7 * OPG
    assert staking.bonds_held() == 0


# ---------------------------------------------------------------- honest-node safety


def test_honest_node_keeps_its_full_stake_through_every_attack(
    opg, staking, escrow, escrow_domain, distributor, node, payer, verifiers, sybils, challenger, chain,
    staking_domain, params, make_actor, register,
):
    stake = total_stake(staking, node.address)
    small, mid, big = by_weight(staking, verifiers)
    deposit(opg, escrow, payer, 100 * OPG)
    # Attack 2: code at its address changes nothing for an honest node.
    chain.provider.make_request("anvil_setCode", [node.address, "0x6000"])
    receipts = [make_receipt(node, payer, chain, request=f"h{i}", amount=OPG, cumulative=(i + 1) * OPG)
                for i in range(3)]
    # Attack 12: a fresh verifier joins the vote.
    friend = make_actor(1_000_000 * OPG)
    register(friend, VERIFIER, 100_000 * OPG)
    staking.heartbeat(sender=friend.account)
    for receipt in receipts:
        signature = sig(receipt, node.key, staking_domain)
        # Attack 1: sybils (and a lone honest-looking verifier) below the quorum.
        with ape.reverts("NodeStaking: quorum not reached"):
            prove_fraud(staking, receipt, node, sybils + [small, friend], challenger, staking_domain)
        # Attack 14: an honest receipt is well-formed.
        with ape.reverts("NodeStaking: receipt is well-formed"):
            staking.slash_invalid_receipt(receipt.as_tuple(), signature, sender=challenger.account)
        # Attack 18: flags and a payer dispute, then the quorum proves it valid.
        staking.flag(receipt.as_tuple(), signature, sender=small.account)
    dispute(opg, staking, receipts[0], node, payer, staking_domain)
    for receipt in receipts:
        prove_valid(staking, receipt, node, [mid, big], challenger, staking_domain)
    # An identical receipt resent after a crash is not equivocation.
    s0 = sig(receipts[0], node.key, staking_domain)
    with ape.reverts("NodeStaking: identical receipts"):
        staking.slash_equivocation(receipts[0].as_tuple(), s0, receipts[0].as_tuple(), s0, sender=challenger.account)
    settle(opg, escrow, escrow_domain, payer, node.address, 3 * OPG, sender=node)
    assert escrow.spent(payer.address, node.address) == 3 * OPG
    assert total_stake(staking, node.address) == stake
    assert not staking.nodes(node.address).jailed
    assert staking.is_payable(node.address)
