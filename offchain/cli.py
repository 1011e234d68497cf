"""``opg``: the command line of OPG Settlement.

Subcommands live next to the component they drive; this module only dispatches.

Payers (offchain/client/cli.py):
  opg deposit AMOUNT [--gasless]     buy credits (OPG into the escrow)
  opg balance                        credits, pending withdrawal, channels
  opg withdraw [AMOUNT]              request a withdrawal, or complete it after the thaw
  opg session                        authorise a session key (expiry, allowance) for chats
  opg chat ["PROMPT"]                ask a node (one prompt, or an interactive session); the credit row after each answer
  opg dispute RECEIPT_ID             dispute an answer you got: post the bond, hand your prompt and answer to verifiers

Operators (offchain/operator/cli.py):
  opg operator register|stake|unbond|withdraw|claim|status|set-endpoint|unjail|heartbeat

Seasons (offchain/seasons/cli.py):
  opg season status|usage|claim      season usage from chain events, standing, claim a reward
  opg season deploy|close|build|propose|accept   the operator's side

Daemons:
  opg relayer run ...                the settlement relayer (offchain/relayer/cli.py)
  opg node run ...                   an inference node (offchain/node/cli.py)
  opg verifier run ...               a verifier (offchain/verifier/cli.py)

Web:
  opg web [--dev-account N | --keystore F | --payer A]   the payer's local web app (offchain/web/cli.py)

Tools:
  opg abi                            regenerate offchain/abi/*.json from contracts/

Run `opg <command> --help` for each command's options. Exit codes: 0 done, 1 refused or failed, 2 bad usage or
configuration, 130 interrupted.
"""

from __future__ import annotations

import importlib
import sys

PAYER_COMMANDS = {"deposit", "balance", "withdraw", "session", "chat", "dispute"}
MODULES = {
    "relayer": "offchain.relayer.cli",
    "node": "offchain.node.cli",
    "verifier": "offchain.verifier.cli",
    "operator": "offchain.operator.cli",
    "season": "offchain.seasons.cli",
    "web": "offchain.web.cli",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: opg {deposit,balance,withdraw,session,chat,dispute,operator,season,relayer,node,verifier,web,abi} ..."
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(__doc__.strip())
        return 0
    command, rest = argv[0], argv[1:]
    try:
        if command in MODULES:
            return importlib.import_module(MODULES[command]).main(rest)
        if command in PAYER_COMMANDS:
            return importlib.import_module("offchain.client.cli").main([command, *rest])
        if command == "abi":
            from .devkit.compiler import export_abis

            for path in export_abis():
                print(path)
            return 0
    except KeyboardInterrupt:
        return 130
    print(f"opg: unknown command {command!r}; {usage}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
