"""A ``dispute_window`` change through the timelock (second review of v3, the medium open attack).

``pay_capacity`` counts a node's pay by buckets of ``dispute_window + MAX_FUTURE``. The buckets were indexed by
``now // (dispute_window + MAX_FUTURE)``, so ``set_periods`` re-indexed them: the pay recorded before the change was
forgotten at once although it was still provable, and a node paid its whole capacity just before and again just after
the change was backed 1x instead of ``fraud_multiplier`` x. Now each node's buckets keep the length they were recorded
with (``_pay_window``: index and length), a bucket counts until two windows of the current length after its stored end,
and the first settlement after a change folds what is still counted into one bucket of the new length that ends no
earlier. ``test_attack_*`` perform the attack and show it fails; the others are the honest paths.
"""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak
from node_staking_kit import SKIP_NODE_NOT_PAYABLE, deposit, settle, skip_reasons, wait

MAX_FUTURE = 300


def queue_periods(staking, deployer, dispute_window: int, unbonding: int, warmup: int) -> int:
    """Queue ``set_periods`` through the timelock; returns when it is due."""
    call = keccak(text="set_periods(uint256,uint256,uint256)")[:4] + encode(
        ["uint256"] * 3, [dispute_window, unbonding, warmup])
    return staking.queue_change(call, sender=deployer).decode_logs(staking.ChangeQueued)[0].eta


def halve_the_window(staking, deployer, chain, pay_before) -> int:
    """Queue a halved dispute window, run ``pay_before`` 100 s before it is due, execute it; returns the new window."""
    W = staking.dispute_window()
    new = W // 2
    eta = queue_periods(staking, deployer, new, staking.unbonding_period(), staking.warmup())
    chain.pending_timestamp = eta - 100
    pay_before()
    chain.pending_timestamp = eta
    staking.set_periods(new, staking.unbonding_period(), staking.warmup(), sender=deployer)
    assert staking.dispute_window() == new
    return new


def test_attack_full_pay_just_before_and_after_a_window_change_is_not_paid_twice(
    opg, staking, escrow, escrow_domain, facilitator, node, chain, make_actor, deployer,
):
    """Attack: the node is paid its whole capacity just before ``set_periods`` halves the dispute window and asks for
    its whole capacity again right after. The first pay is still provable, so it is still counted: the second claim
    is skipped (reason 2)."""
    p1, p2 = make_actor(), make_actor()
    cap = staking.pay_capacity(node.address)
    deposit(opg, escrow, p1, cap)
    deposit(opg, escrow, p2, cap)

    def pay_before():
        assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p1, node.address, cap)) == []
        assert staking.pay_capacity(node.address) == 0

    halve_the_window(staking, deployer, chain, pay_before)
    assert staking.paid_in_window(node.address) == cap
    assert staking.pay_capacity(node.address) == 0
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p2, node.address, cap)) == [
        SKIP_NODE_NOT_PAYABLE]


def test_pay_across_a_window_change_is_counted_together_and_forgotten_once_no_longer_provable(
    opg, staking, escrow, escrow_domain, facilitator, node, chain, make_actor, deployer,
):
    """Honest path: half the capacity paid before the change and half after both count (the first settlement after
    the change folds the earlier pay into a bucket of the new length); the capacity comes back once no receipt of
    that pay is provable any more, even flagged (two new windows + ``MAX_FUTURE`` after the fold's bucket)."""
    p = make_actor()
    cap = staking.pay_capacity(node.address)
    half = cap // 2
    deposit(opg, escrow, p, 2 * cap)
    old_length = staking.dispute_window() + MAX_FUTURE

    def pay_before():
        assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p, node.address, half)) == []

    new = halve_the_window(staking, deployer, chain, pay_before)
    first_paid_at = escrow.settled_at(p.address, node.address)
    assert staking.pay_capacity(node.address) == cap - half
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p, node.address, cap)) == []
    folded_at = escrow.settled_at(p.address, node.address)
    assert staking.paid_in_window(node.address) == cap
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p, node.address, cap + 1)) == [
        SKIP_NODE_NOT_PAYABLE]
    # still counted while the first pay is provable under the new window, flagged in its last admissible second
    length = new + MAX_FUTURE
    chain.pending_timestamp = max(chain.pending_timestamp, first_paid_at + 2 * new + MAX_FUTURE)
    chain.mine()
    assert staking.paid_in_window(node.address) == cap
    # forgotten two new windows after the end of the fold's bucket (which ends no earlier than the old bucket)
    fold = max(folded_at // length, ((first_paid_at // old_length + 1) * old_length - 1) // length)
    wait(chain, (fold + 3) * length - 1 - chain.pending_timestamp)
    assert staking.paid_in_window(node.address) == cap
    wait(chain, 1)
    assert staking.paid_in_window(node.address) == 0
    assert staking.pay_capacity(node.address) == cap


def test_pay_without_a_window_change_keeps_its_three_buckets(
    opg, staking, escrow, escrow_domain, facilitator, node, chain, make_actor,
):
    """Honest path: with the window unchanged the buckets behave as before (pay counts in its bucket and the two
    after it)."""
    p = make_actor()
    cap = staking.pay_capacity(node.address)
    length = staking.dispute_window() + MAX_FUTURE
    deposit(opg, escrow, p, cap)
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p, node.address, cap // 4)) == []
    bucket = escrow.settled_at(p.address, node.address) // length
    wait(chain, (bucket + 2) * length - chain.pending_timestamp)  # first second of the second bucket after it
    assert staking.paid_in_window(node.address) == cap // 4
    assert skip_reasons(escrow, settle(escrow, escrow_domain, facilitator, p, node.address, cap // 2)) == []
    assert staking.paid_in_window(node.address) == cap // 2
    wait(chain, length)  # the first pay's bucket is forgotten, the second's is not
    assert staking.paid_in_window(node.address) == cap // 2 - cap // 4
