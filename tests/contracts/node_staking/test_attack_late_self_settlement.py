"""Late self-settled fraud (second review of v3, the high open attack).

A node serves fraudulent answers, keeps the receipts from the relayer (no verifier samples them) and settles them
itself, through a proposal, more than a dispute window later. Its receipts are then dated from that settlement
(``CreditEscrow.last_settlement``), so the payer has a dispute window to prove them. The attack moved the channel's
mark past the fraudulent range at once: a second claim of 1 wei on the same channel in the same batch, a second
proposal, or a fresh request the relayer settles; the range was then dated by its own timestamps and "evidence too
old" at once.

Now a settlement by proposal holds the channel's mark for ``dispute_window + MAX_FUTURE`` (``held_until``): a
facilitator's settlement meanwhile moves only ``spent``, another proposal's claim on the channel is skipped (reason 6,
``SKIP_CHANNEL_HELD``) unless it settles in the same second (the same batch), which keeps the lowest mark.
``test_attack_*`` perform the attack and show it fails; the others are the honest paths.
"""

from __future__ import annotations

import ape
from node_staking_kit import (
    OPG,
    ZERO_ROOT,
    claim_for,
    deposit,
    make_receipt,
    prove_fraud,
    relive,
    settle,
    skip_reasons,
    wait,
)

MAX_FUTURE = 300
SKIP_CHANNEL_HELD = 6


def propose_and_settle(escrow, chain, node, claims) -> object:
    """The node settles its own vouchers without the relayer: propose, wait the claim delay, settle."""
    tx = escrow.propose_batch(claims, ZERO_ROOT, sender=node.account)
    due_at = escrow.BatchProposed.from_receipt(tx)[0].due_at
    chain.pending_timestamp = due_at
    return escrow.settle_batch(claims, ZERO_ROOT, sender=node.account)


def refund_late_in_the_window(opg, staking, distributor, chain, verifiers, fraud, node, domain, settled_at) -> int:
    """Prove ``fraud`` in the last epoch within a dispute window of ``settled_at`` (the verifiers live in it); returns
    its payer's refund."""
    chain.pending_timestamp = settled_at + staking.dispute_window() - 2 * distributor.epoch_length()
    relive(chain, staking, distributor, verifiers)
    assert chain.pending_timestamp + 60 <= settled_at + staking.dispute_window()
    before = opg.balanceOf(fraud.payer)
    prove_fraud(staking, fraud, node, verifiers, verifiers[0].account, domain)
    return opg.balanceOf(fraud.payer) - before


def withheld_fraud(opg, escrow, chain, node, payer, staking, amount=10 * OPG):
    """A fraudulent receipt the node kept from the relayer, then a dispute window and more of silence."""
    deposit(opg, escrow, payer, 100 * OPG)
    receipt = make_receipt(node, payer, chain, request="withheld", output="wrong", amount=amount, cumulative=amount)
    wait(chain, staking.dispute_window() + 3_600)
    return receipt


def test_attack_late_self_settled_fraud_with_a_one_wei_claim_in_the_same_batch_stays_provable(
    opg, staking, escrow, escrow_domain, node, verifiers, chain, staking_domain, make_actor, distributor,
):
    """Attack: one proposed batch settles the withheld range and then 1 wei more on the same channel. Both claims
    settle in the same second, so the mark keeps the lower ``spent`` before them: the range is dated from the
    settlement and the payer proves it a window later."""
    W = staking.dispute_window()
    p = make_actor()
    fraud = withheld_fraud(opg, escrow, chain, node, p, staking)
    claims = [claim_for(p, node.address, 10 * OPG, escrow_domain), claim_for(p, node.address, 10 * OPG + 1, escrow_domain)]
    tx = propose_and_settle(escrow, chain, node, claims)
    assert skip_reasons(escrow, tx) == []
    assert escrow.spent(p.address, node.address) == 10 * OPG + 1
    settled_at = escrow.settled_at(p.address, node.address)
    assert escrow.last_settlement(p.address, node.address) == (settled_at, 0)
    assert escrow.held_until(p.address, node.address) == settled_at + W + MAX_FUTURE
    assert refund_late_in_the_window(
        opg, staking, distributor, chain, verifiers, fraud, node, staking_domain, settled_at) == 10 * OPG


def test_attack_late_self_settled_fraud_followed_by_a_relayer_settlement_stays_provable(
    opg, staking, escrow, escrow_domain, facilitator, node, verifiers, chain, staking_domain, make_actor, distributor,
):
    """Attack: the node self-settles the withheld range, then serves the payer a fresh request that the honest relayer
    settles a minute later. The relayer's settlement pays (it is never held up) but leaves the held mark alone, so
    the fraudulent range stays dated from the self-settlement."""
    p = make_actor()
    fraud = withheld_fraud(opg, escrow, chain, node, p, staking)
    assert skip_reasons(escrow, propose_and_settle(escrow, chain, node, [
        claim_for(p, node.address, 10 * OPG, escrow_domain)])) == []
    self_settled_at = escrow.settled_at(p.address, node.address)
    wait(chain, 60)
    make_receipt(node, p, chain, request="fresh", amount=1, cumulative=10 * OPG + 1)
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p, node.address, 10 * OPG + 1)) == []
    assert escrow.spent(p.address, node.address) == 10 * OPG + 1
    assert escrow.last_settlement(p.address, node.address) == (self_settled_at, 0)
    assert refund_late_in_the_window(
        opg, staking, distributor, chain, verifiers, fraud, node, staking_domain, self_settled_at) == 10 * OPG


def test_attack_second_proposal_on_a_held_channel_is_skipped(
    opg, staking, escrow, escrow_domain, node, verifiers, chain, staking_domain, make_actor, distributor,
):
    """Attack: the node self-settles the withheld range, then proposes 1 wei more on the channel and settles it after
    the claim delay. That claim is skipped (reason 6) while the first self-settlement is held; the range stays
    provable a window after its settlement."""
    p = make_actor()
    fraud = withheld_fraud(opg, escrow, chain, node, p, staking)
    assert skip_reasons(escrow, propose_and_settle(escrow, chain, node, [
        claim_for(p, node.address, 10 * OPG, escrow_domain)])) == []
    settled_at = escrow.settled_at(p.address, node.address)
    tx = propose_and_settle(escrow, chain, node, [claim_for(p, node.address, 10 * OPG + 1, escrow_domain)])
    assert skip_reasons(escrow, tx) == [SKIP_CHANNEL_HELD]
    assert escrow.spent(p.address, node.address) == 10 * OPG
    assert escrow.last_settlement(p.address, node.address) == (settled_at, 0)
    assert refund_late_in_the_window(
        opg, staking, distributor, chain, verifiers, fraud, node, staking_domain, settled_at) == 10 * OPG


def test_self_settled_range_is_too_old_a_window_after_its_settlement_and_the_channel_settles_again(
    opg, staking, escrow, escrow_domain, node, verifiers, chain, staking_domain, make_actor, distributor,
):
    """Honest path: the hold ends at ``held_until``; the node's next proposal on the channel then settles and moves
    the mark, and the earlier range, past its window, is too old."""
    p = make_actor()
    fraud = withheld_fraud(opg, escrow, chain, node, p, staking)
    assert skip_reasons(escrow, propose_and_settle(escrow, chain, node, [
        claim_for(p, node.address, 10 * OPG, escrow_domain)])) == []
    chain.pending_timestamp = escrow.held_until(p.address, node.address) + 1
    assert skip_reasons(escrow, propose_and_settle(escrow, chain, node, [
        claim_for(p, node.address, 20 * OPG, escrow_domain)])) == []
    settled_at = escrow.settled_at(p.address, node.address)
    assert escrow.last_settlement(p.address, node.address) == (settled_at, 10 * OPG)
    assert escrow.held_until(p.address, node.address) == settled_at + staking.dispute_window() + MAX_FUTURE
    relive(chain, staking, distributor, verifiers)
    with ape.reverts("NodeStaking: evidence too old"):
        prove_fraud(staking, fraud, node, verifiers, make_actor(0).account, staking_domain)


def test_relayer_settlements_are_never_held_and_move_the_mark(
    opg, staking, escrow, escrow_domain, facilitator, node, chain, make_actor,
):
    """Honest path: the facilitator's settlements hold nothing (``held_until`` 0) and each moves the mark to itself."""
    p = make_actor()
    deposit(opg, escrow, p, 100 * OPG)
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p, node.address, 10 * OPG)) == []
    assert escrow.held_until(p.address, node.address) == 0
    wait(chain, 5)
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p, node.address, 11 * OPG)) == []
    assert escrow.last_settlement(p.address, node.address) == (escrow.settled_at(p.address, node.address), 10 * OPG)
    assert escrow.held_until(p.address, node.address) == 0


def test_proposal_after_a_relayer_settlement_holds_the_channel(
    opg, staking, escrow, escrow_domain, facilitator, node, chain, make_actor,
):
    """Honest path: a proposal's claim on a channel the relayer settled a moment before is not held up (only a
    settlement by proposal holds), and it holds the mark from its own settlement."""
    p = make_actor()
    deposit(opg, escrow, p, 100 * OPG)
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p, node.address, 10 * OPG)) == []
    assert skip_reasons(escrow, propose_and_settle(escrow, chain, node, [
        claim_for(p, node.address, 12 * OPG, escrow_domain)])) == []
    settled_at = escrow.settled_at(p.address, node.address)
    assert escrow.last_settlement(p.address, node.address) == (settled_at, 10 * OPG)
    assert escrow.held_until(p.address, node.address) == settled_at + staking.dispute_window() + MAX_FUTURE
