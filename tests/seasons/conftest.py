"""Seasons end to end: a private anvil + deployment and a real relayer subprocess per test module (the fixtures are
``ape.fixture(chain_isolation=False)``: they live on the module's own anvil, not on ape's test chain)."""

from __future__ import annotations

import ape

from offchain.devkit.devnet import Devnet, RelayerProc


@ape.fixture(scope="module", chain_isolation=False)
def devnet(tmp_path_factory) -> Devnet:
    d = Devnet(tmp_path_factory.mktemp("devnet"))
    yield d
    d.close()


@ape.fixture(scope="module", chain_isolation=False)
def relayer(devnet, tmp_path_factory) -> RelayerProc:
    proc = RelayerProc(devnet, tmp_path_factory.mktemp("relayer") / "relayer.sqlite3", dev_account=1).start()
    yield proc
    proc.stop()
