"""Every ``opg`` command's ``--help`` (in-process): exit 0, its usage line, and for every command that does
something an example; the top-level help lists every command and the exit codes."""

from __future__ import annotations

import click
import pytest
from cli_kit import every_command, opg, run

from offchain import clikit
from offchain.cli import COMMANDS
from offchain.cli import opg as root

COMMAND_PATHS = every_command(root)


def test_the_tree_holds_every_role():
    names = {path[0] for path in COMMAND_PATHS}
    assert names == set(COMMANDS) | {"abi"}
    for path in [("relayer", "run"), ("node", "run"), ("node", "settle"), ("verifier", "run"), ("operator", "status"),
                 ("operator", "register"), ("season", "usage"), ("season", "claim"), ("chat",), ("web",), ("abi",)]:
        assert path in COMMAND_PATHS, path


def test_top_level_help_lists_every_command_and_the_exit_codes():
    ran = opg("--help")
    assert ran.code == 0 and ran.err == ""
    for name in COMMANDS:
        assert name in ran.out, name
    assert "exit codes: 0 done, 1 refused or failed" in ran.out and "2 bad usage or configuration" in ran.out
    assert opg().code == 0 and "Usage: opg" in opg().out  # no command: the help


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=" ".join)
def test_help_of_every_command(path):
    ran = opg(*path, "--help")
    assert ran.code == 0, ran.err
    assert ran.out.startswith(f"Usage: opg {' '.join(path)}"), ran.out[:200]
    command = root
    for name in path:
        command = command.get_command(click.Context(command), name)
    if not isinstance(command, click.Group):
        assert "example" in ran.out.lower(), f"opg {' '.join(path)} --help shows no example"
    assert opg(*path, "-h").out == ran.out


def test_backends_module_help():
    from offchain.backends.__main__ import backends

    for path in [(), ("describe",), ("generate",)]:
        ran = run(backends, "python -m offchain.backends", *path, "--help")
        assert ran.code == 0 and "Usage: python -m offchain.backends" in ran.out
    assert "example" in run(backends, "python -m offchain.backends", "generate", "--help").out


def test_the_exit_code_table_is_the_frameworks():
    assert (clikit.OK, clikit.FAILED, clikit.USAGE, clikit.INTERRUPTED) == (0, 1, 2, 130)
    assert "130 interrupted" in clikit.EXIT_CODES
