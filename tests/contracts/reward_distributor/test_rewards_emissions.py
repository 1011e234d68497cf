"""RewardDistributor: emissions."""

from __future__ import annotations

import ape
import pytest
from reward_distributor_kit import OPG, collect, end_epoch, epoch_end, epoch_of, govern, pay

pytestmark = pytest.mark.usefixtures("backed_node")


def test_fund_emissions_adds_to_reserve_and_emits(opg, distributor, treasury):
    held = opg.balanceOf(distributor)
    reserve = distributor.emission_reserve()
    opg.approve(distributor, 5 * OPG, sender=treasury)
    tx = distributor.fund_emissions(5 * OPG, sender=treasury)
    events = tx.decode_logs(distributor.EmissionFunded)
    assert len(events) == 1
    assert events[0].funder == treasury.address
    assert events[0].amount == 5 * OPG
    assert events[0].reserve == reserve + 5 * OPG
    assert distributor.emission_reserve() == reserve + 5 * OPG
    assert opg.balanceOf(distributor) == held + 5 * OPG


def test_fund_emissions_zero_reverts(distributor, treasury):
    with ape.reverts("RewardDistributor: zero amount"):
        distributor.fund_emissions(0, sender=treasury)


def test_fund_emissions_by_anyone(opg, distributor, payer):
    opg.approve(distributor, OPG, sender=payer.account)
    distributor.fund_emissions(OPG, sender=payer.account)
    assert distributor.emission_reserve() == OPG


def test_finalize_current_epoch_reverts_not_ended(distributor, payer):
    epoch = distributor.epoch_now()
    with ape.reverts("RewardDistributor: epoch not ended"):
        distributor.finalize_epoch(epoch, sender=payer.account)
    with ape.reverts("RewardDistributor: epoch not ended"):
        distributor.finalize_epoch(epoch + 5, sender=payer.account)


def test_epoch_now_advances_with_time(distributor, chain):
    epoch = distributor.epoch_now()
    end_epoch(chain, distributor, epoch)
    assert distributor.epoch_now() == epoch + 1
    chain.mine(timestamp=epoch_end(distributor, epoch) + 3 * distributor.epoch_length())
    assert distributor.epoch_now() == epoch + 4


def test_finalize_epoch_caps_emission_by_fees(opg, escrow, escrow_domain, distributor, node, payer, funded, chain):
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    tx = distributor.finalize_epoch(epoch, sender=payer.account)
    events = tx.decode_logs(distributor.EpochFinalized)  # earlier, empty epochs are finalised on the way
    assert (events[-1].epoch, events[-1].fees, events[-1].emission) == (epoch, 1_000 * OPG, 40 * OPG)
    assert all(e.emission == 0 for e in events[:-1])
    assert distributor.epoch_finalized(epoch)
    assert distributor.epoch_emission(epoch) == 40 * OPG
    assert distributor.emission_reserve() == funded - 40 * OPG


def test_finalize_epoch_caps_emission_by_emission_per_epoch(
    opg, escrow, escrow_domain, distributor, deployer, node, payer, funded, chain
):
    govern(distributor, deployer, chain, "set_emission_per_epoch", 7 * OPG)
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    distributor.finalize_epoch(epoch, sender=payer.account)
    assert distributor.epoch_emission(epoch) == 7 * OPG


def test_finalize_epoch_caps_emission_by_reserve(opg, escrow, escrow_domain, distributor, treasury, node, payer, chain):
    opg.approve(distributor, 3 * OPG, sender=treasury)
    distributor.fund_emissions(3 * OPG, sender=treasury)
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    distributor.finalize_epoch(epoch, sender=payer.account)
    assert distributor.epoch_emission(epoch) == 3 * OPG
    assert distributor.emission_reserve() == 0


def test_finalize_epoch_twice_is_a_no_op(opg, escrow, escrow_domain, distributor, node, payer, funded, chain):
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    distributor.finalize_epoch(epoch, sender=payer.account)
    reserve = distributor.emission_reserve()
    tx = distributor.finalize_epoch(epoch, sender=payer.account)
    assert tx.decode_logs(distributor.EpochFinalized) == []
    assert distributor.emission_reserve() == reserve


def test_epoch_without_fees_allocates_nothing(distributor, payer, funded, chain):
    epoch = distributor.epoch_now()
    end_epoch(chain, distributor, epoch)
    tx = distributor.finalize_epoch(epoch, sender=payer.account)
    assert tx.decode_logs(distributor.EpochFinalized)[0].emission == 0
    assert distributor.emission_reserve() == funded


def test_collect_emission_pays_the_node_its_share(opg, escrow, escrow_domain, distributor, node, payer, funded, chain):
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    epoch = epoch_of(tx, distributor)
    node_share = distributor.claimable(node.address)
    end_epoch(chain, distributor, epoch)
    # Anyone may collect for the node (here the payer); it finalises the epoch on the way.
    tx = distributor.collect_emission(node.address, epoch, sender=payer.account)
    assert tx.decode_logs(distributor.EpochFinalized)[-1].epoch == epoch
    events = tx.decode_logs(distributor.EmissionCollected)
    assert len(events) == 1
    assert (events[0].node, events[0].epoch, events[0].amount) == (node.address, epoch, 40 * OPG)
    assert distributor.emission_collected(epoch, node.address)
    assert distributor.claimable(node.address) == node_share + 40 * OPG
    assert distributor.claim(sender=node.account).return_value == node_share + 40 * OPG


def test_collect_emission_before_epoch_end_reverts(opg, escrow, escrow_domain, distributor, node, payer, funded):
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    with ape.reverts("RewardDistributor: epoch not ended"):
        distributor.collect_emission(node.address, epoch_of(tx, distributor), sender=node.account)


def test_collect_emission_twice_reverts(opg, escrow, escrow_domain, distributor, node, payer, funded, chain):
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    distributor.collect_emission(node.address, epoch, sender=node.account)
    with ape.reverts("RewardDistributor: emission already collected"):
        distributor.collect_emission(node.address, epoch, sender=node.account)


def test_collect_emission_without_fees_in_epoch_reverts(
    opg, escrow, escrow_domain, distributor, node, node2, payer, funded, chain
):
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    with ape.reverts("RewardDistributor: no fees in epoch"):
        distributor.collect_emission(node2.address, epoch, sender=node2.account)
    # Fees of the previous epoch do not count in the next one.
    end_epoch(chain, distributor, epoch + 1)
    with ape.reverts("RewardDistributor: no fees in epoch"):
        distributor.collect_emission(node.address, epoch + 1, sender=node.account)


def test_emission_is_pro_rata_to_gross_across_nodes(
    opg, escrow, escrow_domain, distributor, deployer, node, node2, payer, funded, chain
):
    govern(distributor, deployer, chain, "set_emission_per_epoch", 10 * OPG)  # below the fee cap (4% of 400 = 16 OPG)
    tx1 = pay(opg, escrow, escrow_domain, payer, node.address, 300 * OPG)
    tx2 = pay(opg, escrow, escrow_domain, payer, node2.address, 100 * OPG)
    epoch = epoch_of(tx1, distributor)
    assert epoch_of(tx2, distributor) == epoch
    end_epoch(chain, distributor, epoch)
    a = distributor.collect_emission(node.address, epoch, sender=node.account).decode_logs(
        distributor.EmissionCollected
    )
    b = distributor.collect_emission(node2.address, epoch, sender=node2.account).decode_logs(
        distributor.EmissionCollected
    )
    assert a[0].amount == 7_500_000_000_000_000_000  # 3/4 of 10 OPG
    assert b[0].amount == 2_500_000_000_000_000_000  # 1/4 of 10 OPG
    assert a[0].amount + b[0].amount == distributor.epoch_emission(epoch)


def test_emission_shares_round_down(
    opg, escrow, escrow_domain, distributor, deployer, node, node2, payer, funded, chain
):
    govern(distributor, deployer, chain, "set_emission_per_epoch", 10)  # 10 wei over gross 2:1
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 2 * OPG)
    pay(opg, escrow, escrow_domain, payer, node2.address, 1 * OPG)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    a = distributor.collect_emission(node.address, epoch, sender=node.account).decode_logs(
        distributor.EmissionCollected
    )
    b = distributor.collect_emission(node2.address, epoch, sender=node2.account).decode_logs(
        distributor.EmissionCollected
    )
    assert (a[0].amount, b[0].amount) == (6, 3)


def test_unallocated_emission_rolls_over_to_later_epochs(
    opg, escrow, escrow_domain, distributor, treasury, node, payer, chain
):
    opg.approve(distributor, 100 * OPG, sender=treasury)
    distributor.fund_emissions(100 * OPG, sender=treasury)
    allocated = []
    for _ in range(3):
        tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)  # cap: 40 OPG per epoch
        epoch = epoch_of(tx, distributor)
        end_epoch(chain, distributor, epoch)
        distributor.collect_emission(node.address, epoch, sender=node.account)
        allocated.append(distributor.epoch_emission(epoch))
    # 100 OPG funded once: what an epoch's cap left unallocated served the next epochs.
    assert allocated == [40 * OPG, 40 * OPG, 20 * OPG]
    assert distributor.emission_reserve() == 0


def test_epoch_without_fees_leaves_the_reserve_for_later(
    opg, escrow, escrow_domain, distributor, deployer, node, payer, funded, chain
):
    empty = distributor.epoch_now()
    end_epoch(chain, distributor, empty)
    distributor.finalize_epoch(empty, sender=payer.account)
    assert distributor.emission_reserve() == funded
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    epoch = epoch_of(tx, distributor)
    assert epoch > empty
    end_epoch(chain, distributor, epoch)
    distributor.collect_emission(node.address, epoch, sender=node.account)
    assert distributor.epoch_emission(epoch) == 40 * OPG
    assert distributor.emission_reserve() == funded - 40 * OPG


def test_attack_finalizing_before_the_treasury_funds_changes_no_allocation(
    opg, escrow, escrow_domain, distributor, treasury, node, payer, chain
):
    # Epoch c has fees but no funding by its end; the treasury funds 100 OPG during c + 1. A griefer finalising
    # c just before the funding lands, the treasury funding first, or nobody finalising until c + 1 has ended:
    # every order allocates the same to c and to c + 1 (an epoch uses only funding that arrived by its end).
    assert distributor.emission_reserve() == 0
    c = epoch_of(pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG), distributor)
    end_epoch(chain, distributor, c)
    opg.approve(distributor, 100 * OPG, sender=treasury)

    def fund():
        distributor.fund_emissions(100 * OPG, sender=treasury)

    def finalize_c():
        distributor.finalize_epoch(c, sender=payer.account)

    def then_c_plus_1():
        assert epoch_of(pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG), distributor) == c + 1
        end_epoch(chain, distributor, c + 1)
        distributor.collect_emission(node.address, c + 1, sender=node.account)  # finalises c first if needed
        return distributor.epoch_emission(c), distributor.epoch_emission(c + 1), distributor.emission_reserve()

    results = {}
    for name, steps in {
        "griefer finalizes first": [finalize_c, fund],
        "treasury funds first": [fund, finalize_c],
        "nobody finalizes c early": [fund],
    }.items():
        snapshot = chain.snapshot()
        for step in steps:
            step()
        results[name] = then_c_plus_1()
        chain.restore(snapshot)
    assert set(results.values()) == {(0, 40 * OPG, 60 * OPG)}


def test_emission_funded_before_an_epoch_ends_is_allocated_to_it_whoever_finalizes(
    opg, escrow, escrow_domain, distributor, treasury, node, payer, chain
):
    c = epoch_of(pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG), distributor)
    opg.approve(distributor, 100 * OPG, sender=treasury)
    distributor.fund_emissions(100 * OPG, sender=treasury)
    assert distributor.epoch_funding(c) == 100 * OPG
    end_epoch(chain, distributor, c)
    distributor.finalize_epoch(c, sender=payer.account)  # a stranger finalises
    assert distributor.epoch_emission(c) == 40 * OPG
    assert distributor.emission_reserve() == 60 * OPG


def test_finalize_epoch_after_an_unfinalized_earlier_epoch_finalizes_both_in_order(
    opg, escrow, escrow_domain, distributor, node, payer, funded, chain
):
    c = epoch_of(pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG), distributor)
    end_epoch(chain, distributor, c)
    pay(opg, escrow, escrow_domain, payer, node.address, 500 * OPG)
    end_epoch(chain, distributor, c + 1)
    tx = distributor.finalize_epoch(c + 1, sender=payer.account)
    events = tx.decode_logs(distributor.EpochFinalized)
    assert [(e.epoch, e.emission) for e in events][-2:] == [(c, 40 * OPG), (c + 1, 20 * OPG)]
    assert distributor.next_epoch_to_finalize() == c + 2


def test_finalize_more_than_64_epochs_ahead_reverts(distributor, payer, chain):
    start = distributor.next_epoch_to_finalize()
    chain.mine(timestamp=epoch_end(distributor, start + 64))
    with ape.reverts("RewardDistributor: finalize earlier epochs first"):
        distributor.finalize_epoch(start + 64, sender=payer.account)
    distributor.finalize_epoch(start + 63, sender=payer.account)
    distributor.finalize_epoch(start + 64, sender=payer.account)
    assert distributor.epoch_finalized(start + 64)


def test_distributor_holds_everything_it_owes(
    opg, escrow, escrow_domain, distributor, treasury, node, node2, payer, verifiers, funded, chain
):
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_234_567_891_234)
    pay(opg, escrow, escrow_domain, payer, node2.address, 987_654_321)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    distributor.collect_emission(node.address, epoch, sender=node.account)  # node2 has not collected yet
    collect(distributor, verifiers[0], epoch)  # the other verifiers have not collected yet
    uncollected_emission = (
        distributor.epoch_emission(epoch)
        * distributor.node_epoch_fees(epoch, node2.address)
        // distributor.epoch_fees(epoch)
    )
    pool = distributor.epoch_verifier_fees(epoch)
    owed = sum(
        distributor.claimable_of(a)
        for a in [treasury.address, node.address, node2.address] + [v.address for v in verifiers]
    )
    assert opg.balanceOf(distributor) >= owed + distributor.emission_reserve() + uncollected_emission + pool - (
        distributor.claimable_of(verifiers[0].address)
    )
    for v in verifiers[1:]:
        collect(distributor, v, epoch)
    distributor.collect_emission(node2.address, epoch, sender=node2.account)
    for account in [node.account, node2.account, treasury] + [v.account for v in verifiers]:
        distributor.claim(sender=account)
    assert opg.balanceOf(distributor) >= distributor.emission_reserve()
