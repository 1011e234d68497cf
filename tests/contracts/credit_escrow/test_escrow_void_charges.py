"""CreditEscrow: Voiding charges (NodeStaking only)."""

from __future__ import annotations

import ape
import pytest
from credit_escrow_kit import DEPOSIT, OPG, ROOT, SETTLED, SKIP_STALE, batch_log, outcomes, signed_claim

pytestmark = pytest.mark.usefixtures("_session_fixtures_first", "_node_stake_backs_the_pay")


def test_void_charges_by_anyone_but_the_staking_reverts(escrow, funded, node, deployer):
    for caller in (funded.account, node.account, deployer):
        with ape.reverts("CreditEscrow: caller is not the staking"):
            escrow.void_charges(funded.address, node.address, 10 * OPG, sender=caller)


def test_void_charges_by_the_staking_raises_spent_and_blocks_the_voided_work(
    escrow, escrow_domain, staking, funded, node, relayer, accounts, chain
):
    escrow.settle_batch(
        [signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)], ROOT, sender=relayer.account
    )
    chain.provider.set_balance(staking.address, 10**18)
    as_staking = accounts[staking.address]  # impersonated on the local chain
    tx = escrow.void_charges(funded.address, node.address, 30 * OPG, sender=as_staking)
    [event] = escrow.ChargesVoided.from_receipt(tx)
    assert (event.payer, event.node, event.amount, event.spent) == (funded.address, node.address, 20 * OPG, 30 * OPG)
    assert escrow.spent(funded.address, node.address) == 30 * OPG
    assert escrow.voided(funded.address, node.address) == 20 * OPG
    assert escrow.balance_of(funded.address) == DEPOSIT - 10 * OPG  # voiding moves no credits
    # A voucher covering only the voided work pays nothing; beyond it, only the increase.
    stale = signed_claim(funded.key, escrow_domain, funded.address, node.address, 30 * OPG)
    newer = signed_claim(funded.key, escrow_domain, funded.address, node.address, 35 * OPG)
    tx = escrow.settle_batch([stale, newer], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_STALE, SETTLED]
    assert batch_log(escrow, tx)[1] == [(funded.address, 5 * OPG)]
    # Voiding below spent changes nothing.
    tx = escrow.void_charges(funded.address, node.address, 20 * OPG, sender=as_staking)
    assert escrow.ChargesVoided.from_receipt(tx) == []
    assert (escrow.spent(funded.address, node.address), escrow.voided(funded.address, node.address)) == (
        35 * OPG,
        20 * OPG,
    )
