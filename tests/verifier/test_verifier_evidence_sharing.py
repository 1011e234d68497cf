"""A cheating node releases a payload only to the verifier that asked first (the one that drew the receipt) and
withholds it from every other verifier. Since a withheld payload is no vote (attack R4), the others could not reach a
quorum on their own; the verifier that found the fraud therefore flags it and hands the node's payload (which hashes
to the node's signed receipt: nobody can forge it) to every other active verifier's ``POST /disputes``, which takes
it for a flagged receipt. The fraud is proven and the node slashed without any payer's dispute.

Weights: A 3 (draws every receipt), B 3 and C 1 (draw nothing; they check what is flagged). A alone is no quorum.
Real anvil, relayer, node (``--backend builtin?cheat_rate=1``) and verifier processes; the node's public endpoint is its own front.
"""

from __future__ import annotations

import pytest
from verifier_kit import (
    SelectiveFront,
    check,
    fraud_proven,
    live,
    metric,
    node_proc,
    pay_chat,
    receipt_hash_of,
    set_endpoint,
    start_all,
    stop_all,
    verifier_proc,
    wait_check,
    wait_receipts,
)

from offchain.devkit.devnet import OPG, wait_until


@pytest.fixture(scope="module")
def setup(devnet, relayer, workdir):
    p = devnet.params
    a, b = (devnet.new_verifier(3 * p.min_verifier_stake) for _ in range(2))
    c = devnet.new_verifier(p.min_verifier_stake)
    live(devnet, [a, b, c])
    node = devnet.new_node()
    node_daemon = node_proc(devnet, relayer, node, workdir, backend="builtin?cheat_rate=1")
    front = SelectiveFront(node_daemon.url).start()
    set_endpoint(devnet, node, front.url)
    procs = {"a": verifier_proc(devnet, relayer, a, workdir, sample_rate=1.0, deadline=2.0, name="verifier-a"),
             "b": verifier_proc(devnet, relayer, b, workdir, sample_rate=0.0, deadline=2.0, name="verifier-b"),
             "c": verifier_proc(devnet, relayer, c, workdir, sample_rate=0.0, deadline=2.0, name="verifier-c")}
    try:
        start_all([node_daemon, *procs.values()])
        yield {"a": a, "b": b, "c": c, "node": node, "front": front, "procs": procs, "node_url": node_daemon.url,
               "payer": devnet.new_payer(20 * OPG)}
    finally:
        stop_all(*procs.values(), node_daemon)
        front.stop()


def test_evidence_for_a_receipt_nobody_accused_is_refused(devnet, relayer, setup):
    """Without an on-chain flag or dispute, nobody can make the verifiers re-execute for free (here the node withholds
    from every verifier, so nobody flags the receipt)."""
    procs = setup["procs"]
    setup["front"].refused = {setup[k].address.lower() for k in ("a", "b", "c")}
    served = pay_chat(devnet, setup["node_url"], setup["payer"], "Is this receipt accused?")
    body = {"receipt": served["receipt"], "request": served["request"], "output": served["answer"]}
    if served["payment"].get("tokensHash"):
        body["tokensHash"] = served["payment"]["tokensHash"]
    res = procs["b"].client.post("/disputes", json=body)
    assert res.status_code == 409 and res.json()["error"] == "not_disputed"
    assert wait_check(procs["a"], served["receiptId"])["status"] == "withheld"  # A drew it, never got it: no flag


def test_attack_payload_released_only_to_the_sampler_is_shared_and_the_fraud_proven(devnet, relayer, setup):
    procs, node = setup["procs"], setup["node"]
    setup["front"].refused = {setup["b"].address.lower(), setup["c"].address.lower()}
    stake_before = devnet.stake(node)[0]
    served = pay_chat(devnet, setup["node_url"], setup["payer"], "What does the relayer batch?")
    wait_receipts(relayer, [served["receiptId"]], statuses=("settled", "pending"))
    rid, h = served["receiptId"], receipt_hash_of(served["receipt"])
    mine = wait_check(procs["a"], rid)
    assert mine["valid"] is False and mine["source"] == "sample"
    wait_until(lambda: check(procs["a"], rid)["flag"] == "sent", what="A flags the receipt")
    # B and C never get the payload from the node, but judge A's evidence (the node's own payload).
    for name in ("b", "c"):
        decided = wait_check(procs[name], rid, timeout=60)
        assert decided["valid"] is False and decided["status"] == "done", decided
    wait_until(lambda: metric(procs["a"], "opg_verifier_evidence_shared_total") == 2, what="evidence taken by B, C")
    assert setup["front"].refusals >= 1  # B and C asked the node and were refused
    wait_until(lambda: fraud_proven(devnet, h), timeout=60, what="fraud proven without the payer")
    stake_after, jailed = devnet.stake(node)
    assert jailed and stake_after < stake_before
