"""``ape run deploy``: deploy and wire OPG, RewardDistributor, NodeStaking and CreditEscrow.

Writes ``deployments/<chainId>.json``, the file every daemon, script, console and test reads.

A running local anvil (devnet parameters, anvil's public development account 0 as deployer and treasury), e.g. the
one ``make demo`` leaves on 127.0.0.1:8545:
    make deploy                                     # OPG_RPC_URL=http://127.0.0.1:8545 by default
    APE_FOUNDRY_HOST=http://127.0.0.1:8545 ape run deploy --network ethereum:local:foundry
Without ``APE_FOUNDRY_HOST`` ape-config's ``host: auto`` would start a private anvil that stops with this command, and
with it pointing at a local URL where nothing runs ape-foundry would start one there: either way the contracts would
exist nowhere afterwards, so the script refuses any chain ape started itself. On the devnet, parameters default to
``Params.devnet()``; ``OPG_PARAMS=params.json`` replaces them, ``OPG_TREASURY`` the treasury, and
``OPG_FACILITATORS=0x...,0x...`` the relayer account(s) that settle CreditEscrow batches at once (default anvil
accounts 1 and 9).

The production path, on any other chain (Base: ``--network base:sepolia`` / ``base:mainnet``, see ape-config.yaml):
    OPG_DEPLOYER=NAME ape run deploy --network base:sepolia --config deploy.json
* the deployer is an ape account (``OPG_DEPLOYER``, imported with ``ape accounts import NAME``) or a keystore file
  (``OPG_DEPLOYER_KEYSTORE=path``, password in ``OPG_DEPLOYER_PASSWORD``, else asked); never one of anvil's public
  development accounts, and neither is the owner, the treasury or a facilitator;
* everything else comes from the JSON file ``--config`` names (``offchain.deployments.DeployConfig``: owner, treasury,
  ``opg`` = "new" or an existing OPG's address, and every parameter explicitly); the devnet's OPG_PARAMS,
  OPG_TREASURY and OPG_FACILITATORS are refused there;
* it prints the plan and waits for a yes (``--yes`` skips the question), deploys, offers every ownable contract to
  the owner (two-step: the owner calls ``accept_ownership()`` on each), reads everything back (code, wiring,
  parameters, ownership) and only then writes ``deployments/<chainId>.json``; it refuses to replace a deployment file
  whose contracts are live on that chain.
Every contract gets the same governance delay, ``Params.delay``: at least the longest of the thaw period, the
unbonding period, the warm-up and the epoch, plus one day (off the devnet at least 7 days); a smaller
``governance_delay`` is refused before anything is deployed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from ape import accounts, chain, networks, project
from ape.cli import ConnectedProviderCommand, network_option
from ape_accounts import KeyfileAccount

from offchain.ape_deploy import (
    DEPLOY_HINT,
    deploy_system,
    dev_accounts_among,
    hand_over,
    private_chain_reason,
    provider_uri,
    started_by_ape,
    verify_system,
)
from offchain.daemon.keys import DEVNET_CHAIN_ID
from offchain.deployments import DeployConfig, Params, deployment_path, load_deployment, save_deployment
from offchain.sdk.constants import MIN_GOVERNANCE_DELAY

DEVNET_KNOBS = ("OPG_PARAMS", "OPG_TREASURY", "OPG_FACILITATORS")


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
    """``OPG_DEPLOYER`` (an ape account alias) or ``OPG_DEPLOYER_KEYSTORE`` (a keystore file); on the devnet only,
    neither means anvil's development account 0."""
    alias, keystore = os.environ.get("OPG_DEPLOYER"), os.environ.get("OPG_DEPLOYER_KEYSTORE")
    if alias and keystore:
        fail("set OPG_DEPLOYER (an ape account) or OPG_DEPLOYER_KEYSTORE (a keystore file), not both")
    if alias:
        try:
            return accounts.load(alias)
        except Exception as exc:
            fail(f"cannot load ape account {alias!r}: {exc}")
    if keystore:
        path = Path(keystore).expanduser()
        try:
            if "address" not in json.loads(path.read_text()):
                fail(f"OPG_DEPLOYER_KEYSTORE={keystore} is not a keystore file (no address)")
        except (OSError, ValueError) as exc:
            fail(f"cannot read keystore OPG_DEPLOYER_KEYSTORE={keystore}: {exc}")
        return KeyfileAccount(keyfile_path=path)
    if not is_devnet:
        fail("set OPG_DEPLOYER to an ape account alias (`ape accounts import NAME`) or OPG_DEPLOYER_KEYSTORE to a "
             "keystore file (password in OPG_DEPLOYER_PASSWORD) to deploy on a non-local network")
    return accounts.test_accounts[0]


def unlock(deployer) -> None:
    """Unlock a keystore account once, so that the deployment's transactions are signed without a prompt each."""
    if not isinstance(deployer, KeyfileAccount):
        return
    try:
        deployer.set_autosign(True, passphrase=os.environ.get("OPG_DEPLOYER_PASSWORD") or None)
    except Exception as exc:  # noqa: BLE001 - ape's InvalidPasswordError / AccountsError: one line, not a traceback
        fail(f"cannot unlock the deployer {deployer.alias!r}: {exc.__class__.__name__} {exc}")


def refuse_dev_accounts(config: DeployConfig, deployer_address: str) -> None:
    roles = {"deployer": [deployer_address], "owner": [config.owner], "treasury": [config.treasury],
             "facilitator": config.params.facilitators}
    for role, addresses in roles.items():
        found = dev_accounts_among(addresses)
        if found:
            fail(f"the {role} {found[0]} is one of anvil's public development accounts (its key is public) or zero: "
                 f"refused on chain {chain.chain_id}; use an account only you control")


def existing_opg(address: str) -> str:
    """An existing OPG must be this project's OPG contract: checked before anything is sent."""
    code = bytes(networks.provider.get_code(address) or b"")
    compiled = bytes.fromhex(project.OPG.contract_type.runtime_bytecode.bytecode.removeprefix("0x"))
    if not code:
        fail(f"opg {address} has no code on chain {chain.chain_id}")
    if not code.startswith(compiled):
        fail(f"opg {address} is not this project's OPG contract (its code differs from the compiled OPG)")
    return address


def refuse_live_deployment() -> None:
    path = deployment_path(chain.chain_id)
    if not path.exists():
        return
    try:
        previous = load_deployment(chain.chain_id, path)
    except ValueError:
        return
    if any(networks.provider.get_code(c.address) for c in previous.contracts.values()):
        fail(f"{path} records a deployment whose contracts are live on chain {chain.chain_id}; move it away first "
             "(or set OPG_DEPLOYMENTS_DIR) to deploy another")


def print_plan(config: DeployConfig, deployer) -> None:
    p = config.params
    provider = networks.provider
    balance = provider.get_balance(deployer.address)
    click.echo(f"Deployment plan for chain {chain.chain_id} ({provider.network.ecosystem.name}:{provider.network.name}"
               f" via {provider_uri(provider)}, {provider.network.required_confirmations} confirmation(s) per "
               "transaction)")
    click.echo(f"  deployer          {deployer.address}  balance {balance / 10**18:.6f} ETH, nonce "
               f"{provider.get_nonce(deployer.address)}, gas price {provider.gas_price / 10**9:.4f} gwei")
    click.echo(f"  owner             {config.owner}  (offered every contract; accepts with accept_ownership())")
    click.echo(f"  treasury          {config.treasury}")
    click.echo(f"  OPG               {'a new token, whole supply to the treasury' if config.opg == 'new' else config.opg}")
    click.echo(f"  facilitators      {', '.join(p.facilitators)}")
    for name, value in p.model_dump().items():
        if name not in ("facilitators", "governance_delay"):
            click.echo(f"  {name:<24} {value}")
    click.echo(f"  governance delay  {p.delay} s on every contract")
    if balance == 0:
        fail(f"the deployer {deployer.address} holds no ETH on chain {chain.chain_id}")


def deploy_devnet() -> None:
    """The devnet: anvil account 0 (or OPG_DEPLOYER / OPG_DEPLOYER_KEYSTORE), devnet parameters, no questions."""
    deployer = pick_deployer(True)
    treasury = os.environ.get("OPG_TREASURY") or deployer.address
    params = with_facilitators(load_params(True))
    check_params(params, True)
    unlock(deployer)
    click.echo(f"Deploying on chain {chain.chain_id} ({networks.provider.network.name}) from {deployer.address}")
    system = deploy_system(deployer, treasury=treasury, params=params, project=project)
    finish(system, treasury=treasury, owner=deployer.address, deployer=deployer.address, new_opg=True)


def deploy_production(config_path: Path | None, yes: bool, is_devnet: bool) -> None:
    """Anywhere (the only path off the devnet): explicit config, no development keys, a plan to confirm, handover
    to the owner, every fact read back before the deployment file is written."""
    deployer = pick_deployer(is_devnet)
    if config_path is None:
        fail(f"chain {chain.chain_id} is not the devnet: give --config FILE (owner, treasury, opg, params; README "
             "'Deploying to Base')")
    if not is_devnet:
        knobs = [k for k in DEVNET_KNOBS if os.environ.get(k)]
        if knobs:
            fail(f"{', '.join(knobs)} configure the devnet only; off chain {DEVNET_CHAIN_ID} everything comes from "
                 f"--config {config_path}")
    try:
        config = DeployConfig.load(config_path)
    except ValueError as exc:
        fail(str(exc))
    if not is_devnet:
        refuse_dev_accounts(config, deployer.address)
    check_params(config.params, is_devnet)
    opg = None if config.opg == "new" else existing_opg(config.opg)
    if not is_devnet:
        refuse_live_deployment()
    print_plan(config, deployer)
    if not yes and not click.confirm("Deploy?", default=False):
        fail("not confirmed: nothing was sent")
    unlock(deployer)
    system = deploy_system(deployer, treasury=config.treasury, params=config.params, project=project, opg=opg)
    offered = hand_over(system, config.owner, deployer)
    finish(system, treasury=config.treasury, owner=config.owner, deployer=deployer.address, new_opg=opg is None)
    if offered:
        click.echo(f"Ownership offered to {config.owner}: it must call accept_ownership() on {', '.join(offered)} "
                   "(until then the deployer stays owner and can still re-offer)")


def finish(system, treasury: str, owner: str, deployer: str, new_opg: bool) -> None:
    problems = verify_system(system, project, networks.provider.get_code, treasury=treasury, owner=owner,
                             deployer=deployer, new_opg=new_opg)
    if problems:
        fail(f"the deployed system does not check out, no deployment file written: {'; '.join(problems)}")
    path = save_deployment(system.deployment)
    for name, contract in system.deployment.contracts.items():
        click.echo(f"  {name:<18} {contract.address}  (block {contract.block})")
    click.echo(f"Checked on chain: code, wiring, parameters, ownership of all {len(system.deployment.contracts)} "
               "contracts")
    click.echo(f"Governance delay {system.deployment.params.delay} s on every contract (parameter changes go through "
               "queue_change)")
    click.echo(f"Wrote {path}")


@click.command(cls=ConnectedProviderCommand)
@network_option()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="the deployment's explicit choices (JSON: owner, treasury, opg, params); required off the devnet")
@click.option("--yes", is_flag=True, help="deploy without asking, once the plan is printed")
def cli(network, config_path, yes):
    """Deploy the OPG settlement contracts and write deployments/<chainId>.json."""
    provider = networks.provider
    if started_by_ape(provider):
        fail(f"refusing to deploy to a chain that stops when this command ends: {private_chain_reason(provider)};"
             f" start the chain first (`make demo` leaves anvil on 127.0.0.1:8545) and deploy with {DEPLOY_HINT}")
    is_devnet = chain.chain_id == DEVNET_CHAIN_ID
    if is_devnet and config_path is None:
        deploy_devnet()
    else:
        deploy_production(config_path, yes, is_devnet)
