"""``ape run deploy`` on a running anvil writes a deployment file every component can use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from offchain.chain import Chain
from offchain.deployments import CONTRACT_NAMES, Params, load_deployment
from offchain.devkit.devchain import Anvil

ROOT = Path(__file__).resolve().parents[2]
DAY = 86_400


def run_deploy(anvil, tmp_path, drop: tuple[str, ...] = (), **extra_env) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPG_DEPLOYMENTS_DIR=str(tmp_path), APE_FOUNDRY_HOST=anvil.url, **extra_env)
    for name in drop:
        env.pop(name, None)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    return subprocess.run(
        ["ape", "run", "deploy", "--network", "ethereum:local:foundry"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ape_run_deploy_writes_deployment_file_with_devnet_params(tmp_path):
    with Anvil() as anvil:
        out = run_deploy(anvil, tmp_path)
        assert out.returncode == 0, out.stderr[-2000:]
        deployment = load_deployment(path=tmp_path / "31337.json")
        assert set(deployment.contracts) == set(CONTRACT_NAMES)
        devnet = Params.devnet()
        assert deployment.params == devnet
        chain = Chain.connect(anvil.url, tmp_path / "31337.json")
        assert chain.opg.functions.totalSupply().call() == 10**27
        assert chain.escrow.functions.thaw_period().call() == devnet.thaw_period
        assert chain.staking.functions.warmup().call() == devnet.warmup
        assert chain.staking.functions.fraud_quorum_bps().call() == devnet.fraud_quorum_bps
        assert chain.staking.functions.fraud_multiplier().call() == devnet.fraud_multiplier
        assert chain.distributor.functions.escrow().call() == deployment.address("CreditEscrow")
        assert chain.distributor.functions.staking().call() == deployment.address("NodeStaking")
        assert chain.staking.functions.escrow().call() == deployment.address("CreditEscrow")
        for contract in deployment.contracts.values():
            assert chain.w3.eth.get_code(contract.address) != b""
        # Every contract's governance delay is the longest period participants rely on, plus a day.
        floor = max(devnet.thaw_period, devnet.unbonding_period, devnet.warmup, devnet.epoch_length) + DAY
        for contract in (chain.escrow, chain.staking, chain.distributor):
            assert contract.functions.delay().call() == devnet.delay == floor
        assert f"Governance delay {floor} s" in out.stdout


def test_ape_run_deploy_refuses_governance_delay_below_the_floor(tmp_path):
    params = Params.devnet().model_copy(update={"governance_delay": DAY})  # floor: 600 s unbonding + 1 day
    path = tmp_path / "params.json"
    path.write_text(json.dumps(params.model_dump()))
    with Anvil() as anvil:
        out = run_deploy(anvil, tmp_path, OPG_PARAMS=str(path))
        assert out.returncode != 0
        assert "governance delay 86400 s is below" in out.stderr
        assert not (tmp_path / "31337.json").exists()


def test_ape_run_deploy_refuses_remote_network_without_deployer_alias(tmp_path):
    # A non-devnet chain id must not fall back to anvil's development key.
    with Anvil(extra=["--chain-id", "777"]) as anvil:
        out = run_deploy(anvil, tmp_path, drop=("OPG_DEPLOYER",))
        assert out.returncode != 0
        assert "set OPG_DEPLOYER" in out.stderr
        assert not (tmp_path / "777.json").exists()
