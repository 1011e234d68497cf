"""``opg``: the command line of OPG Settlement (one click group; each role's commands live next to the component
they drive and are imported only when used). The framework (exit codes, one-line errors, options generated from the
settings classes, ``--json`` rendering) is :mod:`offchain.clikit`.

A new command: write it in its role's ``cli.py`` with ``clikit.command`` (or add it to the role's group), then,
if it is a new top-level name, add one line to ``COMMANDS`` below; ``tests/cli/`` checks every command's ``--help``.
"""

from __future__ import annotations

import sys

from . import clikit

COMMANDS = {  # name: (where it lives, its summary in `opg --help`)
    # payers (offchain/client/cli.py)
    "deposit": ("offchain.client.cli:deposit", "buy credits: OPG into the escrow (--gasless: no ETH needed)"),
    "balance": ("offchain.client.cli:balance", "wallet, credits, pending withdrawal, session key, channels"),
    "withdraw": ("offchain.client.cli:withdraw", "request a withdrawal, or complete it after the thaw"),
    "session": ("offchain.client.cli:session", "authorise a session key (expiry, allowance) for chats"),
    "chat": ("offchain.client.cli:chat", "ask a node: one prompt, or an interactive session"),
    "dispute": ("offchain.client.cli:dispute", "dispute an answer: post the bond, hand it to the verifiers"),
    # operators, seasons, daemons, web
    "operator": ("offchain.operator.cli:operator", "register, stake, unbond, claim, status of a staked account"),
    "season": ("offchain.seasons.cli:season", "season usage, standing and rewards; the operator's season steps"),
    "relayer": ("offchain.relayer.cli:relayer", "run the settlement relayer"),
    "node": ("offchain.node.cli:node", "run an inference node; settle its vouchers itself"),
    "verifier": ("offchain.verifier.cli:verifier", "run a verifier"),
    "web": ("offchain.web.cli:web", "serve the payer's local web app"),
}

HELP = """The command line of OPG Settlement: pay for inference with credits (deposit, chat, balance, withdraw),
operate a staked account (operator, season), run the daemons (relayer, node, verifier) and the payer's web app.

Run `opg COMMAND --help` for each command's options and examples."""


@clikit.group("opg", help=HELP, epilog=clikit.EXIT_CODES, lazy=COMMANDS, invoke_without_command=False,
              no_args_is_help=True)
def opg() -> None:
    pass


@clikit.command("abi", help="Regenerate offchain/abi/*.json from contracts/ (prints each file written).",
                short_help="regenerate offchain/abi/*.json from contracts/",
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
