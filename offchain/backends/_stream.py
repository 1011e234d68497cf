"""Stop-sequence-aware streaming shared by the local backends.

:class:`Assembler` receives decoded text pieces one generated token at a time, cuts the answer before the first stop
sequence (OpenAI's semantics: the stop string is not part of the answer), and forwards to ``on_token`` only text that
can no longer turn out to be the start of a stop sequence.
"""

from __future__ import annotations

from ..inference import OnToken


class Assembler:
    def __init__(self, stop: list[str] | None, on_token: OnToken | None):
        self.stops = [s for s in (stop or []) if s]
        self.on_token = on_token
        self.text = ""  # all text generated so far (before any stop cut)
        self.emitted = 0  # len of self.text already passed to on_token
        self.stopped_at: int | None = None  # index in self.text where a stop sequence begins
        self.cancelled = False  # on_token returned False

    def _held_back(self) -> int:
        """Length of the longest tail of the unemitted text that is a proper prefix of a stop sequence."""
        pending = self.text[self.emitted :]
        best = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(pending)), best, -1):
                if pending.endswith(s[:k]):
                    best = k
                    break
        return best

    def _emit(self, end: int) -> None:
        if end <= self.emitted:
            return
        piece = self.text[self.emitted : end]
        self.emitted = end
        if self.on_token is not None and self.on_token(piece) is False:
            self.cancelled = True

    def push(self, piece: str) -> bool:
        """Add one token's text; returns True when generation must end (stop sequence hit, or cancelled)."""
        self.text += piece
        if self.cancelled or self.stopped_at is not None:
            return True  # after the end nothing more is streamed (a last decoded tail only joins the text)
        if self.stops:
            hits = [i for i in (self.text.find(s, self.emitted) for s in self.stops) if i >= 0]
            if hits:
                self.stopped_at = min(hits)
                self._emit(self.stopped_at)
                return True
            self._emit(len(self.text) - self._held_back())
        else:
            self._emit(len(self.text))
        return self.cancelled

    def finish(self) -> str:
        """Flush what was held back (unless cancelled) and return the answer's text."""
        if self.stopped_at is not None:
            return self.text[: self.stopped_at]
        if not self.cancelled:
            self._emit(len(self.text))
        return self.text
