"""Second security review of NodeStaking v3 (issue 13): pay stays counted in ``pay_capacity`` for as long as it is
provable, and stake answers for every victim.

- A channel's later settlement reopens only the receipts whose range reaches into what it paid: a receipt an earlier
  settlement paid stays dated from its own timestamp (``CreditEscrow.last_settlement``).
- ``pay_capacity`` remembers pay for three windows of ``dispute_window + MAX_FUTURE`` (at least two dispute windows
  plus ``MAX_FUTURE``: the last second a flagged receipt stays provable after its settlement).
- Unbonding stake leaves strictly after the last provable second of the node's pay before the request.
- ``fraud_multiplier`` is at least 2, so a proof's challenger reward never leaves a later victim unrefunded.

``test_attack_*`` perform the review's steps and show they fail; the others are the honest paths.
"""

from __future__ import annotations

import ape
from eth_abi import encode
from eth_utils import keccak
from node_staking_kit import (
    OPG,
    SKIP_NODE_NOT_PAYABLE,
    deposit,
    make_receipt,
    prove_fraud,
    relive,
    settle,
    sig,
    skip_reasons,
    total_stake,
)

MAX_FUTURE = 300


def set_slashing(staking, chain, deployer, params, *, multiplier, fraud_bps=None, reward_bps=None):
    args = [params.equivocation_slash_bps, params.fraud_slash_bps if fraud_bps is None else fraud_bps,
            params.challenger_reward_bps if reward_bps is None else reward_bps, multiplier, params.fraud_quorum_bps]
    call = keccak(text="set_slashing(uint256,uint256,uint256,uint256,uint256)")[:4] + encode(["uint256"] * 5, args)
    eta = staking.queue_change(call, sender=deployer).decode_logs(staking.ChangeQueued)[0].eta
    chain.pending_timestamp = eta
    return args


# ---------------------------------------------------------------- finding 1: a later settlement reopens old receipts


def test_attack_long_running_fraud_on_one_channel_outgrows_the_stake(
    opg, staking, escrow, escrow_domain, facilitator, node, verifiers, chain, staking_domain, make_actor, distributor,
):
    """The review paid a node its full capacity on one channel every two windows, 10 times, then proved all 10
    receipts at once (the last settlement had reopened them all): refunded 1,640 of 2,000, the node lost 1x. Now only
    the receipt the last settlement paid is admissible, and it is fully refunded at ``fraud_multiplier`` x."""
    W = staking.dispute_window()
    m = staking.fraud_multiplier()
    cap = staking.pay_capacity(node.address)
    p = make_actor(1_000_000 * OPG)
    rounds = 10
    deposit(opg, escrow, p, cap * rounds)
    receipts = []
    for i in range(1, rounds + 1):
        assert staking.pay_capacity(node.address) == cap
        r = make_receipt(node, p, chain, request=f"r{i}", amount=cap, cumulative=cap * i)
        assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p, node.address, cap * i)) == []
        receipts.append(r)
        if i < rounds:
            chain.pending_timestamp += 3 * (W + MAX_FUTURE)  # the pay is forgotten: capacity is full again
            chain.mine()
    chain.pending_timestamp += 60
    relive(chain, staking, distributor, verifiers)
    assert escrow.last_settlement(p.address, node.address) == (
        escrow.settled_at(p.address, node.address), cap * (rounds - 1))
    for r in receipts[:-1]:  # paid by earlier settlements: dated from their own timestamps, long expired
        with ape.reverts("NodeStaking: evidence too old"):
            prove_fraud(staking, r, node, verifiers, make_actor(0).account, staking_domain)
    before_stake = total_stake(staking, node.address)
    before = opg.balanceOf(p.address)
    prove_fraud(staking, receipts[-1], node, verifiers, make_actor(0).account, staking_domain)
    assert opg.balanceOf(p.address) - before == cap
    assert before_stake - total_stake(staking, node.address) >= m * cap


def test_receipt_settled_late_stays_provable_a_window_after_its_settlement(
    opg, staking, escrow, escrow_domain, facilitator, node, verifiers, chain, staking_domain, make_actor, distributor,
):
    """Honest path: a receipt its channel's last settlement paid is dated from that settlement (the relayer may settle
    late); once a later settlement pays beyond it, it is dated from its own timestamp again."""
    W = staking.dispute_window()
    p = make_actor()
    deposit(opg, escrow, p, 100 * OPG)
    r1 = make_receipt(node, p, chain, request="late", amount=10 * OPG, cumulative=10 * OPG)
    chain.pending_timestamp = r1.timestamp + 2 * W
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p, node.address, 10 * OPG)) == []
    settled = escrow.settled_at(p.address, node.address)
    chain.pending_timestamp = settled + W - 10
    staking.flag(r1.as_tuple(), sig(r1, node.key, staking_domain), sender=verifiers[0].account)  # still admissible
    # a later settlement pays r2: r1 is no longer reopened by it, but its flag keeps it provable for a window
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p, node.address, 20 * OPG)) == []
    relive(chain, staking, distributor, verifiers)
    before = opg.balanceOf(p.address)
    prove_fraud(staking, r1, node, verifiers, make_actor(0).account, staking_domain)
    assert opg.balanceOf(p.address) - before == 10 * OPG


# ---------------------------------------------------------------- finding 2: a flag outlives the pay memory


def _to_bucket_end(chain, window, margin=60):
    chain.pending_timestamp = (chain.pending_timestamp // window + 1) * window - margin
    return chain.pending_timestamp


def test_attack_flag_keeps_pay_provable_after_capacity_forgets_it(
    opg, staking, escrow, escrow_domain, facilitator, node, verifiers, chain, staking_domain, make_actor, distributor,
):
    """The review settled full capacity 60 s before a bucket ended, flagged the receipt at S + W (provable until
    S + 2W) and found the capacity back to full at the next bucket pair: a second full pay while the first is still
    provable. Now the capacity still counts the first pay then, and the second settlement is skipped."""
    W = staking.dispute_window()
    m = staking.fraud_multiplier()
    p1, p2 = make_actor(), make_actor()
    cap = staking.pay_capacity(node.address)
    deposit(opg, escrow, p1, cap * 2)
    deposit(opg, escrow, p2, cap * 2)
    S = _to_bucket_end(chain, W)
    r1 = make_receipt(node, p1, chain, request="r1", amount=cap, cumulative=cap, timestamp=S)
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p1, node.address, cap)) == []
    assert staking.pay_capacity(node.address) == 0
    chain.pending_timestamp = escrow.settled_at(p1.address, node.address) + W
    staking.flag(r1.as_tuple(), sig(r1, node.key, staking_domain), sender=verifiers[0].account)
    chain.pending_timestamp = (S // W + 2) * W
    chain.mine()
    assert staking.pay_capacity(node.address) == 0  # r1 is still provable, so its pay is still counted
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p2, node.address, cap)) == [
        SKIP_NODE_NOT_PAYABLE]
    relive(chain, staking, distributor, verifiers)
    before_stake, before = total_stake(staking, node.address), opg.balanceOf(p1.address)
    prove_fraud(staking, r1, node, verifiers, make_actor(0).account, staking_domain)
    assert opg.balanceOf(p1.address) - before == cap
    assert before_stake - total_stake(staking, node.address) >= m * cap


def test_pay_capacity_returns_once_the_pay_is_no_longer_provable(
    opg, staking, escrow, escrow_domain, facilitator, node, verifiers, chain, staking_domain, make_actor,
):
    """Honest path: pay is forgotten three windows of ``dispute_window + MAX_FUTURE`` after its bucket, when no
    receipt it paid is provable any more, even flagged."""
    W = staking.dispute_window()
    window = W + MAX_FUTURE
    p = make_actor()
    cap = staking.pay_capacity(node.address)
    deposit(opg, escrow, p, cap)
    r = make_receipt(node, p, chain, amount=cap, cumulative=cap)
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p, node.address, cap)) == []
    S = escrow.settled_at(p.address, node.address)
    chain.pending_timestamp = S + W
    staking.flag(r.as_tuple(), sig(r, node.key, staking_domain), sender=verifiers[0].account)
    for t in (S + 2 * W, (S // window + 3) * window - 1):
        chain.pending_timestamp = t
        chain.mine()
        assert staking.pay_capacity(node.address) == 0 and staking.paid_in_window(node.address) == cap
    chain.pending_timestamp = (S // window + 3) * window
    chain.mine()
    assert staking.pay_capacity(node.address) == cap and staking.paid_in_window(node.address) == 0
    with ape.reverts("NodeStaking: evidence too old"):
        prove_fraud(staking, r, node, verifiers, make_actor(0).account, staking_domain)


# ---------------------------------------------------------------- finding 4: withdraw in the last provable second


def test_attack_withdraw_in_the_last_provable_second(
    opg, staking, escrow, escrow_domain, facilitator, node, verifiers, chain, staking_domain, make_actor, distributor,
):
    """With unbonding_period = 2 x dispute_window the review's node withdrew in the last second its flagged fraud
    was provable (S + 2W). Now it cannot withdraw before S + 2W + MAX_FUTURE, and the proof takes its stake."""
    W = staking.dispute_window()
    m = staking.fraud_multiplier()
    cap = staking.pay_capacity(node.address)
    p = make_actor()
    deposit(opg, escrow, p, cap)
    r = make_receipt(node, p, chain, amount=cap, cumulative=cap)
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p, node.address, cap)) == []
    S = escrow.settled_at(p.address, node.address)
    chain.pending_timestamp = S
    staking.request_unbond(staking.nodes(node.address).stake, sender=node.account)
    assert staking.unbonding_period() == 2 * W  # the production default
    assert staking.nodes(node.address).unbond_ready_at == S + 2 * W + MAX_FUTURE + 1
    chain.pending_timestamp = S + W
    staking.flag(r.as_tuple(), sig(r, node.key, staking_domain), sender=verifiers[0].account)
    chain.pending_timestamp = S + 2 * W - 3_600
    for v in verifiers:
        staking.heartbeat(sender=v.account)
    chain.pending_timestamp = S + 2 * W
    with ape.reverts("NodeStaking: still unbonding"):
        staking.withdraw_unbonded(sender=node.account)
    chain.pending_timestamp = S + 2 * W
    before_stake, before = total_stake(staking, node.address), opg.balanceOf(p.address)
    prove_fraud(staking, r, node, verifiers, make_actor(0).account, staking_domain)
    assert opg.balanceOf(p.address) - before == cap
    assert before_stake - total_stake(staking, node.address) >= m * cap


def test_paid_node_withdraws_once_its_pay_is_no_longer_provable(
    opg, staking, escrow, escrow_domain, facilitator, node, chain, make_actor,
):
    """Honest path: a node paid before its unbond request withdraws right after that pay's last provable second."""
    W = staking.dispute_window()
    cap = staking.pay_capacity(node.address)
    p = make_actor()
    deposit(opg, escrow, p, cap)
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p, node.address, cap)) == []
    S = escrow.settled_at(p.address, node.address)
    chain.pending_timestamp = S
    unbonding = staking.nodes(node.address).stake
    staking.request_unbond(unbonding, sender=node.account)
    assert staking.nodes(node.address).unbond_ready_at == S + 2 * W + MAX_FUTURE + 1
    chain.pending_timestamp = S + 2 * W + MAX_FUTURE + 1
    before = opg.balanceOf(node.address)
    staking.withdraw_unbonded(sender=node.account)
    assert opg.balanceOf(node.address) - before == unbonding


# ---------------------------------------------------------------- finding 3: reward paid before a later refund


def test_attack_multiplier_one_lets_a_reward_starve_a_later_victim(staking, chain, deployer, params):
    """The review set fraud_multiplier = 1: two payers each paid half the capacity, the first proof paid its
    verifiers 80 OPG out of what the second payer needed. A multiplier below 2 is refused."""
    args = set_slashing(staking, chain, deployer, params, multiplier=1)
    with ape.reverts("NodeStaking: multiplier out of bounds"):
        staking.set_slashing(*args, sender=deployer)


def test_every_victim_is_refunded_at_the_lowest_multiplier_and_highest_reward(
    opg, staking, escrow, escrow_domain, facilitator, node, verifiers, chain, staking_domain, params, make_actor,
    distributor, deployer,
):
    """Honest path at the worst allowed settings (multiplier 2, whole stake slashed on the first proof, 50 % reward):
    both victims of the review's steps are refunded in full, the first proof's reward notwithstanding."""
    args = set_slashing(staking, chain, deployer, params, multiplier=2, fraud_bps=10_000, reward_bps=5_000)
    staking.set_slashing(*args, sender=deployer)
    relive(chain, staking, distributor, verifiers)
    cap = staking.pay_capacity(node.address)
    half = cap // 2
    p1, p2 = make_actor(), make_actor()
    deposit(opg, escrow, p1, half)
    deposit(opg, escrow, p2, half)
    r1 = make_receipt(node, p1, chain, request="a", amount=half, cumulative=half)
    r2 = make_receipt(node, p2, chain, request="b", amount=half, cumulative=half)
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p1, node.address, half)) == []
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p2, node.address, half)) == []
    relive(chain, staking, distributor, verifiers)
    b1, b2 = opg.balanceOf(p1.address), opg.balanceOf(p2.address)
    t1 = prove_fraud(staking, r1, node, verifiers, make_actor(0).account, staking_domain)
    assert t1.decode_logs(staking.Slashed)[0].reward > 0
    prove_fraud(staking, r2, node, verifiers, make_actor(0).account, staking_domain)
    assert opg.balanceOf(p1.address) - b1 == half
    assert opg.balanceOf(p2.address) - b2 == half
