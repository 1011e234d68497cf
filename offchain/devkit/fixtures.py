"""pytest fixtures shared by the end-to-end test directories: per test module, a private anvil with the system
deployed (``devnet``) and the relayer as a real subprocess (``relayer``). A conftest takes them with
``from offchain.devkit.fixtures import devnet, relayer  # noqa: F401``.

They are ``ape.fixture(chain_isolation=False)``: they live on the module's own anvil, not on ape's test chain, so ape
must not re-create them (its "fixture rebasing") when a later test brings in another module fixture.
"""

from __future__ import annotations

import ape

from .devnet import Devnet, RelayerProc


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
