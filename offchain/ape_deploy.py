"""Deploy and wire the four contracts with ape (used by ``scripts/deploy.py`` and the test fixtures)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .deployments import DeployedContract, Deployment, Params, constructor_args


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
    staking = project.NodeStaking.deploy(
        *constructor_args("NodeStaking", params, opg=opg.address, distributor=distributor.address), sender=deployer
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
        },
        params=params,
    )
    return System(opg=opg, escrow=escrow, staking=staking, distributor=distributor, deployment=deployment)
