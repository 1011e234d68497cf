"""Season operations on a deployed system: deploy the distributor, build and propose a season's root, accept it,
claim, read the status, and a payer's standing (what ``opg balance`` and the credit row show).

Files, next to ``deployments/<chainId>.json`` (``OPG_DEPLOYMENTS_DIR``):
- ``<chainId>.seasons.json``: the season parameters (``SeasonsConfig``), one entry per closed season;
- ``<chainId>.season-<N>.json``: season N's table in its canonical encoding (its keccak256 is the hash proposed
  on chain with the root); payers claim with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from ..abi import abi
from ..daemon.keys import DEVNET_CHAIN_ID
from ..daemon.settings import ConfigError
from ..deployments import DeployedContract, Deployment, deployment_path, save_deployment
from ..devkit.devchain import deploy_contract
from ..sdk.connect import chain_id_of, open_deployment, web3_of
from ..sdk.constants import MIN_GOVERNANCE_DELAY
from ..sdk.tx import TxManager
from .usage import (
    BPS,
    IGNORED,
    Season,
    SeasonsConfig,
    fetch_logs,
    proof_of,
    season_rows,
    season_table,
    table_bytes,
)

NAME = "SeasonDistributor"
DEFAULT_ROOT_DELAY = 86_400
DEFAULT_EXPIRY_SEASONS = 4
DEFAULT_SEASON_LENGTH = 30 * 86_400  # off the devnet; on it (chain 31337) the default is the root delay
DEFAULT_GOVERNANCE_DELAY = MIN_GOVERNANCE_DELAY  # the treasury change's timelock (the floor off the devnet)


class SeasonError(Exception):
    """A refused season operation (one line for the CLI)."""


def config_path(chain_id: int, directory: Path | None = None) -> Path:
    return deployment_path(chain_id, directory).with_name(f"{chain_id}.seasons.json")


def table_path(chain_id: int, season: int, directory: Path | None = None) -> Path:
    return deployment_path(chain_id, directory).with_name(f"{chain_id}.season-{season}.json")


def load_config(path: Path) -> SeasonsConfig | None:
    return SeasonsConfig.model_validate_json(path.read_text()) if path.exists() else None


def load_table(path: Path) -> dict:
    raw = path.read_bytes()
    table = json.loads(raw)
    if table_bytes(table) != raw:
        raise SeasonError(f"{path} is not a canonical season table")
    return table


@dataclass
class Seasons:
    """A web3 view of one deployment's season distributor."""

    w3: Web3
    deployment: Deployment
    deployment_file: Path | None = None
    warning: str | None = None

    @property
    def directory(self) -> Path | None:
        return self.deployment_file.parent if self.deployment_file else None

    @property
    def deployed(self) -> bool:
        return NAME in self.deployment.contracts

    @property
    def contract(self):
        if not self.deployed:
            raise SeasonError(f"no {NAME} in the deployment: run `opg season deploy` first")
        return self.w3.eth.contract(address=self.deployment.address(NAME), abi=abi(NAME))

    @property
    def opg(self):
        return self.w3.eth.contract(address=self.deployment.address("OPG"), abi=abi("OPG"))

    def config(self) -> SeasonsConfig | None:
        return load_config(config_path(self.deployment.chainId, self.directory))

    # ---------------------------------------------------------------------------------------------- deploy
    def deploy(self, key: str, root_delay: int = DEFAULT_ROOT_DELAY, expiry_seasons: int = DEFAULT_EXPIRY_SEASONS,
               treasury: str | None = None, min_season_length: int | None = None,
               governance_delay: int = DEFAULT_GOVERNANCE_DELAY) -> str:
        """Deploy the distributor (owner: ``key``) and record it in the deployment file.

        ``min_season_length`` (the least time between accepted roots; expiry takes ``expiry_seasons`` times it)
        defaults to 30 days, or to the root delay on the devnet (chain 31337), where seasons close on demand.
        """
        if self.deployed:
            raise SeasonError(f"{NAME} already deployed at {self.deployment.address(NAME)}")
        treasury = to_checksum_address(treasury or Account.from_key(key).address)
        if min_season_length is None:
            min_season_length = root_delay if self.w3.eth.chain_id == DEVNET_CHAIN_ID else DEFAULT_SEASON_LENGTH
        try:
            contract, block = deploy_contract(self.w3, key, NAME, self.deployment.address("OPG"), treasury, root_delay,
                                              expiry_seasons, min_season_length, governance_delay)
        except Exception as exc:  # a bound the constructor refused, in one line
            raise SeasonError(str(exc).splitlines()[0]) from None
        self.deployment.contracts[NAME] = DeployedContract(address=contract.address, block=block)
        if self.deployment_file is not None:
            save_deployment(self.deployment, self.deployment_file.parent)
        return contract.address

    # ---------------------------------------------------------------------------------------------- usage
    def provisional_config(self, budget: int = 0, to_block: int | None = None, **rules: int) -> SeasonsConfig:
        """The closed seasons plus the open one: from after the last closed season to ``to_block`` (latest)."""
        closed = self.config()
        latest = self.w3.eth.block_number if to_block is None else to_block
        seasons = list(closed.seasons) if closed else []
        start = seasons[-1].to_block + 1 if seasons else self.deployment.start_block
        end = max(start, latest)  # a season closed at the latest block: the open one is still empty
        seasons.append(Season(season=len(seasons) + 1, from_block=start, to_block=end, evidence_block=end,
                              budget=budget, **rules))
        return self._config(seasons)

    def _config(self, seasons: list[Season]) -> SeasonsConfig:
        d = self.deployment
        contracts = {name: c.address for name, c in d.contracts.items() if name not in IGNORED}
        return SeasonsConfig(chain_id=d.chainId, contracts=contracts, seasons=seasons)

    def table(self, config: SeasonsConfig) -> dict:
        if config.chain_id != self.deployment.chainId:
            raise SeasonError(f"season parameters are for chain {config.chain_id}, not {self.deployment.chainId}")
        return season_table(fetch_logs(self.w3, config), config)

    def close_season(self, budget: int, to_block: int | None = None, evidence_block: int | None = None,
                     **rules: int) -> tuple[SeasonsConfig, Path]:
        """Append the next season to ``<chainId>.seasons.json`` (blocks after the last season up to ``to_block``)."""
        latest = self.w3.eth.block_number
        to_block = latest if to_block is None else to_block
        evidence_block = latest if evidence_block is None else evidence_block
        if evidence_block > latest:
            raise SeasonError(f"evidence block {evidence_block} is not mined yet (latest {latest})")
        closed = self.config()
        seasons = list(closed.seasons) if closed else []
        start = seasons[-1].to_block + 1 if seasons else self.deployment.start_block
        if to_block < start:
            raise SeasonError(f"season would end at block {to_block}, before it starts ({start})")
        seasons.append(Season(season=len(seasons) + 1, from_block=start, to_block=to_block,
                              evidence_block=evidence_block, budget=budget, **rules))
        config = self._config(seasons)
        self.warning = self.emission_warning(seasons[-1].reward_bps)
        path = config_path(self.deployment.chainId, self.directory)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(config.model_dump_json(indent=2) + "\n")
        return config, path

    def emission_warning(self, reward_bps: int) -> str | None:
        """Self-dealing loses (1 - C) x fees only if emissions pay at most C x the protocol fee (docs/seasons.md)."""
        d = self.w3.eth.contract(address=self.deployment.address("RewardDistributor"), abi=abi("RewardDistributor"))
        cap, fee = d.functions.max_emission_per_fee_bps().call(), d.functions.protocol_fee_bps().call()
        if cap * BPS > reward_bps * fee:
            return (f"the emission cap ({cap} bps) exceeds C x the protocol fee ({reward_bps * fee // BPS} bps): "
                    f"self-dealing breaks even on emissions alone; lower max_emission_per_fee_bps")
        return None

    def build(self, config: SeasonsConfig | None = None) -> tuple[dict, Path]:
        """Compute the last season's table from the chain's logs and write it (canonical bytes)."""
        config = config or self.config()
        if config is None:
            raise SeasonError("no closed season: `opg season close --budget OPG` first")
        table = self.table(config)
        previous = table_path(self.deployment.chainId, table["season"] - 1, self.directory)
        if previous.exists():  # cumulative amounts never decrease (the contract's accounting relies on it)
            before = {a["account"]: int(a["cumulative"]) for a in load_table(previous)["accounts"]}
            now = {a["account"]: int(a["cumulative"]) for a in table["accounts"]}
            for account, amount in before.items():
                if now.get(account, 0) < amount:
                    raise SeasonError(f"{account}'s cumulative amount would fall from {amount} to {now.get(account, 0)}")
        path = table_path(self.deployment.chainId, table["season"], self.directory)
        path.write_bytes(table_bytes(table))
        return table, path

    # ---------------------------------------------------------------------------------------------- roots
    def shortfall(self, total: int) -> int:
        c = self.contract
        held = self.opg.functions.balanceOf(c.address).call()
        return max(0, total - c.functions.total_consumed().call() - held)

    def propose(self, key: str, table: dict, fund: bool = False) -> dict:
        c = self.contract
        total = int(table["total_cumulative"])
        missing = self.shortfall(total)
        if missing and fund:
            self._send(key, self.opg.functions.transfer(c.address, missing))
        elif missing:
            raise SeasonError(f"the distributor lacks {missing} wei of OPG for this root (fund it, or --fund)")
        root = bytes.fromhex(table["root"][2:])
        receipt = self._send(key, c.functions.propose_root(root, total, table["season"], keccak(table_bytes(table))))
        # acceptable once its delay is over and the previous season has lasted its minimum length
        eta = max(c.functions.pending_eta().call(), c.functions.next_season_at().call())
        return {"transaction": receipt["transactionHash"].hex(), "eta": eta, "funded": missing if fund else 0}

    def accept(self, key: str) -> str:
        return self._send(key, self.contract.functions.accept_root())["transactionHash"].hex()

    def claim(self, key: str, table: dict, account: str) -> dict:
        c = self.contract
        cumulative, proof = proof_of(table, account)
        if not cumulative:
            raise SeasonError(f"{account} has no reward in season {table['season']}'s table")
        if c.functions.root().call() != bytes.fromhex(table["root"][2:]):
            raise SeasonError(f"season {table['season']}'s root is not the claimable root (accepted yet?)")
        proof_bytes = [bytes.fromhex(p[2:]) for p in proof]
        amount = c.functions.claimable(account, cumulative, proof_bytes).call()
        receipt = self._send(key, c.functions.claim(account, cumulative, proof_bytes))
        return {"account": to_checksum_address(account), "paid": amount, "cumulative": cumulative,
                "transaction": receipt["transactionHash"].hex(), "gas": receipt["gasUsed"]}

    def _send(self, key: str, fn) -> dict:
        try:
            fn.call({"from": Account.from_key(key).address})
        except Exception as exc:  # the revert reason, in one line
            raise SeasonError(str(exc).splitlines()[0]) from None
        return TxManager(self.w3, Account.from_key(key), self.w3.eth.chain_id).transact(fn, "season")

    # ---------------------------------------------------------------------------------------------- reads
    def status(self) -> dict[str, Any]:
        c = self.contract
        f = c.functions
        pending = f.pending_root().call()
        return {
            "distributor": c.address,
            "season": f.season().call(),
            "root": "0x" + f.root().call().hex(),
            "root_total": f.root_total().call(),
            "outstanding": f.outstanding().call(),
            "held": self.opg.functions.balanceOf(c.address).call(),
            "surplus": f.surplus().call(),
            "total_expired": f.total_expired().call(),
            "root_delay": f.root_delay().call(),
            "expiry_seasons": f.expiry_seasons().call(),
            "min_season_length": f.min_season_length().call(),
            "expiry_period": f.expiry_period().call(),
            "next_season_at": f.next_season_at().call(),
            "treasury": f.treasury().call(),
            "governance_delay": f.delay().call(),
            "pending": None if pending == b"\x00" * 32 else {
                "root": "0x" + pending.hex(), "season": f.pending_season().call(), "total": f.pending_total().call(),
                "eta": max(f.pending_eta().call(), f.next_season_at().call())},
        }

    def standing(self, account: str, with_open_season: bool = True) -> dict[str, Any]:
        """A payer's season standing: the open season's eligible fees so far, and what it can claim now."""
        account = to_checksum_address(account)
        out: dict[str, Any] = {"account": account}
        if with_open_season:
            config = self.provisional_config()
            season = config.seasons[-1]
            rows = season_rows(fetch_logs(self.w3, config, from_block=season.from_block), config, season)
            row = rows.get(account, {})
            out["open_season"] = {"season": season.season, "usage": row.get("usage", 0), "fees": row.get("fees", 0)}
        if self.deployed:
            c = self.contract
            season = c.functions.season().call()
            out["claimed"] = c.functions.claimed(account).call()
            out["claimable"] = 0
            out["season"] = season
            path = table_path(self.deployment.chainId, season, self.directory)
            if season and path.exists():
                table = load_table(path)
                cumulative, proof = proof_of(table, account)
                if cumulative and c.functions.root().call() == bytes.fromhex(table["root"][2:]):
                    out["claimable"] = c.functions.claimable(
                        account, cumulative, [bytes.fromhex(p[2:]) for p in proof]).call()
                out["cumulative"] = cumulative
        return out


def open_seasons(rpc_url: str, deployment_file: str | Path | None = None) -> Seasons:
    """Connect to a deployment (the file, or ``deployments/<chainId>.json``); SeasonError in one line if not."""
    try:
        w3 = web3_of(rpc_url, timeout=30)
        chain_id = chain_id_of(w3, rpc_url)
        path = Path(deployment_file) if deployment_file else deployment_path(chain_id)
        conn = open_deployment(rpc_url, path, w3=w3, chain_id=chain_id)
    except ConfigError as exc:
        raise SeasonError(str(exc)) from None
    return Seasons(w3=conn.w3, deployment=conn.deployment, deployment_file=path)
