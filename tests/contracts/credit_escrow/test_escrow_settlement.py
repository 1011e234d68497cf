"""CreditEscrow: Settlement."""

from __future__ import annotations

import ape
import pytest
from credit_escrow_kit import (
    DEPOSIT,
    OPG,
    ROOT,
    SETTLED,
    SKIP_BAD_SIGNATURE,
    SKIP_INSUFFICIENT_BALANCE,
    SKIP_NODE_NOT_PAYABLE,
    SKIP_STALE,
    ZERO,
    batch_log,
    claim,
    outcomes,
    sign_voucher,
    signed_claim,
)

from offchain.messages import (
    SECP256K1_HALF_N,
    Domain,
    InvalidSignature,
    compact_signature,
)

pytestmark = pytest.mark.usefixtures("_session_fixtures_first", "_node_stake_backs_the_pay")


SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


BPS = 10_000


def high_s_twin(signature: str) -> str:
    raw = bytes.fromhex(signature[2:])
    s = SECP256K1_N - int.from_bytes(raw[32:64], "big")
    return "0x" + (raw[:32] + s.to_bytes(32, "big") + bytes([55 - raw[64]])).hex()


def fee_split(gross: int, params) -> tuple[int, int, int]:
    """(node share, protocol fee, verifier fee) as the RewardDistributor splits one node's gross."""
    protocol = (gross * params.protocol_fee_bps + BPS - 1) // BPS
    verifier = min(gross * params.verifier_fee_bps // BPS, gross - protocol)
    return gross - protocol - verifier, protocol, verifier


@pytest.fixture(scope="module")
def verifier(make_actor, register, params):
    """A registered verifier (not an inference node)."""
    actor = make_actor()
    register(actor, 2, params.min_verifier_stake, "http://verifier.invalid")
    return actor


def test_settle_voucher_signed_by_payer(escrow, escrow_domain, opg, distributor, funded, node, relayer, params):
    escrow_tokens = opg.balanceOf(escrow.address)
    distributor_tokens = opg.balanceOf(distributor.address)
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, 120 * OPG, 100 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED]
    assert escrow.balance_of(funded.address) == DEPOSIT - 100 * OPG
    assert escrow.spent(funded.address, node.address) == 100 * OPG
    assert opg.balanceOf(escrow.address) == escrow_tokens - 100 * OPG
    assert opg.balanceOf(distributor.address) == distributor_tokens + 100 * OPG
    assert escrow.settled_at(funded.address, node.address) == tx.timestamp
    assert escrow.node_settled_at(node.address) == tx.timestamp
    assert batch_log(escrow, tx) == (100 * OPG, [(funded.address, 100 * OPG)], [(node.address, 1)])


def test_settle_batch_returns_outcomes(escrow, escrow_domain, funded, node, stranger, relayer):
    good = signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    unsigned = signed_claim(stranger.key, escrow_domain, funded.address, node.address, 20 * OPG)
    inactive = signed_claim(funded.key, escrow_domain, funded.address, stranger.address, 10 * OPG)
    result = escrow.settle_batch.call([good, unsigned, inactive], ROOT, sender=relayer.account)
    assert list(result) == [SETTLED, SKIP_BAD_SIGNATURE, SKIP_NODE_NOT_PAYABLE]


def test_batch_settled_event_carries_receipts_root(escrow, escrow_domain, funded, node, stranger, relayer):
    good = signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    bad = signed_claim(stranger.key, escrow_domain, funded.address, node.address, 20 * OPG)
    tx = escrow.settle_batch([good, bad], ROOT, sender=relayer.account)
    [batch] = escrow.BatchSettled.from_receipt(tx)
    assert bytes(batch.receipts_root) == ROOT
    assert batch.submitter == relayer.address
    assert batch.amount == 10 * OPG
    assert batch_log(escrow, tx) == (10 * OPG, [(funded.address, 10 * OPG)], [(node.address, 1)])


def test_fees_reach_the_reward_distributor(
    escrow, escrow_domain, distributor, staking, treasury, funded, node, relayer, params
):
    gross = 100 * OPG
    node_share, protocol_fee, verifier_fee = fee_split(gross, params)
    node_before = distributor.claimable(node.address)
    treasury_before = distributor.claimable(treasury.address)
    epoch = distributor.epoch_now()
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, gross)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert distributor.claimable(node.address) == node_before + node_share == node_before + 85 * OPG
    # The protocol fee always reaches the treasury; the verifier fee too while no verifier is staked.
    treasury_gain = distributor.claimable(treasury.address) - treasury_before
    if staking.total_weight_in(epoch) == 0:
        assert treasury_gain == protocol_fee + verifier_fee
    else:
        assert protocol_fee <= treasury_gain < protocol_fee + verifier_fee
    [credited] = distributor.FeesCredited.from_receipt(tx)
    assert (credited.node, credited.gross, credited.node_share) == (node.address, gross, node_share)
    assert distributor.node_epoch_fees(epoch, node.address) == gross


def test_node_can_claim_settled_fees(escrow, escrow_domain, opg, distributor, funded, node, relayer, params):
    node_share, _, _ = fee_split(50 * OPG, params)
    escrow.settle_batch(
        [signed_claim(funded.key, escrow_domain, funded.address, node.address, 50 * OPG)],
        ROOT,
        sender=relayer.account,
    )
    tokens = opg.balanceOf(node.address)
    before = distributor.claimable(node.address)
    distributor.claim(sender=node.account)
    assert opg.balanceOf(node.address) == tokens + before
    assert before >= node_share


def test_settlement_pays_only_the_increase_over_spent(escrow, escrow_domain, funded, node, relayer):
    first = signed_claim(funded.key, escrow_domain, funded.address, node.address, 40 * OPG)
    escrow.settle_batch([first], ROOT, sender=relayer.account)
    second = signed_claim(funded.key, escrow_domain, funded.address, node.address, 100 * OPG, 70 * OPG)
    tx = escrow.settle_batch([second], ROOT, sender=relayer.account)
    assert batch_log(escrow, tx)[1] == [(funded.address, 30 * OPG)]
    assert escrow.spent(funded.address, node.address) == 70 * OPG
    assert escrow.balance_of(funded.address) == DEPOSIT - 70 * OPG


def test_retrying_a_settled_batch_is_harmless(escrow, escrow_domain, opg, distributor, funded, node, relayer):
    batch = [signed_claim(funded.key, escrow_domain, funded.address, node.address, 40 * OPG)]
    escrow.settle_batch(batch, ROOT, sender=relayer.account)
    balance = escrow.balance_of(funded.address)
    claimable = distributor.claimable(node.address)
    distributor_tokens = opg.balanceOf(distributor.address)
    tx = escrow.settle_batch(batch, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_STALE]
    [skipped] = escrow.ClaimSkipped.from_receipt(tx)
    assert (skipped.payer, skipped.node, skipped.total, skipped.reason) == (
        funded.address,
        node.address,
        40 * OPG,
        SKIP_STALE,
    )
    assert escrow.BatchSettled.from_receipt(tx) == []  # nothing settled: no batch log
    assert escrow.balance_of(funded.address) == balance
    assert escrow.spent(funded.address, node.address) == 40 * OPG
    assert distributor.claimable(node.address) == claimable
    assert opg.balanceOf(distributor.address) == distributor_tokens


def test_spent_never_decreases(escrow, escrow_domain, funded, node, relayer):
    escrow.settle_batch(
        [signed_claim(funded.key, escrow_domain, funded.address, node.address, 50 * OPG)],
        ROOT,
        sender=relayer.account,
    )
    # An older (lower) voucher the payer really signed is stale, not a refund.
    older = signed_claim(funded.key, escrow_domain, funded.address, node.address, 30 * OPG)
    tx = escrow.settle_batch([older], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_STALE]
    assert escrow.spent(funded.address, node.address) == 50 * OPG
    assert escrow.balance_of(funded.address) == DEPOSIT - 50 * OPG


def test_claim_with_zero_total_is_stale(escrow, escrow_domain, funded, node, relayer):
    tx = escrow.settle_batch(
        [signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG, 0)],
        ROOT,
        sender=relayer.account,
    )
    assert outcomes(escrow, tx) == [SKIP_STALE]


def test_unregistered_node_is_skipped(escrow, escrow_domain, funded, stranger, relayer):
    voucher = signed_claim(funded.key, escrow_domain, funded.address, stranger.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_NODE_NOT_PAYABLE]
    assert escrow.ClaimSkipped.from_receipt(tx)[0].reason == SKIP_NODE_NOT_PAYABLE
    assert escrow.balance_of(funded.address) == DEPOSIT
    assert escrow.spent(funded.address, stranger.address) == 0


def test_verifier_is_not_an_inference_node(escrow, escrow_domain, staking, funded, verifier, relayer):
    assert staking.is_active_as(verifier.address, 2) is True
    voucher = signed_claim(funded.key, escrow_domain, funded.address, verifier.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_NODE_NOT_PAYABLE]
    assert escrow.balance_of(funded.address) == DEPOSIT


def test_node_unbonded_below_minimum_is_still_paid_for_work_done(
    escrow, escrow_domain, staking, funded, node_b, relayer
):
    # The minimum stake gates new work (is_active), not pay for work already served (is_payable).
    staking.request_unbond(1, sender=node_b.account)
    assert staking.is_active_as(node_b.address, 1) is False
    assert staking.is_payable(node_b.address) is True
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node_b.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED]


def test_wrong_signer_is_skipped_without_moving_funds(escrow, escrow_domain, opg, funded, node, stranger, relayer):
    voucher = signed_claim(stranger.key, escrow_domain, funded.address, node.address, 10 * OPG)
    escrow_tokens = opg.balanceOf(escrow.address)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.ClaimSkipped.from_receipt(tx)[0].reason == SKIP_BAD_SIGNATURE
    assert escrow.balance_of(funded.address) == DEPOSIT
    assert escrow.spent(funded.address, node.address) == 0
    assert opg.balanceOf(escrow.address) == escrow_tokens


def test_claim_above_what_payer_signed_is_skipped(escrow, escrow_domain, funded, node, relayer):
    # The payer signed maxCumulative = 10; the relayer claims 500 with that signature.
    sig = sign_voucher(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    tx = escrow.settle_batch(
        [claim(funded.address, node.address, 500 * OPG, sig, 500 * OPG)], ROOT, sender=relayer.account
    )
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded.address) == DEPOSIT


def test_voucher_of_one_payer_cannot_charge_another(escrow, escrow_domain, funded, payer_b, opg, node, relayer):
    opg.approve(escrow, DEPOSIT, sender=payer_b.account)
    escrow.deposit(DEPOSIT, sender=payer_b.account)
    sig = sign_voucher(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    tx = escrow.settle_batch(
        [claim(payer_b.address, node.address, 10 * OPG, sig, 10 * OPG)], ROOT, sender=relayer.account
    )
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(payer_b.address) == DEPOSIT


def test_high_s_twin_voucher_is_refused(escrow, escrow_domain, funded, node, relayer):
    sig = sign_voucher(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    twin = bytes.fromhex(high_s_twin(sig)[2:])
    with pytest.raises(InvalidSignature):
        compact_signature(twin)  # the off-chain encoder refuses it
    # Forced into the compact form anyway (s above half the order does not fit below the v bit): refused on-chain.
    r, high_s, v = twin[:32], int.from_bytes(twin[32:64], "big"), twin[64]
    vs = ((high_s & (2**255 - 1)) | (v - 27) << 255).to_bytes(32, "big")
    assert escrow.voucher_signer(funded.address, node.address, 10 * OPG, r, vs) == ZERO
    tx = escrow.settle_batch([(funded.address, node.address, 10 * OPG, r, vs, 10 * OPG)], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded.address) == DEPOSIT


def test_s_above_half_order_is_refused_even_if_it_recovers(escrow, escrow_domain, funded, node, relayer):
    sig = bytes.fromhex(sign_voucher(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)[2:])
    vs = (SECP256K1_HALF_N + 1).to_bytes(32, "big")
    tx = escrow.settle_batch(
        [(funded.address, node.address, 10 * OPG, sig[:32], vs, 10 * OPG)], ROOT, sender=relayer.account
    )
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]


def test_garbage_signature_is_skipped(escrow, funded, node, relayer):
    garbage = (funded.address, node.address, OPG, b"\x00" * 32, b"\x00" * 32, OPG)
    tx = escrow.settle_batch([garbage], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]


def test_relayer_cannot_redirect_a_voucher_to_another_node(
    escrow, escrow_domain, distributor, funded, node, node_b, relayer
):
    sig = sign_voucher(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    before = distributor.claimable(node_b.address)
    tx = escrow.settle_batch(
        [claim(funded.address, node_b.address, 10 * OPG, sig, 10 * OPG)], ROOT, sender=relayer.account
    )
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded.address) == DEPOSIT
    assert escrow.spent(funded.address, node_b.address) == 0
    assert distributor.claimable(node_b.address) == before


def test_voucher_for_another_escrow_deployment_is_skipped(
    project, escrow, opg, staking, distributor, deployer, chain_id, funded, node, relayer, params
):
    other = project.CreditEscrow.deploy(opg, staking, distributor, params.thaw_period, params.delay, [deployer.address], sender=deployer)
    foreign = Domain.escrow(chain_id, other.address)
    voucher = signed_claim(funded.key, foreign, funded.address, node.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded.address) == DEPOSIT
    assert other.voucher_signer(funded.address, node.address, 10 * OPG, voucher[3], voucher[4]) == funded.address
    assert escrow.voucher_signer(funded.address, node.address, 10 * OPG, voucher[3], voucher[4]) == ZERO


def test_voucher_for_another_chain_is_skipped(escrow, chain_id, funded, node, relayer):
    voucher = signed_claim(funded.key, Domain.escrow(chain_id + 1, escrow.address), funded.address, node.address, OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded.address) == DEPOSIT


def test_broke_payer_is_skipped_never_partially_paid(escrow, escrow_domain, funded, node, relayer):
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, DEPOSIT + 1)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_INSUFFICIENT_BALANCE]
    [skipped] = escrow.ClaimSkipped.from_receipt(tx)
    assert (skipped.payer, skipped.node, skipped.total, skipped.reason) == (
        funded.address,
        node.address,
        DEPOSIT + 1,
        SKIP_INSUFFICIENT_BALANCE,
    )
    assert escrow.balance_of(funded.address) == DEPOSIT
    assert escrow.spent(funded.address, node.address) == 0


def test_broke_payer_does_not_block_the_batch(escrow, escrow_domain, opg, funded, payer_b, node, relayer):
    opg.approve(escrow, 5 * OPG, sender=payer_b.account)
    escrow.deposit(5 * OPG, sender=payer_b.account)
    broke = signed_claim(payer_b.key, escrow_domain, payer_b.address, node.address, 6 * OPG)
    good = signed_claim(funded.key, escrow_domain, funded.address, node.address, 6 * OPG)
    tx = escrow.settle_batch([broke, good], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_INSUFFICIENT_BALANCE, SETTLED]
    assert escrow.balance_of(payer_b.address) == 5 * OPG
    assert escrow.balance_of(funded.address) == DEPOSIT - 6 * OPG


def test_payer_can_be_charged_its_exact_balance(escrow, escrow_domain, funded, node, relayer):
    tx = escrow.settle_batch(
        [signed_claim(funded.key, escrow_domain, funded.address, node.address, DEPOSIT)],
        ROOT,
        sender=relayer.account,
    )
    assert outcomes(escrow, tx) == [SETTLED]
    assert escrow.balance_of(funded.address) == 0


def test_same_payer_drained_within_one_batch(escrow, escrow_domain, funded, node, node_b, relayer):
    first = signed_claim(funded.key, escrow_domain, funded.address, node.address, 950 * OPG)
    second = signed_claim(funded.key, escrow_domain, funded.address, node_b.address, 60 * OPG)  # within its R10 cap
    tx = escrow.settle_batch([first, second], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED, SKIP_INSUFFICIENT_BALANCE]
    assert escrow.balance_of(funded.address) == 50 * OPG


def test_total_above_max_cumulative_reverts(escrow, escrow_domain, funded, node, relayer):
    sig = sign_voucher(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    with ape.reverts("CreditEscrow: total exceeds voucher"):
        escrow.settle_batch(
            [claim(funded.address, node.address, 10 * OPG, sig, 10 * OPG + 1)], ROOT, sender=relayer.account
        )


def test_empty_batch_reverts(escrow, relayer):
    with ape.reverts("CreditEscrow: empty batch"):
        escrow.settle_batch([], ROOT, sender=relayer.account)


def propose_and_wait(escrow, chain, claims, sender) -> None:
    """A node's own settlement: propose the batch and wait the claim delay (the facilitator settles at once)."""
    due, _ = escrow.proposal_of(escrow.propose_batch(claims, ROOT, sender=sender.account).return_value)
    chain.pending_timestamp = due


def test_node_can_settle_its_own_vouchers(chain, escrow, escrow_domain, distributor, funded, node):
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    propose_and_wait(escrow, chain, [voucher], node)
    tx = escrow.settle_batch([voucher], ROOT, sender=node.account)
    assert outcomes(escrow, tx) == [SETTLED]
    assert escrow.BatchSettled.from_receipt(tx)[0].submitter == node.address
    assert escrow.spent(funded.address, node.address) == 10 * OPG


def test_node_can_settle_what_a_relayer_under_claimed(chain, escrow, escrow_domain, funded, node, relayer):
    sig = sign_voucher(funded.key, escrow_domain, funded.address, node.address, 80 * OPG)
    escrow.settle_batch([claim(funded.address, node.address, 80 * OPG, sig, 20 * OPG)], ROOT, sender=relayer.account)
    propose_and_wait(escrow, chain, [claim(funded.address, node.address, 80 * OPG, sig, 80 * OPG)], node)
    tx = escrow.settle_batch([claim(funded.address, node.address, 80 * OPG, sig, 80 * OPG)], ROOT, sender=node.account)
    assert batch_log(escrow, tx)[1] == [(funded.address, 60 * OPG)]
    assert escrow.spent(funded.address, node.address) == 80 * OPG


def test_fees_are_forwarded_once_per_node_run(
    escrow, escrow_domain, opg, distributor, funded, payer_b, node, node_b, relayer, params
):
    opg.approve(escrow, DEPOSIT, sender=payer_b.account)
    escrow.deposit(DEPOSIT, sender=payer_b.account)
    claims = [
        signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG),
        signed_claim(payer_b.key, escrow_domain, payer_b.address, node.address, 20 * OPG),
        signed_claim(funded.key, escrow_domain, funded.address, node_b.address, 30 * OPG),
        signed_claim(payer_b.key, escrow_domain, payer_b.address, node_b.address, 40 * OPG),
    ]
    distributor_tokens = opg.balanceOf(distributor.address)
    tx = escrow.settle_batch(claims, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED] * 4
    credited = distributor.FeesCredited.from_receipt(tx)
    assert [(c.node, c.gross) for c in credited] == [(node.address, 30 * OPG), (node_b.address, 70 * OPG)]
    transfers = [t for t in opg.Transfer.from_receipt(tx) if t.receiver == distributor.address]
    assert len(transfers) == 1 and transfers[0].value == 100 * OPG
    assert opg.balanceOf(distributor.address) == distributor_tokens + 100 * OPG
    assert escrow.BatchSettled.from_receipt(tx)[0].amount == 100 * OPG


def test_unordered_claims_still_credit_each_node(
    escrow, escrow_domain, distributor, funded, payer_b, opg, node, node_b, relayer, params
):
    opg.approve(escrow, DEPOSIT, sender=payer_b.account)
    escrow.deposit(DEPOSIT, sender=payer_b.account)
    before_a = distributor.claimable(node.address)
    before_b = distributor.claimable(node_b.address)
    claims = [
        signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG),
        signed_claim(funded.key, escrow_domain, funded.address, node_b.address, 20 * OPG),
        signed_claim(payer_b.key, escrow_domain, payer_b.address, node.address, 30 * OPG),
    ]
    tx = escrow.settle_batch(claims, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED] * 3
    assert [c.gross for c in distributor.FeesCredited.from_receipt(tx)] == [10 * OPG, 20 * OPG, 30 * OPG]
    assert (
        distributor.claimable(node.address) - before_a
        == fee_split(10 * OPG, params)[0] + fee_split(30 * OPG, params)[0]
    )
    assert distributor.claimable(node_b.address) - before_b == fee_split(20 * OPG, params)[0]


def test_inactive_node_run_between_active_ones(escrow, escrow_domain, funded, node, stranger, node_b, relayer):
    claims = [
        signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG),
        signed_claim(funded.key, escrow_domain, funded.address, stranger.address, 10 * OPG),
        signed_claim(funded.key, escrow_domain, funded.address, node_b.address, 10 * OPG),
    ]
    tx = escrow.settle_batch(claims, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED, SKIP_NODE_NOT_PAYABLE, SETTLED]
    assert escrow.balance_of(funded.address) == DEPOSIT - 20 * OPG


def test_batch_without_settlement_moves_no_tokens(escrow, escrow_domain, opg, distributor, funded, stranger, relayer):
    distributor_tokens = opg.balanceOf(distributor.address)
    voucher = signed_claim(funded.key, escrow_domain, funded.address, stranger.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert distributor.FeesCredited.from_receipt(tx) == []
    assert opg.balanceOf(distributor.address) == distributor_tokens


def test_escrow_holds_exactly_the_payer_balances(escrow, escrow_domain, opg, funded, payer_b, node, relayer):
    opg.approve(escrow, 300 * OPG, sender=payer_b.account)
    escrow.deposit(300 * OPG, sender=payer_b.account)
    escrow.settle_batch(
        [
            signed_claim(funded.key, escrow_domain, funded.address, node.address, 123 * OPG),
            signed_claim(payer_b.key, escrow_domain, payer_b.address, node.address, 45 * OPG),
        ],
        ROOT,
        sender=relayer.account,
    )
    total = escrow.balance_of(funded.address) + escrow.balance_of(payer_b.address)
    assert opg.balanceOf(escrow.address) == total == DEPOSIT + 300 * OPG - 168 * OPG
