"""CreditEscrow: The packed batch log (attack 9a: junk batches, log decoding)."""

from __future__ import annotations

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
    batch_log,
    outcomes,
    signed_claim,
)

pytestmark = pytest.mark.usefixtures("_session_fixtures_first", "_node_stake_backs_the_pay")


def test_attack_junk_batch_emits_no_batch_settled_log(
    escrow, escrow_domain, opg, distributor, funded, node, stranger, relayer
):
    # Attack: spam the settlement log (and indexers) with batches in which nothing settles.
    escrow.settle_batch(
        [signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)], ROOT, sender=relayer.account
    )
    junk = [
        signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG),  # stale
        signed_claim(funded.key, escrow_domain, funded.address, stranger.address, 10 * OPG),  # node not payable
        signed_claim(stranger.key, escrow_domain, funded.address, node.address, 20 * OPG),  # bad signature
        signed_claim(funded.key, escrow_domain, funded.address, node.address, DEPOSIT + 1),  # insufficient balance
    ]
    distributor_tokens = opg.balanceOf(distributor.address)
    tx = escrow.settle_batch(junk, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_STALE, SKIP_NODE_NOT_PAYABLE, SKIP_BAD_SIGNATURE, SKIP_INSUFFICIENT_BALANCE]
    assert escrow.BatchSettled.from_receipt(tx) == []
    assert [s.reason for s in escrow.ClaimSkipped.from_receipt(tx)] == [1, 2, 3, 4]
    assert distributor.FeesCredited.from_receipt(tx) == []
    assert opg.balanceOf(distributor.address) == distributor_tokens
    assert escrow.node_settled_at(stranger.address) == 0


def test_batch_settled_packs_payer_delta_and_node_runs(
    escrow, escrow_domain, opg, funded, payer_b, node, node_b, stranger, relayer
):
    opg.approve(escrow, DEPOSIT, sender=payer_b.account)
    escrow.deposit(DEPOSIT, sender=payer_b.account)
    escrow.settle_batch(
        [signed_claim(funded.key, escrow_domain, funded.address, node.address, 5 * OPG)], ROOT, sender=relayer.account
    )
    claims = [
        signed_claim(funded.key, escrow_domain, funded.address, node.address, 12 * OPG),  # delta 7
        signed_claim(stranger.key, escrow_domain, payer_b.address, node.address, 3 * OPG),  # skipped: not in the log
        signed_claim(payer_b.key, escrow_domain, payer_b.address, node.address, 20 * OPG),
        signed_claim(funded.key, escrow_domain, funded.address, stranger.address, OPG),  # unpayable run: no run word
        signed_claim(payer_b.key, escrow_domain, payer_b.address, node_b.address, 40 * OPG + 1),
    ]
    tx = escrow.settle_batch(claims, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED, SKIP_BAD_SIGNATURE, SETTLED, SKIP_NODE_NOT_PAYABLE, SETTLED]
    [event] = escrow.BatchSettled.from_receipt(tx)
    assert event.settled == [
        int(funded.address, 16) << 96 | 7 * OPG,
        int(payer_b.address, 16) << 96 | 20 * OPG,
        int(payer_b.address, 16) << 96 | 40 * OPG + 1,
    ]
    assert event.runs == [int(node.address, 16) << 96 | 2, int(node_b.address, 16) << 96 | 1]
    amount, settled, runs = batch_log(escrow, tx)
    assert amount == 67 * OPG + 1 == sum(delta for _, delta in settled)
    assert settled == [(funded.address, 7 * OPG), (payer_b.address, 20 * OPG), (payer_b.address, 40 * OPG + 1)]
    assert runs == [(node.address, 2), (node_b.address, 1)]
    assert sum(count for _, count in runs) == len(settled)
    assert bytes(event.receipts_root) == ROOT and event.submitter == relayer.address


def test_node_split_into_two_runs_gets_two_run_words(escrow, escrow_domain, funded, node, node_b, relayer):
    claims = [
        signed_claim(funded.key, escrow_domain, funded.address, node.address, OPG),
        signed_claim(funded.key, escrow_domain, funded.address, node_b.address, OPG),
        signed_claim(funded.key, escrow_domain, funded.address, node.address, 3 * OPG),
    ]
    tx = escrow.settle_batch(claims, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED] * 3
    assert batch_log(escrow, tx)[2] == [(node.address, 1), (node_b.address, 1), (node.address, 1)]
    assert batch_log(escrow, tx)[1] == [(funded.address, OPG), (funded.address, OPG), (funded.address, 2 * OPG)]
