"""Node end-to-end fixtures: per module, a private anvil with the system deployed (its clock behind the wall clock by
the verifiers' warm-up, see ``node_kit.past_devnet``), the relayer as a real subprocess, and a workdir for the node
processes (``node_kit.NodeProc``)."""

from __future__ import annotations

import ape
from node_kit import past_devnet

from offchain.devkit.devnet import RelayerProc


@ape.fixture(scope="module", chain_isolation=False)
def devnet(tmp_path_factory):
    d = past_devnet(tmp_path_factory.mktemp("devnet"))
    yield d
    d.close()


@ape.fixture(scope="module", chain_isolation=False)
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("node")


@ape.fixture(scope="module", chain_isolation=False)
def relayer(devnet, workdir):
    proc = RelayerProc(devnet, workdir / "relayer.sqlite3", dev_account=1).start()
    yield proc
    proc.stop()

# The fixtures are ``ape.fixture(chain_isolation=False)``: they live on the module's own anvil, not on ape's test
# chain, so ape must not re-create them (its "fixture rebasing") when a later test brings a new module fixture in.
