"""``ape run deploy``: deploy and wire OPG, RewardDistributor, NodeStaking and CreditEscrow.

Writes ``deployments/<chainId>.json``, the file every daemon, script, console and test reads.

A running local anvil (devnet parameters, anvil's public development account 0 as deployer and treasury), e.g. the
one ``make demo`` leaves on 127.0.0.1:8545:
    make deploy                                     # OPG_RPC_URL=http://127.0.0.1:8545 by default
    APE_FOUNDRY_HOST=http://127.0.0.1:8545 ape run deploy --network ethereum:local:foundry
Without ``APE_FOUNDRY_HOST`` ape-config's ``host: auto`` would start a private anvil that stops with this command, and
with it pointing at a local URL where nothing runs ape-foundry would start one there: either way the contracts would
exist nowhere afterwards, so the script refuses any chain ape started itself.
Any other ape network, with an imported ape account (``ape accounts import NAME``):
    OPG_DEPLOYER=NAME OPG_TREASURY=0x... ape run deploy --network ethereum:sepolia:node
Parameters default to the production values of ``offchain.deployments.Params``; override them with a JSON file
through ``OPG_PARAMS=path/to/params.json``; ``OPG_FACILITATORS=0x...,0x...`` names the relayer account(s) that
settle CreditEscrow batches at once (required off the devnet, whose default is anvil accounts 1 and 9). Every
contract gets the same governance delay, ``Params.delay``: at least
the longest of the thaw period, the unbonding period, the warm-up and the epoch, plus one day (a parameter change
queued now cannot take effect before anyone relying on the old value can leave); a smaller ``governance_delay`` is
refused before anything is deployed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from ape import accounts, chain, networks, project
from ape.cli import ConnectedProviderCommand, network_option

from offchain.ape_deploy import DEPLOY_HINT, deploy_system, missing_code, private_chain_reason, started_by_ape
from offchain.daemon.keys import DEVNET_CHAIN_ID
from offchain.deployments import Params, save_deployment
from offchain.sdk.constants import MIN_GOVERNANCE_DELAY


def fail(message: str) -> None:
    click.echo(f"deploy: {message}", err=True)
    sys.exit(1)


def load_params(is_devnet: bool) -> Params:
    path = os.environ.get("OPG_PARAMS")
    if path:
        try:
            return Params.model_validate(json.loads(Path(path).read_text()))
        except (OSError, ValueError) as exc:
            fail(f"cannot read parameters from {path}: {exc}")
    return Params.devnet() if is_devnet else Params()


def delay_floor(params: Params, is_devnet: bool = True) -> int:
    """The least governance delay the contracts accept for these periods (off the devnet at least 7 days, the
    timelock's ``MIN_DELAY``)."""
    floor = max(params.thaw_period, params.unbonding_period, params.warmup, params.epoch_length) + 86_400
    return floor if is_devnet else max(floor, MIN_GOVERNANCE_DELAY)


def with_facilitators(params: Params) -> Params:
    """``OPG_FACILITATORS`` (comma-separated relayer addresses) replaces ``Params.facilitators``."""
    names = [a.strip() for a in os.environ.get("OPG_FACILITATORS", "").split(",") if a.strip()]
    if not names:
        return params
    try:
        return Params.model_validate({**params.model_dump(), "facilitators": names})
    except ValueError as exc:
        fail(f"invalid OPG_FACILITATORS: {exc}")


def check_params(params: Params, is_devnet: bool = True) -> None:
    if not params.facilitators:
        fail("no facilitator: set OPG_FACILITATORS to the relayer account(s) that settle CreditEscrow batches")
    if params.delay < delay_floor(params, is_devnet):
        fail(
            f"governance delay {params.delay} s is below max(thaw, unbonding, warmup, epoch) + 1 day"
            f"{'' if is_devnet else ' and 7 days'} = {delay_floor(params, is_devnet)} s"
        )


def pick_deployer(is_devnet: bool):
    alias = os.environ.get("OPG_DEPLOYER")
    if alias:
        try:
            return accounts.load(alias)
        except Exception as exc:
            fail(f"cannot load ape account {alias!r}: {exc}")
    if not is_devnet:
        fail("set OPG_DEPLOYER to an ape account alias to deploy on a non-local network")
    return accounts.test_accounts[0]


@click.command(cls=ConnectedProviderCommand)
@network_option()
def cli(network):
    """Deploy the OPG settlement contracts and write deployments/<chainId>.json."""
    provider = networks.provider
    if started_by_ape(provider):
        fail(f"refusing to deploy to a chain that stops when this command ends: {private_chain_reason(provider)};"
             f" start the chain first (`make demo` leaves anvil on 127.0.0.1:8545) and deploy with {DEPLOY_HINT}")
    is_devnet = chain.chain_id == DEVNET_CHAIN_ID
    deployer = pick_deployer(is_devnet)
    treasury = os.environ.get("OPG_TREASURY") or deployer.address
    params = with_facilitators(load_params(is_devnet))
    check_params(params, is_devnet)
    click.echo(f"Deploying on chain {chain.chain_id} ({networks.provider.network.name}) from {deployer.address}")
    system = deploy_system(deployer, treasury=treasury, params=params, project=project)
    absent = missing_code(system.deployment, provider.get_code)
    if absent:
        fail(f"{', '.join(absent)} has no code at its address after deployment; no deployment file written")
    path = save_deployment(system.deployment)
    for name, contract in system.deployment.contracts.items():
        click.echo(f"  {name:<18} {contract.address}  (block {contract.block})")
    click.echo(f"Governance delay {params.delay} s on every contract (parameter changes go through queue_change)")
    click.echo(f"Wrote {path}")
