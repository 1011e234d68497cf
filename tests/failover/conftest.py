"""Failover fixtures: per module, a private anvil with the system deployed, three relayer processes on one throwaway
PostgreSQL database behind a round-robin front (``offchain.devkit.cluster``), two real inference nodes (``opg node
run``, tests/node/node_kit.py) whose relayer is that front, and funded payers."""

from __future__ import annotations

import sys
from pathlib import Path

import ape

sys.path.append(str(Path(__file__).parents[1] / "node"))  # node_kit: the node as a process, the payer over HTTP

from node_kit import NodeProc  # noqa: E402

from offchain.devkit.cluster import RelayerCluster, in_parallel  # noqa: E402
from offchain.devkit.devnet import OPG, Actor  # noqa: E402
from offchain.devkit.fixtures import devnet  # noqa: E402,F401

LEASE_TTL = 1.0  # s: short, so a takeover takes about a second (the tests read it as cluster.lease_ttl)


@ape.fixture(scope="module", chain_isolation=False)
def system(devnet, tmp_path_factory) -> tuple[RelayerCluster, list[NodeProc]]:  # noqa: F811
    """The cluster and the nodes, started together once the first relayer has migrated the database."""
    cluster = RelayerCluster(devnet, tmp_path_factory.mktemp("cluster"), size=3, lease_ttl=LEASE_TTL)
    folder = tmp_path_factory.mktemp("nodes")
    nodes = [NodeProc(devnet, devnet.new_node(), cluster.front.url, folder, name=f"node-{i}") for i in range(2)]
    try:
        cluster.members[0].start()
        in_parallel(lambda proc: proc.start(), [*cluster.members[1:], *nodes])
        yield cluster, nodes
    finally:
        in_parallel(NodeProc.stop, nodes)
        cluster.stop()


@ape.fixture(scope="module", chain_isolation=False)
def cluster(system) -> RelayerCluster:
    return system[0]


@ape.fixture(scope="module", chain_isolation=False)
def nodes(system) -> list[NodeProc]:
    return system[1]


@ape.fixture(scope="module", chain_isolation=False)
def payers(devnet) -> list[Actor]:  # noqa: F811
    return [devnet.new_payer(100 * OPG) for _ in range(3)]
