"""Checks of the Backend contract (offchain.inference.Backend) shared by the builtin, llama.cpp and proxy tests."""

from __future__ import annotations

from offchain.inference import ChatMessage, GenParams

QUESTION = [ChatMessage(role="user", content="Name three colours of the rainbow.")]


def streamed(backend, messages, params, stop_after: int | None = None):
    """Generate while collecting the pieces; ``stop_after`` makes on_token return False at that piece."""
    pieces: list[str] = []

    def on_token(piece: str):
        pieces.append(piece)
        return None if stop_after is None or len(pieces) < stop_after else False

    return backend.generate(messages, params, on_token), pieces


def check_streaming_matches_text(backend, messages=QUESTION, max_tokens=16):
    g, pieces = streamed(backend, messages, GenParams(max_tokens=max_tokens))
    assert pieces and "".join(pieces) == g.text
    assert 1 <= g.output_tokens <= max_tokens
    if backend.deterministic:  # local backends count the prompt exactly; a proxy's count is only the quote's estimate
        assert g.prompt_tokens == backend.count_prompt_tokens(messages)
    return g


def check_max_tokens(backend, messages=QUESTION):
    for n in (1, 3):
        g = backend.generate(messages, GenParams(max_tokens=n))
        assert g.output_tokens <= n
        if g.output_tokens == n:
            assert g.finish_reason == "length"


def check_stop_sequence(backend, full_text: str, messages=QUESTION, max_tokens=16):
    """Stopping at a string that occurs in the unstopped answer cuts the answer right before it."""
    words = full_text.split()
    assert len(words) >= 3, full_text
    stop = " " + words[2][:3]
    g, pieces = streamed(backend, messages, GenParams(max_tokens=max_tokens, stop=[stop]))
    assert g.finish_reason == "stop"
    assert g.text == full_text[: full_text.index(stop)]
    assert "".join(pieces) == g.text and stop not in g.text


def check_early_stop(backend, messages=QUESTION, max_tokens=16, stop_after=3):
    g, pieces = streamed(backend, messages, GenParams(max_tokens=max_tokens), stop_after=stop_after)
    assert len(pieces) == stop_after and g.finish_reason == "length"
    assert g.text.startswith("".join(pieces))
    assert stop_after <= g.output_tokens < max_tokens
    if backend.deterministic:  # a verifier re-runs a truncated answer with max_tokens = its output tokens
        again = backend.generate(messages, GenParams(max_tokens=g.output_tokens))
        assert (again.text, again.output_tokens) == (g.text, g.output_tokens)
    return g
