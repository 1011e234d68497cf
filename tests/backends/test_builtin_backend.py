"""The builtin stand-in: deterministic everywhere, honours max_tokens, stop sequences and on_token."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from backend_contract import (
    QUESTION,
    check_early_stop,
    check_max_tokens,
    check_stop_sequence,
    check_streaming_matches_text,
)

from offchain.backends import BuiltinBackend, load_backend
from offchain.inference import ChatMessage, GenParams, PromptTooLong


def test_same_request_same_answer_in_another_process(builtin):
    mine = builtin.generate(QUESTION, GenParams(max_tokens=64))
    out = subprocess.run(
        [sys.executable, "-m", "offchain.backends", "generate", "builtin", "--prompt", QUESTION[0].content,
         "--max-tokens", "64"],
        capture_output=True, text=True, check=True,
    )
    theirs = json.loads(out.stdout)
    assert (theirs["text"], theirs["prompt_tokens"], theirs["output_tokens"], theirs["modelId"]) == (
        mine.text, mine.prompt_tokens, mine.output_tokens, builtin.model_id)


def test_different_conversations_get_different_answers(builtin):
    other = [ChatMessage(role="user", content="Name three colours of the sea.")]
    assert builtin.generate(QUESTION, GenParams(max_tokens=32)).text != builtin.generate(other, GenParams(max_tokens=32)).text


def test_streamed_pieces_are_the_answer(builtin):
    check_streaming_matches_text(builtin, max_tokens=64)


def test_answer_ends_by_itself_with_finish_reason_stop(builtin):
    g = builtin.generate(QUESTION, GenParams(max_tokens=1000))
    assert g.finish_reason == "stop" and 8 <= g.output_tokens <= 47 and g.text.endswith(".")


def test_max_tokens_is_never_exceeded_and_cuts_a_prefix(builtin):
    check_max_tokens(builtin)
    full = builtin.generate(QUESTION, GenParams(max_tokens=1000))
    cut = builtin.generate(QUESTION, GenParams(max_tokens=5))
    assert cut.output_tokens == 5 and full.text.startswith(cut.text)


def test_stop_sequence_cuts_the_answer_before_it(builtin):
    check_stop_sequence(builtin, builtin.generate(QUESTION, GenParams(max_tokens=64)).text, max_tokens=64)


def test_stop_sequence_spanning_two_tokens_is_not_streamed(builtin):
    full = builtin.generate(QUESTION, GenParams(max_tokens=64)).text
    words = full.split(" ")
    stop = words[1][-2:] + " " + words[2][:2]  # ends one token, starts the next
    pieces: list[str] = []
    g = builtin.generate(QUESTION, GenParams(max_tokens=64, stop=[stop]), pieces.append)
    assert g.text == full[: full.index(stop)] == "".join(pieces)


def test_on_token_false_stops_generation_and_the_prefix_is_reproducible(builtin):
    g = check_early_stop(builtin, max_tokens=64, stop_after=4)
    assert g.output_tokens == 4


def test_token_counts_follow_whitespace_pieces():
    b = BuiltinBackend()
    msgs = [ChatMessage(role="system", content="be brief"), ChatMessage(role="user", content="one two  three")]
    assert b.count_prompt_tokens(msgs) == (3 + 2) + (3 + 3) + 3


def test_prompt_longer_than_the_context_is_refused():
    b = BuiltinBackend(context_length=10)
    with pytest.raises(PromptTooLong):
        b.generate([ChatMessage(role="user", content="a b c d e")], GenParams(max_tokens=4))
    g = BuiltinBackend(context_length=12).generate([ChatMessage(role="user", content="a b c d e")], GenParams(max_tokens=4))
    assert g.output_tokens == 1 and g.finish_reason == "length"  # only one token of room left


def test_model_id_is_keccak_of_the_descriptor_and_changes_with_the_context():
    a, b = load_backend("builtin"), load_backend("builtin", name="other-name")
    assert a.model_id == b.model_id and a.deterministic  # the served name is not output-relevant
    assert load_backend("builtin", context_length=4096).model_id != a.model_id


def test_unknown_specs_and_options_are_value_errors():
    for spec in ("gpt5", "llama:", "proxy:localhost:1/v1#m", "proxy:http://127.0.0.1:1/v1"):
        with pytest.raises(ValueError):
            load_backend(spec)
    with pytest.raises(ValueError):
        load_backend("builtin", n_threads_typo=3)
