"""CreditEscrow: Reentrancy surface: the escrow calls only its immutable token, staking and distributor."""

from __future__ import annotations

import pytest
from credit_escrow_kit import DEPOSIT, OPG, ROOT, SETTLED, SKIP_BAD_SIGNATURE, ZERO, outcomes, signed_claim

from offchain.devkit.traces import called_addresses

pytestmark = pytest.mark.usefixtures("_session_fixtures_first", "_node_stake_backs_the_pay")


def test_settlement_calls_only_the_token_staking_and_distributor(
    escrow, escrow_domain, opg, staking, distributor, funded, payer_b, node, node_b, authorized, relayer, chain
):
    opg.approve(escrow, DEPOSIT, sender=payer_b.account)
    escrow.deposit(DEPOSIT, sender=payer_b.account)
    claims = [
        signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG),
        signed_claim(authorized.key, escrow_domain, funded.address, node_b.address, 10 * OPG),
        signed_claim(payer_b.key, escrow_domain, payer_b.address, node_b.address, 10 * OPG),
    ]
    tx = escrow.settle_batch(claims, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED] * 3
    called = called_addresses(chain, tx) - {escrow.address.lower()}
    allowed = {a.address.lower() for a in (opg, staking, distributor)}
    # ecrecover is the precompile at 0x01; no payer, signer or node address is ever called.
    assert called - allowed <= {"0x0000000000000000000000000000000000000001"}
    assert allowed <= called


def test_withdraw_calls_only_the_token(escrow, opg, funded, params, chain, now):
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(OPG, sender=funded.account)
    chain.pending_timestamp = now + 1 + params.thaw_period
    tx = escrow.withdraw(sender=funded.account)
    assert called_addresses(chain, tx) == {escrow.address.lower(), opg.address.lower()}


def test_claim_for_the_zero_payer_never_pays(escrow, node, relayer):
    garbage = (ZERO, node.address, OPG, b"\x00" * 32, b"\x00" * 32, OPG)
    tx = escrow.settle_batch([garbage], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.spent(ZERO, node.address) == 0
    assert escrow.BatchSettled.from_receipt(tx) == []
