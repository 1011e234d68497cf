"""Deploy and wire the four contracts with ape (used by ``scripts/deploy.py`` and the test fixtures), and the checks
that keep ``ape run deploy`` and ``ape console`` on the chain that actually runs.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


def deploy_system(deployer, treasury: str | None = None, params: Params | None = None, project=None) -> System:
    """Deploy OPG, RewardDistributor, NodeStaking and CreditEscrow from ``deployer`` and wire them together.

    The whole OPG supply goes to ``treasury`` (the deployer by default). Returns the instances and the
    deployment record (not yet written to disk).
    """
    if project is None:
        from ape import project
    from ape import chain

    params = params or Params()
    treasury = treasury or deployer.address
    opg = project.OPG.deploy(*constructor_args("OPG", params, treasury=treasury), sender=deployer)
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
