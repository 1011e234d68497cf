"""``opg relayer``: run the settlement relayer.

  opg relayer run --rpc-url URL --deployment deployments/31337.json --store var/relayer.sqlite3 \\
      --batch-size 100 --batch-age 5 --confirmations 1 --host 127.0.0.1 --port 8402 \\
      (--keystore relayer.json [--password-file FILE] | --dev-account N) [--config relayer.toml]

Settings come from flags, then OPG_RELAYER_* environment variables, then the config file (TOML or JSON), then
defaults. The keystore password is read from OPG_RELAYER_PASSWORD or --password-file, never from a flag.
"""

from __future__ import annotations

import argparse
import gc
import sys

from ..daemon.serve import setup_logging
from ..daemon.settings import add_flags, settings_from_args
from .config import ConfigError, RelayerSettings
from .keccak import use_fast_keccak


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opg relayer", description="OPG settlement relayer")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the relayer daemon",
                         description="Run the relayer: x402 facilitator, batch settlement, slashing.")
    add_flags(run, RelayerSettings)
    return parser


def main(argv: list[str] | None = None) -> int:
    use_fast_keccak()
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "run":
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        settings = settings_from_args(RelayerSettings, args, section="relayer")
    except ConfigError as exc:
        print(f"opg relayer: error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    try:
        relayer = _build(settings)
    except ConfigError as exc:
        print(f"opg relayer: error: {exc}", file=sys.stderr)
        return 2
    return _serve(relayer)


def _build(settings):
    from ..daemon.serve import build_daemon
    from .service import Relayer
    from .store import StoreMismatch

    return build_daemon(Relayer, settings, (StoreMismatch,))


def _serve(relayer) -> int:
    import uvicorn

    # The HTTP thread shares the GIL with the store writer and the chain worker; a shorter switch interval (default
    # 5 ms) keeps a busy background thread from holding acknowledgements back for whole milliseconds.
    sys.setswitchinterval(0.0005)
    # Start-up objects (modules, ABIs, caches) are never garbage, and the cyclic collector's full passes over a large
    # heap are the longest pauses an acknowledgement can hit: freeze what exists and collect young objects less often.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)

    from .api import create_asgi

    settings = relayer.settings
    app = create_asgi(relayer)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            access_log=settings.log_level == "debug", loop="uvloop", http="httptools",
                            timeout_keep_alive=30, backlog=4096)
    server = uvicorn.Server(config)
    print(f"opg relayer: {relayer.address} on chain {relayer.chain_id}, listening on "
          f"http://{settings.host}:{settings.port}", file=sys.stderr, flush=True)
    server.run()
    return 0
