"""Deploy and wire the four contracts with ape (used by ``scripts/deploy.py`` and the test fixtures), hand them to
their governance and check the result against the chain; and the checks that keep ``ape run deploy`` and
``ape console`` on the chain that actually runs.

Off the devnet the deployer, the owner, the treasury and the facilitators must not be one of anvil's public
development accounts (``dev_accounts_among``: the first 100 accounts of its mnemonic, whose keys everyone has).

ape-config's ``foundry: host: auto`` makes ape start a private anvil of its own for every command (what ``ape test``
needs); only ``APE_FOUNDRY_HOST`` points ape at a running one, and if nothing runs at that local URL ape-foundry
starts a private anvil there instead. So: ``make deploy`` / ``make console`` first check that a chain answers at
``OPG_RPC_URL`` (``python -m offchain.ape_deploy require-chain URL``), the deploy script refuses a chain ape
started itself, and the console extras refuse a deployment whose addresses hold no code on the connected chain.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_account import Account
from eth_account.hdaccount import key_from_seed, seed_from_mnemonic
from eth_utils import to_checksum_address

from .daemon.keys import ANVIL_MNEMONIC
from .deployments import DeployedContract, Deployment, Params, constructor_args

DEVNET_URL = "http://127.0.0.1:8545"
CONSOLE_HINT = f"make console (= APE_FOUNDRY_HOST={DEVNET_URL} ape console --network ethereum:local:foundry)"
DEPLOY_HINT = f"make deploy (= APE_FOUNDRY_HOST={DEVNET_URL} ape run deploy --network ethereum:local:foundry)"


@dataclass
class System:
    """The deployed contracts as ape ``ContractInstance`` objects."""

    opg: Any
    escrow: Any
    staking: Any
    distributor: Any
    deployment: Deployment


def deploy_system(deployer, treasury: str | None = None, params: Params | None = None, project=None,
                  opg: str | None = None) -> System:
    """Deploy OPG, RewardDistributor, NodeStaking and CreditEscrow from ``deployer`` and wire them together.

    The whole OPG supply goes to ``treasury`` (the deployer by default); with ``opg`` (an address) that existing
    token is used instead of a new one. Returns the instances and the deployment record (not yet written to disk).
    """
    if project is None:
        from ape import project
    from ape import chain

    params = params or Params()
    treasury = treasury or deployer.address
    first_block = chain.blocks.height + 1
    if opg is None:
        opg = project.OPG.deploy(*constructor_args("OPG", params, treasury=treasury), sender=deployer)
    else:
        opg = project.OPG.at(opg)
    distributor = project.RewardDistributor.deploy(
        *constructor_args("RewardDistributor", params, opg=opg.address, treasury=treasury), sender=deployer
    )
    evidence = project.Evidence.deploy(*constructor_args("Evidence", params), sender=deployer)
    staking = project.NodeStaking.deploy(
        *constructor_args(
            "NodeStaking", params, opg=opg.address, distributor=distributor.address, evidence=evidence.address
        ),
        sender=deployer,
    )
    escrow = project.CreditEscrow.deploy(
        *constructor_args(
            "CreditEscrow", params, opg=opg.address, staking=staking.address, distributor=distributor.address
        ),
        sender=deployer,
    )
    distributor.connect(escrow, staking, sender=deployer)
    staking.connect(escrow, sender=deployer)

    def record(instance) -> DeployedContract:
        if instance.txn_hash is None:  # the existing OPG: readers start at this deployment's first block
            return DeployedContract(address=instance.address, block=first_block)
        receipt = chain.provider.get_receipt(instance.txn_hash)
        return DeployedContract(address=instance.address, block=receipt.block_number)

    deployment = Deployment(
        chainId=chain.chain_id,
        contracts={
            "OPG": record(opg),
            "CreditEscrow": record(escrow),
            "NodeStaking": record(staking),
            "RewardDistributor": record(distributor),
            "Evidence": record(evidence),
        },
        params=params,
    )
    return System(opg=opg, escrow=escrow, staking=staking, distributor=distributor, deployment=deployment)


def hand_over(system: System, owner: str, deployer) -> list[str]:
    """Offer every ownable contract to ``owner`` (ownable-2step ``transfer_ownership``: ``owner`` must call
    ``accept_ownership()`` on each before it governs them). Nothing to do when the deployer is the owner. Returns the
    names of the contracts offered."""
    if to_checksum_address(owner) == to_checksum_address(deployer.address):
        return []
    offered = []
    for name, contract in (("CreditEscrow", system.escrow), ("NodeStaking", system.staking),
                           ("RewardDistributor", system.distributor)):
        contract.transfer_ownership(owner, sender=deployer)
        offered.append(name)
    return offered


def verify_system(system: System, project, get_code: Callable[[str], Any], treasury: str, owner: str,
                  deployer: str, new_opg: bool = True) -> list[str]:
    """Everything wrong with a deployed system, read back from the chain: each contract's code is the compiled
    runtime code (plus its immutables), every contract points at the others, every parameter is the one asked for,
    and ownership is with the deployer and offered to ``owner`` (or with ``owner`` when it deployed)."""
    problems = []
    deployment = system.deployment
    for name, record in deployment.contracts.items():
        code = bytes(get_code(record.address) or b"")
        runtime = getattr(project, name).contract_type.runtime_bytecode.bytecode
        compiled = bytes.fromhex(runtime.removeprefix("0x"))
        if not code:
            problems.append(f"{name} has no code at {record.address}")
        elif not code.startswith(compiled):
            problems.append(f"{name} at {record.address} is not this project's compiled {name}")
    if problems:
        return problems
    p = deployment.params
    opg, escrow, staking, distributor = system.opg, system.escrow, system.staking, system.distributor
    evidence = deployment.address("Evidence")
    expected: list[tuple[str, Any, Any]] = [
        ("CreditEscrow.token", escrow.token(), opg.address),
        ("CreditEscrow.staking", escrow.staking(), staking.address),
        ("CreditEscrow.distributor", escrow.distributor(), distributor.address),
        ("NodeStaking.token", staking.token(), opg.address),
        ("NodeStaking.distributor", staking.distributor(), distributor.address),
        ("NodeStaking.evidence", staking.evidence(), evidence),
        ("NodeStaking.escrow", staking.escrow(), escrow.address),
        ("RewardDistributor.token", distributor.token(), opg.address),
        ("RewardDistributor.escrow", distributor.escrow(), escrow.address),
        ("RewardDistributor.staking", distributor.staking(), staking.address),
        ("RewardDistributor.treasury", distributor.treasury(), treasury),
        ("CreditEscrow.thaw_period", escrow.thaw_period(), p.thaw_period),
        ("NodeStaking.dispute_window", staking.dispute_window(), p.dispute_window),
        ("NodeStaking.unbonding_period", staking.unbonding_period(), p.unbonding_period),
        ("NodeStaking.warmup", staking.warmup(), p.warmup),
        ("NodeStaking.min_stake(inference)", staking.min_stake(1), p.min_inference_stake),
        ("NodeStaking.min_stake(verifier)", staking.min_stake(2), p.min_verifier_stake),
        ("NodeStaking.equivocation_slash_bps", staking.equivocation_slash_bps(), p.equivocation_slash_bps),
        ("NodeStaking.fraud_slash_bps", staking.fraud_slash_bps(), p.fraud_slash_bps),
        ("NodeStaking.challenger_reward_bps", staking.challenger_reward_bps(), p.challenger_reward_bps),
        ("NodeStaking.fraud_multiplier", staking.fraud_multiplier(), p.fraud_multiplier),
        ("NodeStaking.fraud_quorum_bps", staking.fraud_quorum_bps(), p.fraud_quorum_bps),
        ("RewardDistributor.protocol_fee_bps", distributor.protocol_fee_bps(), p.protocol_fee_bps),
        ("RewardDistributor.verifier_fee_bps", distributor.verifier_fee_bps(), p.verifier_fee_bps),
        ("RewardDistributor.max_emission_per_fee_bps", distributor.max_emission_per_fee_bps(),
         p.max_emission_per_fee_bps),
        ("RewardDistributor.epoch_length", distributor.epoch_length(), p.epoch_length),
        ("RewardDistributor.emission_per_epoch", distributor.emission_per_epoch(), p.emission_per_epoch),
        *((f"CreditEscrow.is_facilitator({f})", escrow.is_facilitator(f), True) for f in p.facilitators),
    ]
    handed = to_checksum_address(owner) != to_checksum_address(deployer)
    for name, contract in (("CreditEscrow", escrow), ("NodeStaking", staking), ("RewardDistributor", distributor)):
        expected.append((f"{name}.delay", contract.delay(), p.delay))
        expected.append((f"{name}.owner", contract.owner(), deployer if handed else owner))
        if handed:
            expected.append((f"{name}.pending_owner", contract.pending_owner(), owner))
    if new_opg:
        expected.append(("OPG.balanceOf(treasury)", opg.balanceOf(treasury), opg.totalSupply()))
    for what, actual, wanted in expected:
        if isinstance(wanted, str):
            actual, wanted = to_checksum_address(str(actual)), to_checksum_address(wanted)
        if actual != wanted:
            problems.append(f"{what} is {actual}, not {wanted}")
    return problems


@cache
def _anvil_dev_addresses(count: int = 100) -> frozenset[str]:
    seed = seed_from_mnemonic(ANVIL_MNEMONIC, "")
    return frozenset(Account.from_key(key_from_seed(seed, f"m/44'/60'/0'/0/{i}")).address for i in range(count))


def dev_accounts_among(addresses: Iterable[str]) -> list[str]:
    """The addresses that are one of anvil's public development accounts (the first 100 of its mnemonic, which
    ape's test accounts share) or the zero address: never a deployer, owner, treasury or facilitator off the
    devnet."""
    found = []
    for address in addresses:
        checksummed = to_checksum_address(address)
        if checksummed in _anvil_dev_addresses() or int(checksummed, 16) == 0:
            found.append(checksummed)
    return found


# Which chain ape is on ---------------------------------------------------------------------------------------------
def rpc_chain_id(url: str, timeout: float = 3.0) -> int | None:
    """The chain id a JSON-RPC node at ``url`` answers (``eth_chainId``), or None if nothing answers."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as res:
            return int(json.loads(res.read())["result"], 16)
    except (urllib.error.URLError, OSError, ValueError, KeyError, TypeError):
        return None


def started_by_ape(provider: Any) -> bool:
    """Whether ape launched this chain itself (a private anvil or geth that dies with the command), rather than
    connecting to one that was already running."""
    return getattr(provider, "process", None) is not None


def provider_uri(provider: Any) -> str:
    for attr in ("uri", "http_uri"):
        try:
            value = getattr(provider, attr)
        except Exception:  # noqa: BLE001 - a provider without the attribute, or not connected
            continue
        if value:
            return str(value)
    return "?"


def private_chain_reason(provider: Any) -> str:
    """Why ape is on a private chain it started (for a chain ``started_by_ape``)."""
    host = os.environ.get("APE_FOUNDRY_HOST")
    if host:
        return f"nothing runs at APE_FOUNDRY_HOST={host}, so ape started a private anvil there"
    return (f"APE_FOUNDRY_HOST is not set, so ape started a private anvil at {provider_uri(provider)} (ape-config's "
            "`host: auto`)")


def missing_code(deployment: Deployment, get_code: Callable[[str], Any]) -> list[str]:
    """The deployment's contracts with no code at their address on the chain ``get_code`` reads."""
    return [name for name, c in deployment.contracts.items() if not get_code(c.address)]


def require_chain(url: str, what: str = "opg") -> int:
    """Exit status 0 if a chain answers at ``url``; else one line saying how to start one."""
    chain_id = rpc_chain_id(url)
    if chain_id is None:
        print(f"{what}: no chain answers at {url}: start one first with `make devnet` in another shell (it keeps "
              f"the system up on {DEVNET_URL} until Ctrl-C), or point OPG_RPC_URL at a running chain", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) in (2, 3) and args[0] == "require-chain":
        return require_chain(args[1], *args[2:])
    print("usage: python -m offchain.ape_deploy require-chain URL [NAME]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
