"""The whole system on a local anvil chain, as real processes: anvil, the deployment (``ape run deploy``), the
relayer, inference nodes and verifiers, each registered and staked through the operator CLI. Used by
``scripts/demo.py`` (``make demo``), ``scripts/devnet.py`` (``make devnet``) and the browser tests.

Roles use anvil's public development accounts (chain 31337 only): 0 deployer and treasury, 9 relayer, nodes and
verifiers and payers from the others. Every process it starts is stopped by :meth:`System.stop`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from eth_account import Account

from ..chain import Chain
from ..daemon.keys import anvil_key
from ..deployments import PROJECT_ROOT as ROOT
from .devchain import transact

OPG = 10**18
RELAYER_ACCOUNT = 9


def rpc_alive(url: str) -> bool:
    try:
        res = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}, timeout=2)
        return res.status_code == 200
    except httpx.HTTPError:
        return False


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 90, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}\n{tail}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


@dataclass
class Proc:
    name: str
    url: str
    process: subprocess.Popen
    log: Path
    account: str | None = None


@dataclass
class Operator:
    name: str
    role: str  # "inference" | "verifier"
    dev_account: int
    port: int
    stake_opg: int
    cheat_rate: float = 0.0

    @property
    def address(self) -> str:
        return Account.from_key(anvil_key(self.dev_account)).address

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class System:
    """Options; :meth:`start` brings everything up."""

    state_dir: Path
    rpc_port: int = 8545
    relayer_port: int = 8402
    nodes: list[Operator] = field(default_factory=list)
    verifiers: list[Operator] = field(default_factory=list)
    backend: str = "builtin"
    sample_rate: float = 0.5
    deployments_dir: Path = ROOT / "deployments"
    batch_age: float = 10.0
    quiet: bool = False
    procs: list[Proc] = field(default_factory=list)
    chain: Chain | None = None
    _ticker: threading.Thread | None = None
    _ticking: threading.Event = field(default_factory=threading.Event)

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    @property
    def relayer_url(self) -> str:
        return f"http://127.0.0.1:{self.relayer_port}"

    @property
    def deployment_file(self) -> Path:
        return self.deployments_dir / "31337.json"

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    # Processes ---------------------------------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], url: str | None, health: str | None = "/healthz",
               account: str | None = None, env: dict | None = None, timeout: float = 120) -> Proc:
        log = self.state_dir / f"{name}.log"
        proc = subprocess.Popen(args, cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                                start_new_session=True)
        p = Proc(name, url or "", proc, log, account)
        self.procs.append(p)
        if url and health:
            wait_http(url + health, proc, timeout=timeout, log=log)
        return p

    def opg(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run the ``opg`` CLI (as a user would) and return its result."""
        out = subprocess.run([sys.executable, "-m", "offchain.cli", *args], cwd=ROOT, capture_output=True,
                             text=True, timeout=180, stdin=subprocess.DEVNULL)
        if check and out.returncode != 0:
            raise RuntimeError(f"opg {' '.join(args[:2])} failed ({out.returncode}): "
                               f"{(out.stderr or out.stdout).strip()[-800:]}")
        return out

    def start_chain(self) -> None:
        if rpc_alive(self.rpc_url):
            raise RuntimeError(f"something already listens on {self.rpc_url}; stop it or choose another port")
        anvil = str(ROOT / "node_modules" / ".bin" / "anvil")
        # The chain's clock must agree with the wall clock (stock x402 clients sign validBefore by the wall clock;
        # withdrawals and session keys are judged by the chain's): the genesis block starts clock_budget seconds in
        # the past, so the warm-up and epoch that make_verifiers_live() moves through stay behind the wall clock,
        # sync_clock() then moves the chain forward to it, and the ticker mines an empty block whenever the chain
        # has been idle for a second, so its clock keeps moving (anvil's own interval mining would delay every
        # transaction, and `ape run deploy` fails under it).
        self._spawn("anvil", [anvil, "--port", str(self.rpc_port), "--host", "127.0.0.1", "--silent",
                              "--timestamp", str(int(time.time()) - self.clock_budget)],
                    None, None)
        deadline = time.monotonic() + 30
        while not rpc_alive(self.rpc_url):
            if time.monotonic() > deadline:
                raise RuntimeError("anvil did not start")
            time.sleep(0.1)

    def deploy(self) -> None:
        """``ape run deploy`` against the running anvil, exactly as the README says."""
        self.deployments_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "APE_FOUNDRY_HOST": self.rpc_url, "OPG_DEPLOYMENTS_DIR": str(self.deployments_dir)}
        out = subprocess.run(["ape", "run", "deploy", "--network", "ethereum:local:foundry"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        if out.returncode != 0 or not self.deployment_file.exists():
            raise RuntimeError(f"deployment failed: {(out.stderr or out.stdout).strip()[-1500:]}")
        self.chain = Chain.connect(self.rpc_url, self.deployment_file)

    def start_relayer(self) -> None:
        store = self.state_dir / "relayer.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
        self._spawn("relayer", [
            sys.executable, "-m", "offchain.cli", "relayer", "run", "--rpc-url", self.rpc_url,
            "--deployment", str(self.deployment_file), "--store", str(store),
            "--dev-account", str(RELAYER_ACCOUNT), "--batch-size", "100", "--batch-age", str(self.batch_age),
            "--confirmations", "1", "--host", "127.0.0.1", "--port", str(self.relayer_port),
        ], self.relayer_url, account=Account.from_key(anvil_key(RELAYER_ACCOUNT)).address)

    def fund(self, address: str, opg: int, eth: int = 0) -> None:
        assert self.chain is not None
        treasury = anvil_key(0)
        if opg:
            transact(self.chain.w3, treasury, self.chain.opg.functions.transfer(address, opg))
        if eth:
            from offchain.devkit.devchain import send

            send(self.chain.w3, treasury, {"to": address, "value": eth, "gas": 21_000})

    def register(self, op: Operator) -> None:
        """Fund the operator with its stake and register it through ``opg operator register``."""
        self.fund(op.address, op.stake_opg * OPG)
        self.opg("operator", "register", "--role", op.role, "--stake", str(op.stake_opg), "--endpoint", op.url,
                 "--rpc-url", self.rpc_url, "--deployment", str(self.deployment_file),
                 "--dev-account", str(op.dev_account))

    def start_node(self, op: Operator) -> None:
        store = self.state_dir / f"{op.name}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
        args = [sys.executable, "-m", "offchain.cli", "node", "run", "--rpc-url", self.rpc_url,
                "--deployment", str(self.deployment_file), "--relayer-url", self.relayer_url,
                "--store", str(store), "--backend", self.backend, "--dev-account", str(op.dev_account),
                "--host", "127.0.0.1", "--port", str(op.port)]
        if op.cheat_rate:  # a cheating node: its backends wrapped by the backend option (offchain.backends)
            args[args.index("--backend") + 1] = ",".join(f"{s}{'&' if '?' in s else '?'}cheat_rate={op.cheat_rate}"
                                                         for s in self.backend.split(","))
        self._spawn(op.name, args, op.url, account=op.address)

    def start_verifier(self, op: Operator) -> None:
        store = self.state_dir / f"{op.name}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{store}{suffix}").unlink(missing_ok=True)
        self._spawn(op.name, [
            sys.executable, "-m", "offchain.cli", "verifier", "run", "--rpc-url", self.rpc_url,
            "--deployment", str(self.deployment_file), "--relayer-url", self.relayer_url,
            "--store", str(store), "--backends", self.backend, "--sample-rate", str(self.sample_rate),
            "--heartbeat", "--flag-fraud",
            "--dev-account", str(op.dev_account), "--host", "127.0.0.1", "--port", str(op.port),
        ], op.url, account=op.address)

    # Devnet clock ------------------------------------------------------------------------------------------------
    @property
    def clock_budget(self) -> int:
        """How far in the past the chain starts: the warm-up and up to two epochs that make_verifiers_live() moves
        through (devnet parameters), plus a minute."""
        from offchain.deployments import Params

        params = Params.devnet()
        return params.warmup + 2 * params.epoch_length + 60

    def advance(self, seconds: int) -> None:
        """Move anvil's clock forward (the devnet's warm-up and epochs would otherwise take minutes). Before
        :meth:`sync_clock` only: afterwards the chain would run ahead of the wall clock."""
        assert self.chain is not None
        self.chain.w3.provider.make_request("evm_increaseTime", [int(seconds)])
        self.chain.w3.provider.make_request("evm_mine", [])

    def clock_skew(self) -> int:
        """The latest block's timestamp minus the wall clock (s): about 0 once :meth:`sync_clock` ran."""
        assert self.chain is not None
        return int(self.chain.w3.eth.get_block("latest")["timestamp"]) - int(time.time())

    def sync_clock(self, ticker: bool = True) -> None:
        """Move the chain's clock forward to the wall clock (never back: block times only grow), and start the
        ticker that keeps it moving while the chain is idle."""
        assert self.chain is not None
        if self.clock_skew() < 0:
            self.chain.w3.provider.make_request("evm_setTime", [int(time.time())])
            self.chain.w3.provider.make_request("evm_mine", [])
        skew = self.clock_skew()
        if skew > 2:
            self.say(f"   warning: the chain's clock runs {skew} s ahead of the wall clock")
        if ticker and self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="devnet-clock", daemon=True)
            self._ticker.start()

    def _tick(self) -> None:
        """Mine an empty block whenever the latest is a second old (time advanced by mining, never by jumps)."""
        from web3 import Web3

        w3 = Web3(Web3.HTTPProvider(self.rpc_url, request_kwargs={"timeout": 5}))
        while not self._ticking.wait(0.5):
            try:
                if int(w3.eth.get_block("latest")["timestamp"]) < int(time.time()):
                    w3.provider.make_request("evm_mine", [])
            except Exception:  # anvil stopping or busy: try again
                continue

    def make_verifiers_live(self, timeout: float = 60) -> None:
        """Wait out the warm-up, let every verifier daemon send its heartbeat, and move into the next epoch, where
        their stake counts."""
        assert self.chain is not None
        params = self.chain.deployment.params
        staking, distributor = self.chain.staking.functions, self.chain.distributor.functions
        self.advance(params.warmup + 1)
        epoch = distributor.epoch_now().call()
        deadline = time.monotonic() + timeout
        while not all(staking.weight_in(epoch + 1, v.address).call() > 0 for v in self.verifiers):
            if time.monotonic() > deadline:
                raise RuntimeError("verifiers did not send their heartbeat")
            time.sleep(0.3)
        while distributor.epoch_now().call() == epoch:
            self.advance(params.epoch_length)

    # Whole system ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.say(f"== anvil on {self.rpc_url}")
        self.start_chain()
        self.say("== deploying with `ape run deploy`")
        self.deploy()
        self.say(f"   contracts: {json.dumps({k: v['address'] for k, v in self._deployment()['contracts'].items()})}")
        self.start_relayer()
        self.say(f"== relayer on {self.relayer_url}")
        for op in self.nodes + self.verifiers:
            self.register(op)
            self.say(f"   registered {op.role:<9} {op.name:<10} {op.address} stake {op.stake_opg} OPG -> {op.url}")
        for op in self.nodes:
            self.start_node(op)
            self.say(f"== {op.name} on {op.url} (backend {self.backend}"
                     + (f", cheating at {op.cheat_rate:.0%}" if op.cheat_rate else "") + ")")
        for op in self.verifiers:
            self.start_verifier(op)
            self.say(f"== {op.name} on {op.url} (sampling {self.sample_rate:.0%})")
        self.make_verifiers_live()
        self.sync_clock()
        self.say("   verifiers are live (warm stake, heartbeat sent, next epoch); the chain's clock is the wall clock's")

    def _deployment(self) -> dict:
        return json.loads(self.deployment_file.read_text())

    def alive(self) -> list[str]:
        """Names of the started processes that exited."""
        return [p.name for p in self.procs if p.process.poll() is not None]

    def stop(self) -> list[str]:
        """SIGTERM every process (daemons first, anvil last), SIGKILL what does not stop; returns what had to be
        killed."""
        killed = []
        self._ticking.set()
        if self._ticker is not None:
            self._ticker.join(timeout=5)
        for p in reversed(self.procs):
            if p.process.poll() is None:
                p.process.send_signal(signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.process.pid, signal.SIGKILL)
                p.process.wait()
                killed.append(p.name)
        return killed
