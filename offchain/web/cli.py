"""``opg web``: serve the local web app for one payer.

Examples (a devnet from `make devnet` runs the chain on :8545 and the relayer on :8402):

  opg web --dev-account 4                       # anvil's account 4 (chain 31337 only); http://127.0.0.1:8600
  opg web --keystore me.json --port 8600        # your key (password in OPG_WEB_PASSWORD or --password-file)
  opg web --payer 0xYourAddress                 # session key only: the key `opg session` stored for this payer

Which key the app holds: with --dev-account/--keystore, the payer's main key (it deposits, deposits gaslessly and
pays `exact`; vouchers are signed by the stored session key when one is in force, else by the main key). With
--payer alone, only the session key stored under --state-dir (`opg session --allowance OPG` makes one): it pays
opg-credit answers; the page prints the `opg deposit` command for top-ups instead of doing them. The page says
which keys it holds.

The app listens on 127.0.0.1 only by default. Every page is served with Content-Security-Policy: default-src
'self' and loads nothing from another host; the server talks to the chain (--rpc-url), the relayer
(--relayer-url), and the nodes and verifiers at their on-chain endpoints.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NoReturn

import click

from .. import clikit
from ..daemon.keys import DEVNET_CHAIN_ID

PROG = "opg web"


def _fail(message: str, code: int = clikit.USAGE) -> NoReturn:
    raise clikit.CliError(message, code, PROG)


@clikit.command("web", help="Serve the local web app for one payer.", epilog=__doc__.split("\n\n", 1)[1]
                + "\n" + clikit.EXIT_CODES)
@click.option("--rpc-url", envvar="OPG_WEB_RPC_URL", default="http://127.0.0.1:8545", show_default=True,
              help="JSON-RPC endpoint of the chain [env OPG_WEB_RPC_URL]")
@click.option("--relayer-url", envvar="OPG_WEB_RELAYER_URL", default="http://127.0.0.1:8402", show_default=True,
              help="the relayer [env OPG_WEB_RELAYER_URL]")
@click.option("--deployment", type=click.Path(path_type=Path), default=None,
              help="deployment file (default deployments/<chainId>.json)")
@click.option("--dev-account", type=int, default=None,
              help="the payer (one of three): anvil's public development key N (refused unless the chain id is 31337)")
@click.option("--keystore", type=click.Path(path_type=Path), default=None,
              help="the payer (one of three): eth-account/ape keystore JSON; password from OPG_WEB_PASSWORD or "
                   "--password-file")
@click.option("--password-file", type=click.Path(path_type=Path), default=None,
              help="file whose first line is the password")
@click.option("--payer", default=None,
              help="the payer (one of three): its address, holding only its stored session key (no main key)")
@click.option("--state-dir", type=click.Path(path_type=Path), envvar="OPG_CLIENT_STATE_DIR", default=Path("~/.opg"),
              show_default=True, help="the client's state directory: channels, session keys, answered requests "
                                      "[env OPG_CLIENT_STATE_DIR] (as `opg chat`)")
@click.option("--host", default="127.0.0.1", show_default=True, help="listen address")
@click.option("--port", type=int, default=8600, show_default=True, help="listen port")
@click.option("--max-tokens", type=int, default=128, show_default=True, help="default max_tokens of a chat")
@click.option("--log-level", default="warning", show_default=True,
              type=clikit.Choice(["debug", "info", "warning", "error"]))
def web(**options: object) -> int:
    return serve_web(options)


def serve_web(options: dict) -> int:
    """Check the chain and the key, then serve the app until Ctrl-C (130) or SIGTERM (0)."""
    from types import SimpleNamespace

    args = SimpleNamespace(**options)
    from eth_account import Account
    from web3 import Web3

    given = [x for x in (args.dev_account is not None, args.keystore is not None, args.payer is not None) if x]
    if len(given) != 1:
        return _fail("give exactly one of --dev-account N, --keystore FILE or --payer ADDRESS (see --help)")
    try:
        chain_id = Web3(Web3.HTTPProvider(args.rpc_url, request_kwargs={"timeout": 5})).eth.chain_id
    except Exception as exc:  # noqa: BLE001
        return _fail(f"no chain at {args.rpc_url} ({exc.__class__.__name__}); start one (make devnet) or pass "
                     "--rpc-url", 1)
    account = None
    payer = args.payer
    if args.dev_account is not None:
        if chain_id != DEVNET_CHAIN_ID:
            return _fail(f"--dev-account uses anvil's public keys and is refused on chain {chain_id}; use --keystore")
        from ..daemon.keys import anvil_key

        account = Account.from_key(anvil_key(args.dev_account))
    elif args.keystore is not None:
        password = os.environ.get("OPG_WEB_PASSWORD")
        if password is None and args.password_file is not None:
            password = args.password_file.read_text().splitlines()[0] if args.password_file.exists() else None
        if password is None:
            return _fail("the keystore's password: set OPG_WEB_PASSWORD or give --password-file")
        try:
            account = Account.from_key(Account.decrypt(json.loads(args.keystore.expanduser().read_text()), password))
        except (OSError, ValueError) as exc:
            return _fail(f"cannot open keystore {args.keystore}: {exc}")
    else:
        if not Web3.is_address(payer):
            return _fail(f"--payer {payer!r} is not an address")
        payer = Web3.to_checksum_address(payer)
    if account is not None:
        payer = account.address

    import uvicorn

    from .app import WebConfig, create_app

    cfg = WebConfig(rpc_url=args.rpc_url, relayer_url=args.relayer_url, payer=payer, account=account,
                    state_dir=args.state_dir.expanduser(), deployment=args.deployment, max_tokens=args.max_tokens,
                    host=args.host, port=args.port)
    try:
        app = create_app(cfg)
    except Exception as exc:  # noqa: BLE001 - one line, not a trace
        return _fail(f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}", 1)
    if account is None:
        from ..client import OpgClient

        wallet = app.state.web.wallet
        if not wallet.state.load_session(wallet.chain.chain_id, wallet.deployment.address("CreditEscrow"), payer):
            return _fail(f"no session key stored for {payer} under {args.state_dir}: run `opg session --allowance "
                         "OPG` first, or give the payer's key", 1)
        del OpgClient
    print(f"opg web: http://{args.host}:{args.port}/ for payer {payer} "
          f"({'main key' if account else 'session key only'})", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    except KeyboardInterrupt:
        return 130
    return 0
