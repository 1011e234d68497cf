"""``python -m offchain.backends``: inspect a backend and run one request through it (operators, verifiers, tests).

    python -m offchain.backends describe smollm2            # name, model_id, descriptor as JSON
    python -m offchain.backends generate smollm2 --prompt "Say hi" --max-tokens 16 [--system ...] [--stop ...]
        [--n-threads N] [--stream]                           # the Generation as JSON (and load/generation timing)
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..inference import BackendError, ChatMessage, GenParams
from . import load_backend


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m offchain.backends", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for cmd in ("describe", "generate"):
        p = sub.add_parser(cmd)
        p.add_argument("spec", help="builtin | smollm2 | llama:/path.gguf | proxy:http://host:port/v1#model")
        p.add_argument("--n-ctx", type=int)
        p.add_argument("--n-batch", type=int)
        p.add_argument("--n-ubatch", type=int)
        p.add_argument("--n-threads", type=int)
        if cmd == "generate":
            p.add_argument("--prompt", required=True)
            p.add_argument("--system")
            p.add_argument("--max-tokens", type=int, default=16)
            p.add_argument("--stop", action="append")
            p.add_argument("--stream", action="store_true", help="print pieces to stderr as they come")
    args = parser.parse_args(argv)
    options = {"n_ctx": args.n_ctx, "n_batch": args.n_batch, "n_ubatch": args.n_ubatch, "n_threads": args.n_threads}
    if args.spec == "builtin" or args.spec.startswith("proxy:"):
        options = {}
    try:
        started = time.monotonic()
        backend = load_backend(args.spec, **options)
        loaded = time.monotonic() - started
        if args.command == "describe":
            result = {"name": backend.name, "modelId": backend.model_id, "deterministic": backend.deterministic,
                      "descriptor": backend.descriptor}
        else:
            messages = ([ChatMessage(role="system", content=args.system)] if args.system else []) + [
                ChatMessage(role="user", content=args.prompt)
            ]
            params = GenParams(max_tokens=args.max_tokens, stop=args.stop)
            on_token = (lambda piece: print(piece, end="", file=sys.stderr, flush=True)) if args.stream else None
            started = time.monotonic()
            gen = backend.generate(messages, params, on_token)
            took = time.monotonic() - started
            result = {**gen.model_dump(), "modelId": backend.model_id, "loadSeconds": round(loaded, 3),
                      "generateSeconds": round(took, 3),
                      "tokensPerSecond": round(gen.output_tokens / took, 1) if took > 0 else None}
    except (BackendError, ValueError) as exc:
        print(f"python -m offchain.backends: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
