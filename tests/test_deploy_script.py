"""``ape run deploy`` on a running anvil writes a deployment file every component can use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from offchain.chain import Chain
from offchain.deployments import CONTRACT_NAMES, Params, load_deployment
from offchain.devchain import Anvil

ROOT = Path(__file__).resolve().parent.parent


def test_ape_run_deploy_writes_deployment_file_with_devnet_params(tmp_path):
    with Anvil() as anvil:
        env = dict(os.environ, OPG_DEPLOYMENTS_DIR=str(tmp_path), APE_FOUNDRY_HOST=anvil.url)
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        out = subprocess.run(
            ["ape", "run", "deploy", "--network", "ethereum:local:foundry"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        deployment = load_deployment(path=tmp_path / "31337.json")
        assert set(deployment.contracts) == set(CONTRACT_NAMES)
        assert deployment.params == Params.devnet()
        chain = Chain.connect(anvil.url, tmp_path / "31337.json")
        assert chain.opg.functions.totalSupply().call() == 10**27
        assert chain.escrow.functions.thaw_period().call() == Params.devnet().thaw_period
        assert chain.distributor.functions.escrow().call() == deployment.address("CreditEscrow")
        assert chain.staking.functions.escrow().call() == deployment.address("CreditEscrow")
        for contract in deployment.contracts.values():
            assert chain.w3.eth.get_code(contract.address) != b""


def test_ape_run_deploy_refuses_remote_network_without_deployer_alias(tmp_path):
    # A non-devnet chain id must not fall back to anvil's development key.
    with Anvil(extra=["--chain-id", "777"]) as anvil:
        env = dict(os.environ, OPG_DEPLOYMENTS_DIR=str(tmp_path), APE_FOUNDRY_HOST=anvil.url)
        env.pop("OPG_DEPLOYER", None)
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        out = subprocess.run(
            ["ape", "run", "deploy", "--network", "ethereum:local:foundry"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode != 0
        assert "set OPG_DEPLOYER" in out.stderr
        assert not (tmp_path / "777.json").exists()
