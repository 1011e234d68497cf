"""OpenAI's chat-completions wire format: the request body the node accepts and the answers it gives
(``chat.completion`` JSON, ``chat.completion.chunk`` SSE events, the final usage chunk).

Accepted body fields: ``model``, ``messages`` (roles system, developer (as system), user, assistant; content a string
or a list of ``{"type": "text", "text"}`` parts), ``max_tokens`` or ``max_completion_tokens``, ``temperature``,
``seed``, ``stop``, ``stream``, ``stream_options``, ``n`` (1 only). Other OpenAI fields (``top_p``, ``user``, ...) are
accepted and ignored, like most OpenAI-compatible servers do; the receipt commits only to what the model used.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..inference import ChatMessage


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class InMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None

    def chat(self) -> ChatMessage:
        content = self.content
        if isinstance(content, list):
            content = "".join(p.text for p in content)
        return ChatMessage(role="system" if self.role == "developer" else self.role, content=content or "")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool | None = None


class ChatRequest(BaseModel):
    """``POST /v1/chat/completions`` body (OpenAI's, text only)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = Field(None, description="a model id from GET /v1/models (default: the node's first model)")
    messages: list[InMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=1, description="only 1")

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: Any) -> Any:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    def chat_messages(self) -> list[ChatMessage]:
        return [m.chat() for m in self.messages]

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


def completion_id(request_id: str | None) -> str:
    import secrets

    return "chatcmpl-" + (request_id[2:26] if request_id else secrets.token_hex(12))


def usage(prompt_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": output_tokens,
            "total_tokens": prompt_tokens + output_tokens}


def completion(cid: str, created: int, model: str, text: str, finish_reason: str, prompt_tokens: int,
               output_tokens: int, payment: dict, fingerprint: str) -> dict[str, Any]:
    return {
        "id": cid, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage(prompt_tokens, output_tokens),
        "system_fingerprint": fingerprint,
        "x_opg_payment": payment,
    }


def chunk(cid: str, created: int, model: str, fingerprint: str, delta: dict, finish_reason: str | None = None) -> dict:
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": fingerprint,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}


def usage_chunk(cid: str, created: int, model: str, fingerprint: str, prompt_tokens: int, output_tokens: int,
                payment: dict) -> dict:
    """The last chunk before ``[DONE]``: OpenAI's include_usage chunk (``choices: []``) plus the payment result."""
    return {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": fingerprint, "choices": [], "usage": usage(prompt_tokens, output_tokens),
            "x_opg_payment": payment}


def sse(data: dict | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"data: {text}\n\n".encode()
