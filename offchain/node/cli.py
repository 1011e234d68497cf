"""``opg node run|settle``: an inference node daemon, and its own on-chain settlement (options generated from
:class:`NodeSettings`)."""

from __future__ import annotations

from .. import clikit
from .config import ConfigError, NodeSettings

PROG = "opg node"

EPILOG = """\
what it does:
  Serves an OpenAI-compatible API (POST /v1/chat/completions, GET /v1/models) behind x402 v2: a request without
  PAYMENT-SIGNATURE gets 402 with PAYMENT-REQUIRED offering opg-credit (a cumulative voucher on the escrow) and exact
  (an EIP-3009 transfer of OPG). Each paid answer carries a signed Receipt (PAYMENT-RESPONSE header; x_opg_payment in
  the body or the last stream chunk), stored durably before it is released and handed to the relayer by an outbox
  that survives crashes. Payloads go only to active verifiers and the payer (GET /v1/payloads/challenge, then
  POST /v1/payloads/<receiptId>). Also /healthz and /metrics. The node must be registered (opg operator register)
  with its public URL as endpoint, or verifiers cannot fetch its payloads.

Settings come from flags, then OPG_NODE_* environment variables, then the config file (TOML or JSON, keys at top
level or under [node]), then defaults. The keystore password is read from OPG_NODE_PASSWORD or --password-file.

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

backend options (spec?key=value&...): name (the model name served) and the backend's own: builtin context_length,
  token_delay; smollm2/llama n_ctx, n_batch, n_ubatch, n_threads; proxy timeout, api_key, context_length.
  See docs/node.md.
"""

SETTLE_EPILOG = """\
examples:
  opg node settle --rpc-url http://127.0.0.1:8545 --store var/node.sqlite3 --keystore node.json --dry-run
  opg node settle --dev-account 3 --json       # {"claims": [{"payer", "total", "spent", "outcome", ...}]}
"""


@clikit.group("node", help="An inference node: OpenAI-compatible chat behind x402 v2, and its own settlement.")
def node() -> None:
    pass


@node.command("run", help="Run an inference node: OpenAI-compatible chat behind x402 v2, signed receipts, durable "
                          "hand-over to the relayer, payload release to verifiers.", epilog=EPILOG)
@clikit.settings_options(NodeSettings, section="node", prog=PROG)
def run(settings: NodeSettings) -> int:
    from ..daemon.serve import serve
    from .api import create_asgi
    from .service import Node

    daemon = clikit.start_daemon(PROG, Node, settings)
    banner = (f"{PROG}: {daemon.address} on chain {daemon.chain_id} serving "
              f"{', '.join(m.name for m in daemon.catalog.list())}; relayer {settings.relayer_url}; listening on "
              f"http://{settings.host}:{settings.port}")
    return serve(create_asgi(daemon), settings.host, settings.port, settings.log_level, banner=banner)


@node.command("settle", help="Settle this node's vouchers on-chain itself (relayer down, censoring, or too late): "
                             "every channel of the store whose highest receipt is not paid yet, with "
                             "CreditEscrow.settle_batch from the node's own key (it pays the gas). Idempotent: the "
                             "escrow never pays a total twice, so it is safe while the relayer settles too.",
              epilog=SETTLE_EPILOG)
@clikit.settings_options(NodeSettings, section="node", prog=PROG)
@clikit.click.option("--dry-run", is_flag=True, help="simulate and report, send nothing")
@clikit.json_option
def settle(settings: NodeSettings, dry_run: bool, as_json: bool) -> int:
    results = settle_channels(settings, dry_run)
    clikit.emit({"claims": results}, as_json, settle_lines(results))
    return clikit.OK if all(r["outcome"] in (0, 1) for r in results) else clikit.FAILED


def settle_channels(settings: NodeSettings, dry_run: bool) -> list[dict]:
    """The claims' outcomes (data); failures as one-line CliErrors."""
    import requests

    from .settle import settle as settle_store

    try:
        return settle_store(settings, dry_run)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        raise clikit.CliError(str(exc), clikit.USAGE, PROG) from None
    except requests.exceptions.RequestException as exc:
        raise clikit.CliError(f"cannot reach the chain at {settings.rpc_url}: {exc.__class__.__name__}",
                              clikit.FAILED, PROG) from None
    except Exception as exc:
        raise clikit.CliError(f"settlement failed: {exc}", clikit.FAILED, PROG) from None


def settle_lines(results: list[dict]) -> list[str]:
    if not results:
        return ["nothing to settle: every channel is paid up to its highest receipt"]
    lines = []
    for r in results:
        verb = "would settle" if r["dryRun"] and r["outcome"] == 0 else r["result"]
        lines.append(f"{r['payer']}: {int(r['total']) - int(r['spent'])} wei ({r['receipts']} receipt(s)) -> {verb}"
                     + (f" in {r['transaction']}" if r["transaction"] else ""))
    return lines
