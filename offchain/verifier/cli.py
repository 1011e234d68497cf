"""``opg verifier``: run a verifier.

  opg verifier run --rpc-url URL --deployment deployments/31337.json --relayer-url http://127.0.0.1:8402 \\
      --backends builtin,smollm2 --sample-rate 0.1 --store var/verifier.sqlite3 --host 127.0.0.1 --port 8404 \\
      (--keystore verifier.json [--password-file FILE] | --dev-account N) [--config verifier.toml]

Settings come from flags, then OPG_VERIFIER_* environment variables, then the config file (TOML or JSON, keys under
``[verifier]`` or at top level), then defaults. The keystore password is read from OPG_VERIFIER_PASSWORD or
--password-file, never from a flag. The verifier must be registered (role 2) with its public URL as endpoint (payers
send disputes there): `opg operator register --role verifier ...`.
"""

from __future__ import annotations

import argparse

from ..daemon.serve import fail, serve, setup_logging
from ..daemon.settings import ConfigError, add_flags, settings_from_args
from .config import VerifierSettings

PROG = "opg verifier"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="OPG verifier: re-executes sampled receipts")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the verifier daemon",
                         description="Follow the relayer's receipts and the chain's flags, re-execute, sign verdicts.")
    add_flags(run, VerifierSettings)
    return parser


def _build(settings):
    from ..daemon.serve import build_daemon
    from .service import Verifier

    return build_daemon(Verifier, settings)


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "run":
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        settings = settings_from_args(VerifierSettings, args, section="verifier")
    except ConfigError as exc:
        return fail(PROG, str(exc))
    setup_logging(settings.log_level)
    try:
        verifier = _build(settings)
    except ConfigError as exc:
        return fail(PROG, str(exc))
    from .api import create_app

    banner = (f"{PROG}: {verifier.address} on chain {verifier.chain_id}, sampling {settings.sample_rate:g}, "
              f"listening on http://{settings.host}:{settings.port}")
    return serve(create_app(verifier), settings.host, settings.port, settings.log_level, banner)
