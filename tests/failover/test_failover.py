"""Failover: three relayer processes share one PostgreSQL database and one relayer key; exactly one (the lease's
leader) sends transactions. Payers keep paying two real inference nodes, whose relayer is a round-robin front over the
three, while the leader dies at an exact step: SIGKILL-like exits after signing a batch (recorded, not broadcast),
after its broadcast and before its confirmation, and in the middle of the group commit confirming it; its database
connections cut while the process lives on; the process stopped (SIGSTOP) just before recording a signed transaction
and woken once another relayer leads.

After each: a survivor took the lease with a higher epoch (takeover time printed, asserted loosely), every payer was
answered 200 and no survivor answered 5xx, each channel's ``spent`` equals the highest receipt the node charged and
every receipt the node signed is settled once (``reconcile_node``), the relayer account's nonces are contiguous with
every mined transaction in the journal and no batch mined twice (``cluster.reconcile``), the deposed leader sent
nothing after losing its lease, and it comes back as a follower.

The scenarios run in sequence on one devnet and one cluster (module fixtures), each starting from a quiet cluster.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from node_kit import NodeProc, Payer, chat_body

from offchain.devkit.cluster import (
    EXIT_AFTER_BROADCAST,
    EXIT_AFTER_SIGN,
    EXIT_MID_WRITE,
    FAULT_EXIT_CODE,
    STOP_BEFORE_RECORD,
    ClusterRelayer,
    Lease,
    RelayerCluster,
)
from offchain.devkit.devnet import Actor, Devnet, wait_until
from offchain.devkit.reconcile_stores import reconcile_node, until_consistent
from offchain.storage.database import Database

TAKEOVERS: dict[str, float] = {}


class Traffic:
    """Every payer pays every node, round after round, in a background thread until the block ends; every answer's
    status is kept."""

    def __init__(self, payers: list[Actor], nodes: list[NodeProc]):
        self.clients = [Payer(p, n.url) for p in payers for n in nodes]
        self.statuses: list[int] = []
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for client in self.clients:
                self.statuses.append(client.pay(chat_body(max_tokens=4)).status_code)
            self.rounds += 1

    def more(self, rounds: int = 1, timeout: float = 60) -> None:
        """Wait for ``rounds`` more complete rounds."""
        target = self.rounds + rounds + 1  # the round under way may have started before the fault
        wait_until(lambda: self.rounds >= target, timeout=timeout, what=f"{rounds} more rounds of traffic")

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@dataclass
class Outcome:
    old: ClusterRelayer
    new: ClusterRelayer
    epochs: tuple[int, int]
    takeover: float  # s from the leader's loss to a survivor leading with a higher epoch, all agreeing


def sends_after(relayer: ClusterRelayer, wall: float) -> list[str]:
    """The transactions ``relayer``'s log says it sent after ``wall`` (TxManager logs 'sent <kind> <ref>: <hash>')."""
    out = []
    for line in relayer.logs().splitlines():
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO opg\.tx: sent ", line)
        if m and datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() > wall:
            out.append(line)
    return out


def settled(devnet: Devnet, cluster: RelayerCluster, payers: list[Actor], nodes: list[NodeProc],
            from_block: int) -> None:
    """Wait until every channel's ``spent`` is what its node charged (the 402 challenge's ``charged``) and the store
    is quiet (no receipt pending, no journal row open); then each node's store agrees with the relayers' and the
    chain (``reconcile_node``), and the relayers' store with the chain since ``from_block`` (``cluster.reconcile``:
    what an earlier scenario left is that scenario's failure, not this one's)."""
    channels = [(Payer(p, n.url), n) for p in payers for n in nodes]
    wait_until(lambda: all(devnet.spent(c.actor, n.actor) == c.charged() for c, n in channels), timeout=30,
               what="every channel settled up to what its node charged")
    relayer_db = Database.at(cluster.database)
    try:
        wait_until(lambda: relayer_db.read_one("SELECT (SELECT count(*) FROM receipts WHERE status = 'pending')"
                                               " + (SELECT count(*) FROM transactions WHERE done_at IS NULL)")[0] == 0,
                   timeout=15, what="no receipt pending, no transaction open")
        for node in nodes:
            node_db = Database.at(node.store)
            try:
                assert until_consistent(lambda db=node_db, n=node: reconcile_node(
                    db, relayer_db, n.address, devnet.escrow, devnet.opg), timeout=15) == []
            finally:
                node_db.close()
    finally:
        relayer_db.close()
    cluster.reconcile(from_block).assert_ok()


def failover(name: str, devnet: Devnet, cluster: RelayerCluster, nodes: list[NodeProc], payers: list[Actor],
             fault: Callable[[ClusterRelayer], float | None],
             after_takeover: Callable[[ClusterRelayer], None] | None = None) -> Outcome:
    """Traffic on; ``fault(leader)`` returns once the leader is lost (the monotonic time it was lost, None: now); a
    survivor takes over (then ``after_takeover(old leader)``); the old leader restarted if it died; traffic settles;
    every invariant of the module docstring checked."""
    old, lease = cluster.leader()
    survivors = cluster.followers(old)
    start_block = devnet.w3.eth.block_number + 1
    mark = len(cluster.front.answers)
    with Traffic(payers, nodes) as traffic:
        lost = fault(old) or time.monotonic()
        new, new_lease = cluster.leader(timeout=10 * cluster.lease_ttl + 10, newer_than=lease.epoch, among=survivors)
        takeover = time.monotonic() - lost
        lost_at = time.time()  # the old leader may send nothing after this
        if after_takeover is not None:
            after_takeover(old)
        restart = threading.Thread(target=old.start) if not old.alive else None
        if restart is not None:
            restart.start()
        traffic.more(1)
    TAKEOVERS[name] = takeover
    print(f"\n{name}: {old.instance} (epoch {lease.epoch}) -> {new.instance} (epoch {new_lease.epoch}) "
          f"in {takeover:.2f} s (lease TTL {cluster.lease_ttl} s); takeovers so far: "
          + ", ".join(f"{k} {v:.2f} s" for k, v in TAKEOVERS.items()))
    assert traffic.statuses and set(traffic.statuses) == {200}, traffic.statuses
    assert cluster.front.failures([s.url for s in survivors], since=mark) == []
    settled(devnet, cluster, payers, nodes, start_block)
    if restart is not None:
        restart.join()
    # The deposed leader sent nothing after its successor's takeover; back, it follows the new leader.
    back, back_lease = cluster.leader(timeout=10 * cluster.lease_ttl + 10)
    assert back is new and back_lease.epoch == new_lease.epoch
    assert old.lease() == Lease("follower", old.instance, new.instance, new_lease.epoch)
    assert sends_after(old, lost_at) == []
    assert takeover < 5 * cluster.lease_ttl + 3, f"takeover took {takeover:.2f} s"
    return Outcome(old, new, (lease.epoch, new_lease.epoch), takeover)


def test_leader_killed_after_signing_a_batch(devnet, cluster, nodes, payers):
    """Exit hard once a batch transaction is signed and in the journal, before its broadcast: the new leader
    broadcasts that same signed transaction (its hash is the one mined), nothing is signed twice."""
    def fault(leader: ClusterRelayer) -> None:
        leader.arm(EXIT_AFTER_SIGN)
        assert cluster.wait_exit(leader) == FAULT_EXIT_CODE

    failover("after signing", devnet, cluster, nodes, payers, fault)


def test_leader_killed_after_broadcast_before_confirmation(devnet, cluster, nodes, payers):
    """The batch transaction reaches the chain's mempool (automine off), the leader dies before it is mined: the new
    leader follows that transaction to confirmation instead of sending the batch again."""
    def fault(leader: ClusterRelayer) -> None:
        devnet.rpc("evm_setAutomine", False)
        try:
            leader.arm(EXIT_AFTER_BROADCAST)
            assert cluster.wait_exit(leader) == FAULT_EXIT_CODE
            assert devnet.w3.eth.get_transaction_count(cluster.address, "pending") \
                == devnet.w3.eth.get_transaction_count(cluster.address, "latest") + 1
        finally:
            devnet.rpc("evm_mine")
            devnet.rpc("evm_setAutomine", True)

    failover("after broadcast", devnet, cluster, nodes, payers, fault)


def test_leader_killed_in_the_middle_of_a_batched_write(devnet, cluster, nodes, payers):
    """The batch is mined; the leader dies inside the group commit that records it confirmed (with whatever other
    writes share that commit): the database rolls the group back, the new leader confirms the batch from the chain."""
    def fault(leader: ClusterRelayer) -> None:
        leader.arm(EXIT_MID_WRITE)
        assert cluster.wait_exit(leader) == FAULT_EXIT_CODE

    failover("mid write", devnet, cluster, nodes, payers, fault)


def test_leader_cut_from_the_database_sends_nothing_more(devnet, cluster, nodes, payers):
    """Every database connection of the leader but its store writer (its lease connection, readers, listener) is
    terminated, again and again for three lease TTLs, while its process runs on: a follower takes the lease; the
    deposed leader, alive and still able to write, sends nothing after that (every transaction of the relayer account
    on the chain is in the journal, and its log shows no send after the takeover) and follows without a restart."""
    cutting: list[threading.Thread] = []

    def fault(leader: ClusterRelayer) -> float:
        cut = threading.Thread(target=cluster.cut_database, args=(leader, 3 * cluster.lease_ttl),
                               kwargs={"keep_writer": True}, daemon=True)
        cutting.append(cut)
        cut.start()
        return time.monotonic()

    pid = cluster.leader()[0].process.pid
    outcome = failover("database cut", devnet, cluster, nodes, payers, fault,
                       after_takeover=lambda old: cutting[0].join())
    assert outcome.old.process.pid == pid  # alive all along, not restarted


def test_leader_stopped_before_its_record_is_fenced_when_woken(devnet, cluster, nodes, payers):
    """The leader stops itself (SIGSTOP) with a batch transaction signed, just before its write-ahead record (it keeps
    its connections and its belief that it leads); a follower takes the lease; woken (SIGCONT), the old leader goes on
    to record that transaction with its stale epoch: the fence refuses it (its ``opg_relayer_lease_fenced`` counts
    it), nothing of it is broadcast, and it follows without a restart."""
    def fault(leader: ClusterRelayer) -> None:
        leader.arm(STOP_BEFORE_RECORD)
        cluster.wait_stopped(leader)

    old = cluster.leader()[0]
    pid = old.process.pid
    try:
        failover("stopped before its record", devnet, cluster, nodes, payers, fault, after_takeover=cluster.resume)
    finally:
        if old.paused:
            cluster.resume(old)
    assert old.process.pid == pid  # woken, not restarted
    # the woken process's send reaches its record when its threads get the CPU again (seconds on a loaded machine)
    wait_until(lambda: old.metric("opg_relayer_lease_fenced") >= 1, timeout=60, what="the woken leader's record fenced")
