"""offchain.inference: canonical bytes, the receipt hashes, request validation and pricing arithmetic."""

from __future__ import annotations

import pytest
from eth_utils import keccak
from pydantic import ValidationError

from offchain.inference import (
    UNBOUNDED_TOKENS,
    ChatMessage,
    GenParams,
    Pricing,
    canonical_json,
    canonical_request,
    input_hash,
    model_id_of,
    output_hash,
)


def test_canonical_json_sorts_keys_has_no_spaces_and_keeps_utf8():
    assert canonical_json({"b": 1, "a": [1, {"d": "é", "c": None}]}) == '{"a":[1,{"c":null,"d":"é"}],"b":1}'.encode()


def test_canonical_request_drops_unset_params_so_equal_requests_hash_equal():
    msgs = [ChatMessage(role="user", content="hi")]
    a = canonical_request("m", msgs, GenParams(max_tokens=5))
    b = canonical_request("m", [{"role": "user", "content": "hi"}], {"max_tokens": 5, "temperature": None})
    assert a == b == {"model": "m", "messages": [{"role": "user", "content": "hi"}], "params": {"max_tokens": 5}}
    assert input_hash(a) == input_hash(b) == "0x" + keccak(canonical_json(a)).hex()


def test_input_hash_commits_to_the_effective_max_tokens():
    msgs = [ChatMessage(role="user", content="hi")]
    assert input_hash(canonical_request("m", msgs, GenParams(max_tokens=5))) != input_hash(
        canonical_request("m", msgs, GenParams(max_tokens=6))
    )


def test_output_and_model_hashes_are_keccak_of_the_exact_bytes():
    assert output_hash("Paris é") == "0x" + keccak("Paris é".encode()).hex()
    assert model_id_of({"b": 1, "a": 2}) == "0x" + keccak(b'{"a":2,"b":1}').hex()


def test_gen_params_reject_nonsense():
    for bad in ({"max_tokens": 0}, {"max_tokens": 1, "stop": [""]}, {"max_tokens": 1, "stop": ["a"] * 5},
                {"max_tokens": 1, "temperature": -1}, {"max_tokens": 1, "top_p": 0.5}):
        with pytest.raises(ValidationError):
            GenParams.model_validate(bad)
    assert GenParams(max_tokens=1, stop="x").stop == ["x"]
    assert GenParams(max_tokens=1, stop=[]).stop is None


def test_pricing_is_exact_integer_wei():
    p = Pricing(base=10**15, per_prompt_token=3 * 10**12, per_output_token=7 * 10**12 + 1)
    assert p.cost(100, 20) == 10**15 + 300 * 10**12 + 20 * (7 * 10**12 + 1)
    assert p.cap(100, 64) == p.cost(100, 64)
    assert Pricing.from_wire(p.wire()) == p
    assert p.wire() == {"base": str(10**15), "perPromptToken": str(3 * 10**12), "perOutputToken": str(7 * 10**12 + 1)}


def test_max_output_tokens_within_is_the_largest_count_that_fits():
    p = Pricing(base=100, per_prompt_token=2, per_output_token=7)
    for budget in range(0, 400):
        n = p.max_output_tokens_within(budget, 10)
        if budget < p.cost(10, 0):
            assert n == 0
        else:
            assert p.cost(10, n) <= budget < p.cost(10, n + 1)
    assert Pricing(base=1, per_prompt_token=1, per_output_token=0).max_output_tokens_within(5, 2) == UNBOUNDED_TOKENS
    with pytest.raises(ValidationError):
        Pricing(base=-1, per_prompt_token=0, per_output_token=0)
