"""Helpers of the fuzz tests (import as ``from fuzz_kit import ...``; a bare ``conftest`` import can resolve to another
directory's conftest when the e2e directories are collected together): the daemons' store snapshots, waiting for the
relayer to be idle, and the system under test."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from eth_account import Account

from offchain.devkit.devnet import DaemonProc, Devnet, RelayerProc

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


# Tables a daemon's own loop writes whatever requests arrive (the verifier's chain cursor and heartbeat bookkeeping,
# the relayer's sending lease renewed every --lease-ttl / 3 s): not compared.
BACKGROUND_TABLES = {"state", "relayer_lease"}


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
