"""RewardDistributor: fee split."""

from __future__ import annotations

import ape
import pytest
from reward_distributor_kit import OPG, ZERO_ROOT, claim_for, credited, end_epoch, epoch_of, govern, pay, split

pytestmark = pytest.mark.usefixtures("backed_node")


@pytest.fixture
def no_live_weight(chain, staking, distributor):
    """Move on to an epoch in which no verifier heartbeat recorded any weight."""
    for _ in range(3):
        if staking.total_weight_in(distributor.epoch_now()) == 0:
            return distributor.epoch_now()
        end_epoch(chain, distributor, distributor.epoch_now())
    raise AssertionError("live verifier weight in every epoch")


def test_settlement_splits_gross_exactly(
    opg, escrow, escrow_domain, distributor, treasury, node, payer, verifiers, weights
):
    gross = 123_456_789
    protocol, verifier_fee, node_share = split(gross)
    assert (protocol, verifier_fee, node_share) == (6_172_840, 12_345_678, 104_938_271)
    held = opg.balanceOf(distributor)
    treasury_before = distributor.claimable(treasury)
    epoch = distributor.epoch_now()

    tx = pay(opg, escrow, escrow_domain, payer, node.address, gross)

    [ev] = credited(tx, distributor)
    assert ev.node == node.address
    assert ev.epoch == epoch == distributor.current_epoch()
    assert (ev.gross, ev.protocol_fee, ev.verifier_fee, ev.node_share) == (gross, protocol, verifier_fee, node_share)
    assert opg.balanceOf(distributor) == held + gross
    assert distributor.claimable(node.address) == node_share
    assert distributor.claimable_of(node.address) == node_share
    assert distributor.claimable(treasury) == treasury_before + protocol
    assert distributor.epoch_verifier_fees(epoch) == verifier_fee
    assert distributor.epoch_fees(epoch) == gross
    assert distributor.node_epoch_fees(epoch, node.address) == gross


def test_protocol_fee_rounds_up_and_verifier_fee_down(opg, escrow, escrow_domain, distributor, node, payer):
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 19)  # 0.95 wei protocol, 1.9 wei verifier
    ev = credited(tx, distributor)[0]
    assert (ev.protocol_fee, ev.verifier_fee, ev.node_share) == (1, 1, 17)
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1)
    ev = credited(tx, distributor)[0]
    assert (ev.protocol_fee, ev.verifier_fee, ev.node_share) == (1, 0, 0)


def test_fee_split_follows_fees_set_through_the_queue(
    opg, escrow, escrow_domain, distributor, deployer, node, payer, chain
):
    govern(distributor, deployer, chain, "set_fees", 2_000, 2_000, 0)
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    ev = credited(tx, distributor)[0]
    assert (ev.protocol_fee, ev.verifier_fee, ev.node_share) == (200 * OPG, 200 * OPG, 600 * OPG)


def test_zero_fees_pay_the_node_everything(
    opg, escrow, escrow_domain, distributor, deployer, treasury, node, payer, chain
):
    govern(distributor, deployer, chain, "set_fees", 0, 0, 0)
    before = distributor.claimable(treasury)
    pay(opg, escrow, escrow_domain, payer, node.address, 77 * OPG)
    assert distributor.claimable(node.address) == 77 * OPG
    assert distributor.claimable(treasury) == before


def test_node_share_is_claimable_at_once(opg, escrow, escrow_domain, distributor, node, payer):
    pay(opg, escrow, escrow_domain, payer, node.address, 100 * OPG)
    node_share = split(100 * OPG)[2]
    balance = opg.balanceOf(node.address)
    tx = distributor.claim(sender=node.account)
    assert tx.return_value == node_share
    events = tx.decode_logs(distributor.Claimed)
    assert len(events) == 1 and events[0].account == node.address and events[0].amount == node_share
    assert opg.balanceOf(node.address) == balance + node_share
    assert distributor.claimable(node.address) == 0
    assert distributor.claimable_of(node.address) == 0


def test_claim_twice_reverts_nothing_to_claim(opg, escrow, escrow_domain, distributor, node, payer):
    pay(opg, escrow, escrow_domain, payer, node.address, 100 * OPG)
    distributor.claim(sender=node.account)
    with ape.reverts("RewardDistributor: nothing to claim"):
        distributor.claim(sender=node.account)


def test_claim_with_nothing_earned_reverts(distributor, make_actor):
    stranger = make_actor(0)
    with ape.reverts("RewardDistributor: nothing to claim"):
        distributor.claim(sender=stranger.account)


def test_treasury_claims_protocol_fees(opg, escrow, escrow_domain, distributor, treasury, node, payer, verifiers):
    before = distributor.claimable(treasury)
    pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    protocol = split(1_000 * OPG)[0]
    assert distributor.claimable(treasury) == before + protocol
    balance = opg.balanceOf(treasury)
    tx = distributor.claim(sender=treasury)
    assert tx.return_value == before + protocol
    assert opg.balanceOf(treasury) == balance + before + protocol
    assert distributor.claimable(treasury) == 0


def test_verifier_fees_of_an_epoch_with_live_weight_go_to_its_pool(
    opg, escrow, escrow_domain, distributor, treasury, node, payer, verifiers, weights
):
    epoch = distributor.epoch_now()
    before = distributor.claimable(treasury)
    pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    assert distributor.epoch_verifier_fees(epoch) == 100 * OPG
    assert distributor.claimable(treasury) == before + 50 * OPG


def test_attack_verifier_fees_of_an_epoch_without_live_verifier_weight_go_to_the_treasury(
    opg, escrow, escrow_domain, distributor, treasury, node, payer, no_live_weight, chain
):
    # Nobody heartbeat into this epoch: a pool nobody can collect would strand the fee.
    epoch = no_live_weight
    before = distributor.claimable(treasury)
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    assert epoch_of(tx, distributor) == epoch
    assert distributor.epoch_verifier_fees(epoch) == 0
    assert distributor.claimable(treasury) == before + 50 * OPG + 100 * OPG
    end_epoch(chain, distributor, epoch)
    with ape.reverts("RewardDistributor: no weight in epoch"):
        distributor.collect_verifier_reward(node.address, epoch, sender=node.account)


def test_batch_credits_each_run_of_claims_per_node(
    opg, escrow, escrow_domain, distributor, node, node2, payer, make_actor
):
    payer2 = make_actor()
    for p in (payer, payer2):
        opg.approve(escrow, 100 * OPG, sender=p.account)
        escrow.deposit(100 * OPG, sender=p.account)
    claims = [
        claim_for(payer, node.address, 10 * OPG, escrow_domain),
        claim_for(payer2, node.address, 20 * OPG, escrow_domain),
        claim_for(payer, node2.address, 30 * OPG, escrow_domain),
    ]
    held = opg.balanceOf(distributor)
    tx = escrow.settle_batch(claims, ZERO_ROOT, sender=ape.accounts.test_accounts[2])  # the facilitator
    events = credited(tx, distributor)
    assert [(e.node, e.gross) for e in events] == [(node.address, 30 * OPG), (node2.address, 30 * OPG)]
    assert distributor.claimable(node.address) == split(30 * OPG)[2]
    assert distributor.claimable(node2.address) == split(30 * OPG)[2]
    assert opg.balanceOf(distributor) == held + 60 * OPG


def test_credit_fees_only_by_the_escrow(distributor, node):
    with ape.reverts("RewardDistributor: caller is not the escrow"):
        distributor.credit_fees([node.address], [1], sender=node.account)
