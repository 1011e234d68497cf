"""The proxy backend naming open weights (``proxy:...?weights=smollm2``) in front of a real llama.cpp server
(``python -m llama_cpp.server``, offchain/devkit/upstream.py): the receipt's output ids are the engine's own tokens
(the upstream's ``logprobs``), mapped through the model's vocabulary; an upstream that reports no tokens, or tokens
that are not one vocabulary entry each, gets the answer's text split by the tokenizer."""

from __future__ import annotations

import pytest
from backend_contract import QUESTION

from offchain.backends import load_backend
from offchain.backends.llama import smollm2_path
from offchain.devkit.upstream import LlamaServer
from offchain.inference import ChatMessage, GenParams

ASK = [ChatMessage(role="user", content="Write a short poem about snow.")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    up = LlamaServer(smollm2_path(), tmp_path_factory.mktemp("llama-server"), "--n_threads", "1", "--n_batch", "64",
                     "--n_ubatch", "64")
    yield up
    up.stop()


@pytest.fixture(scope="module")
def node(server):
    return load_backend(f"proxy:{server.url}#smollm2", weights="smollm2")


def test_receipt_ids_are_the_engines_own_tokens(node, smollm2):
    before = dict(node.splits)
    answer = node.generate(ASK, GenParams(max_tokens=24))
    local = smollm2.generate(ASK, GenParams(max_tokens=24))  # the same weights, greedy: the same tokens
    assert node.splits["engine"] == before["engine"] + 1 and node.splits["tokenizer"] == before["tokenizer"]
    assert answer.output_ids == local.output_ids and answer.prompt_ids == local.prompt_ids
    assert node.tokenizer.detokenize(answer.output_ids) == answer.text
    assert answer.output_tokens == len(answer.output_ids)


def test_streamed_answer_commits_to_the_engines_tokens_too(node):
    before = node.splits["engine"]
    pieces: list[str] = []
    answer = node.generate(ASK, GenParams(max_tokens=24), on_token=pieces.append)
    assert node.splits["engine"] == before + 1
    assert "".join(pieces) == answer.text == node.tokenizer.detokenize(answer.output_ids)


def test_text_cut_at_a_stop_sequence_is_split_by_the_tokenizer(node):
    full = node.generate(ASK, GenParams(max_tokens=24))
    word = full.text.split()[2]
    before = dict(node.splits)
    answer = node.generate(ASK, GenParams(max_tokens=24, stop=[word]))
    assert word not in answer.text and node.splits["tokenizer"] == before["tokenizer"] + 1
    assert answer.output_ids == node.tokenizer.tokenize_text(answer.text)


def test_upstream_without_logprobs_gets_the_tokenizer_split(upstream):
    node = load_backend(f"proxy:{upstream}/v1#upstream-model", weights="smollm2")  # the scripted server: no logprobs
    answer = node.generate(QUESTION, GenParams(max_tokens=8))
    assert node.splits == {"engine": 0, "tokenizer": 1}
    assert answer.output_ids == node.tokenizer.tokenize_text(answer.text)


def test_pieces_that_are_not_one_token_each_of_the_vocabulary_are_refused(node):
    vocab = node.tokenizer
    assert vocab.ids_of_pieces(["Hello", " there"]) == vocab.tokenize_text("Hello there")
    assert vocab.ids_of_pieces(["Hello", " mendatang"]) is None  # another model's token
    assert vocab.ids_of_pieces(["Hello", None]) is None  # an entry without a token text
    assert vocab.ids_of_pieces(["Hello", ""]) is None  # a server renders part of a UTF-8 character as ""
