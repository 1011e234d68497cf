"""The README's deploy and console commands on a RUNNING devnet (as ``make demo`` leaves it): ``make deploy`` and
``make console`` use the chain at OPG_RPC_URL, not a private anvil of ape's own (ape-config's ``host: auto``, which
``make test`` keeps), and refuse with one clear line when no chain runs; the raw ape commands refuse a chain ape
started itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from offchain.chain import Chain
from offchain.daemon.keys import anvil_key
from offchain.deployments import CONTRACT_NAMES, PROJECT_ROOT, load_deployment
from offchain.devkit.devchain import Anvil, free_port, transact

OPG = 10**18
APE = ["ape"]
FOUNDRY = ["--network", "ethereum:local:foundry"]


def run(cmd: list[str], deployments: Path, stdin: str | None = None, drop: tuple[str, ...] = (),
        **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(OPG_DEPLOYMENTS_DIR=str(deployments), **env_extra)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return subprocess.run(cmd, cwd=PROJECT_ROOT, env=env, input=stdin if stdin is not None else "",
                          capture_output=True, text=True, timeout=300)


def make(target: str, url: str, deployments: Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    # `-o install`: the install step (pip/npm, idempotent) is `make test`'s job; the recipe under test is the target's.
    return run(["make", "--no-print-directory", "-o", "install", target, f"OPG_RPC_URL={url}"], deployments, stdin,
               drop=("APE_FOUNDRY_HOST", "OPG_RPC_URL"))


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    """A running anvil with the system deployed to it by the README's deploy command."""
    deployments = tmp_path_factory.mktemp("deployments")
    with Anvil() as anvil:
        out = make("deploy", anvil.url, deployments)
        yield anvil, deployments, out


def test_make_deploy_deploys_to_the_running_chain(running):
    anvil, deployments, out = running
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert f"APE_FOUNDRY_HOST={anvil.url} ape run deploy --network ethereum:local:foundry" in out.stdout
    deployment = load_deployment(path=deployments / "31337.json")
    assert set(deployment.contracts) == set(CONTRACT_NAMES)
    chain = Chain.connect(anvil.url, deployments / "31337.json")
    for contract in deployment.contracts.values():
        assert chain.w3.eth.get_code(contract.address) != b""  # on the running chain, not a vanished one
    assert chain.opg.functions.totalSupply().call() == 10**27


def test_make_console_sees_the_deployed_contracts_and_balances(running):
    anvil, deployments, _ = running
    chain = Chain.connect(anvil.url, deployments / "31337.json")
    payer = Account.create()
    treasury = anvil_key(0)
    transact(chain.w3, treasury, chain.opg.functions.transfer(payer.address, 300 * OPG))
    chain.w3.eth.send_transaction({"from": Account.from_key(treasury).address, "to": payer.address,
                                   "value": Web3.to_wei(1, "ether")})
    key = "0x" + bytes(payer.key).hex()
    transact(chain.w3, key, chain.opg.functions.approve(chain.escrow.address, 120 * OPG))
    transact(chain.w3, key, chain.escrow.functions.deposit(120 * OPG))
    script = (f'print("CREDITS", credits("{payer.address}")["credits_opg"])\n'
              f'print("WALLET", opg.balanceOf("{payer.address}") // 10**18)\n')
    out = make("console", anvil.url, deployments, stdin=script)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert f"[opg] chain 31337 at {anvil.url}" in out.stdout
    deployment = chain.deployment
    for label, name in (("opg", "OPG"), ("escrow", "CreditEscrow"), ("staking", "NodeStaking"),
                        ("distributor", "RewardDistributor")):
        assert f"[opg]   {label:<12} {deployment.address(name)}" in out.stdout
    assert f"{deployment.address('CreditEscrow')}  holds 120.0000 OPG" in out.stdout
    assert "CREDITS 120.0" in out.stdout and "WALLET 180" in out.stdout
    # the banner comes at start, before the first prompt, with no pydantic warning in front of it
    assert out.stdout.index("[opg] chain 31337") < out.stdout.index("In [1]:")
    assert "IncompleteFieldDefinitionWarning" not in out.stdout + out.stderr


def test_ape_console_on_a_private_chain_binds_nothing_and_says_why(running):
    _anvil, deployments, _ = running
    out = run([*APE, "console", *FOUNDRY, "-c", 'print("BOUND", "escrow" in globals())'], deployments,
              drop=("APE_FOUNDRY_HOST",))
    assert "[opg] no contract code at OPG" in out.stdout
    assert "APE_FOUNDRY_HOST is not set, so ape started a private anvil" in out.stdout and "make console" in out.stdout
    assert "BOUND False" in out.stdout


@pytest.mark.parametrize("target", ["deploy", "console"])
def test_make_target_refuses_when_no_chain_runs(tmp_path, target):
    url = f"http://127.0.0.1:{free_port()}"
    out = make(target, url, tmp_path, stdin="")
    assert out.returncode != 0
    assert f"make {target}: no chain answers at {url}: start one first with `make devnet`" in out.stderr
    assert "ape" not in out.stdout  # refused before ape ran (and before it could start an anvil of its own)
    assert not (tmp_path / "31337.json").exists()


def test_ape_run_deploy_refuses_the_private_chain_ape_starts(tmp_path):
    # What the README used to say: ape-config's `host: auto` gives the command an anvil that vanishes with it.
    out = run([*APE, "run", "deploy", *FOUNDRY], tmp_path, drop=("APE_FOUNDRY_HOST",))
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("deploy:")]
    assert len(errors) == 1 and "refusing to deploy to a chain that stops when this command ends" in errors[0]
    assert "APE_FOUNDRY_HOST is not set, so ape started a private anvil" in errors[0] and "make deploy" in errors[0]
    assert not (tmp_path / "31337.json").exists()
