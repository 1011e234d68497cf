"""Relayer end-to-end fixtures: a private anvil + deployment per test module and the relayer as a real subprocess.
The kit itself lives in ``offchain/devkit/devnet.py`` (shared with the node, verifier, client and demo tests)."""

from __future__ import annotations

import pytest

from offchain.devkit.devnet import (  # noqa: F401  (re-exported for the relayer tests' ``from conftest import ...``)
    OPG,
    ROLE_INFERENCE,
    ROLE_VERIFIER,
    Actor,
    ChannelSim,
    Devnet,
    RelayerProc,
    camel,
    item,
    new_key,
    rand32,
    wait_until,
)


@pytest.fixture(scope="module")
def devnet(tmp_path_factory) -> Devnet:
    d = Devnet(tmp_path_factory.mktemp("devnet"))
    yield d
    d.close()


@pytest.fixture(scope="module")
def relayer(devnet, tmp_path_factory) -> RelayerProc:
    proc = RelayerProc(devnet, tmp_path_factory.mktemp("relayer") / "relayer.sqlite3", dev_account=1).start()
    yield proc
    proc.stop()
