"""A node that withholds its payloads is caught through the payer's dispute (real relayer, node and verifier
processes; the payer uses the ``opg`` CLI: ``opg chat`` stores the answer, ``opg dispute`` posts the bond and hands it
to the verifiers).

The node answers wrongly (``--backend builtin?cheat_rate=1``) and registered an endpoint nobody can reach, so no verifier can fetch a
payload from it; the verifiers sample nothing of it (rate 0: this receipt was not drawn). The payer's own copy of
the request and answer, which hashes to the node's signed receipt, is enough to prove the fraud.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from verifier_kit import (
    PASSWORD,
    check,
    fraud_proven,
    keystore,
    live,
    node_proc,
    opg_balance,
    receipt_hash_of,
    slashes,
    stop_all,
    verifier_proc,
    wait_check,
    wait_receipts,
)

from offchain.deployments import PROJECT_ROOT
from offchain.devkit.devnet import OPG, wait_until
from offchain.sdk.wire import parse_receipt
from offchain.verifier.payloads import PayloadClient

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: connection refused


def opg(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "offchain.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=PROJECT_ROOT, env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def setup(devnet, relayer, workdir):
    p = devnet.params
    verifiers = [devnet.new_verifier(3 * p.min_verifier_stake) for _ in range(2)]
    live(devnet, verifiers)
    node = devnet.new_node()
    payer = devnet.new_payer(20 * OPG, extra_opg=5 * OPG)
    node_daemon = node_proc(devnet, relayer, node, workdir, endpoint=UNREACHABLE, backend="builtin?cheat_rate=1")
    vprocs = [verifier_proc(devnet, relayer, v, workdir, sample_rate=0.0, name=f"verifier{i}")
              for i, v in enumerate(verifiers)]
    try:
        node_daemon.start()
        for v in vprocs:
            v.start()
        state = workdir / "payer-state"
        common = ["--rpc-url", devnet.url, "--deployment", str(devnet.deployment_file), "--state-dir", str(state),
                  "--keystore", str(keystore(payer, workdir))]
        yield {"node": node, "payer": payer, "verifiers": verifiers, "vprocs": vprocs, "common": common,
               "node_url": node_daemon.url, "state": state}
    finally:
        stop_all(*vprocs, node_daemon)


def test_withholding_node_is_caught_through_the_payers_dispute(devnet, relayer, setup):
    env = {"OPG_CLIENT_PASSWORD": PASSWORD}
    chat = opg("chat", "What does a verifier do?", "--json", "--no-stream", "--no-session", "--max-tokens", "24",
               "--node-url", setup["node_url"], "--relayer-url", relayer.url, *setup["common"], env=env)
    assert chat.returncode == 0, chat.stderr
    answer = json.loads(chat.stdout)
    rid = answer["receiptId"]
    wait_receipts(relayer, [rid])  # settled: the payer paid for the wrong answer
    record = json.loads((setup["state"] / "requests" / f"{rid}.json").read_text())  # what opg chat stored
    receipt = parse_receipt(record["receipt"])
    h = receipt_hash_of(record["receipt"])
    node, payer = setup["node"], setup["payer"]
    # Nobody can get the payload from the node: its registered endpoint does not answer.
    v = setup["verifiers"][0]
    endpoint = devnet.staking.functions.endpoint(node.address).call()
    assert endpoint == UNREACHABLE
    assert PayloadClient(v.key, v.address, devnet.staking_domain, timeout=2).fetch(endpoint, receipt, rid).payload \
        is None
    assert all(check(p, rid) is None for p in setup["vprocs"])  # not sampled: unchecked so far
    stake_before, _ = devnet.stake(node)
    wallet = opg_balance(devnet, payer)

    dispute = opg("dispute", rid, "--json", "--wait", "60", *setup["common"], env=env)
    assert dispute.returncode == 0, dispute.stderr
    out = json.loads(dispute.stdout)
    assert out["dispute"]["state"] == "opened" and out["dispute"]["bond"] == str(receipt.amount)
    assert out["accepted"] == 2 and out["outcome"] == "fraud_proven"
    for proc in setup["vprocs"]:
        decided = wait_check(proc, rid)
        assert decided["valid"] is False and decided["source"] == "dispute"
    assert fraud_proven(devnet, h)
    stake_after, jailed = devnet.stake(node)
    assert jailed and stake_after < stake_before
    # The bond is back and the charge the payer had paid is refunded.
    assert opg_balance(devnet, payer) == wallet + receipt.amount
    resolved = devnet.staking.events.DisputeResolved().get_logs(from_block=0)
    assert [(e["args"]["payer"], e["args"]["paid_to"]) for e in resolved] == [(payer.address, payer.address)]
    fraud = wait_until(lambda: [s for s in slashes(relayer, "fraud", "confirmed") if s["subject"] == node.address],
                       what="the relayer's fraud proof")
    assert len(fraud) == 1


def test_a_second_dispute_of_a_judged_receipt_posts_no_bond(devnet, relayer, setup):
    env = {"OPG_CLIENT_PASSWORD": PASSWORD}
    [stored] = (setup["state"] / "requests").glob("0x*.json")
    rid = stored.stem
    wallet = opg_balance(devnet, setup["payer"])
    again = opg("dispute", rid, "--json", *setup["common"], env=env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["dispute"]["state"] == "fraud_proven"
    assert opg_balance(devnet, setup["payer"]) == wallet
    wrong_payer = opg("dispute", rid, "--dev-account", "5", "--rpc-url", devnet.url, "--deployment",
                      str(devnet.deployment_file), "--state-dir", str(setup["state"]))
    assert wrong_payer.returncode == 1 and "only the receipt's payer" in wrong_payer.stderr
    assert len(wrong_payer.stderr.strip().splitlines()) == 1
