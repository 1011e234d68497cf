"""Open-weights receipts (teacher forcing) end to end beyond the sampled honest path: real anvil, relayer, node and
verifier processes, llama.cpp servers (``python -m llama_cpp.server``) as the proxies' upstreams, the payer on the
``opg`` CLI. The verifier here scores on the F32 expansion of the weights (``--backends smollm2?scoring=f32``);
test_verifier_proxy_open_weights' verifier scores on the packed weights.

- A proxy node that commits to output ids which do not detokenise to the text it delivered (padded to max_tokens,
  to bill more tokens than it served: ``cheat_mode=ids``) is slashed.
- A proxy node that answers with another model (Gemma 3 behind a node claiming SmolLM2's weights) and withholds its
  payloads (its registered endpoint answers nobody) is caught through the payer's dispute: the payer's own prompt,
  answer and the node's tokensHash are judged by the same teacher-forced check, fraud is proven, the bond returns.
"""

from __future__ import annotations

import json

import pytest
from test_verifier_withholding import UNREACHABLE, opg
from verifier_kit import (
    PASSWORD,
    fraud_proven,
    keystore,
    live,
    node_proc,
    pay_chat,
    receipt_hash_of,
    stop_all,
    verifier_proc,
    wait_check,
    wait_receipts,
)

from offchain.backends.llama import gemma3_path, smollm2_path
from offchain.devkit.devnet import OPG, wait_until
from offchain.devkit.upstream import LlamaServer

SPEC = "proxy:{}#smollm2?weights=smollm2&name=smollm2"


@pytest.fixture(scope="module")
def setup(devnet, relayer, workdir):
    v = devnet.new_verifier(3 * devnet.params.min_verifier_stake)
    live(devnet, [v])
    smol_up = LlamaServer(smollm2_path(), workdir, "--n_threads", "1")
    gemma_up = LlamaServer(gemma3_path(), workdir, "--n_threads", "1", "--chat_format", "gemma")
    actors = {"ids": devnet.new_node(), "withholding": devnet.new_node()}
    nodes = {
        "ids": node_proc(devnet, relayer, actors["ids"], workdir, name="proxy-ids",
                         backend=SPEC.format(smol_up.url) + "&cheat_rate=1&cheat_mode=ids"),
        "withholding": node_proc(devnet, relayer, actors["withholding"], workdir, name="proxy-gemma-withholding",
                                 endpoint=UNREACHABLE, backend=SPEC.format(gemma_up.url)),
    }
    verifier = verifier_proc(devnet, relayer, v, workdir, sample_rate=1.0, deadline=10.0,
                             backends="smollm2?scoring=f32")
    try:
        for proc in [*nodes.values(), verifier]:
            proc.start(timeout=120)
        yield {"actors": actors, "nodes": nodes, "verifier": verifier}
    finally:
        stop_all(verifier, *nodes.values())
        smol_up.stop()
        gemma_up.stop()


def test_verifier_judges_the_open_weights_on_their_f32_expansion(setup):
    backends = setup["verifier"].client.get("/healthz").json()["backends"]
    assert [b["scoring"] for b in backends if b["judgedBy"] == "teacher-forcing"] == ["f32"]


def test_attack_proxy_node_committing_to_ids_that_do_not_match_its_text_is_slashed(devnet, relayer, setup):
    node = setup["actors"]["ids"]
    stake_before = devnet.stake(node)[0]
    s = pay_chat(devnet, setup["nodes"]["ids"].url, devnet.new_payer(20 * OPG), "Name a colour.", max_tokens=24,
                 model="smollm2", timeout=120)
    decided = wait_check(setup["verifier"], s["receiptId"], timeout=120)
    assert decided["valid"] is False, decided
    assert decided["reason"] == "the committed output ids do not detokenise to the answer's text"
    wait_until(lambda: fraud_proven(devnet, receipt_hash_of(s["receipt"])), timeout=60, what="fraud proven")
    stake_after, jailed = devnet.stake(node)
    assert jailed and stake_after < stake_before


def test_payers_dispute_of_a_substituted_model_is_judged_by_teacher_forcing(devnet, relayer, setup, workdir):
    node = setup["actors"]["withholding"]
    payer = devnet.new_payer(20 * OPG, extra_opg=5 * OPG)
    state = workdir / "payer-state"
    common = ["--rpc-url", devnet.url, "--deployment", str(devnet.deployment_file), "--state-dir", str(state),
              "--keystore", str(keystore(payer, workdir))]
    env = {"OPG_CLIENT_PASSWORD": PASSWORD}
    chat = opg("chat", "Write two sentences about bridges.", "--json", "--no-stream", "--no-session", "--max-tokens",
               "32", "--model", "smollm2", "--node-url", setup["nodes"]["withholding"].url, "--relayer-url",
               relayer.url, *common, env=env)
    assert chat.returncode == 0, chat.stderr
    rid = json.loads(chat.stdout)["receiptId"]
    wait_receipts(relayer, [rid])
    record = json.loads((state / "requests" / f"{rid}.json").read_text())  # the payer's own copy: text, tokensHash
    assert record["payment"]["tokensHash"]
    stake_before = devnet.stake(node)[0]

    dispute = opg("dispute", rid, "--json", "--wait", "90", *common, env=env)
    assert dispute.returncode == 0, dispute.stderr
    out = json.loads(dispute.stdout)
    assert out["dispute"]["state"] == "opened" and out["outcome"] == "fraud_proven", out
    decided = wait_check(setup["verifier"], rid)  # sampled first (rate 1), judged once the dispute brought the payload
    assert decided["valid"] is False
    assert "below the model's top choice" in decided["reason"] or "exceed max_tokens" in decided["reason"], decided
    assert fraud_proven(devnet, receipt_hash_of(record["receipt"]))
    stake_after, jailed = devnet.stake(node)
    assert jailed and stake_after < stake_before
