"""``opg node``: run an inference node.

  opg node run --rpc-url URL --relayer-url URL --backend builtin (--keystore node.json | --dev-account N) ...
  opg node settle [--dry-run] [--json] ...     settle the store's vouchers on-chain from the node's own key

Settings come from flags, then OPG_NODE_* environment variables, then the config file (TOML or JSON, keys at top
level or under [node]), then defaults. The keystore password is read from OPG_NODE_PASSWORD or --password-file.
"""

from __future__ import annotations

import argparse
import sys

from ..daemon.serve import fail, serve, setup_logging
from ..daemon.settings import add_flags, settings_from_args
from .config import ConfigError, NodeSettings

EPILOG = """\
what it does:
  Serves an OpenAI-compatible API (POST /v1/chat/completions, GET /v1/models) behind x402 v2: a request without
  PAYMENT-SIGNATURE gets 402 with PAYMENT-REQUIRED offering opg-credit (a cumulative voucher on the escrow) and exact
  (an EIP-3009 transfer of OPG). Each paid answer carries a signed Receipt (PAYMENT-RESPONSE header; x_opg_payment in
  the body or the last stream chunk), stored durably before it is released and handed to the relayer by an outbox
  that survives crashes. Payloads go only to active verifiers and the payer (GET /v1/payloads/challenge, then
  POST /v1/payloads/<receiptId>). Also /healthz and /metrics. The node must be registered (opg operator register)
  with its public URL as endpoint, or verifiers cannot fetch its payloads.

examples:
  # a devnet node on anvil's account 3 with the builtin stand-in model
  opg node run --rpc-url http://127.0.0.1:8545 --relayer-url http://127.0.0.1:8402 --dev-account 3

  # a real node: keystore key, the SmolLM2 llama.cpp model, prices in OPG
  OPG_NODE_PASSWORD=... opg node run --rpc-url https://rpc.example --deployment deployments/8453.json \\
      --keystore ~/.ape/accounts/node.json --backend smollm2 --price-base 0.0001 \\
      --price-prompt-token 0.000001 --price-output-token 0.00002 --store /var/lib/opg/node.sqlite3 \\
      --host 0.0.0.0 --port 8500

  # a GPU server behind the node (vLLM, llama-server, Ollama), two models, per-model prices from a file
  opg node run --backend "proxy:http://gpu:8000/v1#llama-3.1-8b,builtin?name=cheap" --pricing pricing.toml ...

  # the same from a config file
  opg node run --config node.toml        # [node] rpc-url = "...", backend = "smollm2", max-unsettled = "50"

pricing.toml:
  [default]
  base = "0.0001"              # OPG per request
  prompt-token = "0.000001"    # OPG per prompt token
  output-token = "0.00001"     # OPG per output token
  [models."llama-3.1-8b"]
  output-token = "0.00005"

backend options (spec?key=value&...): name (the model name served), cheat_rate, and the backend's own: builtin
  context_length, token_delay; smollm2/llama n_ctx, n_batch, n_ubatch, n_threads; proxy timeout, api_key,
  context_length. See docs/node.md.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opg node", description="OPG inference node")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the inference node daemon",
                         description="Run an inference node: OpenAI-compatible chat behind x402 v2, signed "
                                     "receipts, durable hand-over to the relayer, payload release to verifiers.",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(run, NodeSettings)
    settle = sub.add_parser(
        "settle", help="settle this node's vouchers on-chain itself (relayer down, censoring, or too late)",
        description="Settle every channel of this node's store whose highest receipt is not paid on-chain yet, "
                    "with CreditEscrow.settle_batch from the node's own key (it pays the gas). Idempotent: "
                    "the escrow never pays a total twice, so it is safe while the relayer settles too.",
        epilog="example:\n  opg node settle --rpc-url http://127.0.0.1:8545 --store var/node.sqlite3 --keystore node.json"
               " --dry-run", formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(settle, NodeSettings)
    settle.add_argument("--dry-run", action="store_true", help="simulate and report, send nothing")
    settle.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command not in ("run", "settle"):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        settings = settings_from_args(NodeSettings, args, section="node")
    except ConfigError as exc:
        return fail("opg node", str(exc))
    if args.command == "settle":
        return _settle(settings, args.dry_run, args.json)
    setup_logging(settings.log_level)
    try:
        node = _build(settings)
    except ConfigError as exc:
        return fail("opg node", str(exc))
    from .api import create_asgi

    banner = (f"opg node: {node.address} on chain {node.chain_id} serving "
              f"{', '.join(m.name for m in node.catalog.list())}; relayer {settings.relayer_url}; listening on "
              f"http://{settings.host}:{settings.port}")
    return serve(create_asgi(node), settings.host, settings.port, settings.log_level, banner=banner)


def _settle(settings: NodeSettings, dry_run: bool, as_json: bool) -> int:
    import requests

    from .settle import print_results, settle

    try:
        results = settle(settings, dry_run)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        return fail("opg node", str(exc))
    except requests.exceptions.RequestException as exc:
        return fail("opg node", f"cannot reach the chain at {settings.rpc_url}: {exc.__class__.__name__}", 1)
    except Exception as exc:
        return fail("opg node", f"settlement failed: {exc}", 1)
    print_results(results, as_json)
    return 0 if all(r["outcome"] in (0, 1) for r in results) else 1


def _build(settings):
    from ..daemon.serve import build_daemon
    from .service import Node

    return build_daemon(Node, settings)


if __name__ == "__main__":
    sys.exit(main())
