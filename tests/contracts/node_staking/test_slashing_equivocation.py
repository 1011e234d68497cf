"""NodeStaking slashing: equivocation."""

from __future__ import annotations

import ape
from node_staking_kit import BPS, INFERENCE, bps_of, make_receipt, sig, total_stake

from offchain.ape_deploy import deploy_system
from offchain.messages import Domain, Registration

KIND_EQUIVOCATION = 1


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def high_s_twin(signature: bytes) -> bytes:
    """The malleable twin (r, n - s, v ^ 1) of a canonical signature: the same signer, a different encoding."""
    r, s, v = signature[:32], int.from_bytes(signature[32:64], "big"), signature[64]
    return r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])


def test_equivocation_slashes_rewards_challenger_burns_rest_and_jails(
    opg, staking, node, challenger, equivocation, params
):
    stake = total_stake(staking, node.address)
    supply = opg.totalSupply()
    tx = staking.slash_equivocation(*equivocation, sender=challenger.account)
    expected = bps_of(stake, params.equivocation_slash_bps)
    reward = expected * params.challenger_reward_bps // BPS
    events = tx.decode_logs(staking.Slashed)
    assert len(events) == 1
    assert events[0].node == node.address
    assert events[0].kind == KIND_EQUIVOCATION
    assert events[0].amount == expected and events[0].reward == reward and events[0].burned == expected - reward
    assert tx.return_value == expected
    assert opg.balanceOf(challenger.address) == reward
    # v3: the rest is the node's refund reserve for two dispute windows, burned only after them.
    assert opg.totalSupply() == supply
    assert staking.reserve(node.address) == expected - reward
    assert total_stake(staking, node.address) == stake - expected
    assert staking.nodes(node.address).jailed
    assert not staking.is_payable(node.address)
    ape.chain.pending_timestamp = staking.reserve_until(node.address) + 1
    staking.burn_reserve(node.address, sender=challenger.account)
    assert opg.totalSupply() == supply - (expected - reward)


def test_equivocation_with_different_request_ids_reverts(staking, node, payer, chain, staking_domain):
    a = make_receipt(node, payer, chain, request="r1", output="a")
    b = make_receipt(node, payer, chain, request="r2", output="b")
    with ape.reverts("NodeStaking: different request ids"):
        staking.slash_equivocation(
            a.as_tuple(), sig(a, node.key, staking_domain), b.as_tuple(), sig(b, node.key, staking_domain),
            sender=payer.account,
        )


def test_equivocation_of_different_nodes_reverts(staking, node, payer, chain, staking_domain, make_actor):
    other = make_actor(0)
    a = make_receipt(node, payer, chain, output="a")
    b = make_receipt(other, payer, chain, output="b")
    with ape.reverts("NodeStaking: different nodes"):
        staking.slash_equivocation(
            a.as_tuple(), sig(a, node.key, staking_domain), b.as_tuple(), sig(b, other.key, staking_domain),
            sender=payer.account,
        )


def test_equivocation_with_identical_receipts_reverts(staking, node, payer, chain, staking_domain):
    a = make_receipt(node, payer, chain)
    s = sig(a, node.key, staking_domain)
    with ape.reverts("NodeStaking: identical receipts"):
        staking.slash_equivocation(a.as_tuple(), s, a.as_tuple(), s, sender=payer.account)


def test_equivocation_with_malleable_high_s_signature_reverts(staking, payer, equivocation):
    a, sa, b, sb = equivocation
    with ape.reverts("NodeStaking: invalid receipt"):
        staking.slash_equivocation(a, sa, b, high_s_twin(sb), sender=payer.account)


def test_equivocation_with_signature_swapped_between_receipts_reverts(staking, payer, equivocation):
    a, sa, b, sb = equivocation
    with ape.reverts("NodeStaking: invalid receipt"):
        staking.slash_equivocation(a, sb, b, sa, sender=payer.account)


def test_equivocation_with_truncated_signature_reverts(staking, payer, equivocation):
    a, sa, b, sb = equivocation
    with ape.reverts("NodeStaking: invalid receipt"):
        staking.slash_equivocation(a, sa, b, sb[:64], sender=payer.account)


def test_equivocation_signed_for_another_chain_id_reverts(staking, node, payer, chain, chain_id):
    wrong = Domain.staking(chain_id + 1, staking.address)
    a = make_receipt(node, payer, chain, output="a")
    b = make_receipt(node, payer, chain, output="b")
    with ape.reverts("NodeStaking: invalid receipt"):
        staking.slash_equivocation(
            a.as_tuple(), sig(a, node.key, wrong), b.as_tuple(), sig(b, node.key, wrong), sender=payer.account
        )


def test_equivocation_same_evidence_twice_reverts(staking, payer, equivocation):
    staking.slash_equivocation(*equivocation, sender=payer.account)
    with ape.reverts("NodeStaking: evidence already used"):
        staking.slash_equivocation(*equivocation, sender=payer.account)


def test_equivocation_evidence_exactly_at_dispute_window_edge_is_accepted(staking, payer, equivocation, chain, params):
    chain.pending_timestamp = equivocation[0].timestamp + params.dispute_window
    staking.slash_equivocation(*equivocation, sender=payer.account)


def test_equivocation_evidence_older_than_dispute_window_reverts(staking, payer, equivocation, chain, params):
    chain.pending_timestamp = equivocation[0].timestamp + params.dispute_window + 1
    with ape.reverts("NodeStaking: evidence too old"):
        staking.slash_equivocation(*equivocation, sender=payer.account)


def test_equivocation_by_unregistered_signer_has_nothing_to_slash(staking, payer, chain, staking_domain, make_actor):
    stranger = make_actor(0)
    a = make_receipt(stranger, payer, chain, output="a")
    b = make_receipt(stranger, payer, chain, output="b")
    with ape.reverts("NodeStaking: nothing to slash"):
        staking.slash_equivocation(
            a.as_tuple(), sig(a, stranger.key, staking_domain), b.as_tuple(), sig(b, stranger.key, staking_domain),
            sender=payer.account,
        )


def test_unbonding_stake_stays_slashable(staking, node, payer, equivocation, params):
    staking.request_unbond(staking.nodes(node.address).stake, sender=node.account)
    before = total_stake(staking, node.address)
    tx = staking.slash_equivocation(*equivocation, sender=payer.account)
    assert tx.return_value == bps_of(before, params.equivocation_slash_bps)
    assert staking.nodes(node.address).unbonding == before - tx.return_value


def test_staking_balance_matches_stakes_after_slash(opg, staking, node, payer, equivocation):
    # Other modules' session fixtures may hold stake here too: compare what the slash moved.
    held, stake = opg.balanceOf(staking), total_stake(staking, node.address)
    reserves = staking.reserves_held()
    staking.slash_equivocation(*equivocation, sender=payer.account)
    moved = stake - total_stake(staking, node.address)
    assert moved > 0
    # What left the stake is the challenger's reward (paid out) plus the reserve (held here until it burns).
    assert held - opg.balanceOf(staking) == moved - (staking.reserves_held() - reserves)


def test_equivocation_replayed_on_another_deployment_reverts(
    project, deployer, treasury, params, chain, chain_id, staking_domain, node, payer
):
    other = deploy_system(deployer, treasury=treasury.address, params=params, project=project)
    there = Domain.staking(chain_id, other.staking.address)
    other.opg.transfer(node.address, params.min_inference_stake, sender=treasury)
    other.opg.approve(other.staking, params.min_inference_stake, sender=node.account)
    registration = sig(Registration(account=node.address), node.key, there)
    other.staking.register(INFERENCE, params.min_inference_stake, "http://n.invalid", registration, sender=node.account)
    a = make_receipt(node, payer, chain, output="out-a")
    b = make_receipt(node, payer, chain, output="out-b")
    here = (a.as_tuple(), sig(a, node.key, staking_domain), b.as_tuple(), sig(b, node.key, staking_domain))
    with ape.reverts("NodeStaking: invalid receipt"):
        other.staking.slash_equivocation(*here, sender=payer.account)
    tx = other.staking.slash_equivocation(
        a.as_tuple(), sig(a, node.key, there), b.as_tuple(), sig(b, node.key, there), sender=payer.account
    )
    assert tx.return_value > 0


def test_registration_signed_for_another_deployment_reverts(
    project, deployer, treasury, params, staking_domain, make_actor
):
    other = deploy_system(deployer, treasury=treasury.address, params=params, project=project)
    actor = make_actor(0)
    other.opg.transfer(actor.address, params.min_inference_stake, sender=treasury)
    other.opg.approve(other.staking, params.min_inference_stake, sender=actor.account)
    with ape.reverts("NodeStaking: invalid registration"):
        other.staking.register(
            INFERENCE, params.min_inference_stake, "http://n.invalid",
            sig(Registration(account=actor.address), actor.key, staking_domain), sender=actor.account,
        )
