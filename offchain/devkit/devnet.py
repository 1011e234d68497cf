"""End-to-end test kit shared by the relayer, node, verifier, client and demo tests: a private anvil with the system
deployed (``Devnet``), actors, channel simulation, and the daemons as real subprocesses on free loopback ports
(``RelayerProc``, ``DaemonProc``), spoken to over real HTTP (httpx).

Nothing here uses ape's chain (ape snapshots and reverts it between tests): every module owns its chain.
The same kit serves ``bench/``; ``offchain.devkit.system`` runs the whole system for the demo and devnet.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from web3 import Web3

from offchain.daemon.keys import anvil_key
from offchain.deployments import PROJECT_ROOT, Params, save_deployment
from offchain.devkit.devchain import Anvil, deploy_web3, free_port, send, stop_process, transact
from offchain.messages import Domain, Receipt, Registration, SignedReceipt, SignedVoucher, Voucher

OPG = 10**18
ROLE_INFERENCE, ROLE_VERIFIER = 1, 2
FACILITATOR_ACCOUNTS = (1, 2, 4, 5, 6, 7, 9)  # the escrow's facilitators in a Devnet (its tests' relayer accounts)


@dataclass
class Actor:
    key: str
    address: str


def new_key() -> Actor:
    acct = Account.create()
    return Actor("0x" + bytes(acct.key).hex(), acct.address)


def rand32() -> str:
    return "0x" + secrets.token_hex(32)


class Devnet:
    """An anvil node with the system deployed by anvil's account 0 (also the treasury holding all OPG)."""

    def __init__(self, tmp: Path, anvil_extra: list[str] | None = None):
        self.tmp = tmp
        self.anvil = Anvil(extra=anvil_extra).start()
        self.url = self.anvil.url
        self.w3 = Web3(Web3.HTTPProvider(self.url, request_kwargs={"timeout": 30}))
        self.deployer = anvil_key(0)
        # Facilitators (settle without proposing first): the anvil accounts the tests run relayers on.
        params = Params.devnet()
        params = params.model_copy(update={"facilitators": [Account.from_key(anvil_key(i)).address
                                                             for i in FACILITATOR_ACCOUNTS]})
        if self.w3.eth.chain_id != 31337:
            # Off the devnet every contract's timelock refuses a governance delay under 7 days (R7).
            params = params.model_copy(update={"governance_delay": 7 * 86_400})
        self.system = deploy_web3(self.w3, self.deployer, params=params)
        self.deployment_file = save_deployment(self.system.deployment, tmp)
        self.chain_id = self.w3.eth.chain_id
        self.network = f"eip155:{self.chain_id}"
        self.opg, self.escrow, self.staking = self.system.opg, self.system.escrow, self.system.staking
        self.escrow_domain = Domain.escrow(self.chain_id, self.escrow.address)
        self.staking_domain = Domain.staking(self.chain_id, self.staking.address)
        self.params = self.system.deployment.params

    def close(self) -> None:
        self.anvil.stop()

    def rpc(self, method: str, *params: Any) -> Any:
        return self.w3.provider.make_request(method, list(params)).get("result")

    def now(self) -> int:
        """What a node dates its receipts by: max(wall clock, chain clock) (the chain runs ahead after advance())."""
        return max(int(time.time()), self.chain_now())

    # Actors ---------------------------------------------------------------------------------------------------
    def fund(self, actor: Actor, opg: int = 0, eth: int = 10**19) -> None:
        send(self.w3, self.deployer, {"to": actor.address, "value": eth, "gas": 21_000})
        if opg:
            transact(self.w3, self.deployer, self.opg.functions.transfer(actor.address, opg))

    def new_payer(self, deposit: int = 1_000 * OPG, extra_opg: int = 0) -> Actor:
        actor = new_key()
        self.fund(actor, deposit + extra_opg)
        if deposit:
            transact(self.w3, actor.key, self.opg.functions.approve(self.escrow.address, deposit))
            transact(self.w3, actor.key, self.escrow.functions.deposit(deposit))
        return actor

    def _register(self, role: int, stake: int) -> Actor:
        actor = new_key()
        self.fund(actor, stake)
        transact(self.w3, actor.key, self.opg.functions.approve(self.staking.address, stake))
        signature = Registration(account=actor.address).sign_with(actor.key, self.staking_domain)
        transact(self.w3, actor.key, self.staking.functions.register(role, stake, "http://node.invalid",
                                                                     bytes.fromhex(signature[2:])))
        return actor

    def advance(self, seconds: int) -> None:
        """Move the chain's clock forward (anvil evm_increaseTime) and mine a block."""
        self.rpc("evm_increaseTime", seconds)
        self.rpc("evm_mine")

    def chain_now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def make_live(self, verifiers: list[Actor]) -> None:
        """Registered verifiers become live: wait out the warm-up, heartbeat, move into the next epoch."""
        self.advance(self.params.warmup + 1)
        for v in verifiers:
            transact(self.w3, v.key, self.staking.functions.heartbeat())
        epoch = self.system.distributor.functions.epoch_now().call()
        while self.system.distributor.functions.epoch_now().call() == epoch:
            self.advance(self.params.epoch_length)

    def new_node(self, stake: int | None = None) -> Actor:
        return self._register(ROLE_INFERENCE, stake or self.params.min_inference_stake * 2)

    def new_verifier(self, stake: int | None = None) -> Actor:
        return self._register(ROLE_VERIFIER, stake or self.params.min_verifier_stake)

    # Reads ----------------------------------------------------------------------------------------------------
    def spent(self, payer: Actor, node: Actor) -> int:
        return self.escrow.functions.spent(payer.address, node.address).call()

    def balance(self, payer: Actor) -> int:
        return self.escrow.functions.balance_of(payer.address).call()

    def stake(self, account: Actor) -> tuple[int, bool]:
        node = self.staking.functions.nodes(account.address).call()
        return node[2], node[1]  # (stake, jailed)


class ChannelSim:
    """A payer's channel with a node: signs a voucher before each request and the node's receipt after it."""

    def __init__(self, devnet: Devnet, payer: Actor, node: Actor, price_cap: int = 10 * OPG):
        self.d, self.payer, self.node, self.price_cap = devnet, payer, node, price_cap
        self.cumulative = 0
        self.best_cap = 0

    def voucher(self, cap: int, key: str | None = None, domain: Domain | None = None) -> SignedVoucher:
        v = Voucher(payer=self.payer.address, node=self.node.address, max_cumulative=cap)
        sig = v.sign_with(key or self.payer.key, domain or self.d.escrow_domain)
        self.best_cap = max(self.best_cap, cap)
        return SignedVoucher(**v.model_dump(), signature=sig)

    def receipt(self, amount: int, cumulative: int | None = None, request_id: str | None = None,
                key: str | None = None, domain: Domain | None = None, timestamp: int | None = None,
                output_hash: str | None = None) -> SignedReceipt:
        r = Receipt(
            request_id=request_id or rand32(), payer=self.payer.address, node=self.node.address,
            model_id="0x" + "11" * 32, input_hash=rand32(), output_hash=output_hash or rand32(), amount=amount,
            cumulative=cumulative if cumulative is not None else self.cumulative + amount,
            timestamp=timestamp if timestamp is not None else self.d.now(),
        )
        sig = r.sign_with(key or self.node.key, domain or self.d.staking_domain)
        return SignedReceipt(**r.model_dump(), signature=sig)

    def next(self, amount: int = OPG) -> dict:
        """Voucher (cap = charged + price cap), then the receipt for ``amount``; a /settle item (snake_case)."""
        voucher = self.voucher(self.cumulative + self.price_cap)
        receipt = self.receipt(amount)
        self.cumulative += amount
        return item(receipt, voucher)


def item(receipt: SignedReceipt, voucher: SignedVoucher) -> dict:
    return {"receipt": receipt.model_dump(mode="json"), "voucher": voucher.model_dump(mode="json")}


def camel(message: Any) -> dict:
    """A signed message with its EIP-712 (camelCase) field names."""
    data = message.model_dump(mode="json")
    names = {attr: name for name, _t, attr in message.FIELDS}
    return {names.get(k, k): v for k, v in data.items()}


class DaemonProc:
    """Any ``opg <role> run ...`` daemon (node, verifier) as a child process with a ``/healthz`` route.

    ``args`` are the arguments after ``python -m offchain.cli``; ``--port`` is appended (a free loopback port)."""

    def __init__(self, name: str, args: list[str], log_dir: Path, env: dict | None = None,
                 port: int | None = None, health: str = "/healthz"):
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "offchain.cli", *args, "--host", "127.0.0.1", "--port", str(self.port)]
        self.env = {**os.environ, **(env or {})}
        self.log = log_dir / f"{name}.{self.port}.log"
        self.health = health
        self.process: subprocess.Popen | None = None
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def start(self, timeout: float = 60) -> DaemonProc:
        self._logfile = open(self.log, "ab")
        self.process = subprocess.Popen(self.args, stdout=self._logfile, stderr=subprocess.STDOUT, env=self.env,
                                        cwd=PROJECT_ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited {self.process.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if self.client.get(self.health).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become healthy: {self.log.read_text()[-3000:]}")

    def kill9(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then wait (SIGKILL after ``timeout``); returns the exit code."""
        code = stop_process(self.process, timeout)
        if getattr(self, "_logfile", None):
            self._logfile.close()
        return code

    def logs(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


class RelayerProc(DaemonProc):
    """``opg relayer run`` as a child process."""

    def __init__(self, devnet: Devnet, store: Path, dev_account: int, *extra: str, env: dict | None = None,
                 batch_age: float = 0.3, batch_size: int = 100):
        self.devnet, self.store, self.dev_account = devnet, store, dev_account
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [
            sys.executable, "-m", "offchain.cli", "relayer", "run", "--rpc-url", devnet.url,
            "--deployment", str(devnet.deployment_file), "--store", str(store), "--batch-size", str(batch_size),
            "--batch-age", str(batch_age), "--confirmations", "1", "--host", "127.0.0.1", "--port", str(self.port),
            "--dev-account", str(dev_account), "--poll-interval", "0.05", *extra,
        ]
        self.env = {**os.environ, **(env or {})}
        self.log = store.with_suffix(f".{self.port}.log")
        self.process: subprocess.Popen | None = None
        self.client = httpx.Client(base_url=self.url, timeout=30)
        self.address = Account.from_key(anvil_key(dev_account)).address
        self.name, self.health = "relayer", "/healthz"

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    # HTTP -----------------------------------------------------------------------------------------------------
    def get(self, path: str, **kw: Any) -> httpx.Response:
        return self.client.get(path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        return self.client.post(path, json=body, **kw) if body is not None else self.client.post(path, **kw)

    def receipt_status(self, receipt_id: str) -> dict:
        res = self.get(f"/receipts/{receipt_id}")
        assert res.status_code == 200, res.text
        return res.json()

    def _view_or_unknown(self, receipt_id: str) -> dict:
        res = self.get(f"/receipts/{receipt_id}")
        if res.status_code == 404:
            return {"id": receipt_id, "status": "unknown to the relayer"}
        assert res.status_code == 200, res.text
        return res.json()

    def wait_receipts(self, ids: list[str], statuses: tuple[str, ...] = ("settled",), timeout: float = 30) -> list[dict]:
        """Poll until every receipt has one of ``statuses``; returns their views. A receipt the relayer does not know
        yet counts as not there yet (nodes hand receipts over from their outbox, after answering the payer)."""
        deadline = time.monotonic() + timeout
        while True:
            views = [self._view_or_unknown(i) for i in ids]
            if all(v["status"] in statuses for v in views):
                return views
            if time.monotonic() > deadline:
                bad = [v for v in views if v["status"] not in statuses][:3]
                raise AssertionError(f"receipts not {statuses} after {timeout}s: {bad}\n"
                                     f"{self.log.read_text()[-3000:]}")
            time.sleep(0.1)


def wait_until(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.1, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(interval)
