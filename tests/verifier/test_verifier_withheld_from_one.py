"""Attack R4 (second review): a node gets an honest verifier slashed by withholding a payload from it alone.

The node's registered endpoint is the attacker's own front (a real HTTP server in this process) that forwards every
request to the real node daemon, except the payload requests signed by one honest verifier V, which it refuses. V
draws the receipt (sampling rate 1) but never gets the payload; the other two verifiers A and B get it, find the
answer right and prove it valid on-chain (6 of 7 weight). In protocol v2 V voted ``valid=false`` on a withheld
payload (its withholding report was that verdict), so the relayer then slashed V as a false accuser. Now a withheld
payload ends V's check with a signed ``PayloadWithheld`` report and no verdict: V keeps its stake. Next to it the
honest path: the same verifiers with the front forwarding V's requests too all vote valid, nobody is slashed.

Weights: V 1, A 3, B 3 (A and B alone are a quorum). Real anvil, relayer, node and verifier processes.
"""

from __future__ import annotations

import time

import pytest
from verifier_kit import (
    SelectiveFront,
    check,
    live,
    metric,
    node_proc,
    pay_chat,
    receipt_hash_of,
    set_endpoint,
    slashes,
    start_all,
    stop_all,
    valid_proven,
    verifier_proc,
    wait_check,
    wait_receipts,
)

from offchain.devkit.devnet import OPG, wait_until
from offchain.messages import Verdict


@pytest.fixture(scope="module")
def setup(devnet, relayer, workdir):
    p = devnet.params
    v = devnet.new_verifier(p.min_verifier_stake)
    a, b = (devnet.new_verifier(3 * p.min_verifier_stake) for _ in range(2))
    live(devnet, [v, a, b])
    node = devnet.new_node()
    payer = devnet.new_payer(20 * OPG)
    node_daemon = node_proc(devnet, relayer, node, workdir)  # registers its own URL; the front replaces it below
    front = SelectiveFront(node_daemon.url).start()
    vprocs = [verifier_proc(devnet, relayer, actor, workdir, sample_rate=1.0, deadline=2.0, name=name)
              for actor, name in ((v, "honest-v"), (a, "verifier-a"), (b, "verifier-b"))]
    set_endpoint(devnet, node, front.url)
    try:
        start_all([node_daemon, *vprocs])
        yield {"v": v, "a": a, "b": b, "node": node, "payer": payer, "front": front, "node_url": node_daemon.url,
               "vprocs": dict(zip(("v", "a", "b"), vprocs, strict=True))}
    finally:
        stop_all(*vprocs, node_daemon)
        front.stop()


def test_attack_withholding_from_one_honest_verifier_does_not_get_it_slashed(devnet, relayer, setup):
    v, node, front, procs = setup["v"], setup["node"], setup["front"], setup["vprocs"]
    front.refused = {v.address.lower()}
    v_stake_before = devnet.stake(v)
    node_stake_before = devnet.stake(node)
    served = pay_chat(devnet, setup["node_url"], setup["payer"], "Who checks the node's answers?")
    wait_receipts(relayer, [served["receiptId"]])
    h = receipt_hash_of(served["receipt"])
    rid = served["receiptId"]
    # A and B get the payload, find the answer right: the receipt is proven valid on-chain.
    for name in ("a", "b"):
        decided = wait_check(procs[name], rid)
        assert decided["status"] == "done" and decided["valid"] is True and decided["source"] == "sample"
    wait_until(lambda: valid_proven(devnet, h), what="validity proven by A and B")
    # V never got it: a withholding report, no verdict, no flag.
    mine = wait_check(procs["v"], rid)
    assert mine["status"] == "withheld" and mine["withheld"] is True and mine["valid"] is None
    assert mine["flag"] is None and mine["posted"] is None and mine["reason"].startswith("withheld")
    assert front.refusals >= 2
    wait_until(lambda: check(procs["v"], rid)["reported"] == "stored", what="V's withholding report stored")
    assert relayer.get(f"/nodes/{node.address}").json()["withheld"] == 1
    assert metric(procs["v"], "opg_verifier_receipts_withheld_total") == 1
    assert metric(procs["v"], "opg_verifier_verdicts_posted_total") == 0
    # The report is no vote: the relayer holds no valid=false verdict, so there is no false accuser to slash.
    res = relayer.post("/verdicts", {"receiptHash": h, "valid": True, "verifier": setup["a"].address,
                                     "signature": _verdict(setup["a"], h, True, devnet)})
    assert res.status_code == 200 and res.json()["invalidVerdicts"] == 0
    wait_until(lambda: relayer.get(f"/nodes/{v.address}").json()["slashSubmissions"] == {}, timeout=3,
               what="no slash of V")
    time.sleep(2.0)  # several slasher ticks after the proof: still nothing against V
    assert not slashes(relayer, "false_accuser")
    assert devnet.stake(v) == v_stake_before  # same stake, not jailed
    assert devnet.stake(node) == node_stake_before


def test_honest_payload_release_gets_every_verifiers_valid_verdict(devnet, relayer, setup):
    procs, front = setup["vprocs"], setup["front"]
    front.refused = set()
    stakes = {k: devnet.stake(setup[k]) for k in ("v", "a", "b", "node")}
    served = pay_chat(devnet, setup["node_url"], setup["payer"], "What does a receipt commit to?")
    wait_receipts(relayer, [served["receiptId"]])
    for name in ("v", "a", "b"):
        decided = wait_check(procs[name], served["receiptId"])
        assert decided["status"] == "done" and decided["valid"] is True and not decided["withheld"]
    wait_until(lambda: valid_proven(devnet, receipt_hash_of(served["receipt"])), what="validity proven")
    assert relayer.get(f"/nodes/{setup['node'].address}").json()["withheld"] == 1  # only the attack's receipt
    assert not slashes(relayer, "false_accuser") and not slashes(relayer, "fraud")
    assert {k: devnet.stake(setup[k]) for k in stakes} == stakes


def _verdict(actor, receipt_hash: str, valid: bool, devnet) -> str:
    return Verdict(receipt_hash=receipt_hash, valid=valid).sign_with(actor.key, devnet.staking_domain)
