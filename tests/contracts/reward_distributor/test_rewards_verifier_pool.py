"""RewardDistributor: verifier pool."""

from __future__ import annotations

import ape
import pytest
from eth_utils import keccak
from reward_distributor_kit import OPG, VERIFIER, collect, end_epoch, epoch_of, heartbeat_into_next_epoch, pay, split

from offchain.messages import Verdict

pytestmark = pytest.mark.usefixtures("backed_node")


def test_verifier_pool_is_split_pro_rata_to_snapshot_weight(
    opg, escrow, escrow_domain, distributor, node, payer, verifiers, weights, chain
):
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)  # verifier fee 60 OPG
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    for v in verifiers:
        sixths = weights[v.address] // (500 * OPG)
        assert collect(distributor, v, epoch) == 10 * OPG * sixths
        assert distributor.verifier_collected(epoch, v.address)
        assert distributor.claimable_of(v.address) == 10 * OPG * sixths
    for v in verifiers:
        balance = opg.balanceOf(v.address)
        tx = distributor.claim(sender=v.account)
        assert tx.return_value == 10 * OPG * (weights[v.address] // (500 * OPG))
        assert opg.balanceOf(v.address) == balance + tx.return_value


def test_anyone_may_collect_a_verifiers_reward_for_it(
    opg, escrow, escrow_domain, distributor, node, payer, verifiers, weights, chain
):
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    v = verifiers[0]
    distributor.collect_verifier_reward(v.address, epoch, sender=payer.account)
    assert distributor.claimable(v.address) == 60 * OPG * weights[v.address] // (3_000 * OPG)
    assert distributor.claimable(payer.address) == 0


def test_collect_verifier_reward_before_the_epoch_ends_reverts(
    opg, escrow, escrow_domain, distributor, node, payer, verifiers
):
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    with ape.reverts("RewardDistributor: epoch not ended"):
        distributor.collect_verifier_reward(verifiers[0].address, epoch_of(tx, distributor), sender=payer.account)


def test_collect_verifier_reward_twice_reverts(opg, escrow, escrow_domain, distributor, node, payer, verifiers, chain):
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    collect(distributor, verifiers[0], epoch)
    with ape.reverts("RewardDistributor: reward already collected"):
        distributor.collect_verifier_reward(verifiers[0].address, epoch, sender=payer.account)


def test_verifier_pool_shares_round_down_and_never_exceed_the_pool(
    opg, escrow, escrow_domain, distributor, node, payer, verifiers, weights, chain
):
    gross = 1_000_003
    verifier_fee = split(gross)[1]
    assert verifier_fee == 100_000
    tx = pay(opg, escrow, escrow_domain, payer, node.address, gross)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    shares = {v.address: collect(distributor, v, epoch) for v in verifiers}
    for v in verifiers:
        assert shares[v.address] == verifier_fee * weights[v.address] // (3_000 * OPG)
    assert sorted(shares.values()) == [16_666, 33_333, 50_000]
    assert sum(shares.values()) == verifier_fee - 1  # one wei of dust stays in the distributor


def test_attack_verifier_stake_joining_just_before_a_large_batch_earns_none_of_its_fees(
    opg, escrow, escrow_domain, staking, distributor, register, make_actor, node, payer, verifiers, weights, chain
):
    # A whale registers 30x the live verifier stake and heartbeats in the epoch of a large batch.
    epoch = distributor.epoch_now()
    whale = make_actor(100_000 * OPG)
    register(whale, VERIFIER, 90_000 * OPG, "http://whale.invalid")
    assert staking.heartbeat(sender=whale.account).return_value == 0  # fresh stake is not warm: weight 0
    assert staking.weight_in(epoch, whale.address) == 0
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 60_000 * OPG)  # verifier fee 6,000 OPG
    assert epoch_of(tx, distributor) == epoch
    end_epoch(chain, distributor, epoch)
    with ape.reverts("RewardDistributor: no weight in epoch"):
        distributor.collect_verifier_reward(whale.address, epoch, sender=whale.account)
    # The epoch's pool went to the snapshot weights only: the honest verifiers take all of it.
    assert sum(collect(distributor, v, epoch) for v in verifiers) == 6_000 * OPG
    # Its heartbeat recorded nothing for the next epoch either: the next batch's pool is not its.
    assert staking.weight_in(epoch + 1, whale.address) == 0
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 6_000 * OPG)
    end_epoch(chain, distributor, epoch_of(tx, distributor))
    with ape.reverts("RewardDistributor: no weight in epoch"):
        distributor.collect_verifier_reward(whale.address, epoch_of(tx, distributor), sender=whale.account)


def test_verifier_stake_earns_once_warm_and_heartbeating(
    opg, escrow, escrow_domain, staking, distributor, register, make_actor, make_live, node, payer, chain, params
):
    # The honest path of the whale: after the warm-up and a heartbeat it earns pro rata from the next epoch.
    newcomer = make_actor()
    register(newcomer, VERIFIER, 2_000 * OPG)
    make_live([newcomer])
    epoch = distributor.epoch_now()
    assert staking.weight_in(epoch, newcomer.address) == 2_000 * OPG
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    assert epoch_of(tx, distributor) == epoch
    end_epoch(chain, distributor, epoch)
    share = 60 * OPG * 2_000 * OPG // staking.total_weight_in(epoch)
    assert collect(distributor, newcomer, epoch) == share > 0


def test_attack_verifier_that_stops_heartbeating_earns_nothing_of_later_pools(
    opg, escrow, escrow_domain, staking, distributor, node, payer, verifiers, weights, chain
):
    # Only verifiers[0] and [1] stay live (heartbeat into the next epoch); verifiers[2] goes idle.
    live, idle = verifiers[:2], verifiers[2]
    epoch = heartbeat_into_next_epoch(chain, staking, distributor, live)
    assert staking.weight_in(epoch, idle.address) == 0
    total = staking.total_weight_in(epoch)
    assert total == sum(weights[v.address] for v in live)
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    assert epoch_of(tx, distributor) == epoch
    end_epoch(chain, distributor, epoch)
    with ape.reverts("RewardDistributor: no weight in epoch"):
        distributor.collect_verifier_reward(idle.address, epoch, sender=idle.account)
    # The live verifiers share the whole pool by weight.
    got = {v.address: collect(distributor, v, epoch) for v in live}
    for v in live:
        assert got[v.address] == 60 * OPG * weights[v.address] // total
    assert 60 * OPG - len(live) < sum(got.values()) <= 60 * OPG


def test_attack_jailed_verifier_cannot_heartbeat_and_earns_nothing_of_the_next_pool(
    opg, escrow, escrow_domain, staking, staking_domain, distributor, node, payer, verifiers, weights, chain
):
    # verifiers[0] signs both verdicts on one receipt: anyone slashes and jails it; it can no longer go live.
    cheat, honest = verifiers[0], verifiers[1:]
    receipt_hash = "0x" + keccak(text="double vote").hex()
    signatures = [
        bytes.fromhex(Verdict(receipt_hash=receipt_hash, valid=valid).sign_with(cheat.key, staking_domain)[2:])
        for valid in (True, False)
    ]
    staking.slash_double_vote(receipt_hash, cheat.address, *signatures, sender=payer.account)
    assert staking.nodes(cheat.address).jailed
    with ape.reverts("NodeStaking: not an active verifier"):
        staking.heartbeat(sender=cheat.account)
    epoch = heartbeat_into_next_epoch(chain, staking, distributor, honest)
    assert staking.weight_in(epoch, cheat.address) == 0
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    assert epoch_of(tx, distributor) == epoch
    end_epoch(chain, distributor, epoch)
    with ape.reverts("RewardDistributor: no weight in epoch"):
        distributor.collect_verifier_reward(cheat.address, epoch, sender=cheat.account)
    assert sum(collect(distributor, v, epoch) for v in honest) == 60 * OPG


def test_attack_account_without_weight_cannot_collect_a_verifier_reward(
    opg, escrow, escrow_domain, distributor, register, make_actor, node, payer, verifiers, chain, params
):
    # Neither a registered verifier that never heartbeat, nor an inference node, nor a stranger has a share.
    silent = make_actor()
    register(silent, VERIFIER, params.min_verifier_stake)
    stranger = make_actor(0)
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    for account in (silent, node, stranger):
        with ape.reverts("RewardDistributor: no weight in epoch"):
            distributor.collect_verifier_reward(account.address, epoch, sender=account.account)
    assert collect(distributor, verifiers[0], epoch) > 0  # the live verifiers still collect


def test_verifier_collects_each_epochs_pool_separately(
    opg, escrow, escrow_domain, staking, distributor, node, payer, verifiers, weights, chain
):
    v = verifiers[1]
    first = epoch_of(pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG), distributor)
    second = heartbeat_into_next_epoch(chain, staking, distributor, verifiers)
    assert epoch_of(pay(opg, escrow, escrow_domain, payer, node.address, 1_200 * OPG), distributor) == second
    end_epoch(chain, distributor, second)
    def share(fees: int) -> int:  # the contract's `pool * weight // total weight`, rounded once as it rounds
        return fees * weights[v.address] // (3_000 * OPG)

    assert collect(distributor, v, second) == share(120 * OPG)
    assert collect(distributor, v, first) == share(60 * OPG)
    assert distributor.claim(sender=v.account).return_value == share(120 * OPG) + share(60 * OPG)


def test_verifier_unbonding_after_an_epoch_keeps_its_collected_reward(
    opg, escrow, escrow_domain, staking, distributor, node, payer, verifiers, weights, chain
):
    v = verifiers[0]
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    earned = collect(distributor, v, epoch)
    staking.request_unbond(staking.nodes(v.address).stake, sender=v.account)
    assert distributor.claim(sender=v.account).return_value == earned
