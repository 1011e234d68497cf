"""``CheatingBackend``: a backend that lies at a given rate (for tests and demos: the backend option ``cheat_rate``,
e.g. ``--backend builtin?cheat_rate=0.5``).

It wraps an honest backend and keeps its ``name``, ``descriptor`` and ``model_id``, so its receipts claim the honest
model. For a request whose cheat decision is true it streams a corrupted answer: the honest answer with words
replaced by other plausible words (the first word always, then each word with probability 1/3), with the honest token
counts. The decision is ``keccak(canonical_json({"messages", "params"}) || seed) < rate`` (as a fraction of 2**256),
so it is deterministic per request and seed and is taken for a fraction ``rate`` of distinct requests.

``mode="ids"`` (``cheat_mode=ids``; backends with token ids only) lies in the token commitment instead: the honest
text, with output ids padded to ``max_tokens`` by repeating the answer's own ids, and billed for them (a node
overcharging through ids that do not detokenise to the text it delivered).
"""

from __future__ import annotations

import re

from eth_utils import keccak

from ..inference import Backend, ChatMessage, Generation, GenParams, OnToken, canonical_json

_WORD = re.compile(r"[A-Za-z0-9]+")
_WORD_CHAR = re.compile(r"[A-Za-z0-9]")
_SUBSTITUTES = (
    "never", "seven", "blue", "twelve", "perhaps", "north", "quickly", "purple", "none", "ancient", "wrong",
    "eleven", "silver", "rarely", "London", "ninety", "sideways", "tomorrow", "forty", "granite",
)


class _Corrupter:
    """Rewrites streamed text word by word (a word is only rewritten once it is complete)."""

    def __init__(self, key: bytes, on_token: OnToken | None):
        self.key = key
        self.on_token = on_token
        self.pending = ""  # inner text not yet rewritten (may end inside a word)
        self.out = ""  # rewritten text passed on
        self.words = 0
        self.cancelled = False

    def _swap(self, match: re.Match) -> str:
        word = match.group(0)
        i = self.words
        self.words += 1
        h = keccak(self.key + i.to_bytes(4, "big"))
        if i > 0 and h[0] % 3:
            return word
        candidates = [s for s in _SUBSTITUTES if s.lower() != word.lower()]
        new = candidates[int.from_bytes(h[1:5], "big") % len(candidates)]
        if word[:1].isupper():
            new = new[:1].upper() + new[1:]
        return new

    def _rewrite(self, text: str) -> str:
        return _WORD.sub(self._swap, text)

    def feed(self, piece: str, emit: bool = True) -> bool | None:
        self.pending += piece
        cut = len(self.pending)
        while cut > 0 and _WORD_CHAR.match(self.pending[cut - 1]):
            cut -= 1  # keep a possibly unfinished word back
        if cut == 0:
            return None
        chunk = self._rewrite(self.pending[:cut])
        self.pending = self.pending[cut:]
        self.out += chunk
        if emit and self.on_token is not None and self.on_token(chunk) is False:
            self.cancelled = True
            return False
        return None

    def finish(self, emit: bool) -> str:
        if self.pending:
            chunk = self._rewrite(self.pending)
            self.pending = ""
            self.out += chunk
            if emit and self.on_token is not None:
                self.on_token(chunk)
        if self.words == 0:  # nothing to rewrite: an answer where there was none is wrong too
            chunk = "No." if not self.out else " No."
            self.out += chunk
            if emit and self.on_token is not None:
                self.on_token(chunk)
        return self.out


class CheatingBackend:
    """Wraps ``inner``; for a fraction ``rate`` (0..1) of requests returns a wrong answer. ``seed`` varies which."""

    def __init__(self, inner: Backend, rate: float, seed: int = 0, mode: str = "text"):
        if not 0 <= rate <= 1:
            raise ValueError("cheat rate must be between 0 and 1")
        if mode not in ("text", "ids"):
            raise ValueError("cheat mode must be 'text' or 'ids'")
        self.mode = mode
        self.inner = inner
        self.rate = float(rate)
        self.seed = int(seed)
        self.name = inner.name
        self.descriptor = inner.descriptor
        self.model_id = inner.model_id
        self.deterministic = inner.deterministic
        self.context_length = getattr(inner, "context_length", None)
        self.weights = getattr(inner, "weights", None)

    def _fingerprint(self, messages: list[ChatMessage], params: GenParams) -> bytes:
        request = {"messages": [m.model_dump() for m in messages], "params": params.model_dump(exclude_none=True)}
        return keccak(canonical_json(request) + self.seed.to_bytes(32, "big", signed=True))

    def cheats(self, messages: list[ChatMessage], params: GenParams) -> bool:
        """Whether this request gets a wrong answer."""
        if self.rate <= 0:
            return False
        if self.rate >= 1:
            return True
        return int.from_bytes(self._fingerprint(messages, params), "big") < int(self.rate * 2**256)

    def count_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        return self.inner.count_prompt_tokens(messages)

    def generate(self, messages: list[ChatMessage], params: GenParams, on_token: OnToken | None = None) -> Generation:
        if not self.cheats(messages, params):
            return self.inner.generate(messages, params, on_token)
        if self.mode == "ids":
            honest = self.inner.generate(messages, params, on_token)
            ids = list(honest.output_ids or [])
            if not ids:
                raise ValueError("cheat_mode=ids needs a backend that commits to token ids")
            padded = (ids * (params.max_tokens // len(ids) + 1))[: max(params.max_tokens, len(ids) + 1)]
            return honest.model_copy(update={"output_ids": padded, "output_tokens": min(len(padded),
                                                                                        params.max_tokens)})
        corrupter = _Corrupter(self._fingerprint(messages, params), on_token)
        consumed: list[str] = []

        def relay(piece: str) -> bool | None:
            consumed.append(piece)
            return corrupter.feed(piece)

        honest = self.inner.generate(messages, params, relay)
        seen = "".join(consumed)
        if honest.text.startswith(seen) and len(honest.text) > len(seen):
            corrupter.feed(honest.text[len(seen) :], emit=False)  # a tail held back before an early stop
        text = corrupter.finish(emit=not corrupter.cancelled)
        update: dict = {"text": text}
        tokenizer = getattr(self.inner, "tokenizer", None) or self.inner
        if honest.output_ids is not None and hasattr(tokenizer, "tokenize_text"):
            update["output_ids"] = tokenizer.tokenize_text(text)  # consistent ids: a cheater commits to its own text
        return honest.model_copy(update=update)
