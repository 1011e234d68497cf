"""RewardDistributor v2: the fee split of settled vouchers, per-epoch verifier pools weighed by NodeStaking's
heartbeat snapshots, claims, emissions finalised in order, wash trading, and timelocked governance.

Fees reach the distributor the real way: a payer deposits, signs a Voucher with eth-account, and the claim is
settled (EIP-2098 compact signature) through ``CreditEscrow.settle_batch``. Tests named ``test_attack_*`` perform
an attack and show it fails; the honest path sits next to each.
"""

from __future__ import annotations

import ape
import pytest
from eth_abi import encode
from eth_utils import keccak

from offchain.messages import Claim, Verdict, Voucher

OPG = 10**18
BPS = 10_000
DAY = 86_400
INFERENCE = 1
VERIFIER = 2
ZERO_ADDRESS = "0x" + "00" * 20
ZERO_ROOT = b"\x00" * 32
NOT_OWNER = "ownable: caller is not the owner"
SETTER_TYPES = {
    "set_fees": ["uint256", "uint256", "uint256"],
    "set_treasury": ["address"],
    "set_epoch_length": ["uint256"],
    "set_emission_per_epoch": ["uint256"],
    "set_delay": ["uint256"],
}


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
        [claim_for(payer, node_address, total, escrow_domain)], ZERO_ROOT, sender=ape.accounts.test_accounts[2]
    )  # the facilitator


def credited(tx, distributor) -> list:
    return tx.decode_logs(distributor.FeesCredited)


def epoch_of(tx, distributor) -> int:
    events = credited(tx, distributor)
    assert events, "no fees credited"
    return events[0].epoch


def epoch_end(distributor, epoch: int) -> int:
    return distributor.current_epoch_end() + (epoch - distributor.current_epoch()) * distributor.epoch_length()


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


def calldata(name: str, *args) -> bytes:
    """A setter's calldata: what ``queue_change`` takes and the setter call must repeat."""
    types = SETTER_TYPES[name]
    return keccak(text=f"{name}({','.join(types)})")[:4] + encode(types, list(args))


def queue(distributor, owner, name: str, *args) -> int:
    """Queue ``name(*args)``; returns the time it becomes due."""
    distributor.queue_change(calldata(name, *args), sender=owner)
    eta = distributor.queued_eta(keccak(calldata(name, *args)))
    assert eta > 0
    return eta


def catch_up(distributor, sender):
    """Finalise every ended epoch (at most 64 per call), as a keeper would after a long pause."""
    last = distributor.epoch_now() - 1
    while distributor.next_epoch_to_finalize() <= last:
        distributor.finalize_epoch(min(last, distributor.next_epoch_to_finalize() + 63), sender=sender)


def govern(distributor, owner, chain, name: str, *args, executor=None):
    """Queue ``name(*args)``, wait out the delay, execute it (by ``executor``, default the owner), and finalise
    the (empty) epochs the wait skipped."""
    eta = queue(distributor, owner, name, *args)
    chain.pending_timestamp = eta
    tx = getattr(distributor, name)(*args, sender=executor or owner)
    catch_up(distributor, owner)
    return tx


def collect(distributor, verifier, epoch: int) -> int:
    """Collect ``verifier``'s share of ``epoch``'s pool; returns the amount."""
    tx = distributor.collect_verifier_reward(verifier.address, epoch, sender=verifier.account)
    [event] = tx.decode_logs(distributor.VerifierRewardCollected)
    assert (event.verifier, event.epoch) == (verifier.address, epoch)
    return event.amount


def heartbeat_into_next_epoch(chain, staking, distributor, actors) -> int:
    """Heartbeat ``actors`` now and move into the next epoch; returns that epoch (where they weigh)."""
    for actor in actors:
        staking.heartbeat(sender=actor.account)
    epoch = distributor.epoch_now()
    end_epoch(chain, distributor, epoch)
    return epoch + 1


@pytest.fixture
def funded(opg, distributor, treasury):
    """100,000 OPG in the emission reserve."""
    amount = 100_000 * OPG
    opg.approve(distributor, amount, sender=treasury)
    distributor.fund_emissions(amount, sender=treasury)
    return amount


@pytest.fixture
def no_live_weight(chain, staking, distributor):
    """Move on to an epoch in which no verifier heartbeat recorded any weight."""
    for _ in range(3):
        if staking.total_weight_in(distributor.epoch_now()) == 0:
            return distributor.epoch_now()
        end_epoch(chain, distributor, distributor.epoch_now())
    raise AssertionError("live verifier weight in every epoch")


@pytest.fixture
def node2(make_actor, register, params):
    actor = make_actor()
    register(actor, INFERENCE, params.min_inference_stake)
    return actor


@pytest.fixture(autouse=True)
def backed_node(request, opg, staking, treasury, params):
    """NodeStaking v3 (R10) pays a node at most its stake / `fraud_multiplier` per two dispute windows: the session
    node stakes enough to back the largest pay these tests settle (66,000 OPG)."""
    if "node" not in request.fixturenames:
        return
    node = request.getfixturevalue("node")
    top_up = 66_000 * OPG * params.fraud_multiplier
    opg.transfer(node.address, top_up, sender=treasury)
    opg.approve(staking, top_up, sender=node.account)
    staking.add_stake(top_up, sender=node.account)


@pytest.fixture
def weights(staking, distributor, verifiers) -> dict:
    """The session verifiers' weights in the current epoch (500, 1,000 and 1,500 OPG)."""
    epoch = distributor.epoch_now()
    out = {v.address: staking.weight_in(epoch, v.address) for v in verifiers}
    assert sorted(out.values()) == [500 * OPG, 1_000 * OPG, 1_500 * OPG]
    assert staking.total_weight_in(epoch) == 3_000 * OPG
    return out


# ---------------------------------------------------------------- fee split


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


# ---------------------------------------------------------------- verifier pool


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


# ---------------------------------------------------------------- wash trading


def wealth(opg, actors) -> int:
    return sum(opg.balanceOf(a.address) for a in actors)


def wash_trade(opg, escrow, escrow_domain, staking, distributor, register, make_live, chain, party, gross, params):
    """The party's payer pays its own node ``gross``, collects the epoch's emission (and, with its own verifier,
    the epoch's whole verifier pool), claims everything and leaves (unbonds and withdraws every stake). Returns
    the emission it collected."""
    payer, node, verifier = party
    register(node, INFERENCE, max(params.min_inference_stake, gross * params.fraud_multiplier))  # backs the pay (R10)
    if verifier is not None:
        register(verifier, VERIFIER, params.min_verifier_stake * 4)
        make_live([verifier])
        epoch = distributor.epoch_now()
        assert staking.total_weight_in(epoch) == staking.weight_in(epoch, verifier.address) > 0  # it alone is live
    tx = pay(opg, escrow, escrow_domain, payer, node.address, gross)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    catch_up(distributor, node.account)
    collected = distributor.collect_emission(node.address, epoch, sender=node.account)
    emission = collected.decode_logs(distributor.EmissionCollected)[0].amount
    distributor.claim(sender=node.account)
    leavers = [node]
    if verifier is not None:
        assert collect(distributor, verifier, epoch) == split(gross, *fee_bps(distributor))[1]
        distributor.claim(sender=verifier.account)
        leavers.append(verifier)
    for actor in leavers:
        staking.request_unbond(staking.nodes(actor.address).stake, sender=actor.account)
    chain.mine(timestamp=max(staking.nodes(a.address).unbond_ready_at for a in leavers))
    for actor in leavers:
        staking.withdraw_unbonded(sender=actor.account)
    assert escrow.balance_of(payer.address) == 0
    return emission


def fee_bps(distributor) -> tuple[int, int]:
    return distributor.protocol_fee_bps(), distributor.verifier_fee_bps()


def test_wash_trading_loses_opg(
    opg, escrow, escrow_domain, staking, distributor, register, make_live, make_actor, funded, chain, params
):
    party = (make_actor(), make_actor(), None)
    start = wealth(opg, party[:2])
    gross = 10_000 * OPG
    emission = wash_trade(
        opg, escrow, escrow_domain, staking, distributor, register, make_live, chain, party, gross, params
    )
    assert emission == gross * params.max_emission_per_fee_bps // BPS  # it got the whole epoch's emission
    end = wealth(opg, party[:2])
    assert end < start
    # It lost the protocol fee and the verifier fee and got back only the capped emission.
    protocol, verifier_fee, _ = split(gross)
    assert start - end == protocol + verifier_fee - emission


def test_wash_trading_with_own_verifier_stake_still_loses_opg(
    opg, escrow, escrow_domain, staking, distributor, register, make_live, make_actor, funded, chain, params
):
    # The party's verifier is the only live one: the epoch's whole verifier pool comes back to it.
    party = (make_actor(), make_actor(), make_actor())
    start = wealth(opg, party)
    gross = 10_000 * OPG
    emission = wash_trade(
        opg, escrow, escrow_domain, staking, distributor, register, make_live, chain, party, gross, params
    )
    assert emission == gross * params.max_emission_per_fee_bps // BPS
    end = wealth(opg, party)
    protocol = split(gross)[0]
    assert start - end == protocol - emission > 0


def test_wash_trading_with_emission_cap_at_protocol_fee_never_profits(
    opg, escrow, escrow_domain, staking, distributor, deployer, register, make_live, make_actor, funded, chain, params
):
    govern(
        distributor,
        deployer,
        chain,
        "set_fees",
        params.protocol_fee_bps,
        params.verifier_fee_bps,
        params.protocol_fee_bps,
    )
    party = (make_actor(), make_actor(200_000 * OPG), make_actor())  # the node stakes 10 x gross (R10)
    start = wealth(opg, party)
    gross = 10_000 * OPG + 7  # not a multiple of the basis-point grid: rounding must favour the protocol
    emission = wash_trade(
        opg, escrow, escrow_domain, staking, distributor, register, make_live, chain, party, gross, params
    )
    assert emission > 0
    assert wealth(opg, party) < start


# ---------------------------------------------------------------- parameters and governance


def test_deployed_parameters_match_params(distributor, opg, escrow, staking, treasury, deployer, params):
    assert distributor.token() == opg.address
    assert distributor.escrow() == escrow.address
    assert distributor.staking() == staking.address
    assert distributor.treasury() == treasury.address
    assert distributor.protocol_fee_bps() == params.protocol_fee_bps
    assert distributor.verifier_fee_bps() == params.verifier_fee_bps
    assert distributor.max_emission_per_fee_bps() == params.max_emission_per_fee_bps
    assert distributor.epoch_length() == params.epoch_length
    assert distributor.emission_per_epoch() == params.emission_per_epoch
    assert distributor.delay() == params.delay
    assert distributor.owner() == deployer.address


def test_attack_owner_cannot_change_fees_without_queueing(distributor, deployer):
    with ape.reverts("timelock: change not queued"):
        distributor.set_fees(2_000, 2_000, 0, sender=deployer)


def test_attack_fee_change_queued_now_cannot_apply_to_settlements_within_the_delay(
    opg, escrow, escrow_domain, distributor, deployer, node, payer, chain
):
    # Payers sign vouchers against today's fees; a raise queued now reaches none of the settlements before it is due.
    eta = queue(distributor, deployer, "set_fees", 2_000, 2_000, 0)
    opg.approve(escrow, 1_000 * OPG, sender=payer.account)
    escrow.deposit(1_000 * OPG, sender=payer.account)
    chain.pending_timestamp = eta - 1
    with ape.reverts("timelock: change not due"):
        distributor.set_fees(2_000, 2_000, 0, sender=payer.account)
    chain.pending_timestamp = eta - 1
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG, deposit=False)
    assert chain.blocks[tx.block_number].timestamp == eta - 1
    ev = credited(tx, distributor)[0]
    assert (ev.protocol_fee, ev.verifier_fee) == (50 * OPG, 100 * OPG)
    # Once due, anyone executes it, and only then does it apply.
    chain.pending_timestamp = eta
    tx = distributor.set_fees(2_000, 2_000, 0, sender=payer.account)
    assert len(tx.decode_logs(distributor.FeesUpdated)) == 1
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    ev = credited(tx, distributor)[0]
    assert (ev.protocol_fee, ev.verifier_fee) == (200 * OPG, 200 * OPG)


def test_queued_fee_change_records_eta_after_the_delay(distributor, deployer, params, chain):
    tx = distributor.queue_change(calldata("set_fees", 2_000, 2_000, 0), sender=deployer)
    timestamp = chain.blocks[tx.block_number].timestamp
    assert distributor.queued_eta(keccak(calldata("set_fees", 2_000, 2_000, 0))) == timestamp + params.delay
    assert tx.return_value == keccak(calldata("set_fees", 2_000, 2_000, 0))


def test_attack_due_fee_change_lapses_after_a_day(distributor, deployer, chain):
    # A due change that nobody executed is not a standing option for the owner: it lapses.
    eta = queue(distributor, deployer, "set_fees", 2_000, 2_000, 0)
    chain.pending_timestamp = eta + DAY
    with ape.reverts("timelock: change lapsed"):
        distributor.set_fees(2_000, 2_000, 0, sender=deployer)


def test_due_fee_change_executes_on_the_last_second_of_its_grace_day(distributor, deployer, chain):
    eta = queue(distributor, deployer, "set_fees", 2_000, 2_000, 0)
    chain.pending_timestamp = eta + DAY - 1
    distributor.set_fees(2_000, 2_000, 0, sender=deployer)
    assert distributor.protocol_fee_bps() == 2_000


def test_due_fee_change_executes_only_with_the_queued_arguments(distributor, deployer, chain):
    eta = queue(distributor, deployer, "set_fees", 2_000, 2_000, 0)
    chain.pending_timestamp = eta
    with ape.reverts("timelock: change not queued"):
        distributor.set_fees(2_000, 2_000, 1, sender=deployer)
    distributor.set_fees(2_000, 2_000, 0, sender=deployer)
    with ape.reverts("timelock: change not queued"):  # consumed
        distributor.set_fees(2_000, 2_000, 0, sender=deployer)


def test_attack_non_owner_cannot_queue_a_change(distributor, node):
    for name, args in [("set_fees", (2_000, 2_000, 0)), ("set_treasury", (node.address,)), ("set_delay", (90 * DAY,))]:
        with ape.reverts(NOT_OWNER):
            distributor.queue_change(calldata(name, *args), sender=node.account)


def test_attack_non_owner_cannot_cancel_a_change(distributor, deployer, node):
    queue(distributor, deployer, "set_fees", 2_000, 2_000, 0)
    with ape.reverts(NOT_OWNER):
        distributor.cancel_change(keccak(calldata("set_fees", 2_000, 2_000, 0)), sender=node.account)


def test_owner_cancels_a_queued_change(distributor, deployer, chain):
    eta = queue(distributor, deployer, "set_fees", 2_000, 2_000, 0)
    distributor.cancel_change(keccak(calldata("set_fees", 2_000, 2_000, 0)), sender=deployer)
    chain.pending_timestamp = eta
    with ape.reverts("timelock: change not queued"):
        distributor.set_fees(2_000, 2_000, 0, sender=deployer)
    with ape.reverts("timelock: change not queued"):
        distributor.cancel_change(keccak(calldata("set_fees", 2_000, 2_000, 0)), sender=deployer)


def test_queue_the_same_change_twice_reverts(distributor, deployer):
    queue(distributor, deployer, "set_fees", 2_000, 2_000, 0)
    with ape.reverts("timelock: change already queued"):
        distributor.queue_change(calldata("set_fees", 2_000, 2_000, 0), sender=deployer)


def test_set_fees_through_the_queue_emits(distributor, deployer, chain):
    tx = govern(distributor, deployer, chain, "set_fees", 2_000, 2_000, 2_000)
    [event] = tx.decode_logs(distributor.FeesUpdated)
    assert (event.protocol_fee_bps, event.verifier_fee_bps, event.max_emission_per_fee_bps) == (2_000, 2_000, 2_000)
    assert (distributor.protocol_fee_bps(), distributor.verifier_fee_bps(), distributor.max_emission_per_fee_bps()) == (
        2_000,
        2_000,
        2_000,
    )


@pytest.mark.parametrize(
    "fees, error",
    [
        ((2_001, 0, 0), "RewardDistributor: protocol fee out of bounds"),
        ((500, 2_001, 0), "RewardDistributor: verifier fee out of bounds"),
        ((500, 1_000, 501), "RewardDistributor: emission cap above protocol fee"),
    ],
)
def test_set_fees_out_of_bounds_reverts_when_due(distributor, deployer, chain, fees, error):
    eta = queue(distributor, deployer, "set_fees", *fees)
    chain.pending_timestamp = eta
    with ape.reverts(error):
        distributor.set_fees(*fees, sender=deployer)


def test_attack_owner_cannot_set_treasury_without_queueing(distributor, deployer, node):
    with ape.reverts("timelock: change not queued"):
        distributor.set_treasury(node.address, sender=deployer)


def test_set_treasury_through_the_queue_redirects_later_fees(
    opg, escrow, escrow_domain, distributor, deployer, treasury, make_actor, node, payer, chain
):
    pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    old_earned = distributor.claimable(treasury)
    new = make_actor(0)
    tx = govern(distributor, deployer, chain, "set_treasury", new.address)
    [event] = tx.decode_logs(distributor.TreasuryUpdated)
    assert event.treasury == new.address
    assert distributor.treasury() == new.address
    pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)  # no live weight after the delay
    assert distributor.claimable(treasury) == old_earned  # what the old treasury earned stays its own
    assert distributor.claimable(new.address) == 150 * OPG  # protocol + verifier fee
    assert distributor.claim(sender=treasury).return_value == old_earned


def test_set_treasury_zero_address_reverts_when_due(distributor, deployer, chain):
    eta = queue(distributor, deployer, "set_treasury", ZERO_ADDRESS)
    chain.pending_timestamp = eta
    with ape.reverts("RewardDistributor: treasury is the zero address"):
        distributor.set_treasury(ZERO_ADDRESS, sender=deployer)


def test_set_epoch_length_through_the_queue_applies_after_the_current_epoch(distributor, deployer, chain):
    tx = govern(distributor, deployer, chain, "set_epoch_length", 7_200)
    [event] = tx.decode_logs(distributor.EpochLengthUpdated)
    assert event.epoch_length == 7_200
    assert distributor.epoch_length() == 7_200
    # The call rolled the epoch counter first: the current epoch keeps its old (3,600 s) length.
    epoch = distributor.current_epoch()
    current_end = distributor.current_epoch_end()
    assert current_end - 3_600 <= chain.blocks[tx.block_number].timestamp < current_end
    chain.mine(timestamp=current_end)
    assert distributor.epoch_now() == epoch + 1
    chain.mine(timestamp=current_end + 7_199)
    assert distributor.epoch_now() == epoch + 1
    chain.mine(timestamp=current_end + 7_200)
    assert distributor.epoch_now() == epoch + 2


@pytest.mark.parametrize("length", [0, 59])
def test_set_epoch_length_out_of_bounds_reverts_when_due(distributor, deployer, chain, length):
    eta = queue(distributor, deployer, "set_epoch_length", length)
    chain.pending_timestamp = eta
    with ape.reverts("RewardDistributor: epoch length out of bounds"):
        distributor.set_epoch_length(length, sender=deployer)


def test_attack_epoch_length_above_the_delay_minus_one_day_reverts(distributor, deployer, chain, params):
    # An epoch longer than the delay would let a pool or an emission rule change under an epoch already running.
    length = params.delay - DAY + 1
    eta = queue(distributor, deployer, "set_epoch_length", length)
    chain.pending_timestamp = eta
    with ape.reverts("RewardDistributor: epoch length above the delay"):
        distributor.set_epoch_length(length, sender=deployer)


def test_attack_delay_cannot_be_set_below_epoch_length_plus_one_day(distributor, deployer, chain, params):
    eta = queue(distributor, deployer, "set_delay", params.epoch_length + DAY - 1)
    chain.pending_timestamp = eta
    with ape.reverts("timelock: delay below the floor"):
        distributor.set_delay(params.epoch_length + DAY - 1, sender=deployer)


def test_delay_set_through_the_queue_applies_to_later_changes(distributor, deployer, chain, params):
    govern(distributor, deployer, chain, "set_delay", 10 * DAY)
    assert distributor.delay() == 10 * DAY
    tx = distributor.queue_change(calldata("set_fees", 0, 0, 0), sender=deployer)
    timestamp = chain.blocks[tx.block_number].timestamp
    assert distributor.queued_eta(keccak(calldata("set_fees", 0, 0, 0))) == timestamp + 10 * DAY


def test_set_emission_per_epoch_through_the_queue_emits(distributor, deployer, chain):
    tx = govern(distributor, deployer, chain, "set_emission_per_epoch", 123 * OPG)
    [event] = tx.decode_logs(distributor.EmissionPerEpochUpdated)
    assert event.emission_per_epoch == 123 * OPG
    assert distributor.emission_per_epoch() == 123 * OPG


def test_set_emission_per_epoch_zero_turns_emissions_off(
    opg, escrow, escrow_domain, distributor, deployer, node, payer, funded, chain
):
    govern(distributor, deployer, chain, "set_emission_per_epoch", 0)
    tx = pay(opg, escrow, escrow_domain, payer, node.address, 1_000 * OPG)
    epoch = epoch_of(tx, distributor)
    end_epoch(chain, distributor, epoch)
    distributor.finalize_epoch(epoch, sender=payer.account)
    assert distributor.epoch_emission(epoch) == 0
    assert distributor.emission_reserve() == funded


def test_attack_owner_cannot_set_emission_or_epoch_length_without_queueing(distributor, deployer):
    with ape.reverts("timelock: change not queued"):
        distributor.set_emission_per_epoch(1, sender=deployer)
    with ape.reverts("timelock: change not queued"):
        distributor.set_epoch_length(7_200, sender=deployer)


def test_connect_only_once(distributor, deployer, escrow, staking):
    with ape.reverts("RewardDistributor: already connected"):
        distributor.connect(escrow, staking, sender=deployer)


def test_connect_by_non_owner_reverts(distributor, node, escrow, staking):
    with ape.reverts(NOT_OWNER):
        distributor.connect(escrow, staking, sender=node.account)


def test_connect_fresh_deployment_rejects_zero_addresses(project, opg, deployer, treasury, escrow, staking, params):
    fresh = project.RewardDistributor.deploy(opg, treasury, 500, 1_000, 400, 3_600, OPG, params.delay, sender=deployer)
    with ape.reverts("RewardDistributor: zero address"):
        fresh.connect(ZERO_ADDRESS, staking, sender=deployer)
    with ape.reverts("RewardDistributor: zero address"):
        fresh.connect(escrow, ZERO_ADDRESS, sender=deployer)
    tx = fresh.connect(escrow, staking, sender=deployer)
    [event] = tx.decode_logs(fresh.Connected)
    assert (event.escrow, event.staking) == (escrow.address, staking.address)
    with ape.reverts("RewardDistributor: already connected"):
        fresh.connect(escrow, staking, sender=deployer)


def test_constructor_enforces_parameter_bounds(project, opg, deployer, treasury, params):
    delay = params.delay
    with ape.reverts("RewardDistributor: emission cap above protocol fee"):
        project.RewardDistributor.deploy(opg, treasury, 500, 1_000, 501, 3_600, OPG, delay, sender=deployer)
    with ape.reverts("RewardDistributor: treasury is the zero address"):
        project.RewardDistributor.deploy(opg, ZERO_ADDRESS, 500, 1_000, 400, 3_600, OPG, delay, sender=deployer)
    with ape.reverts("RewardDistributor: epoch length out of bounds"):
        project.RewardDistributor.deploy(opg, treasury, 500, 1_000, 400, 59, OPG, delay, sender=deployer)
    with ape.reverts("RewardDistributor: token is the zero address"):
        project.RewardDistributor.deploy(ZERO_ADDRESS, treasury, 500, 1_000, 400, 3_600, OPG, delay, sender=deployer)


def test_constructor_delay_below_epoch_length_plus_one_day_reverts(project, opg, deployer, treasury):
    with ape.reverts("timelock: delay below the floor"):
        project.RewardDistributor.deploy(opg, treasury, 500, 1_000, 400, 3_600, OPG, 3_600 + DAY - 1, sender=deployer)
    fresh = project.RewardDistributor.deploy(opg, treasury, 500, 1_000, 400, 3_600, OPG, 3_600 + DAY, sender=deployer)
    assert fresh.delay() == 3_600 + DAY


def test_transfer_ownership_is_two_step(distributor, deployer, make_actor):
    new_owner = make_actor(0)
    distributor.transfer_ownership(new_owner.address, sender=deployer)
    assert distributor.owner() == deployer.address
    assert distributor.pending_owner() == new_owner.address
    with ape.reverts("ownable_2step: caller is not the new owner"):
        distributor.accept_ownership(sender=deployer)
    distributor.accept_ownership(sender=new_owner.account)
    assert distributor.owner() == new_owner.address
    distributor.queue_change(calldata("set_emission_per_epoch", 1), sender=new_owner.account)
    with ape.reverts(NOT_OWNER):
        distributor.queue_change(calldata("set_emission_per_epoch", 2), sender=deployer)


# ---------------------------------------------------------------- R9: a jailed verifier forfeits its pool shares


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
