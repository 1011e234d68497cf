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

import argparse
import json
import os
import sys
from pathlib import Path

DEVNET_CHAIN_ID = 31337


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="opg web", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rpc-url", default=os.environ.get("OPG_WEB_RPC_URL", "http://127.0.0.1:8545"),
                   help="JSON-RPC endpoint of the chain (env OPG_WEB_RPC_URL; default %(default)s)")
    p.add_argument("--relayer-url", default=os.environ.get("OPG_WEB_RELAYER_URL", "http://127.0.0.1:8402"),
                   help="the relayer (env OPG_WEB_RELAYER_URL; default %(default)s)")
    p.add_argument("--deployment", type=Path, default=None,
                   help="deployment file (default deployments/<chainId>.json)")
    keys = p.add_argument_group("the payer (one of)")
    keys.add_argument("--dev-account", type=int, default=None,
                      help="anvil's public development key N (refused unless the chain id is 31337)")
    keys.add_argument("--keystore", type=Path, default=None,
                      help="eth-account/ape keystore JSON; password from OPG_WEB_PASSWORD or --password-file")
    keys.add_argument("--password-file", type=Path, default=None, help="file whose first line is the password")
    keys.add_argument("--payer", default=None,
                      help="the payer's address, holding only its stored session key (no main key)")
    p.add_argument("--state-dir", type=Path, default=Path(os.environ.get("OPG_CLIENT_STATE_DIR", "~/.opg")),
                   help="the client's state directory: channels, session keys, answered requests "
                        "(env OPG_CLIENT_STATE_DIR; default %(default)s, as `opg chat`)")
    p.add_argument("--host", default="127.0.0.1", help="listen address (default %(default)s)")
    p.add_argument("--port", type=int, default=8600, help="listen port (default %(default)s)")
    p.add_argument("--max-tokens", type=int, default=128, help="default max_tokens of a chat (default %(default)s)")
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return p


def _fail(message: str, code: int = 2) -> int:
    print(f"opg web: error: {message}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
