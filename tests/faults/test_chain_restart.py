"""The chain taken away from the relayer, a node and a verifier at once, on a real anvil: first unreachable (the
anvil process stopped with SIGSTOP: connections open, nothing answers), then stopped (its port refuses connections,
its mempool is lost) and restarted on the same port with the same state (``anvil_dumpState``/``anvil_loadState``).
Meanwhile every daemon keeps answering: 2xx, the node's 402 quotes, or 503 with a clear error (never another 5xx);
a payer served during the outage is served from what the daemons know, or told the chain is unavailable. Once the
chain is back each daemon is healthy again without a restart, and every receipt served before, during and after is
settled exactly once: reconciliations compare the relayer's store with the chain (``devkit.cluster.reconcile``), the
node's and the verifier's stores with the relayer's and the chain (``devkit.reconcile_stores``)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from verifier_kit import live, node_proc, past_devnet, pay_chat, start_all, stop_all, verifier_proc, wait_check

from offchain.devkit.cluster import reconcile
from offchain.devkit.devchain import Anvil
from offchain.devkit.devnet import OPG, Actor, DaemonProc, Devnet, RelayerProc, wait_until
from offchain.devkit.reconcile_stores import reconcile_node, reconcile_verifier
from offchain.storage import Database


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    d = past_devnet(tmp_path_factory.mktemp("devnet"))
    yield d
    d.close()


@dataclass
class Trio:
    relayer: RelayerProc
    node: DaemonProc
    verifier: DaemonProc
    node_actor: Actor
    verifier_actor: Actor

    def daemons(self) -> tuple[DaemonProc, ...]:
        return self.relayer, self.node, self.verifier


@pytest.fixture(scope="module")
def trio(devnet, tmp_path_factory):
    """The relayer, a node and a verifier (sampling every receipt), each a real process on the module's chain."""
    work = tmp_path_factory.mktemp("daemons")
    verifier_actor, node_actor = devnet.new_verifier(), devnet.new_node()
    live(devnet, [verifier_actor])
    relayer = RelayerProc(devnet, work / "relayer.sqlite3", 1, "--rpc-retries", "1").start()
    node = node_proc(devnet, relayer, node_actor, work)
    verifier = verifier_proc(devnet, relayer, verifier_actor, work, sample_rate=1.0)
    try:
        start_all([node, verifier])
        yield Trio(relayer, node, verifier, node_actor, verifier_actor)
    finally:
        stop_all(verifier, node, relayer)


def store_of(proc: DaemonProc) -> Path:
    return Path(proc.args[proc.args.index("--store") + 1])


def documented(res: httpx.Response, *ok: int) -> httpx.Response:
    """A 2xx or one of ``ok``, or a 503 saying what is unavailable; never another 5xx."""
    if res.status_code == 503:
        body = res.json()
        assert body.get("error") or body.get("lastError") or body.get("chainOk") is False, res.text
    else:
        assert res.status_code < 300 or res.status_code in ok, (res.request.url, res.status_code, res.text)
    return res


def probe(devnet: Devnet, trio: Trio, payer: Actor, attempt: str) -> str | None:
    """Every daemon's reads answer as documented; a payer asks the node to serve one request (its receipt id, or
    None when the node said 503)."""
    node = trio.node
    for proc, paths in ((trio.relayer, ("/healthz", "/metrics", "/batches", "/feed/receipts")),
                        (node, ("/healthz", "/metrics")), (trio.verifier, ("/healthz", "/metrics"))):
        for path in paths:
            documented(proc.client.get(path, timeout=20))
    body = {"model": "builtin", "messages": [{"role": "user", "content": attempt}], "max_tokens": 8}
    quote = documented(node.client.post("/v1/chat/completions", json=body, timeout=20,
                                        headers={"X-OPG-Payer": payer.address}), 402)
    if quote.status_code == 503:
        return None
    try:
        return pay_chat(devnet, node.url, payer, attempt, max_tokens=8)["receiptId"]
    except AssertionError as exc:  # pay_chat wants a 200; a 503 here is the documented outage answer
        assert "503" in str(exc) or "chain_unavailable" in str(exc), exc
        return None


def test_chain_unreachable_then_restarted_every_daemon_answers_and_everything_settles_once(devnet, trio):
    relayer, node, verifier = trio.daemons()
    payer = devnet.new_payer(20 * OPG)
    served = [pay_chat(devnet, node.url, payer, "before the outage", max_tokens=8)["receiptId"]]
    relayer.wait_receipts(served)

    # Unreachable: anvil stopped with SIGSTOP, every RPC call hangs until its timeout.
    os.kill(devnet.anvil.process.pid, signal.SIGSTOP)
    try:
        for daemon in trio.daemons():
            documented(daemon.client.get("/healthz", timeout=20))
    finally:
        os.kill(devnet.anvil.process.pid, signal.SIGCONT)

    # Stopped and restarted on the same port with the same state; the daemons are probed while it is down.
    state = devnet.rpc("anvil_dumpState")
    port = devnet.anvil.port
    devnet.anvil.stop()
    try:
        health = wait_until(lambda: (r := relayer.get("/healthz")).status_code == 503 and r.json(),
                            what="the relayer to notice the chain is gone")
        assert health["chainOk"] is False, health
        during = probe(devnet, trio, payer, "during the outage")
    finally:
        devnet.anvil = Anvil(port=port).start()
        assert devnet.rpc("anvil_loadState", state) is True
    served += [during] if during else []
    for daemon in trio.daemons():
        wait_until(lambda d=daemon: d.client.get("/healthz").status_code == 200, timeout=60,
                   what=f"{daemon.name} healthy again without a restart")
    served.append(pay_chat(devnet, node.url, payer, "after the outage", max_tokens=8)["receiptId"])

    relayer.wait_receipts(served, timeout=60)
    for rid in served:
        assert wait_check(verifier, rid, timeout=60)["valid"] is True
    relayer_db, node_db, verifier_db = (Database.sqlite(store_of(p)) for p in (relayer, node, verifier))

    def problems() -> list[str]:
        return (reconcile_node(node_db, relayer_db, trio.node_actor.address, devnet.escrow, devnet.opg)
                + reconcile_verifier(verifier_db, relayer_db, trio.verifier_actor.address, devnet.staking)
                + reconcile(devnet.w3, devnet.escrow, relayer.address, relayer.store).problems)

    # The daemons' workers back off (up to 10 s) after the outage: every store converges on the chain's events.
    wait_until(lambda: not problems(), timeout=60, interval=0.5,
               what="the relayer's, the node's and the verifier's stores to agree with each other and the chain")
    assert problems() == []
