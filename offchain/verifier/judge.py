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

``pricing`` comes from the payload (the node's prices when it served). Without pricing (a payer's dispute when the node
is unreachable) a deterministic receipt is judged on its output alone, and a non-deterministic one cannot be judged.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from ..inference import ChatMessage, Generation, GenParams, Pricing, input_hash, output_hash
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


def payload_mismatch(receipt: Receipt, request: Any, output: Any) -> str | None:
    """Why a payload is not the receipt's (None when both hashes match)."""
    try:
        if input_hash(request) != receipt.input_hash:
            return "payload request does not hash to the receipt's inputHash"
    except (TypeError, ValueError):
        return "payload request is not JSON-hashable"
    if not isinstance(output, str) or output_hash(output) != receipt.output_hash:
        return "payload output does not hash to the receipt's outputHash"
    return None


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
    """Re-execute ``payload`` (the node's, or the payer's) with ``backend`` and decide ``valid``."""
    deterministic = bool(backend.deterministic)
    request, output = payload.get("request"), payload.get("output")
    mismatch = payload_mismatch(receipt, request, output)
    if mismatch:
        return Judgement(False, mismatch, deterministic)
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
        if output_hash(rerun.text) != receipt.output_hash:
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
