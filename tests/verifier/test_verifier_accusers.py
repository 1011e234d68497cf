"""Accusations against an honest node (real relayer, node and verifier processes on anvil): two colluding verifiers
below the stake quorum flag it and nothing happens to it; once the honest verifiers' valid=true verdicts reach the
quorum, the accusers are slashed as false accusers. And the node's payload release: a verifier without stake, or
with a forged challenge signature, gets no payload.

Weights: honest H1, H2 3 each; colluders C1, C2 1 each (total 8). The colluders hold 25 %, H1 alone 37.5 %, H1 and H2
together 75 % (the quorum is 66.67 %). The honest verifiers sample nothing (rate 0): they check what is flagged.
"""

from __future__ import annotations

import time

import httpx
import pytest
from verifier_kit import (
    check,
    fraud_proven,
    live,
    metric,
    node_proc,
    pay_chat,
    receipt_hash_of,
    slashes,
    stop_all,
    valid_proven,
    verifier_proc,
    wait_check,
    wait_receipts,
)

from offchain.devkit.devchain import transact
from offchain.devkit.devnet import OPG, new_key, wait_until
from offchain.messages import PayloadRequest, Verdict
from offchain.sdk.wire import parse_receipt
from offchain.verifier.payloads import PayloadClient, plain


@pytest.fixture(scope="module")
def actors(devnet):
    p = devnet.params
    h = [devnet.new_verifier(3 * p.min_verifier_stake) for _ in range(2)]
    c = [devnet.new_verifier(p.min_verifier_stake) for _ in range(2)]
    live(devnet, [*h, *c])
    return {"h": h, "c": c, "node": devnet.new_node()}


@pytest.fixture(scope="module")
def node(devnet, relayer, actors, workdir):
    proc = node_proc(devnet, relayer, actors["node"], workdir).start()
    yield proc
    stop_all(proc)


@pytest.fixture(scope="module")
def honest(devnet, relayer, actors, workdir):
    procs = [verifier_proc(devnet, relayer, v, workdir, sample_rate=0.0, name=f"honest{i}")
             for i, v in enumerate(actors["h"])]
    yield procs
    stop_all(*procs)


@pytest.fixture(scope="module")
def served(devnet, relayer, node):
    payer = devnet.new_payer(20 * OPG)
    answer = pay_chat(devnet, node.url, payer, "Is the settlement batch final?")
    wait_receipts(relayer, [answer["receiptId"]])
    return {**answer, "payer": payer, "receiptHash": receipt_hash_of(answer["receipt"])}


def test_colluders_below_quorum_cannot_slash_an_honest_node(devnet, relayer, actors, honest, served):
    c1, c2 = actors["c"]
    node = actors["node"]
    stake_before = devnet.stake(node)
    honest[0].start()  # H1 only: 37.5 % of the weight
    receipt = parse_receipt(served["receipt"])
    for accuser in (c1, c2):
        transact(devnet.w3, accuser.key, devnet.staking.functions.flag(plain(receipt).as_tuple(),
                                                                       bytes.fromhex(receipt.signature[2:])))
    # C1 also hands its valid=false verdict to the relayer; C2 accuses on-chain only.
    sig = Verdict(receipt_hash=served["receiptHash"], valid=False).sign_with(c1.key, devnet.staking_domain)
    res = relayer.post("/verdicts", {"receiptHash": served["receiptHash"], "valid": False, "verifier": c1.address,
                                     "signature": sig})
    assert res.status_code == 200 and res.json()["stored"]
    decided = wait_check(honest[0], served["receiptId"])
    assert decided["valid"] is True and decided["source"] == "flag" and decided["flag"] is None
    wait_until(lambda: check(honest[0], served["receiptId"])["posted"] == "stored", what="H1's verdict stored")
    time.sleep(2.0)  # several relayer ticks: neither side reaches the quorum
    assert not fraud_proven(devnet, served["receiptHash"])
    assert not valid_proven(devnet, served["receiptHash"])
    assert devnet.stake(node) == stake_before
    assert not slashes(relayer, "fraud") and not slashes(relayer, "false_accuser")
    assert metric(honest[0], "opg_verifier_flags_seen_total") == 2


def test_false_accusers_are_slashed_once_valid_verdicts_reach_the_quorum(devnet, relayer, actors, honest, served):
    c1, c2 = actors["c"]
    node = actors["node"]
    stake_before = devnet.stake(node)
    c_stakes = [devnet.stake(c)[0] for c in (c1, c2)]
    honest[1].start()  # H2 follows the flags from the deployment block on: 75 %
    decided = wait_check(honest[1], served["receiptId"])
    assert decided["valid"] is True
    wait_until(lambda: valid_proven(devnet, served["receiptHash"]), what="validity proven")
    accused = wait_until(lambda: len(slashes(relayer, "false_accuser", "confirmed")) == 2
                         and slashes(relayer, "false_accuser", "confirmed"), what="both accusers slashed")
    assert {a["subject"] for a in accused} == {c1.address, c2.address}
    for c, before in zip((c1, c2), c_stakes, strict=True):
        stake, jailed = devnet.stake(c)
        amount = next(int(a["amount"]) for a in accused if a["subject"] == c.address)
        assert jailed and amount > 0 and stake == before - amount
    assert devnet.stake(node) == stake_before
    assert not fraud_proven(devnet, served["receiptHash"])
    for h in actors["h"]:
        assert not devnet.stake(h)[1]


def test_payload_goes_only_to_a_staked_verifier_with_its_own_signature(devnet, actors, node, served):
    h1 = actors["h"][0]
    receipt = parse_receipt(served["receipt"])
    rid = served["receiptId"]

    def ask(requester: str, signer_key: str, nonce: str | None = None) -> httpx.Response:
        nonce = nonce or node.client.get("/v1/payloads/challenge").json()["nonce"]
        sig = PayloadRequest(node=receipt.node, receipt_id=rid, requester=requester, nonce=nonce).sign_with(
            signer_key, devnet.staking_domain)
        return node.client.post(f"/v1/payloads/{rid}", json={"requester": requester, "nonce": nonce,
                                                             "signature": sig})

    outsider = new_key()  # no stake at all
    res = ask(outsider.address, outsider.key)
    assert res.status_code == 403 and res.json()["error"] == "not_authorized"
    forged = ask(h1.address, outsider.key)  # claims to be H1, signed by someone else
    assert forged.status_code == 400 and forged.json()["error"] == "invalid_signature"
    nonce = node.client.get("/v1/payloads/challenge").json()["nonce"]
    assert ask(h1.address, h1.key, nonce).status_code == 200
    replay = ask(h1.address, h1.key, nonce)  # the nonce is single-use
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_nonce"
    # The verifier's own client, with H1's key, gets the payload the receipt commits to.
    got = PayloadClient(h1.key, h1.address, devnet.staking_domain).fetch(node.url, receipt, rid)
    assert got.payload is not None and got.payload["output"] == served["answer"]
    assert got.payload["request"] == served["request"]
    jailed_c = actors["c"][0]  # slashed and jailed above: no longer an active verifier
    assert devnet.stake(jailed_c)[1]
    refused = PayloadClient(jailed_c.key, jailed_c.address, devnet.staking_domain).fetch(node.url, receipt, rid)
    assert refused.payload is None and refused.status == 403
