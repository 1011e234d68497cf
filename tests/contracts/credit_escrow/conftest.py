"""CreditEscrow v2: deposits, thawed and expiring withdrawals, session keys with allowances, voucher settlement,
the packed batch log, charge voiding, and timelocked governance.

Vouchers are signed with ``offchain.messages`` (eth-account) and submitted as EIP-2098 compact claims; EIP-3009
deposit authorisations are built as EIP-712 typed data and signed with eth-account too. Tests named
``test_attack_*`` perform an attack on the escrow and show it fails; the honest path sits next to each.

Shared fixtures of test_escrow_*.py (test_wallet_payer.py and test_settlement_priority.py take the node's extra stake too).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from credit_escrow_kit import DAY, DEPOSIT, OPG
from eth_account import Account


@pytest.fixture(scope="module")
def _session_fixtures_first(
    system, opg, escrow, staking, distributor, params, deployer, treasury, make_actor, payer, node, escrow_domain
):
    """Instantiate the session fixtures before this module's own (ape's snapshots need that order)."""


@pytest.fixture(scope="module")
def _node_stake_backs_the_pay(_session_fixtures_first, opg, staking, node, treasury):
    """R10: settlement pays a node at most its active stake / fraud_multiplier per dispute window (pay_capacity):
    the node stakes enough more for this module's amounts (up to 1,000 OPG a channel)."""
    opg.transfer(node.address, 90_000 * OPG, sender=treasury)
    opg.approve(staking, 90_000 * OPG, sender=node.account)
    staking.add_stake(90_000 * OPG, sender=node.account)


@pytest.fixture(scope="module")
def relayer(facilitator):
    """The escrow's facilitator (TEST_PARAMS.facilitators): gas only; submits batches and gasless deposits."""
    return SimpleNamespace(account=facilitator, address=facilitator.address, key=facilitator.private_key)


@pytest.fixture(scope="module")
def payer_b(make_actor):
    return make_actor()


@pytest.fixture(scope="module")
def node_b(make_actor, register, params):
    """A second registered inference node, at exactly the minimum stake."""
    actor = make_actor()
    register(actor, 1, params.min_inference_stake, "http://node-b.invalid")
    return actor


@pytest.fixture(scope="module")
def stranger(make_actor):
    """Registered nowhere, holds OPG."""
    return make_actor()


@pytest.fixture(scope="module")
def session_key():
    return Account.create()


@pytest.fixture
def funded(payer, opg, escrow):
    """`payer` with DEPOSIT credits."""
    opg.approve(escrow, DEPOSIT, sender=payer.account)
    escrow.deposit(DEPOSIT, sender=payer.account)
    return payer


@pytest.fixture
def now(chain) -> int:
    """The next block's time, pinned: the first transaction after this fixture is mined exactly at it."""
    at = chain.pending_timestamp + 5
    chain.pending_timestamp = at
    return at


@pytest.fixture
def authorized(escrow, funded, session_key, now):
    """`session_key` signs for `funded` for 30 days, with a 100 OPG allowance."""
    escrow.authorize_signer(session_key.address, now + 30 * DAY, 100 * OPG, sender=funded.account)
    return session_key
