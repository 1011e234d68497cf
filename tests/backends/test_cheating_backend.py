"""CheatingBackend: wrong answers at the configured rate, deterministically, looking like the honest model."""

from __future__ import annotations

from offchain.backends import CheatingBackend, load_backend
from offchain.inference import ChatMessage, GenParams

PARAMS = GenParams(max_tokens=24)


def requests(n: int):
    return [[ChatMessage(role="user", content=f"Question number {i}: what is {i} + {i}?")] for i in range(n)]


def test_rate_is_roughly_honoured(builtin):
    cheater = CheatingBackend(builtin, rate=0.3, seed=7)
    lies = sum(cheater.cheats(m, PARAMS) for m in requests(400))
    assert 90 <= lies <= 150  # 120 expected; binomial sd ~9


def test_decisions_are_deterministic_per_request_and_seed(builtin):
    reqs = requests(100)
    a = [CheatingBackend(builtin, 0.5, seed=1).cheats(m, PARAMS) for m in reqs]
    b = [CheatingBackend(load_backend("builtin"), 0.5, seed=1).cheats(m, PARAMS) for m in reqs]
    c = [CheatingBackend(builtin, 0.5, seed=2).cheats(m, PARAMS) for m in reqs]
    assert a == b and a != c


def test_wrong_answers_differ_but_keep_the_honest_counts_and_identity(builtin):
    cheater = load_backend("builtin", cheat_rate=1.0)
    assert isinstance(cheater, CheatingBackend)
    assert (cheater.name, cheater.model_id, cheater.descriptor) == (builtin.name, builtin.model_id, builtin.descriptor)
    for m in requests(20):
        honest, lie = builtin.generate(m, PARAMS), cheater.generate(m, PARAMS)
        assert lie.text != honest.text and lie.text.strip()
        assert (lie.prompt_tokens, lie.output_tokens, lie.finish_reason) == (
            honest.prompt_tokens, honest.output_tokens, honest.finish_reason)
        assert cheater.generate(m, PARAMS) == lie  # the same lie every time


def test_streamed_lie_is_the_returned_text(builtin):
    cheater = CheatingBackend(builtin, rate=1.0)
    pieces: list[str] = []
    g = cheater.generate(requests(1)[0], PARAMS, pieces.append)
    assert "".join(pieces) == g.text


def test_rate_zero_is_the_honest_backend(builtin):
    cheater = CheatingBackend(builtin, rate=0.0)
    assert all(cheater.generate(m, PARAMS) == builtin.generate(m, PARAMS) for m in requests(10))
