"""Verifier end-to-end fixtures: per module, a private anvil whose clock can be levelled with the wall clock after
the verifiers' warm-up (``verifier_kit.past_devnet``), and the relayer as a real subprocess."""

from __future__ import annotations

import pytest
from verifier_kit import past_devnet

from offchain.devkit.devnet import RelayerProc


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    d = past_devnet(tmp_path_factory.mktemp("devnet"))
    yield d
    d.close()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("daemons")


@pytest.fixture(scope="module")
def relayer(devnet, workdir):
    proc = RelayerProc(devnet, workdir / "relayer.sqlite3", dev_account=1).start()
    yield proc
    proc.stop()
