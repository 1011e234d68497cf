"""RewardDistributor: wash trading."""

from __future__ import annotations

import pytest
from reward_distributor_kit import (
    BPS,
    INFERENCE,
    OPG,
    VERIFIER,
    catch_up,
    collect,
    end_epoch,
    epoch_of,
    govern,
    pay,
    split,
)

pytestmark = pytest.mark.usefixtures("backed_node")


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
