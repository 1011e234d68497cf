"""Deploy and wire the four contracts with ape (used by ``scripts/deploy.py`` and the test fixtures)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .deployments import DeployedContract, Deployment, Params


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
    opg = project.OPG.deploy(treasury, sender=deployer)
    distributor = project.RewardDistributor.deploy(
        opg,
        treasury,
        params.protocol_fee_bps,
        params.verifier_fee_bps,
        params.max_emission_per_fee_bps,
        params.epoch_length,
        params.emission_per_epoch,
        sender=deployer,
    )
    staking = project.NodeStaking.deploy(
        opg,
        distributor,
        params.min_inference_stake,
        params.min_verifier_stake,
        params.dispute_window,
        params.unbonding_period,
        params.equivocation_slash_bps,
        params.fraud_slash_bps,
        params.challenger_reward_bps,
        params.fraud_quorum,
        sender=deployer,
    )
    escrow = project.CreditEscrow.deploy(opg, staking, distributor, params.thaw_period, sender=deployer)
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
