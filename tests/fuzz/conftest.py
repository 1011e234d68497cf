"""Fuzzing fixtures: one private anvil with the system deployed, and the relayer, an inference node (builtin model)
and a verifier as real processes, shared by every fuzz test of the session (they only refuse or answer; what they
store is compared before and after each refused request)."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from eth_account import Account
from opg_devnet import DaemonProc, Devnet, RelayerProc

from offchain.devchain import transact

PASSWORD = "fuzz-password"
IDLE_TIMEOUT = 2.0  # the daemons' idle partial-body timeout here (10 s by default), so the bound is tested quickly
BOUNDS_ENV = {"OPG_BODY_IDLE_TIMEOUT": str(IDLE_TIMEOUT), "OPG_BODY_TIMEOUT": "6"}


def keystore(actor, folder: Path) -> Path:
    path = folder / f"{actor.address}.json"
    path.write_text(json.dumps(Account.encrypt(actor.key, PASSWORD, kdf="pbkdf2", iterations=2)))
    return path


def quiesce(relayer: RelayerProc, timeout: float = 30) -> None:
    """Wait until the relayer has nothing in flight (no pending receipt, no batch on its way), so that comparing
    stores before and after a request sees only what the request did."""
    deadline = time.monotonic() + timeout
    while True:
        h = relayer.get("/healthz").json()
        if h["pendingReceipts"] == 0 and h["inflightBatch"] is None:
            return
        assert time.monotonic() < deadline, h
        time.sleep(0.1)


class System:
    def __init__(self, devnet: Devnet, relayer: RelayerProc, node: DaemonProc, verifier: DaemonProc, node_actor,
                 verifier_actor, folder: Path):
        self.devnet, self.relayer, self.node, self.verifier = devnet, relayer, node, verifier
        self.node_actor, self.verifier_actor, self.folder = node_actor, verifier_actor, folder

    @property
    def daemons(self) -> dict[str, DaemonProc]:
        return {"relayer": self.relayer, "node": self.node, "verifier": self.verifier}

    def stores(self) -> dict[str, Path]:
        return {"relayer": self.relayer.store, "node": self.folder / "node.sqlite3",
                "verifier": self.folder / "verifier.sqlite3"}


# Tables a daemon's own loop writes whatever requests arrive (the verifier's chain cursor and heartbeat bookkeeping):
# not compared.
BACKGROUND_TABLES = {"state"}


def snapshot(path: Path) -> dict[str, list]:
    """Every row of every table of a daemon's SQLite store (read-only; WAL lets it be read while the daemon runs),
    but the tables its background loop maintains."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(map(repr, conn.execute(f'SELECT * FROM "{t}"').fetchall())) for t in tables
                if t not in BACKGROUND_TABLES}
    finally:
        conn.close()


@pytest.fixture(scope="session")
def system(tmp_path_factory) -> System:
    folder = tmp_path_factory.mktemp("fuzz")
    devnet = Devnet(folder)
    relayer = node = verifier = None
    try:
        node_actor, verifier_actor = devnet.new_node(), devnet.new_verifier()
        devnet.make_live([verifier_actor])
        relayer = RelayerProc(devnet, folder / "relayer.sqlite3", dev_account=1, env=BOUNDS_ENV).start()
        node = DaemonProc("node", [
            "node", "run", "--rpc-url", devnet.url, "--deployment", str(devnet.deployment_file),
            "--relayer-url", relayer.url, "--store", str(folder / "node.sqlite3"),
            "--keystore", str(keystore(node_actor, folder)), "--backend", "builtin", "--price-base", "0.001",
            "--price-prompt-token", "0.00001", "--price-output-token", "0.0001",
        ], folder, env={"OPG_NODE_PASSWORD": PASSWORD, **BOUNDS_ENV})
        transact(devnet.w3, node_actor.key, devnet.staking.functions.set_endpoint(node.url))
        verifier = DaemonProc("verifier", [
            "verifier", "run", "--rpc-url", devnet.url, "--deployment", str(devnet.deployment_file),
            "--relayer-url", relayer.url, "--store", str(folder / "verifier.sqlite3"),
            "--keystore", str(keystore(verifier_actor, folder)), "--backends", "builtin", "--sample-rate", "0",
        ], folder, env={"OPG_VERIFIER_PASSWORD": PASSWORD, **BOUNDS_ENV})
        node.start()
        verifier.start()
        yield System(devnet, relayer, node, verifier, node_actor, verifier_actor, folder)
    finally:
        for proc in (verifier, node, relayer):
            if proc is not None:
                try:
                    proc.stop()
                except Exception:
                    pass
        devnet.close()
