"""A chat with one node through the paying transport: model list, one answer (streamed or not) with its payment
outcome, and settlement look-ups. What ``opg chat`` is built on."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from .payer import Payer, PaymentOutcome
from .transport import PaymentTicket, payment_http_client


class ChatError(Exception):
    """The node (or this client) did not answer; the message is one readable line."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C cut a streamed answer: ``answer`` holds the text that arrived and the payment outcome of the cut
    request (the node bills only the tokens it sent)."""

    def __init__(self, answer: Answer):
        super().__init__("interrupted")
        self.answer = answer


@dataclass
class Answer:
    text: str
    model: str
    outcome: PaymentOutcome | None
    usage: dict | None = None
    finish_reason: str | None = None
    raw: dict = field(default_factory=dict)


def sse_chunks(lines: Iterable[str]) -> Iterator[dict]:
    """The JSON chunks of an OpenAI-style event stream (``data: {...}`` lines) up to ``data: [DONE]``; other lines
    and chunks that are not JSON objects are skipped."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            continue
        if isinstance(chunk, dict):
            yield chunk


def _error_text(res: httpx.Response) -> str:
    try:
        body = res.json()
    except ValueError:
        return f"HTTP {res.status_code}: {res.text[:200]}"
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err)
        if body.get("reason"):
            return f"{err}: {body['reason']}" if err else str(body["reason"])
        if err:
            return f"the node asks for payment this client cannot make ({err})" if res.status_code == 402 else str(err)
    return f"HTTP {res.status_code}"


class ChatClient:
    def __init__(self, payer: Payer, node_url: str, *, exact: bool = False, timeout: float = 300):
        self.payer = payer
        self.node_url = node_url.rstrip("/")
        self.http = payment_http_client(payer, exact=exact, base_url=self.node_url,
                                        timeout=httpx.Timeout(timeout, connect=10))

    def close(self) -> None:
        self.http.close()

    def models(self) -> list[dict]:
        try:
            res = self.http.get("/v1/models")
        except httpx.HTTPError as exc:
            raise ChatError(f"node {self.node_url} unreachable: {exc.__class__.__name__}") from None
        if res.status_code != 200:
            raise ChatError(f"GET /v1/models: {_error_text(res)}")
        return list(res.json().get("data") or [])

    def ask(self, messages: list[dict], model: str, *, max_tokens: int | None = None, stream: bool = True,
            on_token: Callable[[str], Any] | None = None, **params: Any) -> Answer:
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        body.update({k: v for k, v in params.items() if v is not None})
        try:
            if stream:
                return self._stream(body, on_token)
            res = self.http.post("/v1/chat/completions", json=body)
        except httpx.HTTPError as exc:
            raise ChatError(f"node {self.node_url} unreachable: {exc.__class__.__name__}: {exc}") from None
        if res.status_code != 200:
            raise ChatError(_error_text(res))
        data = res.json()
        choice = (data.get("choices") or [{}])[0]
        ticket: PaymentTicket | None = res.extensions.get("opg_payment")
        return Answer(text=(choice.get("message") or {}).get("content") or "", model=data.get("model", model),
                      outcome=ticket.outcome if ticket else None, usage=data.get("usage"),
                      finish_reason=choice.get("finish_reason"), raw=data)

    def _stream(self, body: dict, on_token: Callable[[str], Any] | None) -> Answer:
        parts: list[str] = []
        usage = finish = None
        model = body["model"]
        with self.http.stream("POST", "/v1/chat/completions", json=body) as res:
            if res.status_code != 200:
                res.read()
                raise ChatError(_error_text(res))
            try:
                for chunk in sse_chunks(res.iter_lines()):
                    model = chunk.get("model", model)
                    for choice in chunk.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            parts.append(piece)
                            if on_token:
                                on_token(piece)
                        finish = choice.get("finish_reason") or finish
                    usage = chunk.get("usage") or usage
            except KeyboardInterrupt:
                res.close()  # the node sees the cut and bills what it sent; the transport records the outcome
                ticket = res.extensions.get("opg_payment")
                raise Interrupted(Answer(text="".join(parts), model=model,
                                         outcome=ticket.wait(5) if ticket else None, finish_reason="interrupted")) \
                    from None
            ticket: PaymentTicket | None = res.extensions.get("opg_payment")
        return Answer(text="".join(parts), model=model, outcome=ticket.wait(5) if ticket else None, usage=usage,
                      finish_reason=finish)

    def settlement(self, receipt_id: str) -> dict | None:
        return self.payer.settlement(receipt_id)
