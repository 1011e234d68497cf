"""Fuzzing fixtures: one private anvil with the system deployed, and the relayer, an inference node (builtin model)
and a verifier as real processes, shared by every fuzz test of the session (they only refuse or answer; what they
store is compared before and after each refused request)."""

from __future__ import annotations

import pytest
from fuzz_kit import BOUNDS_ENV, PASSWORD, System, keystore

from offchain.devkit.devchain import transact
from offchain.devkit.devnet import DaemonProc, Devnet, RelayerProc


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
