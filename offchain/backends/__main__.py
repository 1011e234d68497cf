"""``python -m offchain.backends``: inspect a backend and run one request through it (operators, verifiers, tests).

    python -m offchain.backends describe smollm2            # name, model_id, descriptor as JSON
    python -m offchain.backends generate smollm2 --prompt "Say hi" --max-tokens 16 [--system ...] [--stop ...]
        [--n-threads N] [--stream]                           # the Generation as JSON (and load/generation timing)
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from .. import clikit

PROG = "python -m offchain.backends"
SPEC_HELP = "builtin | smollm2 | llama:/path.gguf | proxy:http://host:port/v1#model"


def _load_options(f: Any) -> Any:
    for name in reversed(("n_ctx", "n_batch", "n_ubatch", "n_threads")):
        f = click.option("--" + name.replace("_", "-"), name, type=int, default=None,
                         help=f"llama.cpp {name} (smollm2 / llama: specs)")(f)
    return click.argument("spec", metavar="SPEC")(f)


def _load(spec: str, options: dict[str, int | None]) -> tuple[Any, float]:
    from . import load_backend

    if spec == "builtin" or spec.startswith("proxy:"):
        options = {}
    started = time.monotonic()
    return load_backend(spec, **options), time.monotonic() - started


@clikit.group("backends", help="Inspect a model backend and run one request through it. SPEC: " + SPEC_HELP,
              epilog=clikit.EXIT_CODES)
def backends() -> None:
    pass


@backends.command("describe", help="The backend's name, model id and descriptor, as JSON.",
                  epilog="example:\n  python -m offchain.backends describe smollm2")
@_load_options
def describe(spec: str, **options: int | None) -> None:
    backend, _ = _checked(lambda: _load(spec, options))
    clikit.emit({"name": backend.name, "modelId": backend.model_id, "deterministic": backend.deterministic,
                 "descriptor": backend.descriptor}, True, indent=None, ensure_ascii=False)


@backends.command("generate", help="Run one chat request; print the Generation with load and generation timing, "
                                   "as JSON.",
                  epilog='example:\n  python -m offchain.backends generate smollm2 --prompt "Say hi" --max-tokens 16')
@_load_options
@click.option("--prompt", required=True, help="the user message")
@click.option("--system", default=None, help="a system message")
@click.option("--max-tokens", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--stop", multiple=True, help="a stop string (repeatable)")
@click.option("--stream", is_flag=True, help="print pieces to stderr as they come")
def generate(spec: str, prompt: str, system: str | None, max_tokens: int, stop: tuple[str, ...], stream: bool,
             **options: int | None) -> None:
    from ..inference import ChatMessage, GenParams

    backend, loaded = _checked(lambda: _load(spec, options))
    messages = ([ChatMessage(role="system", content=system)] if system else []) + [
        ChatMessage(role="user", content=prompt)]
    on_token = (lambda piece: click.echo(piece, nl=False, err=True)) if stream else None
    started = time.monotonic()
    gen = _checked(lambda: backend.generate(messages, GenParams(max_tokens=max_tokens, stop=list(stop) or None),
                                            on_token))
    took = time.monotonic() - started
    clikit.emit({**gen.model_dump(), "modelId": backend.model_id, "loadSeconds": round(loaded, 3),
                 "generateSeconds": round(took, 3),
                 "tokensPerSecond": round(gen.output_tokens / took, 1) if took > 0 else None},
                True, indent=None, ensure_ascii=False)


def _checked(step: Any) -> Any:
    from ..inference import BackendError

    try:
        return step()
    except (BackendError, ValueError) as exc:
        raise clikit.CliError(str(exc), clikit.FAILED, PROG) from None


def main(argv: list[str] | None = None) -> int:
    return clikit.run(backends, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
