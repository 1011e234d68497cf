"""The models this node serves (one backend each, with its price table) and the quote of a request: the effective
``max_tokens`` and the most the request can cost."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from ..daemon.errors import ApiError
from ..inference import Backend, ChatMessage, GenParams, Pricing
from .openai import ChatRequest
from .x402 import Quote


@dataclass
class ServedModel:
    name: str
    backend: Backend
    pricing: Pricing

    def describe(self, owner: str, max_tokens_limit: int) -> dict:
        """The ``GET /v1/models`` entry."""
        return {
            "id": self.name, "object": "model", "created": 0, "owned_by": owner,
            "opg": {
                "modelId": self.backend.model_id, "deterministic": bool(self.backend.deterministic),
                "descriptor": self.backend.descriptor, "pricing": self.pricing.wire(),
                "maxTokens": self.max_output(max_tokens_limit),
                "contextLength": getattr(self.backend, "context_length", None),
                # the weights (sha256, where to get them): a payer can see whether verifiers hold them
                "weights": getattr(self.backend, "weights", None),
            },
        }

    def max_output(self, limit: int) -> int:
        ctx = getattr(self.backend, "context_length", None)
        return min(limit, ctx - 1) if ctx else limit


@dataclass
class Job:
    """A priced request, ready to pay for and run."""

    model: ServedModel
    messages: list[ChatMessage]
    params: GenParams  # with the effective max_tokens
    quote: Quote


class Catalog:
    def __init__(self, models: list[ServedModel], default_max_tokens: int, max_tokens_limit: int):
        if not models:
            raise ValueError("a node serves at least one model")
        names = [m.name for m in models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"two backends serve the model name {dupes[0]!r}: give one a ?name=...")
        self.models = {m.name: m for m in models}
        self.default = models[0]
        self.default_max_tokens, self.max_tokens_limit = default_max_tokens, max_tokens_limit

    def list(self) -> list[ServedModel]:
        return list(self.models.values())

    def get(self, name: str | None) -> ServedModel:
        if name is None:
            return self.default
        model = self.models.get(name)
        if model is None:
            raise ApiError(404, "model_not_found", "model",
                           f"this node serves {', '.join(sorted(self.models))}, not {name!r}")
        return model

    def prepare(self, request: ChatRequest, url: str) -> Job:
        """Validate and price a request (ApiError 400/404 if it cannot be served)."""
        model = self.get(request.model)
        messages = request.chat_messages()
        prompt_tokens = model.backend.count_prompt_tokens(messages)
        limit = model.max_output(self.max_tokens_limit)
        asked = request.requested_max_tokens()
        if asked is not None and asked > limit:
            field = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
            raise ApiError(400, "invalid_field", field, f"at most {limit} for {model.name}")
        max_tokens = asked if asked is not None else min(self.default_max_tokens, limit)
        ctx = getattr(model.backend, "context_length", None)
        if ctx:
            room = ctx - prompt_tokens
            if room < 1:
                raise ApiError(400, "context_length_exceeded", "messages",
                               f"the prompt has {prompt_tokens} tokens; {model.name} holds {ctx}")
            max_tokens = min(max_tokens, room)
        try:
            params = GenParams(max_tokens=max_tokens, temperature=request.temperature, seed=request.seed,
                               stop=request.stop)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise ApiError(400, "invalid_field", ".".join(str(p) for p in first["loc"]) or None,
                           first.get("msg", "invalid")) from None
        cap = model.pricing.cap(prompt_tokens, max_tokens)
        quote = Quote(model=model.name, prompt_tokens=prompt_tokens, max_tokens=max_tokens, cap=cap,
                      pricing=model.pricing, url=url, stream=request.stream)
        return Job(model=model, messages=messages, params=params, quote=quote)
