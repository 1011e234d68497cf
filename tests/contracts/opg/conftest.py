"""OPG token: fixed supply, ERC-20, EIP-2612 permit, EIP-5267 domain and EIP-3009 (both overloads).

Every signature is made with eth-account from EIP-712 typed data built here, independently of the contract.

Shared fixtures of test_opg_*.py.
"""

from __future__ import annotations

import pytest
from opg_kit import OPG, Auth, domain, new_nonce


@pytest.fixture(scope="module")
def _session_fixtures_first(system, opg, deployer, treasury, make_actor, chain_id):
    """Instantiate the session fixtures before this module's own (ape's snapshots need that order)."""


@pytest.fixture(scope="module")
def holder(make_actor):
    """A token holder with a known key (10,000 OPG)."""
    return make_actor(10_000 * OPG)


@pytest.fixture(scope="module")
def other(make_actor):
    """A second actor holding nothing."""
    return make_actor(0)


@pytest.fixture(scope="module")
def relayer(make_actor):
    """An account with gas only, submitting other people's signatures."""
    return make_actor(0)


@pytest.fixture(scope="module")
def opg_domain(chain_id, opg) -> dict:
    return domain(chain_id, opg.address)


@pytest.fixture
def now(chain) -> int:
    return chain.pending_timestamp


@pytest.fixture
def auth(holder, other, now) -> Auth:
    """A fresh 100 OPG authorisation holder -> other, valid for an hour."""
    return Auth(holder.address, other.address, 100 * OPG, 0, now + 3_600, new_nonce())


@pytest.fixture(scope="module")
def wallet(project, holder, opg, deployer, treasury):
    """An ERC-1271 TestWallet owned by `holder`, holding 1,000 OPG."""
    w = project.TestWallet.deploy(holder.address, sender=deployer)
    opg.transfer(w, 1_000 * OPG, sender=treasury)
    return w
