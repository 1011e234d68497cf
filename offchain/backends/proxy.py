"""``proxy:http://host:port/v1#model``: an OpenAI-compatible upstream (vLLM, llama-server, Ollama, ...).

The node forwards each paid request to ``{base}/chat/completions`` with ``model``, ``messages``, ``max_tokens``,
``temperature``, ``seed`` and ``stop``; streaming when the caller streams (with ``stream_options.include_usage`` so
the upstream reports real token counts at the end), non-streaming otherwise.

Token counts: the answer's ``prompt_tokens``/``output_tokens`` are the upstream's ``usage`` (output clamped to
``max_tokens``). If a stream ends without usage (an upstream that ignores ``include_usage``, or an early stop by
``on_token``), the output count is the number of content chunks received (servers send one token per chunk) and the
prompt count is the estimate below. ``count_prompt_tokens`` (used only for the quote, before anything is sent) is a
tokenizer-free estimate: per message ``ceil(len(content) / 4) + 4``, plus 3 for the reply header. The node charges
``min(cost(usage), quote)``, so an under-estimate costs the node, never the payer.

Not deterministic (``deterministic=False``): the upstream's build, batching and hardware are unknown, so answers are
not fraud-provable by re-execution; model_id is keccak of ``{"backend": "proxy", "upstream_model": name,
"deterministic": false}``.

**Open weights** (``weights=/path/model.gguf``, ``weights=smollm2`` or ``weights=gemma3``): the node names the weights its upstream runs.
Then ``model_id`` is the weights' identity (``open_weights_descriptor``: sha256 of the GGUF, which holds the
tokenizer, and of its chat template), the same for every node serving those weights through any engine, and
verifiers holding them judge the answer's TEXT by teacher forcing (docs/verifier.md). The node loads only the GGUF's
vocabulary (no weights in memory): prompt token ids are the model's own chat template rendered and tokenised; output
token ids are the engine's own tokens when the upstream reports them (the request asks for ``logprobs``, whose
``content[].token`` are the generated tokens' texts: llama.cpp's server, llama-cpp-python's, vLLM), mapped to ids
through the model's vocabulary, provided each is exactly one token and they join to the answer's text; otherwise
(an upstream without logprobs, a token that is part of a UTF-8 character, a text cut locally at a stop sequence) the
answer's text tokenised with the model's own tokenizer (the canonical split, which is what honest models produce
almost always). ``splits`` counts which was used. Token counts (and so the charge) are these ids' counts, not the
upstream's ``usage``. A request without ``temperature`` is sent with ``temperature: 0``
(greedy, the protocol's default) so that the upstream's own default cannot make an honest answer look sampled, and
every request pins the penalties off (:data:`PINNED_SAMPLER`): verifiers score the model's raw distribution.
"""

from __future__ import annotations

import json
import math
import os

import httpx

from ..inference import BackendError, ChatMessage, Generation, GenParams, OnToken, model_id_of
from ._stream import Assembler

#: sent with every request of a proxy naming open weights, so the upstream samples from the model's own distribution
#: (verifiers score the raw logits): llama.cpp's server, llama-cpp-python's and Ollama default to a repeat penalty of
#: 1.1, which moved honest greedy tokens up to 1.4 logits in tests; vLLM names it repetition_penalty
PINNED_SAMPLER = {"repeat_penalty": 1.0, "repetition_penalty": 1.0, "frequency_penalty": 0.0,
                  "presence_penalty": 0.0}


def estimate_prompt_tokens(messages: list[ChatMessage]) -> int:
    return sum(math.ceil(len(m.content) / 4) + 4 for m in messages) + 3


class ProxyBackend:
    def __init__(
        self,
        base_url: str,
        upstream_model: str,
        *,
        name: str | None = None,
        timeout: float = 120.0,
        api_key: str | None = None,
        context_length: int | None = None,
        weights: str | None = None,
        weights_source: str | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.upstream_model = upstream_model
        self.name = name or upstream_model
        self.context_length = context_length
        self.deterministic = False
        self.tokenizer = None
        self.splits = {"engine": 0, "tokenizer": 0}  # answers whose ids are the engine's tokens / the tokenizer's split
        if weights:
            from .llama import LlamaBackend, named_weights

            path, template = named_weights(weights)
            self.tokenizer = LlamaBackend(path, vocab_only=True, weights_source=weights_source,
                                          chat_template=template)
            self.tokenizer.ids_of_pieces([])  # its vocabulary table now, at start, not on the first paid request
            self.descriptor = dict(self.tokenizer.open_weights)
            self.context_length = context_length or self.tokenizer.context_length
        else:
            self.descriptor = {"backend": "proxy", "upstream_model": upstream_model, "deterministic": False}
        self.model_id = model_id_of(self.descriptor)
        api_key = api_key or os.environ.get("OPG_PROXY_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)), headers=headers)

    def close(self) -> None:
        self._http.close()

    @property
    def weights(self) -> dict | None:
        return self.tokenizer.weights if self.tokenizer is not None else None

    def count_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        if self.tokenizer is not None:
            return self.tokenizer.count_prompt_tokens(messages)
        return estimate_prompt_tokens(messages)

    def _with_ids(self, gen: Generation, messages: list[ChatMessage], params: GenParams,
                  pieces: list[str | None] | None = None) -> Generation:
        """Open weights: the prompt as the model's template and tokenizer render it; the answer's ids as the engine
        produced them when the upstream reported its tokens (``logprobs``) and each is one token of the model's
        vocabulary whose texts join to the answer, else the answer's text split by the model's tokenizer. Counts come
        from those ids."""
        if self.tokenizer is None:
            return gen
        prompt_ids = self.tokenizer.prompt_tokens(messages)
        output_ids = self.tokenizer.ids_of_pieces(pieces) if pieces else None
        if output_ids is not None and self.tokenizer.detokenize(output_ids) != gen.text:
            output_ids = None  # the text was cut locally (a stop sequence) or the pieces are not the answer
        self.splits["engine" if output_ids is not None else "tokenizer"] += 1  # whose split receipts commit to
        if output_ids is None:
            output_ids = self.tokenizer.tokenize_text(gen.text)
        return Generation(text=gen.text, prompt_tokens=len(prompt_ids),
                          output_tokens=min(len(output_ids), params.max_tokens), finish_reason=gen.finish_reason,
                          prompt_ids=prompt_ids, output_ids=output_ids)

    def _body(self, messages: list[ChatMessage], params: GenParams, stream: bool) -> dict:
        body: dict = {
            "model": self.upstream_model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "max_tokens": params.max_tokens,
            "stream": stream,
        }
        if params.temperature is not None:
            body["temperature"] = params.temperature
        elif self.tokenizer is not None:
            body["temperature"] = 0.0  # the protocol's default is greedy; never the upstream's own default
        if self.tokenizer is not None:  # the model's own distribution: no penalties (llama.cpp/Ollama default 1.1)
            body.update(PINNED_SAMPLER)
            # the engine's own tokens (their texts), so the receipt commits to its split (llama-cpp-python's server
            # reports them only when top_logprobs is set)
            body.update(logprobs=True, top_logprobs=1)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.stop:
            body["stop"] = list(params.stop)
        if stream:
            body["stream_options"] = {"include_usage": True}
        return body

    def _fail(self, resp: httpx.Response) -> BackendError:
        try:
            detail = resp.read().decode("utf-8", "replace")[:300]
        except httpx.HTTPError:
            detail = ""
        return BackendError(f"upstream {self.base_url} answered HTTP {resp.status_code}: {detail}".rstrip(": "))

    def generate(self, messages: list[ChatMessage], params: GenParams, on_token: OnToken | None = None) -> Generation:
        url = f"{self.base_url}/chat/completions"
        try:
            pieces: list[str | None] = []
            if on_token is None:
                gen = self._complete(url, messages, params, pieces)
            else:
                gen = self._stream(url, messages, params, on_token, pieces)
            return self._with_ids(gen, messages, params, pieces)
        except httpx.HTTPError as exc:
            raise BackendError(f"upstream {self.base_url} failed: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _finish(reason: object) -> str:
        return "length" if reason == "length" else "stop"

    def _usage(self, usage: dict | None, messages: list[ChatMessage], fallback_output: int, params: GenParams):
        prompt = output = None
        if isinstance(usage, dict):
            prompt, output = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if not isinstance(prompt, int) or prompt < 0:
            prompt = estimate_prompt_tokens(messages)
        if not isinstance(output, int) or output < 0:
            output = fallback_output
        return prompt, min(output, params.max_tokens)

    @staticmethod
    def _pieces(choice: dict, into: list[str | None]) -> None:
        """Collect a choice's ``logprobs.content[].token`` (an upstream that sends none leaves ``into`` empty; a
        malformed entry adds None, which maps to no token: the answer is then split by the tokenizer)."""
        content = (choice.get("logprobs") or {}).get("content") if isinstance(choice.get("logprobs"), dict) else None
        if not isinstance(content, list):
            return
        for entry in content:
            token = entry.get("token") if isinstance(entry, dict) else None
            into.append(token if isinstance(token, str) else None)  # None matches no token: the tokenizer splits

    def _complete(self, url: str, messages: list[ChatMessage], params: GenParams,
                  pieces: list[str | None] | None = None) -> Generation:
        resp = self._http.post(url, json=self._body(messages, params, stream=False))
        if resp.status_code >= 400:
            raise self._fail(resp)
        try:
            data = resp.json()
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            reason = choice.get("finish_reason")
            if pieces is not None:
                self._pieces(choice, pieces)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise BackendError(f"upstream {self.base_url} sent a malformed chat.completion: {exc}") from exc
        out = Assembler(params.stop, None)  # enforce stop sequences even if the upstream ignored them
        hit = out.push(text)
        text = out.finish()
        prompt, output = self._usage(data.get("usage"), messages, params.max_tokens, params)
        finish = "stop" if hit else self._finish(reason)
        return Generation(text=text, prompt_tokens=prompt, output_tokens=output, finish_reason=finish)

    def _stream(self, url: str, messages: list[ChatMessage], params: GenParams, on_token: OnToken,
                pieces: list[str | None] | None = None) -> Generation:
        out = Assembler(params.stop, on_token)
        chunks = 0
        usage = None
        reason = None
        ended = False  # stopped by a local stop sequence or on_token
        with self._http.stream("POST", url, json=self._body(messages, params, stream=True)) as resp:
            if resp.status_code >= 400:
                raise self._fail(resp)
            for line in resp.iter_lines():
                if not line.startswith("data:"):
                    continue
                payload = line[5:].strip()
                if payload == "[DONE]":
                    break
                try:
                    event = json.loads(payload)
                except ValueError as exc:
                    raise BackendError(f"upstream {self.base_url} sent a malformed stream event: {payload[:100]}") from exc
                if not isinstance(event, dict):
                    raise BackendError(f"upstream {self.base_url} sent a malformed stream event: {payload[:100]}")
                if "error" in event:
                    raise BackendError(f"upstream {self.base_url} failed mid-stream: {json.dumps(event['error'])[:300]}")
                if event.get("usage"):
                    usage = event["usage"]
                for choice in event.get("choices") or []:
                    if pieces is not None and isinstance(choice, dict):
                        self._pieces(choice, pieces)
                    delta = choice.get("delta") or {}
                    content = delta.get("content")
                    if content:
                        chunks += 1
                        if out.push(content):
                            ended = True
                            break
                    if choice.get("finish_reason"):
                        reason = choice["finish_reason"]
                if ended:
                    break  # leaving the block closes the connection: the upstream stops generating
        text = out.finish()
        if ended and out.cancelled:
            finish = "length"
        elif ended:
            finish = "stop"
        else:
            finish = self._finish(reason)
        prompt, output = self._usage(usage, messages, chunks, params)
        return Generation(text=text, prompt_tokens=prompt, output_tokens=output, finish_reason=finish)
