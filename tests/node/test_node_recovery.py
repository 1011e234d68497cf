"""The node's durability: it answers while the relayer is down (checking credits on-chain), keeps every receipt in its
store, survives SIGKILL between answering and handing over, hands the receipt over byte for byte once the relayer is
back (paid exactly once, even when resent), rebuilds its channels from the store, caps each payer's unsettled
exposure, and shuts down cleanly on SIGTERM. The tests run in order and share one node and one relayer."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import ape
from node_kit import NodeProc, Payer, chat_body, keystore, payment_of, requirement, wait_receipts_settled, wei

from offchain.deployments import PROJECT_ROOT
from offchain.devkit.devnet import OPG, Devnet, RelayerProc, wait_until

MAX_UNSETTLED = "0.005"  # OPG: room for one request of the size below, not two


@ape.fixture(scope="module", chain_isolation=False)
def devnet(tmp_path_factory):
    d = Devnet(tmp_path_factory.mktemp("devnet"))  # the chain's clock at the wall clock: receipts age from now
    yield d
    d.close()


@ape.fixture(scope="module", chain_isolation=False)
def relayer(devnet, workdir):
    proc = RelayerProc(devnet, workdir / "relayer.sqlite3", dev_account=2)  # not started: the relayer is down
    yield proc
    proc.stop()


@ape.fixture(scope="module", chain_isolation=False)
def node_actor(devnet):
    return devnet.new_node()


@ape.fixture(scope="module", chain_isolation=False)
def node(devnet, relayer, workdir, node_actor):
    proc = NodeProc(devnet, node_actor, relayer.url, workdir, "--max-unsettled", MAX_UNSETTLED).start()
    yield proc
    proc.stop()


@ape.fixture(scope="module", chain_isolation=False)
def payer(devnet, node):
    return Payer(devnet.new_payer(deposit=10 * OPG), node.url)


@ape.fixture(scope="module", chain_isolation=False)
def first(node, payer) -> dict:
    """The answer served while the relayer was down."""
    res = payer.pay(chat_body("Served while the relayer is down", max_tokens=20))
    assert res.status_code == 200, res.text
    return {"payment": payment_of(res), "answer": res.json()}


def test_the_node_answers_while_the_relayer_is_down_and_keeps_the_receipt(node, first):
    assert first["payment"]["success"] is True and int(first["payment"]["cost"]) > 0
    h = node.client.get("/healthz").json()
    assert h["ok"] is True and h["relayerReachable"] is False
    assert h["outboxBacklog"] == 1 and h["outboxOldestAge"] is not None
    assert 'opg_node_verify_total{scheme="opg-credit",result="on_chain_only"} 1' in node.client.get("/metrics").text


def test_unsettled_exposure_past_the_limit_is_refused(node, payer, first):
    body = chat_body("One more, please", max_tokens=20)
    res = payer.pay(body)
    assert res.status_code == 402
    challenge = res.json()
    assert challenge["error"] == "exposure_limit" and str(wei(MAX_UNSETTLED)) in challenge["reason"]
    assert requirement(challenge, "opg-credit")["extra"]["charged"] == first["payment"]["cumulative"]


def test_a_receipt_survives_sigkill_and_is_paid_once_when_the_relayer_returns(node, relayer, devnet, payer, first,
                                                                              node_actor):
    node.kill9()
    relayer.start()
    node.start()
    payment = first["payment"]
    [view] = wait_receipts_settled(relayer, [payment["receiptId"]])
    r = payment["receipt"]
    assert (view["requestId"], view["amount"], view["cumulative"], view["timestamp"]) == \
        (r["requestId"], r["amount"], r["cumulative"], r["timestamp"])
    assert devnet.spent(payer.actor, node_actor) == int(payment["cost"])
    wait_until(lambda: node.client.get("/healthz").json()["outboxBacklog"] == 0, what="the outbox to drain")


def test_channel_state_is_rebuilt_from_the_store(node, payer, first):
    body = chat_body("After the restart", max_tokens=20)
    assert payer.charged(body) == int(first["payment"]["cumulative"])
    res = payer.pay(body)  # settlement caught up: the exposure is back under the limit
    assert res.status_code == 200, res.text
    assert int(payment_of(res)["cumulative"]) == int(first["payment"]["cumulative"]) + int(payment_of(res)["cost"])


def test_a_receipt_resent_after_a_crash_is_a_duplicate_never_a_second_payment(node, relayer, devnet, payer,
                                                                              node_actor):
    spent = wait_until(lambda: devnet.spent(payer.actor, node_actor) if
                       relayer.get(f"/channels/{payer.actor.address}/{node_actor.address}").json()["pendingReceipts"]
                       == 0 else None, what="the channel to settle")
    assert node.stop() in (0, -15)
    db = sqlite3.connect(node.store)  # as if the node had died after sending, before recording the answer
    db.execute("UPDATE receipts SET outbox = 'pending'")
    db.commit()
    db.close()
    duplicates = _metric(relayer, "opg_relayer_receipts_duplicate_total")
    node.start()
    wait_until(lambda: node.client.get("/healthz").json()["outboxBacklog"] == 0, what="the resend")
    assert _metric(relayer, "opg_relayer_receipts_duplicate_total") == duplicates + 2
    assert node.client.get("/healthz").json()["outboxRefused"] == 0
    time.sleep(1)
    assert devnet.spent(payer.actor, node_actor) == spent


def test_the_node_settles_its_own_vouchers_without_the_relayer(node, relayer, devnet, payer, node_actor, workdir):
    relayer.stop()
    res = payer.pay(chat_body("Settle this one yourself", max_tokens=12))
    assert res.status_code == 200, res.text
    payment = payment_of(res)
    assert devnet.spent(payer.actor, node_actor) < int(payment["cumulative"])
    ks, password = keystore(node_actor, workdir)
    args = [sys.executable, "-m", "offchain.cli", "node", "settle", "--rpc-url", devnet.url, "--deployment",
            str(devnet.deployment_file), "--store", str(node.store), "--keystore", str(ks), "--password-file",
            str(password)]
    dry = subprocess.run([*args, "--dry-run", "--json"], capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert dry.returncode == 0, dry.stderr
    [claim] = json.loads(dry.stdout)["claims"]
    assert claim["payer"] == payer.actor.address and claim["total"] == payment["cumulative"] and claim["outcome"] == 0
    assert devnet.spent(payer.actor, node_actor) < int(payment["cumulative"])
    done = subprocess.run(args, capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert done.returncode == 0 and "settled in 0x" in done.stdout, done.stdout + done.stderr
    assert devnet.spent(payer.actor, node_actor) == int(payment["cumulative"])
    relayer.start()  # the outbox hands the receipt over; the relayer finds the channel paid: settled, not paid twice
    wait_receipts_settled(relayer, [payment["receiptId"]])
    assert devnet.spent(payer.actor, node_actor) == int(payment["cumulative"])
    again = subprocess.run(args, capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert again.returncode == 0 and "nothing to settle" in again.stdout


def test_sigterm_stops_the_node_cleanly(node):
    assert node.stop() in (0, -15)  # uvicorn re-raises the signal after its graceful shutdown
    log = node.logs()
    assert "Application shutdown complete" in log and "node stopped: 0 receipt(s) left to hand over" in log


def _metric(relayer, name: str) -> float:
    for line in relayer.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0
