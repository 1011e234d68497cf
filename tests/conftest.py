"""Shared ape fixtures: a freshly deployed system on the test chain (anvil via ape-foundry) and funded actors.

Ape takes a chain snapshot around every test, so each test starts from the state these fixtures build.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import ape.exceptions
import pytest
from ape.exceptions import TransactionError
from ape.pytest.fixtures import IsolationManager

from offchain.ape_deploy import deploy_system
from offchain.deployments import Params
from offchain.devkit.params import OPG, TEST_PARAMS  # noqa: F401 (OPG re-exported to the test modules)
from offchain.messages import Domain, Registration


@pytest.fixture(scope="session")
def params() -> Params:
    return TEST_PARAMS


@pytest.fixture(scope="session")
def deployer(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def treasury(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def facilitator(accounts):
    """The escrow's facilitator (TEST_PARAMS.facilitators): settles batches without a proposal, like the relayer."""
    return accounts[2]


@pytest.fixture(scope="session")
def system(deployer, treasury, params, project):
    return deploy_system(deployer, treasury=treasury.address, params=params, project=project)


@pytest.fixture(scope="session")
def opg(system):
    return system.opg


@pytest.fixture(scope="session")
def escrow(system):
    return system.escrow


@pytest.fixture(scope="session")
def staking(system):
    return system.staking


@pytest.fixture(scope="session")
def distributor(system):
    return system.distributor


@pytest.fixture(scope="session")
def chain_id(chain) -> int:
    return chain.chain_id


@pytest.fixture(scope="session")
def escrow_domain(chain_id, escrow) -> Domain:
    return Domain.escrow(chain_id, escrow.address)


@pytest.fixture(scope="session")
def staking_domain(chain_id, staking) -> Domain:
    return Domain.staking(chain_id, staking.address)


class Actor:
    """A fresh eth-account key pair with an ape account able to send transactions for it."""

    def __init__(self, key: str, ape_account):
        self.key = key
        self.account = ape_account
        self.address = ape_account.address

    def __repr__(self) -> str:
        return f"Actor({self.address})"


@pytest.fixture(scope="session")
def make_actor(accounts, opg, treasury):
    """Create an actor with a known private key (signatures are made with eth-account), ETH for gas, and OPG."""

    def make(opg_amount: int = 100_000 * OPG) -> Actor:
        ape_account = accounts.generate_test_account()
        key = ape_account.private_key
        accounts[0].transfer(ape_account, 10**19)
        if opg_amount:
            opg.transfer(ape_account, opg_amount, sender=treasury)
        return Actor(key, ape_account)

    return make


@pytest.fixture(scope="session")
def payer(make_actor):
    return make_actor()


@pytest.fixture(scope="session")
def register(opg, staking, staking_domain):
    """Register an actor in a role with a stake: approve, sign ``Registration(account)``, call ``register``."""

    def do(actor: Actor, role: int, stake: int, endpoint: str = "http://node.invalid"):
        opg.approve(staking, stake, sender=actor.account)
        signature = Registration(account=actor.address).sign_with(actor.key, staking_domain)
        return staking.register(role, stake, endpoint, bytes.fromhex(signature[2:]), sender=actor.account)

    return do


@pytest.fixture(scope="session")
def make_live(chain, staking, distributor, params):
    """Make registered verifiers live: wait out the warm-up, heartbeat, and move into the next epoch.

    After it, each verifier's vote weight (and share of the epoch's verifier pool) is its stake.
    """

    def do(actors: list) -> None:
        chain.pending_timestamp += params.warmup
        chain.mine()
        for actor in actors:
            staking.heartbeat(sender=actor.account)
        epoch = distributor.epoch_now()
        while distributor.epoch_now() == epoch:
            chain.pending_timestamp += params.epoch_length
            chain.mine()

    return do


@pytest.fixture(scope="session")
def node(make_actor, register, params):
    actor = make_actor()
    register(actor, 1, params.min_inference_stake * 2)
    return actor


@pytest.fixture(scope="session")
def verifiers(make_actor, register, make_live, params):
    """Three registered, live verifiers with weights 1:2:3, sorted by address (proofs need ascending order)."""
    out = []
    for stake in (params.min_verifier_stake, params.min_verifier_stake * 2, params.min_verifier_stake * 3):
        actor = make_actor()
        register(actor, 2, stake, "http://verifier.invalid")
        out.append(actor)
    make_live(out)
    return sorted(out, key=lambda a: int(a.address, 16))


# Ape's isolation (a chain snapshot around every test) turns itself off for the rest of the session, silently, the
# first time taking a snapshot raises (ape/pytest/fixtures.py: `except Exception: self.supported = False`); every
# later test then sees the state of the tests before it (seen on a loaded machine: a deposit counted twice). Retry a
# failed snapshot a few times, say so, and fail loudly rather than run the rest of the suite without isolation.
def _set_snapshot(self, scope):
    if not self.supported or not self.config_wrapper.get_isolation(scope):
        return
    for attempt in range(6):
        try:
            snapshot_id = self.take_snapshot()  # None when no provider is connected or none can snapshot
            break
        except Exception as exc:  # noqa: BLE001
            print(f"conftest: taking a chain snapshot failed ({exc.__class__.__name__}: {exc}); retrying",
                  file=sys.stderr)
            time.sleep(0.5 * (attempt + 1))
    else:
        raise RuntimeError("ape could not take a chain snapshot: tests would run without isolation")
    if snapshot_id is not None:
        self.snapshots.set_snapshot_id(scope, snapshot_id)


IsolationManager.set_snapshot = _set_snapshot


# Ape builds a contract source traceback for every reverted transaction as it raises the error (ContractLogicError's
# `set_ape_traceback` defaults to True, and ape-vyper's error enrichment reads the `# dev:` message from it): it
# fetches the mined transaction's struct-log trace from anvil and maps every pc to a Vyper AST node. That was 61 % of
# the time of the revert-heavy contract tests (py-spy), and nothing here uses it: every `ape.reverts(...)` checks the
# revert string, which ape takes from replaying the failed transaction on the chain (`eth_call`), never from the
# traceback, and no test asserts a `dev_message` or a compiler runtime-error class (IntegerOverflow, ...; the bare
# `ape.reverts()` accepts any ContractLogicError either way). So the session skips it; when a test FAILS with a
# transaction error, the contract source traceback is built then and added to its report.
_ape_traceback_from_tx = ape.exceptions._get_ape_traceback_from_tx
ape.exceptions._get_ape_traceback_from_tx = lambda txn: None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    error = call.excinfo.value if report.failed and call.excinfo is not None else None
    while error is not None and not (isinstance(error, TransactionError) and error.txn is not None):
        error = error.__cause__ or error.__context__
    if error is not None and (source := _ape_traceback_from_tx(error.txn)):
        report.sections.append(("contract source traceback", source.format()))


# Order: the tests on ape's own test chain (contracts, wallets, console, property) run first, inside ape's snapshot
# isolation and close to the creation of the session fixtures above; then the end-to-end tests of the daemons, each
# on private anvil chains of its own (relayer, node, client, verifier, operator, backends, demo). In a full run with
# the daemon tests first, the contract tests saw state leak between tests (a deposit counted twice); they pass alone
# and in any order among themselves. Keeping the chains apart in time keeps the run as it was before the daemons.
OWN_CHAIN_DIRS = {"backends", "client", "node", "operator", "relayer", "verifier", "demo", "devnet"}
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(session, config, items):
    def own_chain(item) -> int:
        rel = Path(str(item.fspath)).resolve().relative_to(TESTS)
        return int(rel.parts[0] in OWN_CHAIN_DIRS)

    items.sort(key=own_chain)  # stable: the order within each group is pytest's

