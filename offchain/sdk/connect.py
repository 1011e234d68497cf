"""``connect(settings)``: the one start-up bootstrap of every role.

In order, each step failing with one :class:`ConfigError` line: reach the RPC and read its chain id; load the
signing key (``daemon.keys.load_account``: a keystore, or anvil's public development keys on chain 31337 only —
refused before anything else is read); load ``deployments/<chainId>.json`` (or the file given; refused when it is
for another chain); check that the required contracts have code at their addresses (a restarted devnet with a
stale deployment file fails here, not on the first call); build the contract wrappers, EIP-712 domains and the
protocol clock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from eth_account.signers.local import LocalAccount
from web3 import Web3

from ..daemon.keys import load_account
from ..daemon.settings import ConfigError
from ..deployments import Deployment, load_deployment
from ..messages import Domain
from .clock import ProtocolClock
from .contracts import Contracts

DEFAULT_TIMEOUT = 15.0
REQUIRED = ("OPG", "CreditEscrow", "NodeStaking", "RewardDistributor")


class ChainSettings(Protocol):
    """What ``connect`` reads of a role's settings (DaemonSettings, ClientSettings, OperatorSettings...)."""

    rpc_url: str
    deployment: Path | None
    keystore: Path | None
    dev_account: int | None


def web3_of(rpc_url: str, timeout: float = DEFAULT_TIMEOUT) -> Web3:
    """A web3 connection with its own HTTP session."""
    return Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))


def chain_id_of(w3: Web3, rpc_url: str) -> int:
    try:
        return int(w3.eth.chain_id)
    except Exception as exc:  # requests' connection errors, bad JSON, ...
        raise ConfigError(f"cannot reach the chain at {rpc_url} ({exc.__class__.__name__}): is the node "
                          "running? (--rpc-url)") from None


@dataclass
class Connection:
    """A role's view of one deployment: web3, chain id, key (None when the role reads only), contracts, domains
    and clock. ``thread_contracts()`` gives each thread its own HTTP session on the same deployment."""

    rpc_url: str
    w3: Web3
    chain_id: int
    deployment: Deployment
    account: LocalAccount | None
    timeout: float = DEFAULT_TIMEOUT
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @property
    def network(self) -> str:
        """The CAIP-2 network name x402 uses (``eip155:<chainId>``)."""
        return f"eip155:{self.chain_id}"

    @property
    def address(self) -> str | None:
        return self.account.address if self.account is not None else None

    @cached_property
    def contracts(self) -> Contracts:
        return Contracts.of(self.w3, self.deployment)

    @property
    def escrow_domain(self) -> Domain:
        return self.contracts.escrow_domain

    @property
    def staking_domain(self) -> Domain:
        return self.contracts.staking_domain

    @property
    def token_domain(self) -> Domain:
        return self.contracts.token_domain

    @cached_property
    def clock(self) -> ProtocolClock:
        return ProtocolClock(lambda: int(self.thread_contracts().w3.eth.get_block("latest")["timestamp"]))

    def thread_contracts(self) -> Contracts:
        """The deployment's contracts on a web3 session of the calling thread's own."""
        found = getattr(self._local, "contracts", None)
        if found is None:
            found = self._local.contracts = Contracts.of(web3_of(self.rpc_url, self.timeout), self.deployment)
        return found


def open_deployment(rpc_url: str, deployment_file: str | Path | None = None, *, require: tuple[str, ...] = REQUIRED,
                    timeout: float = DEFAULT_TIMEOUT, account: LocalAccount | None = None,
                    w3: Web3 | None = None, chain_id: int | None = None) -> Connection:
    """The keyless part of :func:`connect` (deployment file, code check) for a chain already reached or not."""
    w3 = w3 or web3_of(rpc_url, timeout)
    chain_id = chain_id if chain_id is not None else chain_id_of(w3, rpc_url)
    try:
        deployment = load_deployment(chain_id=chain_id, path=deployment_file)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None
    for name in require:
        address = deployment.address(name)
        if len(w3.eth.get_code(address)) == 0:
            raise ConfigError(f"no contract code at {name} {address} on chain {chain_id} at {rpc_url}: the "
                              "deployment file is stale or for another chain (was the chain restarted? redeploy)")
    return Connection(rpc_url=rpc_url, w3=w3, chain_id=chain_id, deployment=deployment, account=account,
                      timeout=timeout)


def connect(settings: ChainSettings | Any, *, need_key: bool = True, require: tuple[str, ...] = REQUIRED,
            timeout: float = DEFAULT_TIMEOUT) -> Connection:
    """Connect a role to its deployment (see the module's docstring); ``ConfigError`` with one line if it cannot.

    ``need_key=False``: a key is loaded only if the settings name one (read-only roles, ``--address`` views)."""
    w3 = web3_of(settings.rpc_url, timeout)
    chain_id = chain_id_of(w3, settings.rpc_url)
    account = None
    if need_key or settings.keystore is not None or settings.dev_account is not None:
        account = load_account(settings, chain_id)  # before the deployment: a dev key off 31337 is refused first
    return open_deployment(settings.rpc_url, settings.deployment, require=require, timeout=timeout,
                           account=account, w3=w3, chain_id=chain_id)
