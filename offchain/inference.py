"""The shared inference core: what a request is, what an answer is, how both are hashed and priced.

The node (which serves and signs receipts) and the verifier (which re-executes and judges them) both import this module
and ``offchain.backends``, so one request is hashed, counted and priced the same way on both sides.

- :class:`ChatMessage`, :class:`GenParams`, :class:`Generation`: a chat request and its answer.
- :class:`Backend`: the protocol every model backend implements (``offchain.backends.load_backend`` builds one).
- :func:`canonical_json`, :func:`canonical_request`, :func:`input_hash`, :func:`output_hash`, :func:`model_id_of`:
  the byte-exact commitments a Receipt carries (``modelId``, ``inputHash``, ``outputHash``);
  :func:`tokens_hash` / :func:`generation_output_hash`: the token commitment inside ``outputHash`` (below).

``outputHash`` (off-chain definition, docs/protocol.md): an answer without token ids (the builtin stand-in) commits to
its text, ``keccak(utf8 text)``. An answer of a real model commits to its text AND the tokens the model saw and
produced: ``keccak("OPG output v2" || keccak(utf8 text) || tokensHash)`` with ``tokensHash = keccak(canonical_json(
{"promptIds": [...], "outputIds": [...], "finishReason": "stop"|"length"}))``. A payer who holds the text and the
32-byte ``tokensHash`` (the node's payment response carries it) can check the commitment without the ids; a verifier
with the ids checks that they detokenise to the text.
- :class:`Pricing`: integer wei prices (base + per prompt token + per output token), the quote's cap, and the largest
  output a budget pays for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable

from eth_utils import keccak
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Backend",
    "BackendError",
    "ChatMessage",
    "GenParams",
    "Generation",
    "OnToken",
    "Pricing",
    "PromptTooLong",
    "UNBOUNDED_TOKENS",
    "canonical_json",
    "canonical_request",
    "input_hash",
    "generation_output_hash",
    "model_id_of",
    "output_hash",
    "tokens_hash",
    "tokens_of",
]

#: what :meth:`Pricing.max_output_tokens_within` answers when output tokens are free (the caller applies its own limit)
UNBOUNDED_TOKENS = 2**63 - 1

#: streaming callback: receives each new piece of text; returning ``False`` stops generation early
OnToken = Callable[[str], "bool | None"]


class BackendError(RuntimeError):
    """A backend could not answer (upstream down or malformed, model failed to load, ...). The node answers 502."""


class PromptTooLong(BackendError, ValueError):
    """The prompt leaves no room for an answer in the model's context window. The node answers 400."""

    def __init__(self, prompt_tokens: int, context_length: int):
        super().__init__(f"prompt has {prompt_tokens} tokens; the model's context holds {context_length}")
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length


class ChatMessage(BaseModel):
    """One chat turn (OpenAI's shape, text only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


class GenParams(BaseModel):
    """Generation parameters. Greedy backends (builtin, llama.cpp) ignore ``temperature`` and ``seed``; the proxy
    passes them to its upstream. ``stop`` strings end the answer before them (the stop string itself is not part of
    the text, as in OpenAI's API)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    seed: int | None = None
    stop: list[str] | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            if len(value) > 4:
                raise ValueError("at most 4 stop sequences")
            if any(isinstance(s, str) and s == "" for s in value):
                raise ValueError("stop sequences must not be empty")
            if not value:
                return None
        return value


class Generation(BaseModel):
    """A finished answer. ``finish_reason`` is ``"stop"`` when the model ended it (end-of-turn token or a stop
    sequence) and ``"length"`` when it hit ``max_tokens``, the context window, or was stopped by ``on_token``."""

    model_config = ConfigDict(frozen=True)

    text: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: Literal["stop", "length"]
    # the token ids the model saw and produced (None for backends without a tokenizer: the builtin stand-in). When a
    # stop sequence ended the answer, ``output_ids`` are every generated token (their text continues past ``text``
    # with the stop sequence); after an end-of-sequence token, that token is not included.
    prompt_ids: list[int] | None = None
    output_ids: list[int] | None = None


@runtime_checkable
class Backend(Protocol):
    """A model backend. ``generate`` is synchronous and thread-safe (backends serialise internally if they must).

    Contract (tested for every backend in tests/backends):
    - ``generate`` never produces more than ``params.max_tokens`` output tokens;
    - it streams the answer's text to ``on_token`` piece by piece (the pieces concatenate to ``Generation.text``,
      except after an early stop, see below) and stops as soon as ``on_token`` returns ``False``
      (``finish_reason == "length"``);
    - a deterministic backend answers the same request with the same text and token counts in every process, and
      ``generate(messages, params with max_tokens=g.output_tokens)`` reproduces ``g.text`` of an answer ``g`` that
      was stopped early (after an early stop ``g.text`` is the text of all generated tokens, which can include a
      tail held back from ``on_token`` while it might have been the start of a stop sequence).
    """

    name: str  # the model name served at /v1/models and used as "model" in requests
    descriptor: dict  # every output-relevant setting (see offchain.backends)
    model_id: str  # "0x" + keccak(canonical_json(descriptor)): the bytes32 a Receipt commits to
    deterministic: bool  # True only for pinned, bit-reproducible builds (fraud-provable)
    context_length: int | None  # prompt + output tokens the model holds (None: unknown / the upstream decides)

    def count_prompt_tokens(self, messages: list[ChatMessage]) -> int: ...

    def generate(
        self, messages: list[ChatMessage], params: GenParams, on_token: OnToken | None = None
    ) -> Generation: ...


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8 (non-ASCII kept as is): the one byte encoding every hash here uses."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _hex_keccak(data: bytes) -> str:
    return "0x" + keccak(data).hex()


def canonical_request(model: str, messages: list[ChatMessage] | list[dict], params: GenParams | dict) -> dict:
    """The request a receipt's ``inputHash`` commits to: ``{"model", "messages", "params"}`` with ``params`` the
    GenParams dump without ``None`` values. Pass the EFFECTIVE params (the max_tokens the node actually applied)."""
    msgs = [m if isinstance(m, ChatMessage) else ChatMessage.model_validate(m) for m in messages]
    p = params if isinstance(params, GenParams) else GenParams.model_validate(params)
    return {
        "model": model,
        "messages": [m.model_dump() for m in msgs],
        "params": p.model_dump(exclude_none=True),
    }


def input_hash(request: dict) -> str:
    """``"0x" + keccak(canonical_json(request))`` for a request built by :func:`canonical_request`."""
    return _hex_keccak(canonical_json(request))


OUTPUT_V2_TAG = b"OPG output v2"


def tokens_of(prompt_ids: list[int], output_ids: list[int], finish_reason: str) -> dict:
    """The token commitment's JSON (what a payload's ``tokens`` carries)."""
    return {"promptIds": [int(t) for t in prompt_ids], "outputIds": [int(t) for t in output_ids],
            "finishReason": finish_reason}


def tokens_hash(tokens: dict) -> str:
    """``"0x" + keccak(canonical_json({"promptIds", "outputIds", "finishReason"}))`` (ValueError if malformed)."""
    if not isinstance(tokens, dict) or set(tokens) != {"promptIds", "outputIds", "finishReason"}:
        raise ValueError("tokens must be {promptIds, outputIds, finishReason}")
    for key in ("promptIds", "outputIds"):
        ids = tokens[key]
        if not isinstance(ids, list) or not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 2**31
                                                for t in ids):
            raise ValueError(f"tokens.{key} must be a list of token ids")
    if tokens["finishReason"] not in ("stop", "length"):
        raise ValueError("tokens.finishReason must be stop or length")
    return _hex_keccak(canonical_json(tokens))


def output_hash(text: str, tokens_hash: str | None = None) -> str:
    """The receipt's ``outputHash``: ``"0x" + keccak(utf-8 text)`` without a token commitment, else
    ``keccak("OPG output v2" || keccak(utf-8 text) || tokensHash)``."""
    if tokens_hash is None:
        return _hex_keccak(text.encode("utf-8"))
    th = bytes.fromhex(tokens_hash[2:] if tokens_hash.startswith("0x") else tokens_hash)
    if len(th) != 32:
        raise ValueError("tokensHash must be 32 bytes")
    return _hex_keccak(OUTPUT_V2_TAG + keccak(text.encode("utf-8")) + th)


def generation_output_hash(gen: Generation) -> tuple[str, dict | None]:
    """``(outputHash, tokens)`` of an answer: with its token commitment when the backend reported ids."""
    if gen.prompt_ids is None or gen.output_ids is None:
        return output_hash(gen.text), None
    tokens = tokens_of(gen.prompt_ids, gen.output_ids, gen.finish_reason)
    return output_hash(gen.text, tokens_hash(tokens)), tokens


def model_id_of(descriptor: dict) -> str:
    """``"0x" + keccak(canonical_json(descriptor))``: the receipt's ``modelId``."""
    return _hex_keccak(canonical_json(descriptor))


class Pricing(BaseModel):
    """Prices in wei of OPG (integers): ``cost = base + per_prompt_token * prompt + per_output_token * output``.

    On the wire (``/v1/models``, 402 quotes, payloads) pricing is camelCase decimal strings: see :meth:`wire` and
    :meth:`from_wire`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    base: int = Field(ge=0)
    per_prompt_token: int = Field(ge=0)
    per_output_token: int = Field(ge=0)

    @field_validator("base", "per_prompt_token", "per_output_token", mode="before")
    @classmethod
    def _int(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be an integer")
        if isinstance(value, str) and value.isdigit():
            return int(value)
        return value

    def cost(self, prompt_tokens: int, output_tokens: int) -> int:
        """What an answer with these token counts costs (exact integer arithmetic)."""
        if prompt_tokens < 0 or output_tokens < 0:
            raise ValueError("token counts must be non-negative")
        return self.base + self.per_prompt_token * prompt_tokens + self.per_output_token * output_tokens

    def cap(self, prompt_tokens: int, max_tokens: int) -> int:
        """The quote: the most a request with this prompt and ``max_tokens`` can cost."""
        return self.cost(prompt_tokens, max_tokens)

    def max_output_tokens_within(self, budget: int, prompt_tokens: int) -> int:
        """The largest output token count whose cost fits ``budget`` (0 if even an empty answer does not fit;
        :data:`UNBOUNDED_TOKENS` if output tokens are free and the fixed part fits)."""
        fixed = self.cost(prompt_tokens, 0)
        if budget < fixed:
            return 0
        if self.per_output_token == 0:
            return UNBOUNDED_TOKENS
        return (budget - fixed) // self.per_output_token

    def wire(self) -> dict[str, str]:
        """``{"base", "perPromptToken", "perOutputToken"}`` as decimal wei strings."""
        return {
            "base": str(self.base),
            "perPromptToken": str(self.per_prompt_token),
            "perOutputToken": str(self.per_output_token),
        }

    @classmethod
    def from_wire(cls, data: dict) -> Pricing:
        """Inverse of :meth:`wire` (also accepts the snake_case names and integers)."""
        return cls(
            base=data["base"],
            per_prompt_token=data.get("perPromptToken", data.get("per_prompt_token")),
            per_output_token=data.get("perOutputToken", data.get("per_output_token")),
        )
