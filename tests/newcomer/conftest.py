"""One ``make devnet`` (``scripts/devnet.py``, the builtin model backend so it comes up in about a minute) shared by
every newcomer test: its own free ports, state and deployment directories, stopped with Ctrl-C (SIGINT) at the end
of the session, as a person stops it.

The ``opg`` CLI talks to it through ``OPG_CLIENT_*`` / ``OPG_OPERATOR_*`` (the README's commands carry no URLs: the
defaults are the devnet's standard ports; here the variables point at this devnet's).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import ape
import httpx

ROOT = Path(__file__).resolve().parents[2]
PAYER_ACCOUNT = 4


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_block(size: int) -> int:
    """The first of ``size`` consecutive free loopback ports."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + size < 65_000 and all(_free(base + i) for i in range(size)):
            return base
    raise RuntimeError("no block of free ports")


class DevnetRun:
    """``scripts/devnet.py`` as a subprocess."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        ports = free_block(8)
        self.rpc_port, self.relayer_port, self.base_port = ports, ports + 1, ports + 2
        self.rpc_url = f"http://127.0.0.1:{self.rpc_port}"
        self.relayer_url = f"http://127.0.0.1:{self.relayer_port}"
        self.node_url = f"http://127.0.0.1:{self.base_port}"
        self.node2_url = f"http://127.0.0.1:{self.base_port + 1}"
        self.state = tmp / "devnet"
        self.deployment = tmp / "deployments" / "31337.json"
        self.log = tmp / "devnet.out"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 300) -> DevnetRun:
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "devnet.py"), "--backend", "builtin",
             "--rpc-port", str(self.rpc_port), "--relayer-port", str(self.relayer_port),
             "--base-port", str(self.base_port), "--state-dir", str(self.state),
             "--deployments-dir", str(self.deployment.parent)],
            cwd=ROOT, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while "== devnet is up" not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"make devnet did not come up:\n{self.output()[-3000:]}")
            time.sleep(0.5)
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # Ctrl-C
            try:
                self.process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def env(self, state_dir: Path) -> dict[str, str]:
        """The variables that point the CLI at this devnet, with its own client state directory."""
        return {"OPG_CLIENT_RPC_URL": self.rpc_url, "OPG_CLIENT_RELAYER_URL": self.relayer_url,
                "OPG_CLIENT_NODE_URL": self.node_url, "OPG_CLIENT_DEPLOYMENT": str(self.deployment),
                "OPG_CLIENT_STATE_DIR": str(state_dir), "OPG_OPERATOR_RPC_URL": self.rpc_url,
                "OPG_OPERATOR_DEPLOYMENT": str(self.deployment), "OPG_OPERATOR_RELAYER_URL": self.relayer_url}

    def rpc(self, method: str, *params):
        return httpx.post(self.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                              "params": list(params)}, timeout=10).json()["result"]

    def chain_time(self) -> int:
        return int(self.rpc("eth_getBlockByNumber", "latest", False)["timestamp"], 16)

    def relayer_pid(self) -> int:
        return _pid_on_port(self.relayer_port)


def _pid_on_port(port: int) -> int:
    """The pid listening on a loopback TCP port (from /proc: no extra tools)."""
    hexport = f"{port:04X}"
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[1].endswith(":" + hexport) and cols[3] == "0A":
                inodes.add(cols[9])
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return int(pid)
        except OSError:
            continue
    raise RuntimeError(f"nothing listens on port {port}")


@ape.fixture(scope="session", chain_isolation=False)
def devnet(tmp_path_factory) -> DevnetRun:
    run = DevnetRun(tmp_path_factory.mktemp("newcomer")).start()
    yield run
    code = run.stop()
    assert code == 0, f"make devnet exited {code} on Ctrl-C:\n{run.output()[-2000:]}"
    assert "== every process stopped" in run.output()


@ape.fixture(chain_isolation=False)
def cli(devnet, tmp_path, monkeypatch, capsys):
    """Run ``opg ARGS`` in-process against the devnet (own client state per test): returns (code, out, err)."""
    for name, value in devnet.env(tmp_path / "opg").items():
        monkeypatch.setenv(name, value)

    def run(*argv: str) -> tuple[int, str, str]:
        from offchain.cli import main

        capsys.readouterr()
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    return run
