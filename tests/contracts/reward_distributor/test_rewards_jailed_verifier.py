"""RewardDistributor: R9: a jailed verifier forfeits its pool shares."""

from __future__ import annotations

import ape
import pytest
from eth_utils import keccak
from reward_distributor_kit import OPG, collect, end_epoch, epoch_of, govern, heartbeat_into_next_epoch, pay

from offchain.messages import Verdict

pytestmark = pytest.mark.usefixtures("backed_node")


def double_vote(staking, staking_domain, cheat, sender, tag: str = "double vote") -> None:
    """``cheat`` signs both verdicts on one receipt; ``sender`` gets it slashed and jailed (trustless)."""
    receipt_hash = "0x" + keccak(text=tag).hex()
    signatures = [
        bytes.fromhex(Verdict(receipt_hash=receipt_hash, valid=valid).sign_with(cheat.key, staking_domain)[2:])
        for valid in (True, False)
    ]
    staking.slash_double_vote(receipt_hash, cheat.address, *signatures, sender=sender.account)
    assert staking.nodes(cheat.address).jailed


def forfeit(distributor, verifier, epoch: int, sender) -> int:
    """Collect ``verifier``'s share of ``epoch`` and show it was forfeited to the treasury; returns the amount."""
    tx = distributor.collect_verifier_reward(verifier.address, epoch, sender=sender.account)
    assert not tx.decode_logs(distributor.VerifierRewardCollected)
    [event] = tx.decode_logs(distributor.VerifierRewardForfeited)
    assert (event.verifier, event.epoch) == (verifier.address, epoch)
    return event.amount


def release(opg, staking, actor) -> None:
    """Restore a jailed account's stake to its pre-slash level and leave jail (once the jail time is over)."""
    record = staking.nodes(actor.address)
    missing = record.restore_stake - record.stake
    opg.approve(staking, missing, sender=actor.account)
    staking.add_stake(missing, sender=actor.account)
    if staking.nodes(actor.address).jailed:
        staking.unjail(sender=actor.account)
    assert not staking.nodes(actor.address).jailed


def test_attack_verifier_jailed_for_a_double_vote_forfeits_its_share_of_that_epochs_pool(
    opg, escrow, escrow_domain, staking, staking_domain, distributor, node, payer, verifiers, weights, chain, treasury
):
    # The review's attack: verifiers[0] weighs in the epoch, signs both ways on a receipt, is slashed and jailed,
    # and then collects its share of the epoch's pool anyway.
    cheat, honest = verifiers[0], verifiers[1:]
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)  # the epoch's pool: 60 OPG
    epoch = epoch_of(tx, distributor)
    assert staking.weight_in(epoch, cheat.address) == weights[cheat.address] > 0
    double_vote(staking, staking_domain, cheat, payer)
    end_epoch(chain, distributor, epoch)
    share = 60 * OPG * weights[cheat.address] // (3_000 * OPG)
    treasury_before = distributor.claimable(treasury.address)
    assert forfeit(distributor, cheat, epoch, cheat) == share > 0
    assert distributor.claimable(cheat.address) == 0
    assert distributor.claimable(treasury.address) == treasury_before + share
    with ape.reverts("RewardDistributor: reward already collected"):
        distributor.collect_verifier_reward(cheat.address, epoch, sender=cheat.account)
    # The honest verifiers' shares are what they were.
    for v in honest:
        assert collect(distributor, v, epoch) == 60 * OPG * weights[v.address] // (3_000 * OPG)


def test_attack_verifier_jailed_after_the_epoch_and_released_before_collecting_still_forfeits_it(
    opg, escrow, escrow_domain, staking, staking_domain, distributor, node, payer, verifiers, weights, chain, params
):
    # The double vote is caught only in the next epoch; the cheat waits out its jail, restores its stake, is
    # released, and only then collects the epoch it weighed in: still forfeited (jailed since the epoch began).
    cheat = verifiers[0]
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    double_vote(staking, staking_domain, cheat, payer)
    chain.pending_timestamp += params.dispute_window
    chain.mine()
    release(opg, staking, cheat)
    assert forfeit(distributor, cheat, epoch, payer) == 60 * OPG * weights[cheat.address] // (3_000 * OPG)
    assert distributor.claimable(cheat.address) == 0


def test_verifier_released_before_an_epoch_starts_earns_that_epochs_pool(
    opg, escrow, escrow_domain, staking, staking_domain, distributor, node, payer, verifiers, chain, params
):
    # The honest path after a jail: released, live again from the next epoch, it earns that epoch's share.
    cheat, honest = verifiers[0], verifiers[1:]
    double_vote(staking, staking_domain, cheat, payer)
    chain.pending_timestamp += max(params.dispute_window, params.warmup)
    chain.mine()
    release(opg, staking, cheat)
    chain.pending_timestamp += params.warmup  # the restored stake warms up
    chain.mine()
    epoch = heartbeat_into_next_epoch(chain, staking, distributor, [cheat, *honest])
    weight = staking.weight_in(epoch, cheat.address)
    assert weight > 0 and distributor.epoch_start(epoch) > staking.nodes(cheat.address).released_at
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    assert epoch_of(tx, distributor) == epoch
    end_epoch(chain, distributor, epoch)
    assert collect(distributor, cheat, epoch) == 60 * OPG * weight // staking.total_weight_in(epoch) > 0


def test_epoch_start_follows_epoch_length_changes(distributor, deployer, chain):
    """`epoch_start` (what the forfeiture rule compares jail times with) is exact across a length change."""
    before = distributor.current_epoch()
    assert distributor.epoch_start(before) == distributor.current_epoch_end() - 3_600
    assert distributor.epoch_start(0) == distributor.epoch_start(before) - before * 3_600
    govern(distributor, deployer, chain, "set_epoch_length", 7_200)
    current, end = distributor.current_epoch(), distributor.current_epoch_end()
    assert distributor.epoch_span_count() == 2
    assert tuple(distributor.epoch_spans(1)) == (current + 1, end, 7_200)
    assert distributor.epoch_start(current) == end - 3_600
    assert distributor.epoch_start(current + 1) == end
    assert distributor.epoch_start(current + 3) == end + 2 * 7_200
    assert distributor.epoch_start(0) == distributor.epoch_start(before) - before * 3_600
    chain.mine(timestamp=end + 2 * 7_200)
    assert distributor.epoch_now() == current + 3
