"""A local anvil node and a web3.py deployment of the system, for tests, benchmarks and the demo.

Anvil's development keys (``anvil_key``) live in ``offchain.daemon.keys``: daemons accept them on chain 31337.

Ape (``scripts/deploy.py``) is the operator's way to deploy; this module does the same with plain web3 so that a
process can own a chain without ape's test isolation (relayer end-to-end tests, benchmarks).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass

from eth_account import Account
from web3 import Web3

from ..deployments import PROJECT_ROOT, DeployedContract, Deployment, Params, constructor_args
from .compiler import compiled


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen | None, timeout: float = 15) -> int | None:
    """SIGTERM a child process, wait ``timeout`` s, then SIGKILL it; its exit code (None: no process)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def anvil_binary() -> str:
    local = PROJECT_ROOT / "node_modules" / ".bin" / "anvil"
    found = str(local) if local.exists() else shutil.which("anvil")
    if not found:
        raise RuntimeError("anvil is not installed: run `make install` (npm ci installs it)")
    return found


class Anvil:
    """An anvil child process on a free loopback port; use as a context manager."""

    def __init__(self, port: int | None = None, block_time: float | None = None, extra: list[str] | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [anvil_binary(), "--port", str(self.port), "--host", "127.0.0.1", "--silent"]
        if block_time:
            args += ["--block-time", str(block_time)]
        self._args = args + (extra or [])
        self.process: subprocess.Popen | None = None

    def start(self) -> Anvil:
        self.process = subprocess.Popen(self._args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        w3 = Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 5}))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"anvil exited: {self.process.stderr.read().decode()[-500:]}")
            try:
                if w3.is_connected():
                    return self
            except Exception:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("anvil did not start within 30 s")

    def stop(self) -> None:
        stop_process(self.process, timeout=5)
        self.process = None

    def __enter__(self) -> Anvil:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def send(w3: Web3, key: str, tx: dict) -> dict:
    """Sign, send and wait for a transaction from ``key``; raise on revert."""
    account = Account.from_key(key)
    tx = dict(tx)
    tx.setdefault("from", account.address)
    tx.setdefault("nonce", w3.eth.get_transaction_count(account.address, "pending"))
    tx.setdefault("chainId", w3.eth.chain_id)
    if "gas" not in tx:
        tx["gas"] = int(w3.eth.estimate_gas(tx) * 1.2) + 20_000
    if "maxFeePerGas" not in tx and "gasPrice" not in tx:
        base = w3.eth.get_block("latest")["baseFeePerGas"]
        tx["maxPriorityFeePerGas"] = 10**9
        tx["maxFeePerGas"] = base * 2 + 10**9
    signed = account.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction {tx_hash.hex()} reverted")
    return receipt


def transact(w3: Web3, key: str, fn, **overrides) -> dict:
    """Build a contract function call into a transaction from ``key`` and send it."""
    account = Account.from_key(key)
    return send(w3, key, fn.build_transaction({"from": account.address, **overrides}))


def deploy_contract(w3: Web3, key: str, name: str, *args):
    artifact = compiled(name)
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = send(w3, key, factory.constructor(*args).build_transaction({"from": Account.from_key(key).address}))
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"]), receipt["blockNumber"]


@dataclass
class Web3System:
    w3: Web3
    opg: object
    escrow: object
    staking: object
    distributor: object
    deployment: Deployment


def deploy_web3(w3: Web3, deployer_key: str, treasury: str | None = None, params: Params | None = None) -> Web3System:
    """Deploy and wire the four contracts exactly as ``offchain.ape_deploy.deploy_system`` does."""
    params = params or Params.devnet()
    treasury = treasury or Account.from_key(deployer_key).address
    opg, b_opg = deploy_contract(w3, deployer_key, "OPG", *constructor_args("OPG", params, treasury=treasury))
    distributor, b_dist = deploy_contract(
        w3,
        deployer_key,
        "RewardDistributor",
        *constructor_args("RewardDistributor", params, opg=opg.address, treasury=treasury),
    )
    evidence, b_evd = deploy_contract(w3, deployer_key, "Evidence", *constructor_args("Evidence", params))
    staking, b_stk = deploy_contract(
        w3,
        deployer_key,
        "NodeStaking",
        *constructor_args(
            "NodeStaking", params, opg=opg.address, distributor=distributor.address, evidence=evidence.address
        ),
    )
    escrow, b_esc = deploy_contract(
        w3,
        deployer_key,
        "CreditEscrow",
        *constructor_args(
            "CreditEscrow", params, opg=opg.address, staking=staking.address, distributor=distributor.address
        ),
    )
    transact(w3, deployer_key, distributor.functions.connect(escrow.address, staking.address))
    transact(w3, deployer_key, staking.functions.connect(escrow.address))
    deployment = Deployment(
        chainId=w3.eth.chain_id,
        contracts={
            "OPG": DeployedContract(address=opg.address, block=b_opg),
            "CreditEscrow": DeployedContract(address=escrow.address, block=b_esc),
            "NodeStaking": DeployedContract(address=staking.address, block=b_stk),
            "RewardDistributor": DeployedContract(address=distributor.address, block=b_dist),
            "Evidence": DeployedContract(address=evidence.address, block=b_evd),
        },
        params=params,
    )
    return Web3System(w3=w3, opg=opg, escrow=escrow, staking=staking, distributor=distributor, deployment=deployment)
