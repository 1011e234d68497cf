"""Slashing through the relayer: equivocation it detects itself, fraud from a verifier quorum, lazy verifiers."""

from __future__ import annotations

from conftest import OPG, ChannelSim, item, rand32, wait_until

from offchain.messages import Verdict


def slashes(relayer, kind: str) -> list[dict]:
    return [s for s in relayer.get("/slashes").json() if s["kind"] == kind]


def test_equivocation_is_detected_and_slashed(relayer, devnet):
    node, payer = devnet.new_node(), devnet.new_payer()
    stake_before, jailed = devnet.stake(node)
    assert not jailed
    ch = ChannelSim(devnet, payer, node)
    voucher = ch.voucher(5 * OPG)
    request_id = rand32()
    a = ch.receipt(OPG, cumulative=OPG, request_id=request_id)
    b = ch.receipt(OPG, cumulative=OPG, request_id=request_id, output_hash=rand32())
    first = relayer.post("/settle", item(a, voucher))
    assert first.status_code == 200
    second = relayer.post("/settle", item(b, voucher))
    assert second.status_code == 409, second.text
    assert second.json()["error"] == "equivocation" and second.json()["field"] == "receipt.requestId"
    assert first.json()["id"] in second.json()["reason"]
    # The same conflicting receipt again: the same answer, one piece of evidence.
    assert relayer.post("/settle", item(b, voucher)).status_code == 200  # duplicate of a stored (rejected) receipt
    done = wait_until(lambda: [s for s in slashes(relayer, "equivocation")
                               if s["subject"] == node.address and s["status"] == "confirmed"],
                      what="equivocation slash confirmed")
    assert len(done) == 1 and int(done[0]["amount"]) > 0 and done[0]["txHash"]
    stake_after, jailed = devnet.stake(node)
    assert jailed
    assert stake_after == stake_before - int(done[0]["amount"])
    assert int(done[0]["amount"]) == (stake_before * devnet.params.equivocation_slash_bps + 9_999) // 10_000


def test_equivocation_inside_one_bulk_request(relayer, devnet):
    node, payer = devnet.new_node(), devnet.new_payer()
    ch = ChannelSim(devnet, payer, node)
    voucher = ch.voucher(5 * OPG)
    rid = rand32()
    a = ch.receipt(OPG, cumulative=OPG, request_id=rid)
    b = ch.receipt(2 * OPG, cumulative=2 * OPG, request_id=rid)
    res = relayer.post("/settle", {"receipts": [item(a, voucher), item(b, voucher)]}).json()
    assert res["results"][0]["status"] == "pending"
    assert res["results"][1]["error"] == "equivocation" and res["results"][1]["status"] == "rejected"
    wait_until(lambda: [s for s in slashes(relayer, "equivocation")
                        if s["subject"] == node.address and s["status"] == "confirmed"], what="slash")
    assert devnet.stake(node)[1]


def verdict(devnet, verifier, receipt_hash: str, valid: bool) -> dict:
    v = Verdict(receipt_hash=receipt_hash, valid=valid)
    return {"receiptHash": receipt_hash, "valid": valid, "verifier": verifier.address,
            "signature": v.sign_with(verifier.key, devnet.staking_domain)}


def test_fraud_quorum_slashes_node_then_lazy_verifier(relayer, devnet):
    node, payer = devnet.new_node(), devnet.new_payer(20 * OPG)
    verifiers = [devnet.new_verifier() for _ in range(3)]
    quorum = devnet.params.fraud_quorum
    assert quorum == 2
    honest, lazy = verifiers[:2], verifiers[2]
    ch = ChannelSim(devnet, payer, node)
    one = ch.next(2 * OPG)
    receipt_id = relayer.post("/settle", one).json()["id"]
    relayer.wait_receipts([receipt_id])  # settled first, so the payer gets its refund
    receipt_hash = relayer.receipt_status(receipt_id)["receiptHash"]
    node_stake, _ = devnet.stake(node)
    lazy_stake, _ = devnet.stake(lazy)
    payer_opg = devnet.opg.functions.balanceOf(payer.address).call()
    # The lazy verifier vouches for the receipt; one honest verdict is not yet a quorum.
    res = relayer.post("/verdicts", verdict(devnet, lazy, receipt_hash, True))
    assert res.status_code == 200 and res.json()["stored"] and res.json()["receiptKnown"]
    res = relayer.post("/verdicts", verdict(devnet, honest[1], receipt_hash, False)).json()
    assert res["invalidVerdicts"] == 1 and res["fraudQuorum"] == quorum
    assert relayer.post("/verdicts", verdict(devnet, honest[1], receipt_hash, False)).json()["stored"] is False
    assert not slashes(relayer, "fraud")
    relayer.post("/verdicts", verdict(devnet, honest[0], receipt_hash, False))
    fraud = wait_until(lambda: [s for s in slashes(relayer, "fraud") if s["status"] == "confirmed"], what="fraud")
    assert fraud[0]["subject"] == node.address
    new_stake, jailed = devnet.stake(node)
    assert jailed and new_stake == node_stake - int(fraud[0]["amount"])
    assert devnet.staking.functions.fraud_proven_at(bytes.fromhex(receipt_hash[2:])).call() != 0
    assert devnet.opg.functions.balanceOf(payer.address).call() == payer_opg + 2 * OPG  # refunded
    lazy_slash = wait_until(lambda: [s for s in slashes(relayer, "lazy_verifier") if s["status"] == "confirmed"],
                            what="lazy verifier slash")
    assert lazy_slash[0]["subject"] == lazy.address
    lazy_after, lazy_jailed = devnet.stake(lazy)
    assert lazy_jailed and lazy_after == lazy_stake - int(lazy_slash[0]["amount"])
    for v in honest:
        assert not devnet.stake(v)[1]
    # A valid=true verdict arriving after the proof is slashed too.
    late = devnet.new_verifier()
    relayer.post("/verdicts", verdict(devnet, late, receipt_hash, True))
    wait_until(lambda: [s for s in slashes(relayer, "lazy_verifier")
                        if s["subject"] == late.address and s["status"] == "confirmed"], what="late lazy slash")
    assert devnet.stake(late)[1]
    metrics = relayer.get("/metrics").text
    assert 'opg_relayer_slashes_total{kind="fraud",status="confirmed"} 1' in metrics
