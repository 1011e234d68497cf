"""RewardDistributor: the fee split of settled vouchers, the verifier pool, claims, emissions, wash trading,
owner-only parameters.

Fees reach the distributor the real way: a payer deposits, signs a Voucher with eth-account, and the claim is
settled through ``CreditEscrow.settle_batch``.
"""

from __future__ import annotations

import ape
import pytest
from eth_utils import keccak

from offchain.messages import Claim, Receipt, Verdict, Voucher

OPG = 10**18
BPS = 10_000
PRECISION = 10**18
INFERENCE = 1
VERIFIER = 2
ZERO_ADDRESS = "0x" + "00" * 20
ZERO_ROOT = b"\x00" * 32
NOT_OWNER = "ownable: caller is not the owner"


# ---------------------------------------------------------------- helpers


def claim_for(payer, node_address, total, escrow_domain) -> tuple:
    voucher = Voucher(payer=payer.address, node=node_address, max_cumulative=total)
    return Claim(
        payer=payer.address,
        node=node_address,
        max_cumulative=total,
        signature=voucher.sign_with(payer.key, escrow_domain),
        total=total,
    ).as_tuple()


def pay(opg, escrow, escrow_domain, payer, node_address, amount, deposit=True):
    """``payer`` deposits ``amount`` (if asked) and pays ``node_address`` that much more through ``settle_batch``."""
    if deposit:
        opg.approve(escrow, amount, sender=payer.account)
        escrow.deposit(amount, sender=payer.account)
    total = escrow.spent(payer.address, node_address) + amount
    return escrow.settle_batch(
        [claim_for(payer, node_address, total, escrow_domain)], ZERO_ROOT, sender=payer.account
    )


def credited(tx, distributor) -> list:
    return tx.decode_logs(distributor.FeesCredited)


def epoch_of(tx, distributor) -> int:
    events = credited(tx, distributor)
    assert events, "no fees credited"
    return events[0].epoch


def epoch_end(distributor, epoch: int) -> int:
    return (
        distributor.current_epoch_end() + (epoch - distributor.current_epoch()) * distributor.epoch_length()
    )


def end_epoch(chain, distributor, epoch: int):
    """Mine a block at the first second after ``epoch``."""
    end = epoch_end(distributor, epoch)
    if chain.pending_timestamp < end:
        chain.mine(timestamp=end)
    else:
        chain.mine()


def split(gross: int, protocol_bps: int = 500, verifier_bps: int = 1_000) -> tuple[int, int, int]:
    protocol = (gross * protocol_bps + BPS - 1) // BPS
    verifier = min(gross * verifier_bps // BPS, gross - protocol)
    return protocol, verifier, gross - protocol - verifier


def register(opg, staking, actor, role, stake):
    opg.approve(staking, stake, sender=actor.account)
    staking.register(role, stake, "http://n.invalid", sender=actor.account)


@pytest.fixture
def funded(opg, distributor, treasury):
    """100,000 OPG in the emission reserve."""
    amount = 100_000 * OPG
    opg.approve(distributor, amount, sender=treasury)
    distributor.fund_emissions(amount, sender=treasury)
    return amount


@pytest.fixture
def no_verifiers(staking, distributor, verifiers):
    """No active verifier stake: the session's verifiers (if any test created them) unbond everything."""
    for v in verifiers:
        staking.request_unbond(staking.nodes(v.address).stake, sender=v.account)
    assert distributor.total_verifier_stake() == 0


@pytest.fixture
def node2(make_actor, opg, staking, params):
    actor = make_actor()
    register(opg, staking, actor, INFERENCE, params.min_inference_stake)
    return actor


# ---------------------------------------------------------------- fee split


def test_settlement_splits_gross_exactly(
    opg, escrow, escrow_domain, distributor, treasury, node, payer, verifiers
):
    gross = 123_456_789
    protocol, verifier_fee, node_share = split(gross)
    assert (protocol, verifier_fee, node_share) == (6_172_840, 12_345_678, 104_938_271)
    total_stake = distributor.total_verifier_stake()
    assert total_stake == 3_000 * OPG
    increment = verifier_fee * PRECISION // total_stake
    dust = verifier_fee - (increment * total_stake + PRECISION - 1) // PRECISION
    assert (increment, dust) == (4_115, 678)
    held = opg.balanceOf(distributor)
    treasury_before = distributor.claimable(treasury)
    rps = distributor.reward_per_stake()

    tx = pay(opg, escrow, escrow_domain, payer, node.address, gross)

    events = credited(tx, distributor)
    assert len(events) == 1
    ev = events[0]
    assert ev.node == node.address
    assert ev.epoch == distributor.current_epoch()
    assert (ev.gross, ev.protocol_fee, ev.verifier_fee, ev.node_share) == (
        gross,
        protocol,
        verifier_fee,
        node_share,
    )
    assert opg.balanceOf(distributor) == held + gross
    assert distributor.claimable(node.address) == node_share
    assert distributor.claimable_of(node.address) == node_share
    assert distributor.claimable(treasury) == treasury_before + protocol + dust
    assert distributor.reward_per_stake() == rps + increment
    assert distributor.epoch_fees(ev.epoch) == gross
    assert distributor.node_epoch_fees(ev.epoch, node.address) == gross


def test_protocol_fee_rounds_up_and_verifier_fee_down(
    opg, escrow, escrow_domain, distributor, treasury, node, payer
):
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 19)  # 0.95 wei protocol, 1.9 wei verifier
    ev = credited(tx, distributor)[0]
    assert (ev.protocol_fee, ev.verifier_fee, ev.node_share) == (1, 1, 17)
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1)
    ev = credited(tx, distributor)[0]
    assert (ev.protocol_fee, ev.verifier_fee, ev.node_share) == (1, 0, 0)


def test_fee_split_follows_updated_fees(opg, escrow, escrow_domain, distributor, deployer, node, payer):
    distributor.set_fees(2_000, 2_000, 0, sender=deployer)
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    ev = credited(tx, distributor)[0]
    assert (ev.protocol_fee, ev.verifier_fee, ev.node_share) == (200 * OPG, 200 * OPG, 600 * OPG)


def test_zero_fees_pay_the_node_everything(
    opg, escrow, escrow_domain, distributor, deployer, treasury, node, payer
):
    distributor.set_fees(0, 0, 0, sender=deployer)
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


def test_treasury_claims_protocol_fees(
    opg, escrow, escrow_domain, distributor, treasury, node, payer, no_verifiers
):
    before = distributor.claimable(treasury)
    pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    protocol, verifier_fee, _ = split(1_000 * OPG)
    # No verifier is staked in this test: the verifier fee is the treasury's too.
    assert distributor.claimable(treasury) == before + protocol + verifier_fee
    balance = opg.balanceOf(treasury)
    tx = distributor.claim(sender=treasury)
    assert tx.return_value == before + protocol + verifier_fee
    assert opg.balanceOf(treasury) == balance + before + protocol + verifier_fee
    assert distributor.claimable(treasury) == 0


def test_without_verifiers_the_verifier_fee_goes_to_the_treasury(
    opg, escrow, escrow_domain, distributor, treasury, node, payer, no_verifiers
):
    rps = distributor.reward_per_stake()
    before = distributor.claimable(treasury)
    pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    assert distributor.claimable(treasury) == before + 50 * OPG + 100 * OPG
    assert distributor.reward_per_stake() == rps


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
    tx = escrow.settle_batch(claims, ZERO_ROOT, sender=payer.account)
    events = credited(tx, distributor)
    assert [(e.node, e.gross) for e in events] == [(node.address, 30 * OPG), (node2.address, 30 * OPG)]
    assert distributor.claimable(node.address) == split(30 * OPG)[2]
    assert distributor.claimable(node2.address) == split(30 * OPG)[2]
    assert opg.balanceOf(distributor) == held + 60 * OPG


def test_credit_fees_only_by_the_escrow(distributor, node):
    with ape.reverts("RewardDistributor: caller is not the escrow"):
        distributor.credit_fees([node.address], [1], sender=node.account)


def test_on_verifier_stake_change_only_by_the_staking(distributor, node):
    with ape.reverts("RewardDistributor: caller is not the staking"):
        distributor.on_verifier_stake_change(node.address, 10**30, sender=node.account)


# ---------------------------------------------------------------- verifier pool


def test_verifier_pool_is_split_pro_rata_to_stake(
    opg, escrow, escrow_domain, staking, distributor, node, payer, verifiers
):
    stakes = {v.address: staking.nodes(v.address).stake for v in verifiers}
    assert sorted(stakes.values()) == [500 * OPG, 1_000 * OPG, 1_500 * OPG]  # 1x, 2x, 3x
    pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)  # verifier fee 60 OPG
    for v in verifiers:
        sixths = stakes[v.address] // (500 * OPG)
        assert distributor.claimable_of(v.address) == 10 * OPG * sixths
    for v in verifiers:
        balance = opg.balanceOf(v.address)
        tx = distributor.claim(sender=v.account)
        assert tx.return_value == 10 * OPG * (stakes[v.address] // (500 * OPG))
        assert opg.balanceOf(v.address) == balance + tx.return_value
        assert distributor.claimable_of(v.address) == 0


def test_verifier_pool_rounding_dust_goes_to_the_treasury(
    opg, escrow, escrow_domain, staking, distributor, treasury, node, payer, verifiers
):
    gross = 1_000_003
    protocol, verifier_fee, _ = split(gross)
    total = distributor.total_verifier_stake()
    increment = verifier_fee * PRECISION // total
    before = distributor.claimable(treasury)
    pay(opg, escrow, escrow_domain, payer, node.address, gross)
    earned = []
    for v in verifiers:
        stake = staking.nodes(v.address).stake
        got = distributor.claimable_of(v.address)
        assert got == stake * increment // PRECISION
        # Below the exact share by at most one wei per OPG staked (the 1e18 fixed point) plus one.
        exact = verifier_fee * stake // total
        assert exact - stake // PRECISION - 1 <= got <= exact
        earned.append(got)
    dust = distributor.claimable(treasury) - before - protocol
    assert dust == verifier_fee - (increment * total + PRECISION - 1) // PRECISION
    assert sum(earned) + dust == verifier_fee  # nothing created, nothing lost (stakes are whole OPG here)


def test_claimable_of_includes_pending_verifier_rewards(
    opg, escrow, escrow_domain, staking, distributor, node, payer, verifiers
):
    pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    v = verifiers[0]
    assert distributor.claimable(v.address) == 0  # not checkpointed yet
    pending = distributor.claimable_of(v.address)
    assert pending > 0
    # A stake change checkpoints the pending reward into `claimable`.
    opg.approve(staking, OPG, sender=v.account)
    staking.add_stake(OPG, sender=v.account)
    assert distributor.claimable(v.address) == pending
    assert distributor.claimable_of(v.address) == pending


def test_verifier_joining_later_does_not_earn_past_fees(
    opg, escrow, escrow_domain, staking, distributor, make_actor, node, payer, verifiers, params
):
    pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    late = make_actor()
    register(opg, staking, late, VERIFIER, 3_000 * OPG)  # doubles the pool's stake
    assert distributor.claimable_of(late.address) == 0
    with ape.reverts("RewardDistributor: nothing to claim"):
        distributor.claim(sender=late.account)
    early = {v.address: distributor.claimable_of(v.address) for v in verifiers}
    pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)  # 60 OPG over 6,000 OPG of stake
    assert distributor.claimable_of(late.address) == 30 * OPG
    for v in verifiers:
        assert distributor.claimable_of(v.address) == early[v.address] + 30 * OPG * staking.nodes(
            v.address
        ).stake // (3_000 * OPG)


def test_verifier_unbonding_below_minimum_stops_earning_but_keeps_earned(
    opg, escrow, escrow_domain, staking, distributor, node, payer, verifiers, params
):
    pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    v = verifiers[0]
    earned = distributor.claimable_of(v.address)
    staking.request_unbond(staking.nodes(v.address).stake, sender=v.account)
    assert distributor.verifier_stake(v.address) == 0
    assert distributor.claimable(v.address) == earned  # checkpointed
    pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    assert distributor.claimable_of(v.address) == earned
    assert distributor.claim(sender=v.account).return_value == earned


def test_slashed_and_jailed_verifier_stops_earning(
    opg,
    escrow,
    escrow_domain,
    staking,
    staking_domain,
    distributor,
    make_actor,
    node,
    payer,
    verifiers,
    chain,
):
    pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    # verifiers[0] and [1] prove a receipt fraudulent; verifiers[2] had approved it and is slashed as lazy.
    receipt = Receipt(
        request_id="0x" + keccak(text="req").hex(),
        payer=payer.address,
        node=node.address,
        model_id="0x" + keccak(text="model").hex(),
        input_hash="0x" + keccak(text="in").hex(),
        output_hash="0x" + keccak(text="out").hex(),
        amount=OPG,
        cumulative=OPG,
        timestamp=chain.pending_timestamp,
    )
    rh = "0x" + receipt.struct_hash().hex()
    quorum = sorted(verifiers[:2], key=lambda a: int(a.address, 16))
    staking.slash_fraud(
        receipt.as_tuple(),
        bytes.fromhex(receipt.sign_with(node.key, staking_domain)[2:]),
        [
            (
                v.address,
                bytes.fromhex(Verdict(receipt_hash=rh, valid=False).sign_with(v.key, staking_domain)[2:]),
            )
            for v in quorum
        ],
        sender=payer.account,
    )
    lazy = verifiers[2]
    earned = distributor.claimable_of(lazy.address)
    staking.slash_lazy_verifier(
        receipt.struct_hash(),
        lazy.address,
        bytes.fromhex(Verdict(receipt_hash=rh, valid=True).sign_with(lazy.key, staking_domain)[2:]),
        sender=payer.account,
    )
    assert staking.nodes(lazy.address).jailed
    assert distributor.verifier_stake(lazy.address) == 0
    assert distributor.total_verifier_stake() == sum(staking.nodes(v.address).stake for v in quorum)
    # Settle through another node (the fraudulent one is jailed): the lazy verifier earns nothing more.
    other = make_actor()
    register(opg, staking, other, INFERENCE, 1_000 * OPG)
    pay(opg, escrow, escrow_domain, payer, other.address, 600 * OPG)
    assert distributor.claimable_of(lazy.address) == earned
    # Topping its stake back up releases it and it earns again.
    opg.approve(staking, 1_000 * OPG, sender=lazy.account)
    staking.add_stake(1_000 * OPG, sender=lazy.account)
    assert distributor.verifier_stake(lazy.address) == staking.nodes(lazy.address).stake
    pay(opg, escrow, escrow_domain, payer, other.address, 600 * OPG)
    assert distributor.claimable_of(lazy.address) > earned


def test_verifier_under_raised_minimum_earns_until_its_next_stake_event(
    opg, escrow, escrow_domain, staking, distributor, deployer, node, payer, verifiers
):
    # docs/protocol.md deviation 10: the pool stake is resynced at the verifier's own stake events only.
    small = min(verifiers, key=lambda a: staking.nodes(a.address).stake)
    stake = staking.nodes(small.address).stake
    staking.set_min_stake(VERIFIER, stake + 2 * OPG, sender=deployer)
    assert not staking.is_active(small.address)
    assert distributor.verifier_stake(small.address) == stake  # still counted
    before = distributor.claimable_of(small.address)
    pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    assert distributor.claimable_of(small.address) > before
    # Its next stake event (a top-up still below the new minimum) reports it inactive: it stops earning.
    opg.approve(staking, OPG, sender=small.account)
    staking.add_stake(OPG, sender=small.account)
    assert distributor.verifier_stake(small.address) == 0
    earned = distributor.claimable_of(small.address)
    pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    assert distributor.claimable_of(small.address) == earned


def test_verifier_pool_never_owes_more_than_it_received(
    opg, escrow, escrow_domain, staking, distributor, treasury, make_actor, node, payer, no_verifiers
):
    # A stake that is not a whole number of OPG: each credit's pool share `increment * stake / 1e18` has a
    # fractional part (500.5 wei here). The verifier earns floor(stake * sum(increments) / 1e18) over several
    # credits, so each credit must reserve the rounded-up share, never the rounded-down one.
    verifier = make_actor()
    register(opg, staking, verifier, VERIFIER, 500 * OPG + OPG // 2)
    held = opg.balanceOf(distributor)
    owed_before = distributor.claimable(treasury) + distributor.claimable_of(node.address)
    for _ in range(2):
        tx = pay(opg, escrow, escrow_domain, payer, node.address, 6_000)  # verifier fee 600 wei
        assert credited(tx, distributor)[0].verifier_fee == 600
    assert distributor.reward_per_stake() == 2
    assert distributor.claimable_of(verifier.address) == 1_001
    owed = distributor.claimable(treasury) + distributor.claimable_of(node.address) + 1_001
    assert opg.balanceOf(distributor) - held >= owed - owed_before
    # Everybody can actually be paid.
    for account in (node.account, treasury, verifier.account):
        distributor.claim(sender=account)
    assert opg.balanceOf(verifier.address) == 100_000 * OPG - (500 * OPG + OPG // 2) + 1_001


def test_all_verifiers_inactive_sends_verifier_fee_to_treasury(
    opg, escrow, escrow_domain, staking, distributor, treasury, node, payer, verifiers
):
    for v in verifiers:
        staking.request_unbond(staking.nodes(v.address).stake, sender=v.account)
    assert distributor.total_verifier_stake() == 0
    before = distributor.claimable(treasury)
    pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    assert distributor.claimable(treasury) == before + 150 * OPG


def test_verifier_claims_pool_rewards_and_fraud_bounties_separately(
    opg, escrow, escrow_domain, distributor, node, payer, verifiers
):
    # Pool rewards come from the distributor; fraud bounties are paid directly by NodeStaking (see test_slashing).
    pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    v = verifiers[1]
    first = distributor.claim(sender=v.account).return_value
    pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    second = distributor.claim(sender=v.account).return_value
    assert first == second > 0


# ---------------------------------------------------------------- emissions


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


def test_finalize_epoch_caps_emission_by_fees(
    opg, escrow, escrow_domain, distributor, node, payer, funded, chain
):
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    tx = distributor.finalize_epoch(epoch, sender=payer.account)
    events = tx.decode_logs(distributor.EpochFinalized)
    assert len(events) == 1
    assert (events[0].epoch, events[0].fees, events[0].emission) == (epoch, 1_000 * OPG, 40 * OPG)
    assert distributor.epoch_finalized(epoch)
    assert distributor.epoch_emission(epoch) == 40 * OPG
    assert distributor.emission_reserve() == funded - 40 * OPG


def test_finalize_epoch_caps_emission_by_emission_per_epoch(
    opg, escrow, escrow_domain, distributor, deployer, node, payer, funded, chain
):
    distributor.set_emission_per_epoch(7 * OPG, sender=deployer)
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    distributor.finalize_epoch(epoch, sender=payer.account)
    assert distributor.epoch_emission(epoch) == 7 * OPG


def test_finalize_epoch_caps_emission_by_reserve(
    opg, escrow, escrow_domain, distributor, treasury, node, payer, chain
):
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


def test_collect_emission_pays_the_node_its_share(
    opg, escrow, escrow_domain, distributor, node, payer, funded, chain
):
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    epoch = epoch_of(tx, distributor)
    node_share = distributor.claimable(node.address)
    end_epoch(chain, distributor, epoch)
    # Anyone may collect for the node (here the payer); it finalises the epoch on the way.
    tx = distributor.collect_emission(node.address, epoch, sender=payer.account)
    assert len(tx.decode_logs(distributor.EpochFinalized)) == 1
    events = tx.decode_logs(distributor.EmissionCollected)
    assert len(events) == 1
    assert (events[0].node, events[0].epoch, events[0].amount) == (node.address, epoch, 40 * OPG)
    assert distributor.emission_collected(epoch, node.address)
    assert distributor.claimable(node.address) == node_share + 40 * OPG
    assert distributor.claim(sender=node.account).return_value == node_share + 40 * OPG


def test_collect_emission_before_epoch_end_reverts(
    opg, escrow, escrow_domain, distributor, node, payer, funded
):
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
    distributor.set_emission_per_epoch(10 * OPG, sender=deployer)  # below the fee cap (4% of 400 = 16 OPG)
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
    distributor.set_emission_per_epoch(10, sender=deployer)  # 10 wei over gross 2:1
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


def test_distributor_holds_everything_it_owes(
    opg, escrow, escrow_domain, distributor, treasury, node, node2, payer, verifiers, funded, chain
):
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_234_567_891_234)
    pay(opg, escrow, escrow_domain, payer, node2.address, 987_654_321)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    distributor.collect_emission(node.address, epoch, sender=node.account)  # node2 has not collected yet
    uncollected = (
        distributor.epoch_emission(epoch)
        * distributor.node_epoch_fees(epoch, node2.address)
        // (distributor.epoch_fees(epoch))
    )
    owed = sum(
        distributor.claimable_of(a)
        for a in [treasury.address, node.address, node2.address] + [v.address for v in verifiers]
    )
    assert opg.balanceOf(distributor) >= owed + distributor.emission_reserve() + uncollected
    for account in [node.account, node2.account, treasury] + [v.account for v in verifiers]:
        distributor.claim(sender=account)
    distributor.collect_emission(node2.address, epoch, sender=node2.account)
    distributor.claim(sender=node2.account)
    assert opg.balanceOf(distributor) >= distributor.emission_reserve()


# ---------------------------------------------------------------- wash trading


def wealth(opg, actors) -> int:
    return sum(opg.balanceOf(a.address) for a in actors)


def wash_trade(opg, escrow, escrow_domain, staking, distributor, chain, payer, node, verifier, gross, params):
    """The party's payer pays its own node ``gross``, collects the epoch's emission, claims everything and
    leaves (unbonds and withdraws every stake). Returns the emission it collected."""
    register(opg, staking, node, INFERENCE, params.min_inference_stake)
    if verifier is not None:
        register(opg, staking, verifier, VERIFIER, params.min_verifier_stake * 4)
    tx = pay(opg, escrow, escrow_domain, payer, node.address, gross)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    collected = distributor.collect_emission(node.address, epoch, sender=node.account)
    emission = collected.decode_logs(distributor.EmissionCollected)[0].amount
    distributor.claim(sender=node.account)
    leavers = [node]
    if verifier is not None:
        distributor.claim(sender=verifier.account)
        leavers.append(verifier)
    for actor in leavers:
        staking.request_unbond(staking.nodes(actor.address).stake, sender=actor.account)
    chain.mine(timestamp=max(staking.nodes(a.address).unbond_ready_at for a in leavers))
    for actor in leavers:
        staking.withdraw_unbonded(sender=actor.account)
    assert escrow.balance_of(payer.address) == 0
    return emission


def test_wash_trading_loses_opg(
    opg, escrow, escrow_domain, staking, distributor, make_actor, funded, chain, params
):
    payer, node = make_actor(), make_actor()
    start = wealth(opg, [payer, node])
    gross = 10_000 * OPG
    emission = wash_trade(
        opg, escrow, escrow_domain, staking, distributor, chain, payer, node, None, gross, params
    )
    assert emission == gross * params.max_emission_per_fee_bps // BPS  # it got the whole epoch's emission
    end = wealth(opg, [payer, node])
    assert end < start
    # It lost the protocol fee and the verifier fee and got back only the capped emission.
    protocol, verifier_fee, _ = split(gross)
    assert start - end == protocol + verifier_fee - emission


def test_wash_trading_with_own_verifier_stake_still_loses_opg(
    opg, escrow, escrow_domain, staking, distributor, make_actor, funded, chain, params, no_verifiers
):
    # The party is the only verifier: the whole verifier pool comes back to it.
    payer, node, verifier = make_actor(), make_actor(), make_actor()
    start = wealth(opg, [payer, node, verifier])
    gross = 10_000 * OPG
    emission = wash_trade(
        opg, escrow, escrow_domain, staking, distributor, chain, payer, node, verifier, gross, params
    )
    assert emission == gross * params.max_emission_per_fee_bps // BPS
    end = wealth(opg, [payer, node, verifier])
    assert end < start
    protocol = split(gross)[0]
    assert start - end >= protocol - emission > 0


def test_wash_trading_with_emission_cap_at_protocol_fee_never_profits(
    opg,
    escrow,
    escrow_domain,
    staking,
    distributor,
    deployer,
    make_actor,
    funded,
    chain,
    params,
    no_verifiers,
):
    distributor.set_fees(
        params.protocol_fee_bps, params.verifier_fee_bps, params.protocol_fee_bps, sender=deployer
    )
    payer, node, verifier = make_actor(), make_actor(), make_actor()
    start = wealth(opg, [payer, node, verifier])
    gross = 10_000 * OPG + 7  # not a multiple of the basis-point grid: rounding must favour the protocol
    emission = wash_trade(
        opg, escrow, escrow_domain, staking, distributor, chain, payer, node, verifier, gross, params
    )
    assert emission > 0
    assert wealth(opg, [payer, node, verifier]) < start


# ---------------------------------------------------------------- owner-only parameters


def test_deployed_parameters_match_params(distributor, opg, escrow, staking, treasury, params):
    assert distributor.token() == opg.address
    assert distributor.escrow() == escrow.address
    assert distributor.staking() == staking.address
    assert distributor.treasury() == treasury.address
    assert distributor.protocol_fee_bps() == params.protocol_fee_bps
    assert distributor.verifier_fee_bps() == params.verifier_fee_bps
    assert distributor.max_emission_per_fee_bps() == params.max_emission_per_fee_bps
    assert distributor.epoch_length() == params.epoch_length
    assert distributor.emission_per_epoch() == params.emission_per_epoch


def test_set_fees_by_owner_emits(distributor, deployer):
    tx = distributor.set_fees(2_000, 2_000, 2_000, sender=deployer)
    events = tx.decode_logs(distributor.FeesUpdated)
    assert len(events) == 1
    assert (events[0].protocol_fee_bps, events[0].verifier_fee_bps, events[0].max_emission_per_fee_bps) == (
        2_000,
        2_000,
        2_000,
    )
    assert distributor.protocol_fee_bps() == 2_000
    assert distributor.verifier_fee_bps() == 2_000
    assert distributor.max_emission_per_fee_bps() == 2_000


def test_set_fees_protocol_fee_above_bound_reverts(distributor, deployer):
    with ape.reverts("RewardDistributor: protocol fee out of bounds"):
        distributor.set_fees(2_001, 0, 0, sender=deployer)


def test_set_fees_verifier_fee_above_bound_reverts(distributor, deployer):
    with ape.reverts("RewardDistributor: verifier fee out of bounds"):
        distributor.set_fees(500, 2_001, 0, sender=deployer)


def test_set_fees_emission_cap_above_protocol_fee_reverts(distributor, deployer):
    with ape.reverts("RewardDistributor: emission cap above protocol fee"):
        distributor.set_fees(500, 1_000, 501, sender=deployer)


def test_set_fees_by_non_owner_reverts(distributor, node):
    with ape.reverts(NOT_OWNER):
        distributor.set_fees(500, 1_000, 400, sender=node.account)


def test_set_treasury_by_owner_emits_and_redirects_later_fees(
    opg, escrow, escrow_domain, distributor, deployer, treasury, make_actor, node, payer, no_verifiers
):
    pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    old_earned = distributor.claimable(treasury)
    new = make_actor(0)
    tx = distributor.set_treasury(new.address, sender=deployer)
    events = tx.decode_logs(distributor.TreasuryUpdated)
    assert len(events) == 1 and events[0].treasury == new.address
    assert distributor.treasury() == new.address
    pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    assert distributor.claimable(treasury) == old_earned  # what the old treasury earned stays its own
    assert distributor.claimable(new.address) == 150 * OPG  # protocol + verifier fee (no verifier staked)
    assert distributor.claim(sender=treasury).return_value == old_earned


def test_set_treasury_zero_address_reverts(distributor, deployer):
    with ape.reverts("RewardDistributor: treasury is the zero address"):
        distributor.set_treasury(ZERO_ADDRESS, sender=deployer)


def test_set_treasury_by_non_owner_reverts(distributor, node):
    with ape.reverts(NOT_OWNER):
        distributor.set_treasury(node.address, sender=node.account)


def test_set_epoch_length_by_owner_emits_and_applies_after_current_epoch(distributor, deployer, chain):
    end = distributor.current_epoch_end()
    tx = distributor.set_epoch_length(7_200, sender=deployer)
    events = tx.decode_logs(distributor.EpochLengthUpdated)
    assert len(events) == 1 and events[0].epoch_length == 7_200
    assert distributor.epoch_length() == 7_200
    # The call rolled the epoch counter first: the current epoch keeps its old (3,600 s) length.
    epoch = distributor.current_epoch()
    current_end = distributor.current_epoch_end()
    assert (current_end - end) % 3_600 == 0
    assert current_end - 3_600 <= chain.blocks[tx.block_number].timestamp < current_end
    chain.mine(timestamp=current_end)
    assert distributor.epoch_now() == epoch + 1
    chain.mine(timestamp=current_end + 7_199)
    assert distributor.epoch_now() == epoch + 1
    chain.mine(timestamp=current_end + 7_200)
    assert distributor.epoch_now() == epoch + 2


def test_set_epoch_length_accepts_the_bounds(distributor, deployer):
    distributor.set_epoch_length(60, sender=deployer)
    assert distributor.epoch_length() == 60
    distributor.set_epoch_length(90 * 86_400, sender=deployer)
    assert distributor.epoch_length() == 90 * 86_400


@pytest.mark.parametrize("length", [0, 59, 90 * 86_400 + 1])
def test_set_epoch_length_out_of_bounds_reverts(distributor, deployer, length):
    with ape.reverts("RewardDistributor: epoch length out of bounds"):
        distributor.set_epoch_length(length, sender=deployer)


def test_set_epoch_length_by_non_owner_reverts(distributor, node):
    with ape.reverts(NOT_OWNER):
        distributor.set_epoch_length(7_200, sender=node.account)


def test_set_emission_per_epoch_by_owner_emits(distributor, deployer):
    tx = distributor.set_emission_per_epoch(123 * OPG, sender=deployer)
    events = tx.decode_logs(distributor.EmissionPerEpochUpdated)
    assert len(events) == 1 and events[0].emission_per_epoch == 123 * OPG
    assert distributor.emission_per_epoch() == 123 * OPG


def test_set_emission_per_epoch_zero_turns_emissions_off(
    opg, escrow, escrow_domain, distributor, deployer, node, payer, funded, chain
):
    distributor.set_emission_per_epoch(0, sender=deployer)
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    distributor.finalize_epoch(epoch, sender=payer.account)
    assert distributor.epoch_emission(epoch) == 0
    assert distributor.emission_reserve() == funded


def test_set_emission_per_epoch_by_non_owner_reverts(distributor, node):
    with ape.reverts(NOT_OWNER):
        distributor.set_emission_per_epoch(1, sender=node.account)


def test_connect_only_once(distributor, deployer, escrow, staking):
    with ape.reverts("RewardDistributor: already connected"):
        distributor.connect(escrow, staking, sender=deployer)


def test_connect_by_non_owner_reverts(distributor, node, escrow, staking):
    with ape.reverts(NOT_OWNER):
        distributor.connect(escrow, staking, sender=node.account)


def test_connect_fresh_deployment_rejects_zero_addresses(project, opg, deployer, treasury, escrow, staking):
    fresh = project.RewardDistributor.deploy(opg, treasury, 500, 1_000, 400, 3_600, OPG, sender=deployer)
    with ape.reverts("RewardDistributor: zero address"):
        fresh.connect(ZERO_ADDRESS, staking, sender=deployer)
    with ape.reverts("RewardDistributor: zero address"):
        fresh.connect(escrow, ZERO_ADDRESS, sender=deployer)
    tx = fresh.connect(escrow, staking, sender=deployer)
    events = tx.decode_logs(fresh.Connected)
    assert len(events) == 1 and (events[0].escrow, events[0].staking) == (escrow.address, staking.address)
    with ape.reverts("RewardDistributor: already connected"):
        fresh.connect(escrow, staking, sender=deployer)


def test_constructor_enforces_parameter_bounds(project, opg, deployer, treasury):
    with ape.reverts("RewardDistributor: emission cap above protocol fee"):
        project.RewardDistributor.deploy(opg, treasury, 500, 1_000, 501, 3_600, OPG, sender=deployer)
    with ape.reverts("RewardDistributor: treasury is the zero address"):
        project.RewardDistributor.deploy(opg, ZERO_ADDRESS, 500, 1_000, 400, 3_600, OPG, sender=deployer)
    with ape.reverts("RewardDistributor: epoch length out of bounds"):
        project.RewardDistributor.deploy(opg, treasury, 500, 1_000, 400, 59, OPG, sender=deployer)


def test_transfer_ownership_is_two_step(distributor, deployer, make_actor):
    new_owner = make_actor(0)
    distributor.transfer_ownership(new_owner.address, sender=deployer)
    assert distributor.owner() == deployer.address
    assert distributor.pending_owner() == new_owner.address
    with ape.reverts("ownable_2step: caller is not the new owner"):
        distributor.accept_ownership(sender=deployer)
    distributor.accept_ownership(sender=new_owner.account)
    assert distributor.owner() == new_owner.address
    distributor.set_emission_per_epoch(1, sender=new_owner.account)
    with ape.reverts(NOT_OWNER):
        distributor.set_emission_per_epoch(2, sender=deployer)


def test_sync_verifier_stops_a_verifier_under_raised_minimum_from_earning(
    opg, escrow, escrow_domain, staking, distributor, deployer, node, payer, verifiers, make_actor
):
    small = min(verifiers, key=lambda a: staking.nodes(a.address).stake)
    stake = staking.nodes(small.address).stake
    staking.set_min_stake(VERIFIER, stake + 2 * OPG, sender=deployer)
    anyone = make_actor(0)
    staking.sync_verifier(small.address, sender=anyone.account)
    assert distributor.verifier_stake(small.address) == 0
    earned = distributor.claimable_of(small.address)
    pay(opg, escrow, escrow_domain, payer, node.address, 600 * OPG)
    assert distributor.claimable_of(small.address) == earned


def test_sync_verifier_of_a_non_verifier_reverts(staking, node, deployer):
    with ape.reverts("NodeStaking: not a verifier"):
        staking.sync_verifier(node.address, sender=deployer)
