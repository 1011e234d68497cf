"""``opg``: the command line of OPG Settlement (one click group; each role's commands live next to the component
they drive and are imported only when used). The framework (exit codes, one-line errors, options generated from the
settings classes, ``--json`` rendering) is :mod:`offchain.clikit`.

A new command: write it in its role's ``cli.py`` with ``clikit.command`` (or add it to the role's group), then,
if it is a new top-level name, add one line to ``COMMANDS`` below (and to ``HELP``); ``tests/cli/`` checks every command's ``--help``.
"""

from __future__ import annotations

import sys

from . import clikit

COMMANDS = {
    # payers (offchain/client/cli.py)
    "deposit": "offchain.client.cli:deposit",
    "balance": "offchain.client.cli:balance",
    "withdraw": "offchain.client.cli:withdraw",
    "session": "offchain.client.cli:session",
    "chat": "offchain.client.cli:chat",
    "dispute": "offchain.client.cli:dispute",
    # operators, seasons, daemons, web
    "operator": "offchain.operator.cli:operator",
    "season": "offchain.seasons.cli:season",
    "relayer": "offchain.relayer.cli:relayer",
    "node": "offchain.node.cli:node",
    "verifier": "offchain.verifier.cli:verifier",
    "web": "offchain.web.cli:web",
}

HELP = """The command line of OPG Settlement: pay for inference with credits, run the daemons, operate a stake.

\b
Payers:
  opg deposit AMOUNT [--gasless]     buy credits (OPG into the escrow)
  opg balance                        credits, pending withdrawal, channels
  opg withdraw [AMOUNT]              request a withdrawal, or complete it after the thaw
  opg session                        authorise a session key (expiry, allowance) for chats
  opg chat ["PROMPT"]                ask a node (one prompt, or an interactive session)
  opg dispute RECEIPT_ID             dispute an answer you got: post the bond, hand it to verifiers
\b
Operators and seasons:
  opg operator register|stake|unbond|withdraw|claim|status|set-endpoint|unjail|heartbeat
  opg season status|usage|claim|deploy|close|build|propose|accept
\b
Daemons and tools:
  opg relayer run | opg node run|settle | opg verifier run | opg web | opg abi

Run `opg COMMAND --help` for each command's options and examples."""


@clikit.group("opg", help=HELP, epilog=clikit.EXIT_CODES, lazy=COMMANDS, invoke_without_command=False,
              no_args_is_help=True)
def opg() -> None:
    pass


@clikit.command("abi", help="Regenerate offchain/abi/*.json from contracts/ (prints each file written).",
                epilog="example:\n  opg abi")
def abi() -> None:
    from .devkit.compiler import export_abis

    for path in export_abis():
        clikit.emit(None, False, [str(path)])


opg.add_command(abi)


def main(argv: list[str] | None = None) -> int:
    """``opg ARGS``: the exit code (see :mod:`offchain.clikit`)."""
    return clikit.run(opg, argv, "opg")


if __name__ == "__main__":
    sys.exit(main())
