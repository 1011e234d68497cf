"""The verdict on one receipt, given its payload and a backend that runs the receipt's model.

Rules (docs/verifier.md):

1. The payload must be the receipt's: ``input_hash(payload.request) == receipt.inputHash`` and
   ``output_hash(payload.output) == receipt.outputHash``. A node that releases another payload is treated like one
   that withholds it (``valid=false``).
2. The request is re-executed with the same backend (the one whose ``model_id`` is the receipt's ``modelId``) and
   the same effective parameters. An answer cut short (``finishReason == "length"`` below ``max_tokens``: the client
   left, or the voucher's cap was reached) is re-run for the number of output tokens delivered: a deterministic
   backend then reproduces the delivered prefix.
3. Deterministic (fraud-provable) models: ``valid`` iff the re-run's output hash is the receipt's ``outputHash`` AND
   ``amount <= pricing.cost(re-run prompt tokens, re-run output tokens)``.
4. Non-deterministic models (a proxy to a GPU server: outputs are not bit-reproducible): only the charge is judged:
   ``amount <= pricing.cost(re-run prompt tokens, allowed output tokens)``, where the allowed output is
   ``max_tokens`` when the re-run itself hit the limit, else ``min(max_tokens, ceil(re-run output * tolerance))``;
   and the charge must not exceed the cost of the node's own reported usage.

5. Open-weights models (``modelId`` = the weights' identity, ``offchain.backends.llama.open_weights_descriptor``; a
   node serving them through any engine, e.g. ``proxy:...?weights=...``): judged on the TEXT by teacher forcing
   (:func:`judge_teacher_forced`), with the verifier's own copy of the weights.

``pricing`` comes from the payload (the node's prices when it served). Without pricing (a payer's dispute when the node
is unreachable) a deterministic receipt is judged on its output alone, and a non-deterministic one cannot be judged.

``outputHash`` may commit to the token ids too (``offchain.inference``): the payload then carries ``tokens``
(``{promptIds, outputIds, finishReason}``), or a payer's dispute carries the 32-byte ``tokensHash`` it was given.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Protocol

from ..inference import (
    ChatMessage,
    Generation,
    GenParams,
    Pricing,
    generation_output_hash,
    input_hash,
    output_hash,
    tokens_hash,
)
from ..messages import Receipt


class CannotJudge(Exception):
    """Not enough to decide either way (no verdict is signed)."""


@dataclass
class Judgement:
    valid: bool
    reason: str
    deterministic: bool
    seconds: float = 0.0  # time spent re-executing
    rerun: Generation | None = None
    expected_cost: int | None = None
    # teacher forcing: tokens scored, those beyond the drift margin (statistics, never slashed alone), largest margin
    scored: int = 0
    drifted: int = 0
    max_margin: float | None = None


def parse_request(request: Any) -> tuple[str, list[ChatMessage], GenParams]:
    """The payload's ``{"model", "messages", "params"}``; ValueError if it is not a runnable request."""
    if not isinstance(request, dict) or set(request) - {"model", "messages", "params"}:
        raise ValueError("request must be {model, messages, params}")
    try:
        messages = [ChatMessage.model_validate(m) for m in request["messages"]]
        params = GenParams.model_validate(request["params"])
        model = str(request["model"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"malformed request: {exc}") from None
    return model, messages, params


def committed_tokens_hash(tokens: Any = None, given: Any = None) -> str | None:
    """The tokensHash a payload commits to: from its ``tokens`` (the node's payload), else a payer's ``tokensHash``
    (ValueError if malformed)."""
    if tokens is not None:
        return tokens_hash(tokens)
    if given is None:
        return None
    if not isinstance(given, str) or len(given) != 66 or not given.startswith("0x"):
        raise ValueError("tokensHash must be 0x + 64 hex digits")
    bytes.fromhex(given[2:])
    return given.lower()


def payload_mismatch(receipt: Receipt, request: Any, output: Any, tokens: Any = None,
                     given_tokens_hash: Any = None) -> str | None:
    """Why a payload is not the receipt's (None when the request and the output, with its token commitment if any,
    hash to the receipt)."""
    try:
        if input_hash(request) != receipt.input_hash:
            return "payload request does not hash to the receipt's inputHash"
    except (TypeError, ValueError):
        return "payload request is not JSON-hashable"
    try:
        th = committed_tokens_hash(tokens, given_tokens_hash)
    except ValueError as exc:
        return f"payload tokens are malformed: {exc}"
    if not isinstance(output, str) or output_hash(output, th) != receipt.output_hash:
        return "payload output does not hash to the receipt's outputHash"
    return None


def _rerun_commits(rerun: Generation, receipt: Receipt) -> bool:
    """A deterministic re-run reproduces the receipt's outputHash (text alone, or text with its token ids)."""
    return receipt.output_hash in {output_hash(rerun.text), generation_output_hash(rerun)[0]}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _pricing(payload: dict) -> Pricing | None:
    data = payload.get("pricing")
    if not isinstance(data, dict):
        return None
    try:
        return Pricing.from_wire(data)
    except (KeyError, TypeError, ValueError):
        return None


def _rerun_prefix(backend: Any, messages: list[ChatMessage], params: GenParams, output: str,
                  full: Generation) -> Generation:
    """The re-run that reproduces ``output`` as a prefix of the full answer (a payer's payload of an answer cut
    short carries no token count): the least ``max_tokens`` whose text is at least as long, by bisection."""
    lo, hi, best = 1, max(1, full.output_tokens), full
    while lo <= hi:
        mid = (lo + hi) // 2
        g = backend.generate(messages, params.model_copy(update={"max_tokens": mid}))
        if len(g.text) >= len(output):
            best, hi = g, mid - 1
        else:
            lo = mid + 1
    return best


def judge(receipt: Receipt, payload: dict, backend: Any, tolerance: float = 2.0) -> Judgement:
    """Re-execute ``payload`` (the node's, or the payer's) with ``backend`` and decide ``valid``; open-weights
    receipts are judged by teacher forcing instead."""
    deterministic = bool(backend.deterministic)
    request, output = payload.get("request"), payload.get("output")
    mismatch = payload_mismatch(receipt, request, output, payload.get("tokens"), payload.get("tokensHash"))
    if mismatch:
        return Judgement(False, mismatch, deterministic)
    if receipt.model_id.lower() == str(getattr(backend, "open_weights_id", "")).lower():
        return judge_teacher_forced(receipt, payload, backend)
    try:
        _model, messages, params = parse_request(request)
    except ValueError as exc:
        return Judgement(False, str(exc), deterministic)
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
    claimed_out = _int(usage.get("outputTokens", usage.get("output_tokens")))
    claimed_prompt = _int(usage.get("promptTokens", usage.get("prompt_tokens")))
    finish = payload.get("finishReason", payload.get("finish_reason"))
    pricing = _pricing(payload)

    started = time.perf_counter()
    if deterministic:
        run_params = params
        if finish == "length" and claimed_out is not None and 0 < claimed_out < params.max_tokens:
            run_params = params.model_copy(update={"max_tokens": claimed_out})
        rerun = backend.generate(messages, run_params)
        if (claimed_out is None and rerun.text != output and rerun.text.startswith(output) and output
                and rerun.output_tokens > 1):
            rerun = _rerun_prefix(backend, messages, params, output, rerun)
        seconds = time.perf_counter() - started
        if not _rerun_commits(rerun, receipt):
            return Judgement(False, "re-executed output differs from the receipt's outputHash", True, seconds, rerun)
        if pricing is None:
            return Judgement(True, "output reproduced (no pricing to check the amount against)", True, seconds, rerun)
        cost = pricing.cost(rerun.prompt_tokens, rerun.output_tokens)
        if receipt.amount > cost:
            return Judgement(False, f"amount {receipt.amount} exceeds the cost {cost} of the re-run's "
                                    f"{rerun.prompt_tokens}+{rerun.output_tokens} tokens", True, seconds, rerun, cost)
        return Judgement(True, "output and amount reproduced", True, seconds, rerun, cost)

    if pricing is None:
        raise CannotJudge("a non-deterministic model's receipt needs the node's pricing")
    rerun = backend.generate(messages, params)
    seconds = time.perf_counter() - started
    if rerun.finish_reason == "length":
        allowed = params.max_tokens
    else:
        allowed = min(params.max_tokens, math.ceil(rerun.output_tokens * tolerance))
    cost = pricing.cost(rerun.prompt_tokens, allowed)
    if receipt.amount > cost:
        return Judgement(False, f"amount {receipt.amount} exceeds {cost}, the cost of {rerun.prompt_tokens} prompt "
                                f"and at most {allowed} output tokens", False, seconds, rerun, cost)
    if claimed_out is not None and claimed_prompt is not None:
        own = pricing.cost(claimed_prompt, claimed_out)
        if receipt.amount > own:
            return Judgement(False, f"amount {receipt.amount} exceeds {own}, the cost of the node's own reported "
                                    "usage", False, seconds, rerun, cost)
    return Judgement(True, "amount within the re-run's token counts", False, seconds, rerun, cost)


# Teacher forcing (open-weights models) ------------------------------------------------------------------------------
#: greedy answers: a claimed token (or end of sequence) whose logit is more than this below the top logit is one no
#: honest run produces (calibrated by bench/verification.py, docs/verifier.md)
GREEDY_SLASH_MARGIN = 3.0
#: sampled answers (temperature > 0): a claimed token less likely than this (natural log, at the request's
#: temperature, after crediting it SAMPLED_DRIFT_CREDIT logits of numerical drift) is one no honest sampler draws
SAMPLED_SLASH_LOGPROB = -25.0
SAMPLED_DRIFT_CREDIT = 2.0
#: a token beyond this margin is "drift": counted per node for the statistical test, never slashed alone (sampled
#: answers: a token whose credited log-probability is below SAMPLED_DRIFT_LOGPROB)
DRIFT_MARGIN = 1.0
SAMPLED_DRIFT_LOGPROB = -10.0
#: the share of honest tokens beyond DRIFT_MARGIN the statistical test assumes (an upper bound of the calibration's)
HONEST_DRIFT_RATE = 0.005
#: a node whose drifted tokens are this unlikely under HONEST_DRIFT_RATE is flagged as drifting (sampled at rate 1
#: and reported; never slashed on this alone)
DRIFT_ALPHA = 1e-6


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p) (exact sum in log space)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
             for i in range(k, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def drifting(scored: int, drifted: int) -> bool:
    """Whether a node's tokens drift beyond the honest rate (the binomial test, docs/verifier.md)."""
    return scored > 0 and binomial_tail(drifted, scored, HONEST_DRIFT_RATE) < DRIFT_ALPHA


def _greedy(params: GenParams) -> bool:
    return not params.temperature


def _ends_with_stop(full: str, text: str, stops: list[str] | None) -> bool:
    """The ids' text is the answer's text followed by one of the stop sequences (the answer ended there)."""
    rest = full[len(text):]
    return any(rest.startswith(s) for s in stops or [])


def _byte_offsets(scorer: Any, ids: list[int]) -> list[int]:
    """The byte offset at which each claimed token starts in the answer's text."""
    out, at = [], 0
    for t in ids:
        out.append(at)
        at += len(scorer.token_bytes([t]))
    return out


def _same_text_other_split(scorer: Any, ids: list[int], i: int, top: int | None) -> int:
    """The length in bytes of the model's own choice at output position ``i`` when it spells the start of the
    claimed text from there on (or the whole rest of it, where the answer was cut inside that token), else 0: the
    claimed ids then only split the same text otherwise than the model would (a proxy node whose upstream reports
    no tokens commits to the tokenizer's canonical split of the text, docs/backends.md). Not evidence of another
    model, so never slashed; still counted as drift."""
    if top is None or top == ids[i]:
        return 0
    own, rest = scorer.token_bytes([top]), scorer.token_bytes(ids[i:])
    return len(own) if own and (rest.startswith(own) or own.startswith(rest)) else 0


def judge_teacher_forced(receipt: Receipt, payload: dict, scorer: Any) -> Judgement:
    """One prefill pass over prompt + claimed output with the verifier's copy of the weights; slashable only on
    evidence any honest verifier reproduces (docs/verifier.md, "Teacher forcing")."""
    output: str = payload["output"]
    try:
        _model, messages, params = parse_request(payload.get("request"))
    except ValueError as exc:
        return Judgement(False, str(exc), False)
    pricing = _pricing(payload)
    started = time.perf_counter()
    prompt_ids = scorer.prompt_tokens(messages)
    tokens = payload.get("tokens")
    finish = payload.get("finishReason", payload.get("finish_reason"))
    stopped_by_sequence = False
    if tokens is not None:  # the node's payload: the ids it committed to
        if tokens["promptIds"] != prompt_ids:
            return Judgement(False, "the committed prompt ids are not the payer's request rendered by the model's chat "
                                    "template (another prompt was run)", False, time.perf_counter() - started)
        out_ids = list(tokens["outputIds"])
        finish = tokens["finishReason"]
        try:
            full = scorer.detokenize(out_ids)
        except ValueError as exc:
            return Judgement(False, f"the committed output ids are not this model's tokens: {exc}", False,
                             time.perf_counter() - started)
        if full != output:
            stopped_by_sequence = full.startswith(output) and _ends_with_stop(full, output, params.stop)
            if not stopped_by_sequence:
                return Judgement(False, "the committed output ids do not detokenise to the answer's text", False,
                                 time.perf_counter() - started)
    else:  # a payer's dispute: its own text, split by the model's tokenizer
        out_ids = scorer.tokenize_text(output)
        if finish not in ("stop", "length"):
            finish = "length" if len(out_ids) >= params.max_tokens else "stop"
    if len(out_ids) > params.max_tokens + 2:  # a canonical re-split may differ by a token or two from the model's
        return Judgement(False, f"{len(out_ids)} output tokens exceed max_tokens {params.max_tokens}", False,
                         time.perf_counter() - started)
    billed = min(len(out_ids), params.max_tokens)
    cost = pricing.cost(len(prompt_ids), billed) if pricing is not None else None
    if cost is not None and receipt.amount > cost:
        return Judgement(False, f"amount {receipt.amount} exceeds the cost {cost} of {len(prompt_ids)} prompt and "
                                f"{billed} output tokens", False, time.perf_counter() - started, expected_cost=cost)
    # An answer that ended by itself (finish "stop") is claimed to end with an end-of-sequence token the model chose:
    # that is checked too, unless the request had stop sequences (the text then may end where one was cut off, and
    # an engine behind a proxy does not say which).
    check_end = finish == "stop" and not stopped_by_sequence and not params.stop
    if not out_ids and not check_end:
        return Judgement(True, "empty answer", False, time.perf_counter() - started, expected_cost=cost)
    scores = scorer.score(prompt_ids, out_ids, with_eos=check_end, temperature=params.temperature)
    seconds = time.perf_counter() - started
    greedy = _greedy(params)
    worst = max(scores, key=lambda x: x["margin"])
    credit = 0.0 if greedy else SAMPLED_DRIFT_CREDIT / float(params.temperature)
    drifted = sum(1 for x in scores if (x["margin"] > DRIFT_MARGIN if greedy
                                        else x["logprob"] + credit < SAMPLED_DRIFT_LOGPROB))
    j = dict(deterministic=False, seconds=seconds, expected_cost=cost, scored=len(scores), drifted=drifted,
             max_margin=worst["margin"])
    resplit, cover, offsets = 0, -1, None
    for i, x in enumerate(scores):
        where = "the end of sequence" if x["token"] == "eos" else f"output token {i} ({x['token']})"
        beyond = x["margin"] > GREEDY_SLASH_MARGIN if greedy else x["logprob"] + credit < SAMPLED_SLASH_LOGPROB
        if beyond and x["token"] != "eos" and hasattr(scorer, "token_bytes"):
            if offsets is None:
                offsets = _byte_offsets(scorer, out_ids)
            span = 0 if offsets[i] < cover else _same_text_other_split(scorer, out_ids, i, x.get("top"))
            if offsets[i] < cover or span:
                # the model's own token spells the same text from here (a split, not evidence: drift only); the
                # claimed tokens that start inside its span are pieces of that text too
                cover = max(cover, offsets[i] + span)
                resplit += 1
                continue
        if greedy and x["margin"] > GREEDY_SLASH_MARGIN:
            what = ("the model would not end the answer here: " if x["token"] == "eos" else "") + \
                f"{where} is {x['margin']:.2f} logits below the model's top choice (rank {x['rank']}); greedy " \
                f"answers are never more than {GREEDY_SLASH_MARGIN:g} below"
            return Judgement(False, what, **j)
        if not greedy and x["logprob"] + credit < SAMPLED_SLASH_LOGPROB:
            return Judgement(False, f"{where} has log-probability {x['logprob']:.1f} at temperature "
                                    f"{params.temperature:g}: no honest sampler draws it", **j)
    split = f", {resplit} split otherwise than the model would" if resplit else ""
    return Judgement(True, f"teacher-forced: {len(scores)} tokens plausible (largest margin {worst['margin']:.2f}, "
                           f"{drifted} beyond the drift margin {DRIFT_MARGIN:g}{split})", **j)


class ReceiptJudge(Protocol):
    """What the checker asks of a judge (the verifier's rule is :class:`Reexecution`; the tests' lazy verifier
    brings one that vouches without looking). ``needs_payload``: whether the node's payload is fetched first."""

    needs_payload: bool

    def serves(self, model_id: str) -> bool: ...

    def __call__(self, receipt: Receipt, payload: dict | None) -> Judgement: ...

    def describe(self) -> list[dict]: ...


class Reexecution:
    """The verifier's rule: :func:`judge` with the backend that runs the receipt's model (the same weights served by
    any engine, an ``open_weights_id``, are judged by teacher forcing)."""

    needs_payload = True

    def __init__(self, backends: list[Any], tolerance: float = 2.0):
        self.tolerance = tolerance
        self.backends: dict[str, Any] = {}
        for backend in backends:
            self.backends[backend.model_id.lower()] = backend
            if getattr(backend, "open_weights_id", None):
                self.backends.setdefault(backend.open_weights_id.lower(), backend)

    def serves(self, model_id: str) -> bool:
        return model_id.lower() in self.backends

    def __call__(self, receipt: Receipt, payload: dict | None) -> Judgement:
        if payload is None:
            raise CannotJudge("no payload")
        return judge(receipt, payload, self.backends[receipt.model_id.lower()], self.tolerance)

    def describe(self) -> list[dict]:
        out = []
        for m, b in self.backends.items():
            forced = m == str(getattr(b, "open_weights_id", "")).lower()
            out.append({"name": b.name, "modelId": m, "deterministic": bool(b.deterministic) and not forced,
                        "judgedBy": "teacher-forcing" if forced else "re-execution",
                        **({"scoring": getattr(b, "scoring", "native")} if forced else {})})
        return out

