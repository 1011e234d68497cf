"""Client fixtures: a private anvil + deployment and a real relayer subprocess per test module.

Module fixtures are ``ape.fixture(chain_isolation=False)``: they live on the module's own anvil, not on ape's test
chain, so ape must not re-create them ("fixture rebasing") when a later test brings in another module fixture."""

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
