"""``builtin``: a deterministic, instant, pure-Python stand-in for a language model.

It is a tiny word-level "model": the answer is a sequence of words drawn from a fixed vocabulary and the words of the
last user message, keyed by keccak of the conversation, so the same conversation always gets the same answer in every
process. One token is one whitespace-delimited piece (a word with its leading space). The natural answer length
(8..47 tokens) is derived from the same key; token ``i`` depends only on the key and ``i``, so an answer cut at ``n``
tokens is the prefix of the longer one (what ``max_tokens`` and a verifier re-running a truncated answer rely on).

Prompt tokens: 3 per message + its whitespace pieces + 3 for the reply's header (OpenAI's accounting shape).
"""

from __future__ import annotations

import re
import time

from eth_utils import keccak

from ..inference import ChatMessage, Generation, GenParams, OnToken, PromptTooLong, canonical_json, model_id_of
from ._stream import Assembler

VERSION = 1
DEFAULT_CONTEXT = 8192

_VOCAB = (
    "the", "a", "answer", "is", "of", "to", "and", "in", "that", "it", "for", "on", "with", "as", "this", "we",
    "can", "be", "by", "model", "result", "value", "token", "request", "proof", "chain", "node", "price", "verified",
    "settled", "every", "each", "one", "two", "three", "first", "then", "so", "because", "likely", "clear", "simple",
    "small", "large", "true", "known", "well", "here", "there", "question", "reason", "data", "step", "fact",
)
_PIECE = re.compile(r"\s*\S+")
_WORD = re.compile(r"[A-Za-z0-9']+")


def count_pieces(text: str) -> int:
    return len(_PIECE.findall(text))


class BuiltinBackend:
    """See the module docstring. Options: ``name`` (default "builtin"), ``context_length`` (default 8192),
    ``token_delay`` (seconds to sleep per token, to exercise streaming/cancellation; not output-relevant)."""

    def __init__(self, name: str = "builtin", context_length: int = DEFAULT_CONTEXT, token_delay: float = 0.0):
        if context_length < 2:
            raise ValueError("context_length must be at least 2")
        self.name = name
        self.context_length = int(context_length)
        self.token_delay = float(token_delay)
        self.deterministic = True
        self.descriptor = {
            "backend": "builtin",
            "version": VERSION,
            "tokenizer": "whitespace",
            "sampling": "greedy",
            "n_ctx": self.context_length,
            "deterministic": True,
        }
        self.model_id = model_id_of(self.descriptor)

    def count_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        return sum(3 + count_pieces(m.content) for m in messages) + 3

    def _key(self, messages: list[ChatMessage]) -> bytes:
        return keccak(canonical_json({"builtin": VERSION, "messages": [m.model_dump() for m in messages]}))

    def _words(self, messages: list[ChatMessage]) -> tuple[str, ...]:
        last_user = next((m.content for m in reversed(messages) if m.role == "user"), "")
        prompt_words = tuple(w.lower() for w in _WORD.findall(last_user))[:64]
        return _VOCAB + prompt_words

    def generate(self, messages: list[ChatMessage], params: GenParams, on_token: OnToken | None = None) -> Generation:
        prompt_tokens = self.count_prompt_tokens(messages)
        room = self.context_length - prompt_tokens
        if room < 1:
            raise PromptTooLong(prompt_tokens, self.context_length)
        key = self._key(messages)
        natural = 8 + key[0] % 40
        words = self._words(messages)
        budget = min(params.max_tokens, room)
        out = Assembler(params.stop, on_token)
        produced = 0
        sentence_start = True
        finish = "length"
        while True:
            if produced == natural:
                finish = "stop"
                break
            if produced == budget:
                break
            h = keccak(key + produced.to_bytes(4, "big"))
            word = words[int.from_bytes(h[:4], "big") % len(words)]
            if sentence_start:
                word = word[:1].upper() + word[1:]
            last = produced == natural - 1
            sentence_start = last or h[4] % 6 == 0
            piece = ("" if produced == 0 else " ") + word + ("." if sentence_start else "")
            produced += 1
            if self.token_delay:
                time.sleep(self.token_delay)
            if out.push(piece):
                finish = "stop" if out.stopped_at is not None else "length"
                break
        text = out.finish()
        return Generation(text=text, prompt_tokens=prompt_tokens, output_tokens=produced, finish_reason=finish)
