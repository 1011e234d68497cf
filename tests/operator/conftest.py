"""Operator CLI fixtures: a private anvil + deployment per test module (the relayer where a module needs one)."""

from __future__ import annotations

import pytest
from operator_kit import OperatorCli

from offchain.devkit.devnet import Devnet, RelayerProc


@pytest.fixture(scope="module")
def devnet(tmp_path_factory) -> Devnet:
    d = Devnet(tmp_path_factory.mktemp("devnet"))
    yield d
    d.close()


@pytest.fixture(scope="module")
def cli(devnet) -> OperatorCli:
    return OperatorCli(devnet)


@pytest.fixture(scope="module")
def relayer(devnet, tmp_path_factory) -> RelayerProc:
    proc = RelayerProc(devnet, tmp_path_factory.mktemp("relayer") / "relayer.sqlite3", dev_account=1).start()
    yield proc
    proc.stop()
