"""``deployments/<chainId>.json``: where every component finds the contracts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .types import Address

CONTRACT_NAMES = ("OPG", "CreditEscrow", "NodeStaking", "RewardDistributor", "Evidence")
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = PROJECT_ROOT / "deployments"


class DeployedContract(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: Address
    # The block it was deployed in; for an OPG token that already existed, the block of the deployment's first
    # transaction (where readers start scanning: nothing of this deployment happened before it).
    block: int = Field(ge=0)


class Params(BaseModel):
    """Protocol parameters set at deployment (owner-adjustable within the contracts' bounds)."""

    model_config = ConfigDict(extra="forbid")

    thaw_period: int = 86_400
    dispute_window: int = 3 * 86_400
    unbonding_period: int = 6 * 86_400
    min_inference_stake: int = 1_000 * 10**18
    min_verifier_stake: int = 1_000 * 10**18
    protocol_fee_bps: int = 500
    verifier_fee_bps: int = 500
    max_emission_per_fee_bps: int = 400  # <= C x protocol fee (C = 0.8): seasons + emissions never repay a self-dealer (docs/seasons.md)
    equivocation_slash_bps: int = 5_000
    fraud_slash_bps: int = 2_000
    challenger_reward_bps: int = 2_000
    fraud_multiplier: int = 10
    fraud_quorum_bps: int = 6_667
    warmup: int = 3 * 86_400
    epoch_length: int = 86_400
    emission_per_epoch: int = 100_000 * 10**18
    # Governance delay of every contract: at least the longest period a participant relies on (thaw, unbonding,
    # warm-up, epoch) plus one day; None derives exactly that.
    governance_delay: int | None = None
    # CreditEscrow facilitators: the relayer accounts that settle at once (everyone else proposes a batch and waits
    # the claim delay). At least one; production deployments name theirs (OPG_FACILITATORS or the params file).
    facilitators: list[Address] = Field(default_factory=list, max_length=8)

    @property
    def delay(self) -> int:
        floor = max(self.thaw_period, self.unbonding_period, self.warmup, self.epoch_length) + 86_400
        return self.governance_delay if self.governance_delay is not None else floor

    @classmethod
    def devnet(cls) -> Params:
        """Short periods for a local chain: everything happens within minutes."""
        return cls(
            thaw_period=60,
            dispute_window=300,
            unbonding_period=600,
            warmup=300,
            min_inference_stake=100 * 10**18,
            min_verifier_stake=100 * 10**18,
            epoch_length=120,
            emission_per_epoch=1_000 * 10**18,
            # anvil's public development accounts 1 (the docs' and tests' relayer) and 9 (the demo's relayer)
            facilitators=["0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"],
        )


class DeployConfig(BaseModel):
    """What a production deployment is told, all of it explicitly (``ape run deploy --config FILE``, a JSON file):
    who governs, where fees go, which OPG token, and every protocol parameter. Nothing here has a default."""

    model_config = ConfigDict(extra="forbid")

    # Governance: every ownable contract (CreditEscrow, NodeStaking, RewardDistributor) is handed to it with
    # ownable-2step's transfer_ownership, so it becomes owner when it calls accept_ownership() (a Safe, a timelock).
    owner: Address
    # RewardDistributor's protocol-fee treasury, and the holder of the whole supply of a new OPG.
    treasury: Address
    # "new" deploys a new OPG (the whole supply minted to the treasury); an address uses that OPG token, which must
    # be this project's OPG contract (its code is checked before anything is sent).
    opg: Address | Literal["new"]
    params: Params

    @classmethod
    def load(cls, path: str | Path) -> DeployConfig:
        """Read and check a config file; ValueError with one line naming every missing or invalid field."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot read deploy config {path}: {exc}") from None
        try:
            config = cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(file)'}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"deploy config {path}: {problems}") from None
        missing = [name for name in Params.model_fields if name not in config.params.model_fields_set]
        if missing:
            raise ValueError(f"deploy config {path}: give every parameter explicitly; missing params."
                             f"{', params.'.join(missing)} (governance_delay may be null: the least allowed)")
        return config


class Deployment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    chainId: int
    contracts: dict[str, DeployedContract]
    params: Params

    def address(self, name: str) -> str:
        try:
            return self.contracts[name].address
        except KeyError:
            raise KeyError(f"deployment for chain {self.chainId} has no contract {name!r}") from None

    @property
    def start_block(self) -> int:
        return min(c.block for c in self.contracts.values())


def deployment_path(chain_id: int, directory: Path | None = None) -> Path:
    directory = directory or Path(os.environ.get("OPG_DEPLOYMENTS_DIR", DEFAULT_DIR))
    return Path(directory) / f"{chain_id}.json"


def load_deployment(chain_id: int | None = None, path: str | Path | None = None) -> Deployment:
    """Load a deployment by chain id (from the deployments directory) or by explicit file path."""
    if path is None:
        if chain_id is None:
            raise ValueError("give a chain id or a deployment file path")
        path = deployment_path(chain_id)
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no deployment file at {path}: run `ape run deploy` first")
    deployment = Deployment.model_validate_json(path.read_text())
    missing = [n for n in CONTRACT_NAMES if n not in deployment.contracts]
    if missing:
        raise ValueError(f"deployment file {path} lacks {', '.join(missing)}")
    if chain_id is not None and deployment.chainId != chain_id:
        raise ValueError(f"deployment file {path} is for chain {deployment.chainId}, not {chain_id}")
    return deployment


def save_deployment(deployment: Deployment, directory: Path | None = None) -> Path:
    path = deployment_path(deployment.chainId, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(deployment.model_dump(), indent=2) + "\n")
    tmp.replace(path)
    return path


def constructor_args(name: str, params: Params, **addresses: str) -> tuple:
    """Constructor arguments of each contract, in one place for the ape and the web3 deployers.

    ``addresses`` names the contracts and accounts a constructor needs: ``treasury`` (OPG, RewardDistributor),
    ``opg``, ``distributor``, ``staking``, ``evidence`` (the stateless Evidence contract NodeStaking calls to hash
    receipts, verdicts and registrations and recover their signers; it takes no constructor arguments).
    """
    p = params
    if name == "OPG":
        return (addresses["treasury"],)
    if name == "RewardDistributor":
        return (
            addresses["opg"],
            addresses["treasury"],
            p.protocol_fee_bps,
            p.verifier_fee_bps,
            p.max_emission_per_fee_bps,
            p.epoch_length,
            p.emission_per_epoch,
            p.delay,
        )
    if name == "Evidence":
        return ()
    if name == "NodeStaking":
        return (
            addresses["opg"],
            addresses["distributor"],
            addresses["evidence"],
            p.min_inference_stake,
            p.min_verifier_stake,
            p.dispute_window,
            p.unbonding_period,
            p.warmup,
            p.equivocation_slash_bps,
            p.fraud_slash_bps,
            p.challenger_reward_bps,
            p.fraud_multiplier,
            p.fraud_quorum_bps,
            p.delay,
        )
    if name == "CreditEscrow":
        facilitators = list(addresses.get("facilitators") or p.facilitators)
        if not facilitators:
            raise ValueError("CreditEscrow needs at least one facilitator (the relayer account): set "
                             "Params.facilitators")
        return (addresses["opg"], addresses["staking"], addresses["distributor"], p.thaw_period, p.delay,
                facilitators)
    raise KeyError(f"unknown contract {name!r}")
