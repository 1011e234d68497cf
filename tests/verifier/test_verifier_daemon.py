"""The verifier daemon against a real relayer and chain, without a node daemon: the relayer's feed and withholding
reports, a payer's dispute (``opg dispute``) judged on the payer's own payload, a flagged receipt whose node does not
answer, a flag-only false accuser, heartbeats. Receipts are signed here exactly as a builtin node signs them."""

from __future__ import annotations

import json
import time

import pytest
from verifier_kit import (
    check,
    dispute_body,
    fraud_proven,
    keystore,
    live,
    metric,
    opg_balance,
    serve_locally,
    slashes,
    stop_all,
    valid_proven,
    verifier_proc,
    wait_check,
)

from offchain.cli import main as opg
from offchain.devkit.devchain import transact
from offchain.devkit.devnet import OPG, item, wait_until
from offchain.messages import PayloadWithheld, Verdict

DECIDED: dict[str, str] = {}  # receipt ids decided by the tests above, for the restart test


@pytest.fixture(scope="module")
def actors(devnet):
    """V: the verifier daemon (weight 3, checks only flags and disputes); C: a verifier without a daemon (weight 1),
    the accuser. V alone holds 75 % of the live weight: a quorum."""
    v = devnet.new_verifier(3 * devnet.params.min_verifier_stake)
    c = devnet.new_verifier(devnet.params.min_verifier_stake)
    live(devnet, [v, c])
    return {"v": v, "c": c}


@pytest.fixture(scope="module")
def verifier(devnet, relayer, actors, workdir):
    proc = verifier_proc(devnet, relayer, actors["v"], workdir, sample_rate=0.0, deadline=6.0).start()
    yield proc
    stop_all(proc)


def settle(relayer, served: dict) -> str:
    res = relayer.post("/settle", item(served["receipt"], served["voucher"]))
    assert res.status_code == 200, res.text
    assert res.json()["id"] == served["id"]
    return served["id"]


def flag(devnet, actor, served: dict) -> None:
    r = served["receipt"]
    plain = r.receipt
    transact(devnet.w3, actor.key, devnet.staking.functions.flag(plain.as_tuple(), bytes.fromhex(r.signature[2:])))


def test_feed_serves_accepted_receipts_in_order_after_a_cursor(devnet, relayer):
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    served, cumulative = [], 0
    for i in range(3):
        s = serve_locally(devnet, payer, node, f"feed question {i}", cumulative)
        cumulative = s["receipt"].cumulative
        settle(relayer, s)
        served.append(s)
    after = relayer.get("/feed/receipts", params={"after": 0, "limit": 1000}).json()
    mine = [e for e in after["receipts"] if e["receipt"]["node"] == node.address]
    assert [e["id"] for e in mine] == [s["id"] for s in served]
    assert [e["receiptHash"] for e in mine] == [s["receiptHash"] for s in served]
    assert mine[0]["receipt"]["signature"] == served[0]["receipt"].signature
    assert mine[0]["receipt"]["amount"] == str(served[0]["receipt"].amount)
    page = relayer.get("/feed/receipts", params={"after": mine[0]["seq"], "limit": 1}).json()
    assert [e["id"] for e in page["receipts"]] == [served[1]["id"]] and page["next"] == mine[1]["seq"]
    started = time.monotonic()
    empty = relayer.get("/feed/receipts", params={"after": after["next"], "wait": 0.5}).json()
    assert empty == {"receipts": [], "next": after["next"]} and time.monotonic() - started >= 0.45


def test_withholding_report_needs_an_active_verifiers_signature_and_is_no_vote(devnet, relayer, actors):
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    s = serve_locally(devnet, payer, node, "report me")
    settle(relayer, s)
    c = actors["c"]
    h = s["receiptHash"]
    # A Verdict(valid=false) is not a report any more (it would be a slashable vote): refused.
    for valid in (True, False):
        verdict = Verdict(receipt_hash=h, valid=valid).sign_with(c.key, devnet.staking_domain)
        res = relayer.post("/reports/withholding", {"receiptHash": h, "verifier": c.address, "signature": verdict})
        assert res.status_code == 400 and res.json()["error"] == "invalid_signature"
    other_node = PayloadWithheld(receipt_hash=h, node=payer.address).sign_with(c.key, devnet.staking_domain)
    res = relayer.post("/reports/withholding", {"receiptHash": h, "verifier": c.address, "signature": other_node})
    assert res.status_code == 400 and res.json()["error"] == "invalid_signature"
    outsider = devnet.new_payer(0)
    sig = PayloadWithheld(receipt_hash=h, node=node.address).sign_with(outsider.key, devnet.staking_domain)
    res = relayer.post("/reports/withholding", {"receiptHash": h, "verifier": outsider.address, "signature": sig})
    assert res.status_code == 400 and res.json()["error"] == "verifier_not_active"
    nowhere = "0x" + "ab" * 32
    unknown = relayer.post("/reports/withholding", {"receiptHash": nowhere, "verifier": c.address, "signature":
                                                    PayloadWithheld(receipt_hash=nowhere, node=node.address)
                                                    .sign_with(c.key, devnet.staking_domain)})
    assert unknown.status_code == 404
    assert relayer.get(f"/nodes/{node.address}").json()["withheld"] == 0
    # C's real report is stored and counted for the node, but it is no vote: no valid=false verdict at the relayer.
    report = PayloadWithheld(receipt_hash=h, node=node.address).sign_with(c.key, devnet.staking_domain)
    res = relayer.post("/reports/withholding", {"receiptHash": h, "verifier": c.address, "signature": report})
    assert res.status_code == 200 and res.json()["stored"] and res.json()["reports"] == 1
    valid = Verdict(receipt_hash=h, valid=True).sign_with(actors["v"].key, devnet.staking_domain)
    res = relayer.post("/verdicts", {"receiptHash": h, "valid": True, "verifier": actors["v"].address,
                                     "signature": valid})
    assert res.status_code == 200 and res.json()["invalidVerdicts"] == 0
    view = relayer.get(f"/nodes/{node.address}").json()
    assert view["receipts"] == 1 and view["withheld"] == 1 and view["slashes"] == 0


def test_dispute_needs_the_payers_onchain_dispute_and_a_matching_payload(devnet, relayer, verifier):
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    s = serve_locally(devnet, payer, node, "not disputed yet")
    settle(relayer, s)
    res = verifier.client.post("/disputes", json=dispute_body(s))
    assert res.status_code == 409 and res.json()["error"] == "not_disputed"
    res = verifier.client.post("/disputes", json={**dispute_body(s), "output": s["output"] + "!"})
    assert res.status_code == 400 and res.json()["error"] == "payload_mismatch"
    other = devnet.new_node()
    forged = serve_locally(devnet, payer, other, "not disputed yet")
    body = {**dispute_body(s), "receipt": {**dispute_body(s)["receipt"],
                                           "signature": forged["receipt"].signature}}
    res = verifier.client.post("/disputes", json=body)
    assert res.status_code == 400 and res.json()["error"] == "invalid_signature"


def test_payers_dispute_of_a_wrong_answer_proves_fraud_and_returns_the_bond(devnet, relayer, verifier, workdir,
                                                                            monkeypatch, capsys):
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG, extra_opg=5 * OPG)
    s = serve_locally(devnet, payer, node, "Which colour is the sky?", cheat=True)
    settle(relayer, s)
    relayer.wait_receipts([s["id"]])  # settled: the payer paid for it
    stake_before, _ = devnet.stake(node)
    wallet = opg_balance(devnet, payer)
    payload = workdir / "dispute-payload.json"
    payload.write_text(json.dumps(dispute_body(s)))
    monkeypatch.setenv("OPG_CLIENT_PASSWORD", "test-password")
    code = opg(["dispute", s["id"], "--payload", str(payload), "--rpc-url", devnet.url, "--deployment",
                         str(devnet.deployment_file), "--keystore", str(keystore(payer, workdir)), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    assert out["dispute"]["state"] == "opened" and out["dispute"]["bond"] == str(s["receipt"].amount)
    assert out["accepted"] >= 1 and any(r["url"].startswith(verifier.url) for r in out["verifiers"] if r["accepted"])
    assert opg_balance(devnet, payer) == wallet - s["receipt"].amount  # the bond is held
    decided = wait_check(verifier, s["id"])
    assert decided["valid"] is False and decided["source"] == "dispute" and "outputHash" in decided["reason"]
    DECIDED["fraud"] = s["id"]
    wait_until(lambda: fraud_proven(devnet, s["receiptHash"]), what="fraud proven")
    stake_after, jailed = devnet.stake(node)
    assert jailed and stake_after < stake_before
    # The bond came back and the settled charge was refunded.
    assert opg_balance(devnet, payer) == wallet + s["receipt"].amount
    assert decided["flag"] is None  # the payer's dispute is already public: no second flag


def test_flagged_receipt_whose_node_does_not_answer_is_reported_withheld_without_a_verdict(devnet, relayer,
                                                                                           verifier, actors):
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)  # endpoint http://node.invalid
    s = serve_locally(devnet, payer, node, "nobody will see this")
    settle(relayer, s)
    withheld_before = metric(verifier, "opg_verifier_receipts_withheld_total")
    verdicts_before = metric(verifier, "opg_verifier_verdicts_posted_total")
    flag(devnet, actors["c"], s)
    decided = wait_check(verifier, s["id"], timeout=30)
    assert decided["status"] == "withheld" and decided["valid"] is None and decided["withheld"]
    assert decided["source"] == "flag" and decided["flag"] is None and decided["posted"] is None
    assert decided["attempts"] >= 2 and decided["reason"].startswith("withheld")
    assert metric(verifier, "opg_verifier_receipts_withheld_total") == withheld_before + 1
    wait_until(lambda: relayer.get(f"/nodes/{node.address}").json()["withheld"] == 1, what="withholding report")
    assert check(verifier, s["id"])["reported"] == "stored"
    time.sleep(1.0)  # several relayer ticks: a report is no vote, nothing is proven either way
    assert metric(verifier, "opg_verifier_verdicts_posted_total") == verdicts_before
    assert not fraud_proven(devnet, s["receiptHash"])


def test_receipt_of_a_model_this_verifier_cannot_run_is_skipped_and_counted(devnet, relayer, verifier, actors):
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    s = serve_locally(devnet, payer, node, "a question for another model", model_id="0x" + "ee" * 32)
    settle(relayer, s)
    flag(devnet, actors["c"], s)
    decided = wait_check(verifier, s["id"])
    assert decided["status"] == "skipped" and decided["valid"] is None and "model" in decided["reason"]
    assert metric(verifier, "opg_verifier_receipts_skipped_total") >= 1
    assert not relayer.get(f"/nodes/{node.address}").json()["withheld"]


def test_flag_only_accuser_of_a_valid_answer_is_slashed_as_false_accuser(devnet, relayer, verifier, actors,
                                                                        workdir, monkeypatch, capsys):
    c = actors["c"]
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG, extra_opg=5 * OPG)
    s = serve_locally(devnet, payer, node, "What is two plus two?")
    settle(relayer, s)
    node_stake, _ = devnet.stake(node)
    c_stake, _ = devnet.stake(c)
    flag(devnet, c, s)  # C accuses on-chain only (no verdict at the relayer)
    payload = workdir / "honest-payload.json"
    payload.write_text(json.dumps(dispute_body(s)))
    monkeypatch.setenv("OPG_CLIENT_PASSWORD", "test-password")
    assert opg(["dispute", s["id"], "--payload", str(payload), "--rpc-url", devnet.url, "--deployment",
                         str(devnet.deployment_file), "--keystore", str(keystore(payer, workdir)),
                         "--verifier", verifier.url]) == 0
    assert "dispute opened" in capsys.readouterr().out
    decided = wait_check(verifier, s["id"])
    assert decided["valid"] is True, decided
    wait_until(lambda: valid_proven(devnet, s["receiptHash"]), what="validity proven")
    accused = wait_until(lambda: slashes(relayer, "false_accuser", "confirmed"), what="false accuser slashed")
    assert [a["subject"] for a in accused] == [c.address]
    c_after, c_jailed = devnet.stake(c)
    assert c_jailed and c_after == c_stake - int(accused[0]["amount"])
    assert devnet.stake(node) == (node_stake, False)  # the honest node kept its stake, and got the payer's bond
    assert devnet.staking.functions.disputes(bytes.fromhex(s["receiptHash"][2:])).call()[1] == 0


def test_verifier_heartbeats_every_epoch(devnet, verifier, actors):
    v = actors["v"]
    distributor = devnet.system.distributor
    wait_until(lambda: metric(verifier, "opg_verifier_heartbeats_total") >= 1, what="first heartbeat")
    epoch = distributor.functions.epoch_now().call()
    stake, _ = devnet.stake(v)
    assert devnet.staking.functions.weight_in(epoch + 1, v.address).call() == stake
    before = metric(verifier, "opg_verifier_heartbeats_total")
    while distributor.functions.epoch_now().call() == epoch:
        devnet.advance(devnet.params.epoch_length // 2)
    wait_until(lambda: metric(verifier, "opg_verifier_heartbeats_total") == before + 1, what="next epoch's heartbeat")
    assert devnet.staking.functions.weight_in(epoch + 2, v.address).call() == stake
    health = verifier.client.get("/healthz").json()
    assert health["ok"] and health["active"] and int(health["voteWeight"]) == stake
    workers = {w["name"]: w for w in health["workers"]}  # the supervised loops, each alive and ticking
    assert sorted(workers) == ["chain", "feed", "outbox", "work"]
    assert all(w["alive"] and w["ticks"] > 0 and w["lastOk"] for w in workers.values())


def test_restarted_verifier_resumes_from_its_cursor_with_its_verdicts(devnet, relayer, verifier):
    before = verifier.client.get("/healthz").json()["feedCursor"]
    assert before > 0
    kept = verifier.client.get(f"/checks/{DECIDED['fraud']}").json()
    verifier.stop()
    node, payer = devnet.new_node(), devnet.new_payer(10 * OPG)
    settle(relayer, serve_locally(devnet, payer, node, "while the verifier was down"))
    verifier.start()
    wait_until(lambda: verifier.client.get("/healthz").json()["feedCursor"] == before + 1, what="feed resumed")
    again = verifier.client.get(f"/checks/{DECIDED['fraud']}").json()
    assert again == kept  # the same verdict, signed once, still stored
    assert metric(verifier, "opg_verifier_receipts_seen_total") == 1  # counters are per run; the feed is not re-read
