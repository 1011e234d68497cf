"""The proxy backend against a real OpenAI-compatible server process (tests/backends/openai_upstream.py)."""

from __future__ import annotations

import time

import httpx
import pytest
from backend_contract import QUESTION, check_stop_sequence, check_streaming_matches_text

from offchain.backends import BackendError, BuiltinBackend, load_backend
from offchain.backends.proxy import estimate_prompt_tokens
from offchain.devkit.devchain import free_port
from offchain.inference import ChatMessage, GenParams, model_id_of

REFERENCE = BuiltinBackend()  # what the upstream runs


def proxy(base: str, model: str = "upstream-model", **options):
    return load_backend(f"proxy:{base}/v1#{model}", **options)


def last_request(base: str) -> dict:
    return httpx.get(f"{base}/debug/last").json()


def test_identity_is_not_deterministic_and_model_id_names_the_upstream_model(upstream):
    b = proxy(upstream, name="served-name")
    assert (b.name, b.deterministic) == ("served-name", False)
    assert b.descriptor == {"backend": "proxy", "upstream_model": "upstream-model", "deterministic": False}
    assert b.model_id == model_id_of(b.descriptor) == proxy("http://elsewhere:1").model_id


def test_non_streaming_answer_and_counts_come_from_the_upstream(upstream):
    g = proxy(upstream).generate(QUESTION, GenParams(max_tokens=20))
    want = REFERENCE.generate(QUESTION, GenParams(max_tokens=20))
    assert g == want  # text, real usage counts (not the estimate), finish_reason
    assert last_request(upstream)["body"]["stream"] is False


def test_streaming_answer_and_usage_come_from_the_upstream(upstream):
    g = check_streaming_matches_text(proxy(upstream), max_tokens=20)
    assert g == REFERENCE.generate(QUESTION, GenParams(max_tokens=20))
    body = last_request(upstream)["body"]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_request_parameters_are_passed_through(upstream):
    proxy(upstream).generate(QUESTION, GenParams(max_tokens=7, temperature=0.3, seed=42, stop=["zz"]))
    body = last_request(upstream)["body"]
    assert (body["model"], body["max_tokens"], body["temperature"], body["seed"], body["stop"]) == (
        "upstream-model", 7, 0.3, 42, ["zz"])
    assert body["messages"] == [m.model_dump() for m in QUESTION]
    proxy(upstream).generate(QUESTION, GenParams(max_tokens=7))
    assert not {"temperature", "seed", "stop"} & set(last_request(upstream)["body"])


def test_stop_sequences_end_the_answer(upstream):
    full = REFERENCE.generate(QUESTION, GenParams(max_tokens=40)).text
    check_stop_sequence(proxy(upstream), full, max_tokens=40)


def test_early_stop_hangs_up_on_the_upstream(slow_upstream):
    b = proxy(slow_upstream)
    pieces: list[str] = []
    started = time.monotonic()
    g = b.generate(QUESTION, GenParams(max_tokens=40), lambda p: pieces.append(p) or len(pieces) < 3)
    full = REFERENCE.generate(QUESTION, GenParams(max_tokens=40)).output_tokens
    assert full >= 15 and time.monotonic() - started < 4  # the whole answer would take full * 300 ms >= 4.5 s
    assert len(pieces) == 3 and g.finish_reason == "length" and g.output_tokens == 3
    assert g.prompt_tokens == estimate_prompt_tokens(QUESTION)  # no usage arrived: the quote's estimate
    deadline = time.monotonic() + 5
    while last_request(slow_upstream)["abandoned"] < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert last_request(slow_upstream)["abandoned"] >= 1 and last_request(slow_upstream)["completed"] == 0


def test_prompt_estimate_is_a_quarter_of_the_characters_plus_overheads(upstream):
    msgs = [ChatMessage(role="system", content="x" * 9), ChatMessage(role="user", content="")]
    assert proxy(upstream).count_prompt_tokens(msgs) == (3 + 4) + (0 + 4) + 3


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_http_error_is_a_backend_error(upstream, stream):
    on_token = (lambda p: None) if stream else None
    with pytest.raises(BackendError, match="HTTP 500.*model crashed"):
        proxy(upstream, "broken").generate(QUESTION, GenParams(max_tokens=5), on_token)


def test_malformed_answers_are_backend_errors(upstream):
    with pytest.raises(BackendError, match="malformed"):
        proxy(upstream, "garbage").generate(QUESTION, GenParams(max_tokens=5))
    with pytest.raises(BackendError, match="mid-stream.*GPU fell over"):
        proxy(upstream, "midstream-error").generate(QUESTION, GenParams(max_tokens=20), lambda p: None)


def test_unreachable_upstream_is_a_backend_error():
    b = load_backend(f"proxy:http://127.0.0.1:{free_port()}/v1#m", timeout=2)
    with pytest.raises(BackendError, match="failed: ConnectError"):
        b.generate(QUESTION, GenParams(max_tokens=5))
