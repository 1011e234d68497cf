"""R11 and the refund of a charge never paid (issue 13): every defrauded payer is refunded before anything burns.

v2 burned a proof's penalty at once, so the first proof of an offence could leave nothing for a second defrauded
payer. v3 burns nothing at slash time: what is not refunded or rewarded becomes the node's reserve, out of which
later proofs refund their payers, and anyone may burn it two dispute windows after the last slash added to it.

A receipt's refund is what the channel paid for its range: the part below the channel's spent charges and outside
the range an earlier proof voided. v2 refunded a charge never paid when two unsettled fraudulent receipts were
proven highest-first (the first proof's void raised ``spent`` over the second's range).
"""

from __future__ import annotations

import ape
import pytest
from node_staking_kit import OPG, SETTLED, deposit, make_receipt, prove_fraud, settle, total_stake


@pytest.fixture
def victims(opg, escrow, make_actor):
    out = [make_actor(), make_actor()]
    for payer in out:
        deposit(opg, escrow, payer, 500 * OPG)
    return out


def test_attack_second_victim_of_one_offence_is_refunded_before_any_burn(
    opg, staking, escrow, escrow_domain, facilitator, node, victims, verifiers, make_actor, chain, staking_domain
):
    a, b = victims
    # The node is paid 150 OPG by A and 50 OPG by B (its whole capacity) for fraudulent work.
    assert settle(escrow, escrow_domain, facilitator, a, node.address, 150 * OPG).return_value == [SETTLED]
    assert settle(escrow, escrow_domain, facilitator, b, node.address, 50 * OPG).return_value == [SETTLED]
    ra = make_receipt(node, a, chain, request="a", amount=200 * OPG)  # 150 OPG of it paid
    rb = make_receipt(node, b, chain, request="b", amount=50 * OPG)
    supply = opg.totalSupply()
    challenger = make_actor(0).account
    first = prove_fraud(staking, ra, node, verifiers, challenger, staking_domain)
    assert total_stake(staking, node.address) == 0  # A's proof took everything
    assert first.decode_logs(staking.Slashed)[0].refund == 150 * OPG
    assert opg.totalSupply() == supply  # nothing burned yet
    held = staking.reserve(node.address)
    assert held > 0
    before = opg.balanceOf(b.address)
    second = prove_fraud(staking, rb, node, verifiers, challenger, staking_domain)
    assert second.return_value == 0  # nothing left to take from the node...
    assert opg.balanceOf(b.address) == before + 50 * OPG  # ...and B is refunded all the same, from the reserve
    assert second.decode_logs(staking.Slashed)[0].refund == 50 * OPG
    assert staking.reserve(node.address) == held - 50 * OPG


def test_reserve_burns_only_two_windows_after_the_last_slash(
    opg, staking, node, payer, verifiers, make_actor, chain, staking_domain, params
):
    challenger = make_actor(0)
    prove_fraud(staking, make_receipt(node, payer, chain), node, verifiers, challenger.account, staking_domain)
    held = staking.reserve(node.address)
    assert staking.reserve_until(node.address) == (
        chain.blocks.head.timestamp + 2 * params.dispute_window + staking.MAX_FUTURE())
    with ape.reverts("NodeStaking: reserve still held"):
        staking.burn_reserve(node.address, sender=challenger.account)
    chain.pending_timestamp = staking.reserve_until(node.address) + 1
    supply, reserves = opg.totalSupply(), staking.reserves_held()
    tx = staking.burn_reserve(node.address, sender=challenger.account)
    assert tx.return_value == held
    assert tx.decode_logs(staking.ReserveBurned)[0].amount == held
    assert opg.totalSupply() == supply - held
    assert staking.reserve(node.address) == 0 and staking.reserves_held() == reserves - held
    with ape.reverts("NodeStaking: no reserve"):
        staking.burn_reserve(node.address, sender=challenger.account)


def test_attack_unsettled_receipts_proven_highest_first_refund_nothing_unpaid(
    opg, staking, escrow, escrow_domain, facilitator, node, payer, verifiers, make_actor, chain, staking_domain
):
    deposit(opg, escrow, payer, 500 * OPG)
    # r1 (0..100) is paid; r2 (100..200) and r3 (200..300) are fraudulent and never settled.
    assert settle(escrow, escrow_domain, facilitator, payer, node.address, 100 * OPG).return_value == [SETTLED]
    r1, r2, r3 = (make_receipt(node, payer, chain, request=f"r{i}", amount=100 * OPG, cumulative=i * 100 * OPG)
                  for i in (1, 2, 3))
    challenger = make_actor(0).account
    before = opg.balanceOf(payer.address)
    assert prove_fraud(staking, r3, node, verifiers, challenger, staking_domain).decode_logs(
        staking.Slashed)[0].refund == 0
    assert prove_fraud(staking, r2, node, verifiers, challenger, staking_domain).decode_logs(
        staking.Slashed)[0].refund == 0  # v2 refunded 100 OPG here, a charge the payer never paid
    assert opg.balanceOf(payer.address) == before
    # The receipt the payer did pay for is refunded in full.
    assert prove_fraud(staking, r1, node, verifiers, challenger, staking_domain).decode_logs(
        staking.Slashed)[0].refund == 100 * OPG
    assert opg.balanceOf(payer.address) == before + 100 * OPG
    assert staking.refunded(payer.address, node.address) == 100 * OPG
