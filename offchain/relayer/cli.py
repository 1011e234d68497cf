"""``opg relayer run``: the settlement relayer daemon (options generated from :class:`RelayerSettings`)."""

from __future__ import annotations

import gc
import sys

import click

from .. import clikit
from .config import RelayerSettings

PROG = "opg relayer"

EPILOG = """\
Settings come from flags, then OPG_RELAYER_* environment variables, then the config file (TOML or JSON, keys at top
level or under [relayer]), then defaults. The keystore password is read from OPG_RELAYER_PASSWORD or
--password-file, never from a flag.

examples:
  # a devnet relayer on anvil's account 1
  opg relayer run --rpc-url http://127.0.0.1:8545 --dev-account 1

  # a real relayer: keystore key, its own store, batches of 100 receipts or 5 s
  OPG_RELAYER_PASSWORD=... opg relayer run --rpc-url https://rpc.example --deployment deployments/8453.json \\
      --keystore relayer.json --store /var/lib/opg/relayer.sqlite3 --batch-size 100 --batch-age 5 \\
      --confirmations 2 --host 0.0.0.0 --port 8402

  # the same from a config file
  opg relayer run --config relayer.toml        # [relayer] rpc-url = "...", batch-size = 100
"""


@clikit.group("relayer", help="The settlement relayer: x402 facilitator, batch settlement, slashing.")
def relayer() -> None:
    pass


@relayer.command("run", help="Run the relayer: x402 facilitator (/verify, /settle), batch settlement, slashing.",
                 epilog=EPILOG)
@clikit.settings_options(RelayerSettings, section="relayer", prog=PROG)
def run(settings: RelayerSettings) -> int:
    from ..storage import StoreMismatch
    from .keccak import use_fast_keccak
    from .service import Relayer

    use_fast_keccak()
    return _serve(clikit.start_daemon(PROG, Relayer, settings, (StoreMismatch,)))


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
    click.echo(f"{PROG}: {relayer.address} on chain {relayer.chain_id}, listening on "
               f"http://{settings.host}:{settings.port}", err=True)
    server.run()
    return 0
