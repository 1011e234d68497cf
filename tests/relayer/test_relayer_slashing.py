"""Slashing through the relayer: equivocation it detects itself, fraud from a verifier quorum, lazy verifiers."""

from __future__ import annotations

import time

from offchain.devkit.devnet import OPG, ChannelSim, item, rand32, wait_until
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


def live_verifiers(devnet, weights=(1, 2, 3)) -> list:
    """Registered verifiers with stakes ``weights`` x min_verifier_stake, made live (warm-up, heartbeat, next
    epoch): their vote weights are their stakes."""
    out = [devnet.new_verifier(devnet.params.min_verifier_stake * w) for w in weights]
    devnet.make_live(out)
    return out


def test_fraud_quorum_by_stake_weight_slashes_node_then_lazy_verifier(relayer, devnet):
    light, middle, heavy = live_verifiers(devnet)
    node, payer = devnet.new_node(), devnet.new_payer(20 * OPG)
    epoch = devnet.system.distributor.functions.epoch_now().call()
    assert devnet.staking.functions.total_weight_in(epoch).call() == 6 * devnet.params.min_verifier_stake
    ch = ChannelSim(devnet, payer, node)
    one = ch.next(2 * OPG)
    receipt_id = relayer.post("/settle", one).json()["id"]
    relayer.wait_receipts([receipt_id])  # settled first, so the payer gets its refund
    receipt_hash = relayer.receipt_status(receipt_id)["receiptHash"]
    node_stake, _ = devnet.stake(node)
    lazy_stake, _ = devnet.stake(light)
    payer_opg = devnet.opg.functions.balanceOf(payer.address).call()
    # The light verifier vouches for the receipt; the heaviest accuser alone (3 of 6) is not yet a quorum.
    res = relayer.post("/verdicts", verdict(devnet, light, receipt_hash, True))
    assert res.status_code == 200 and res.json()["stored"] and res.json()["receiptKnown"]
    res = relayer.post("/verdicts", verdict(devnet, heavy, receipt_hash, False)).json()
    assert res["invalidVerdicts"] == 1 and res["fraudQuorumBps"] == devnet.params.fraud_quorum_bps
    assert relayer.post("/verdicts", verdict(devnet, heavy, receipt_hash, False)).json()["stored"] is False
    time.sleep(1.0)
    assert not [s for s in slashes(relayer, "fraud") if s["status"] != "queued"]
    relayer.post("/verdicts", verdict(devnet, middle, receipt_hash, False))  # 5 of 6 >= 66.67 %
    fraud = wait_until(lambda: [s for s in slashes(relayer, "fraud") if s["status"] == "confirmed"], what="fraud")
    assert fraud[0]["subject"] == node.address
    new_stake, jailed = devnet.stake(node)
    assert jailed and new_stake == node_stake - int(fraud[0]["amount"])
    assert devnet.staking.functions.fraud_proven_at(bytes.fromhex(receipt_hash[2:])).call() != 0
    assert devnet.opg.functions.balanceOf(payer.address).call() == payer_opg + 2 * OPG  # refunded
    lazy_slash = wait_until(lambda: [s for s in slashes(relayer, "lazy_verifier") if s["status"] == "confirmed"],
                            what="lazy verifier slash")
    assert lazy_slash[0]["subject"] == light.address
    lazy_after, _ = devnet.stake(light)
    assert lazy_after == lazy_stake - int(lazy_slash[0]["amount"]) and int(lazy_slash[0]["amount"]) > 0
    metrics = relayer.get("/metrics").text
    assert 'opg_relayer_slashes_total{kind="fraud",status="confirmed"} 1' in metrics


def test_attack_sybil_verifiers_below_quorum_cannot_slash_honest_node(relayer, devnet):
    """Many light verifiers' valid=false verdicts without the stake weight of a quorum: no fraud proof is sent."""
    live = live_verifiers(devnet, weights=(1, 1, 1, 10))
    sybils = live[:3]
    node, payer = devnet.new_node(), devnet.new_payer(20 * OPG)
    ch = ChannelSim(devnet, payer, node)
    receipt_id = relayer.post("/settle", ch.next(OPG)).json()["id"]
    relayer.wait_receipts([receipt_id])
    receipt_hash = relayer.receipt_status(receipt_id)["receiptHash"]
    for v in sybils:
        assert relayer.post("/verdicts", verdict(devnet, v, receipt_hash, False)).status_code == 200
    time.sleep(1.5)
    assert not [s for s in slashes(relayer, "fraud") if s["subject"] == node.address]
    assert not devnet.stake(node)[1]


def test_validity_quorum_proves_valid_then_slashes_false_accuser(relayer, devnet):
    accuser, middle, heavy = live_verifiers(devnet)
    node, payer = devnet.new_node(), devnet.new_payer(20 * OPG)
    ch = ChannelSim(devnet, payer, node)
    receipt_id = relayer.post("/settle", ch.next(OPG)).json()["id"]
    relayer.wait_receipts([receipt_id])
    receipt_hash = relayer.receipt_status(receipt_id)["receiptHash"]
    accuser_stake, _ = devnet.stake(accuser)
    relayer.post("/verdicts", verdict(devnet, accuser, receipt_hash, False))
    relayer.post("/verdicts", verdict(devnet, middle, receipt_hash, True))
    relayer.post("/verdicts", verdict(devnet, heavy, receipt_hash, True))
    wait_until(lambda: [s for s in slashes(relayer, "prove_valid") if s["status"] == "confirmed"], what="validity")
    assert devnet.staking.functions.valid_proven_at(bytes.fromhex(receipt_hash[2:])).call() != 0
    false = wait_until(lambda: [s for s in slashes(relayer, "false_accuser") if s["status"] == "confirmed"],
                       what="false accuser slash")
    assert false[0]["subject"] == accuser.address
    assert devnet.stake(accuser)[0] == accuser_stake - int(false[0]["amount"])
    assert not devnet.stake(node)[1]


def test_attack_double_vote_is_slashed(relayer, devnet):
    voter, _heavy = live_verifiers(devnet, weights=(1, 10))  # the voter alone is no quorum either way
    node, payer = devnet.new_node(), devnet.new_payer(20 * OPG)
    ch = ChannelSim(devnet, payer, node)
    receipt_id = relayer.post("/settle", ch.next(OPG)).json()["id"]
    relayer.wait_receipts([receipt_id])
    receipt_hash = relayer.receipt_status(receipt_id)["receiptHash"]
    stake, _ = devnet.stake(voter)
    relayer.post("/verdicts", verdict(devnet, voter, receipt_hash, True))
    relayer.post("/verdicts", verdict(devnet, voter, receipt_hash, False))
    done = wait_until(lambda: [s for s in slashes(relayer, "double_vote")
                               if s["subject"] == voter.address and s["status"] == "confirmed"], what="double vote")
    assert devnet.stake(voter)[0] == stake - int(done[0]["amount"]) and int(done[0]["amount"]) > 0
