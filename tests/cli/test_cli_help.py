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


def example_lines(epilog: str) -> list[str]:
    """The ``opg ...`` command lines of a help's examples (continuations joined, comments and env assignments off)."""
    joined = epilog.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.split(" # ")[0].strip()
        words = line.split()
        while words and "=" in words[0] and not words[0].startswith("-"):
            words.pop(0)  # OPG_NODE_PASSWORD=... opg node run ...
        if words[:1] == ["opg"] and "..." not in words:
            out.append(" ".join(words))
    return out


@pytest.mark.parametrize("path", [p for p in COMMAND_PATHS], ids=" ".join)
def test_every_example_in_a_help_parses(path):
    """The examples teach commands that exist with options that exist (parsed, not run)."""
    import shlex

    command = root
    for name in path:
        command = command.get_command(click.Context(command), name)
    lines = example_lines(command.epilog or "")
    assert lines or isinstance(command, click.Group), "no example parsed"
    for line in lines:
        ctx = root.make_context("opg", shlex.split(line)[1:])  # a UsageError for an unknown option or a bad value
        command = root
        while isinstance(command, click.Group):
            name, command, rest = command.resolve_command(ctx, [*ctx.protected_args, *ctx.args])
            ctx = command.make_context(name, rest, parent=ctx)
