"""The production path of ``ape run deploy`` rehearsed on local anvils that carry Base's chain ids, 8453 (mainnet)
and 84532 (Sepolia), through ape's own ``base`` networks (``--network base:mainnet:<anvil URL>``, so ape-config's Base
settings apply: 2 confirmations per transaction on mainnet, 1 on Sepolia, type-2 transactions; anvil mines a block
every quarter second, so that the confirmations come without a wait of Base's 2 seconds a block).

The deployer is a key made at run time, kept in a keystore file in a temporary directory (never committed) and
funded with ``anvil_setBalance``; owner, treasury and facilitator are fresh keys too. Mainnet gets a new OPG, Sepolia
an OPG that already exists there. The deploys run side by side with two refusals: anvil's development key 0 as
deployer (refused before anything is sent) and a plan answered "n" (nothing sent). Then the deployment files are
read back with web3, independently of ape: every address wired, every parameter, ownership offered to the owner,
who accepts it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_abi import encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from offchain.ape_deploy import dev_accounts_among
from offchain.chain import Chain
from offchain.daemon.keys import anvil_key
from offchain.deployments import CONTRACT_NAMES, DeployConfig, Params, load_deployment
from offchain.devkit.devchain import Anvil, send, transact

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "rehearsal only"
OWNABLE = ("CreditEscrow", "NodeStaking", "RewardDistributor")


@dataclass
class Rehearsal:
    """One Base chain id on a local anvil, the accounts of its deployment and what ``ape run deploy`` answered."""

    anvil: Anvil
    network: str
    directory: Path
    owner: LocalAccount
    treasury: str
    facilitator: str
    existing_opg: str | None = None
    deployed: subprocess.CompletedProcess | None = None
    refused: subprocess.CompletedProcess | None = None
    declined: subprocess.CompletedProcess | None = None
    declined_deployer: str = ""

    @property
    def w3(self) -> Web3:
        return Web3(Web3.HTTPProvider(self.anvil.url, request_kwargs={"timeout": 30}))


def funded_account(w3: Web3) -> LocalAccount:
    account = Account.create()
    w3.provider.make_request("anvil_setBalance", [account.address, hex(10**20)])
    return account


def keystore(directory: Path, key: bytes | str, name: str) -> Path:
    # A light scrypt: the keystore lives for one test run.
    path = directory / f"{name}.json"
    path.write_text(json.dumps(Account.encrypt(key, PASSWORD, kdf="scrypt", iterations=2**10)))
    return path


def config_file(directory: Path, r: Rehearsal, opg: str) -> Path:
    params = Params().model_copy(update={"facilitators": [r.facilitator]})  # production periods, 7-day delay
    path = directory / "deploy.json"
    path.write_text(json.dumps({"owner": r.owner.address, "treasury": r.treasury, "opg": opg,
                                "params": params.model_dump()}))
    return path


def deploy(r: Rehearsal, key_file: Path, config: Path, directory: Path, *flags: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPG_DEPLOYER", "OPG_PARAMS", "OPG_TREASURY", "OPG_FACILITATORS", "APE_FOUNDRY_HOST")}
    env.update(OPG_DEPLOYER_KEYSTORE=str(key_file), OPG_DEPLOYER_PASSWORD=PASSWORD,
               OPG_DEPLOYMENTS_DIR=str(directory), PATH=f"{Path(sys.executable).parent}:{env['PATH']}")
    return subprocess.Popen(
        ["ape", "run", "deploy", "--network", f"{r.network}:{r.anvil.url}", "--config", str(config), *flags],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def existing_opg(w3: Web3, treasury: str, project) -> str:
    """An OPG deployed beforehand (from the compiled ape artifact), for the deployment to adopt."""
    creator = funded_account(w3)
    bytecode = bytes.fromhex(project.OPG.contract_type.deployment_bytecode.bytecode.removeprefix("0x"))
    receipt = send(w3, creator.key.hex(), {"data": "0x" + (bytecode + encode(["address"], [treasury])).hex()})
    return receipt["contractAddress"]


@pytest.fixture(scope="module")
def rehearsals(tmp_path_factory, project):
    """Both chains, and the four ``ape run deploy`` runs on them at once."""
    chains = {"base:mainnet": 8453, "base:sepolia": 84532}
    anvils = [Anvil(block_time=0.25, extra=["--chain-id", str(chain_id)]) for chain_id in chains.values()]
    try:
        runs: list[tuple[Rehearsal, str, subprocess.Popen, str]] = []
        out: list[Rehearsal] = []
        for (network, _), anvil in zip(chains.items(), anvils, strict=True):
            anvil.start()
            directory = tmp_path_factory.mktemp(network.replace(":", "-"))
            w3 = Web3(Web3.HTTPProvider(anvil.url))
            r = Rehearsal(anvil=anvil, network=network, directory=directory, owner=funded_account(w3),
                          treasury=Account.create().address, facilitator=Account.create().address)
            if network == "base:sepolia":
                r.existing_opg = existing_opg(w3, r.treasury, project)
            config = config_file(directory, r, r.existing_opg or "new")
            deployer = keystore(directory, funded_account(w3).key, "deployer")
            runs.append((r, "deployed", deploy(r, deployer, config, directory / "deployments", "--yes"), ""))
            if network == "base:mainnet":
                dev_key = keystore(directory, anvil_key(0), "anvil0")
                runs.append((r, "refused", deploy(r, dev_key, config, directory / "refused", "--yes"), ""))
            else:
                declining = funded_account(w3)
                r.declined_deployer = declining.address
                runs.append((r, "declined", deploy(r, keystore(directory, declining.key, "declining"), config,
                                                   directory / "declined"), "n\n"))
            out.append(r)
        for r, outcome, proc, answer in runs:
            stdout, stderr = proc.communicate(answer, timeout=180)
            setattr(r, outcome, subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
        yield {r.network: r for r in out}
    finally:
        for anvil in anvils:
            anvil.stop()


@pytest.mark.parametrize("network", ["base:mainnet", "base:sepolia"])
def test_production_deploy_on_a_base_chain_id_is_wired_checked_and_handed_to_the_owner(rehearsals, network):
    r = rehearsals[network]
    chain_id = {"base:mainnet": 8453, "base:sepolia": 84532}[network]
    out = r.deployed
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"Deployment plan for chain {chain_id} ({network} via {r.anvil.url}" in out.stdout
    assert "Checked on chain: code, wiring, parameters, ownership" in out.stdout
    path = r.directory / "deployments" / f"{chain_id}.json"
    deployment = load_deployment(chain_id, path)
    assert set(deployment.contracts) == set(CONTRACT_NAMES)
    params = deployment.params
    assert params == Params().model_copy(update={"facilitators": [r.facilitator]})
    chain = Chain.connect(r.anvil.url, path)
    c = {name: chain.contract(name) for name in CONTRACT_NAMES}
    escrow, staking, distributor, opg = (c["CreditEscrow"].functions, c["NodeStaking"].functions,
                                         c["RewardDistributor"].functions, c["OPG"].functions)
    # Wiring, read with web3 (not through ape).
    assert escrow.token().call() == staking.token().call() == distributor.token().call() == deployment.address("OPG")
    assert escrow.staking().call() == distributor.staking().call() == deployment.address("NodeStaking")
    assert escrow.distributor().call() == staking.distributor().call() == deployment.address("RewardDistributor")
    assert staking.escrow().call() == distributor.escrow().call() == deployment.address("CreditEscrow")
    assert staking.evidence().call() == deployment.address("Evidence")
    assert distributor.treasury().call() == r.treasury
    assert escrow.is_facilitator(r.facilitator).call()
    assert (escrow.thaw_period().call(), staking.dispute_window().call(), staking.unbonding_period().call()) == (
        params.thaw_period, params.dispute_window, params.unbonding_period)
    if r.existing_opg:
        assert deployment.address("OPG") == r.existing_opg
        assert deployment.contracts["OPG"].block == deployment.start_block
    assert opg.balanceOf(r.treasury).call() == opg.totalSupply().call() == 10**27
    # Governance: offered to the owner (two-step), which accepts; the delay is the production floor, 7 days.
    for name in OWNABLE:
        contract = c[name].functions
        assert contract.pending_owner().call() == r.owner.address
        assert contract.delay().call() == params.delay == 7 * 86_400
        transact(chain.w3, r.owner.key.hex(), contract.accept_ownership())
        assert contract.owner().call() == r.owner.address
    assert f"Ownership offered to {r.owner.address}" in out.stdout


def test_attack_anvil_development_key_as_deployer_is_refused_on_base(rehearsals):
    r = rehearsals["base:mainnet"]
    out = r.refused
    assert out.returncode == 1
    dev = Account.from_key(anvil_key(0)).address
    assert f"deploy: the deployer {dev} is one of anvil's public development accounts" in out.stderr
    assert "refused on chain 8453" in out.stderr
    assert r.w3.eth.get_transaction_count(dev) == 0  # nothing sent from it
    assert not (r.directory / "refused").exists()


def test_plan_not_confirmed_sends_nothing(rehearsals):
    r = rehearsals["base:sepolia"]
    out = r.declined
    assert out.returncode == 1
    assert "Deployment plan for chain 84532" in out.stdout
    assert f"  OPG               {r.existing_opg}" in out.stdout
    assert "deploy: not confirmed: nothing was sent" in out.stderr
    assert r.w3.eth.get_transaction_count(r.declined_deployer) == 0
    assert not (r.directory / "declined").exists()


def test_deploy_config_names_every_missing_parameter(tmp_path):
    r = {"owner": Account.create().address, "treasury": Account.create().address, "opg": "new"}
    params = Params(facilitators=[Account.create().address]).model_dump()
    del params["dispute_window"], params["governance_delay"]
    path = tmp_path / "deploy.json"
    path.write_text(json.dumps({**r, "params": params}))
    with pytest.raises(ValueError, match=r"missing params\.dispute_window, params\.governance_delay"):
        DeployConfig.load(path)
    path.write_text(json.dumps({"treasury": r["treasury"], "opg": "old", "params": params}))
    with pytest.raises(ValueError, match=r"owner: Field required.*opg"):
        DeployConfig.load(path)


def test_example_deploy_config_names_every_parameter_and_is_refused_until_edited():
    # The README's starting point stays complete as Params grows; its zero addresses are refused as roles.
    config = DeployConfig.load(ROOT / "scripts" / "deploy-config.example.json")
    assert config.params == Params(facilitators=[config.owner])
    assert dev_accounts_among([config.owner, config.treasury, *config.params.facilitators]) == [config.owner] * 3


def test_dev_accounts_are_recognised_by_address():
    devs = [Account.from_key(anvil_key(i)).address for i in (0, 1, 9, 99)]
    assert dev_accounts_among([*devs, Account.create().address]) == devs
    assert dev_accounts_among(["0x" + "00" * 20]) == ["0x" + "00" * 20]
    assert dev_accounts_among([Account.from_key(anvil_key(100)).address]) == []  # only the first 100 are checked
