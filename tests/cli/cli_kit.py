"""``opg ARGS`` in this process under click's ``CliRunner`` (its isolated stdin/stdout/stderr and environment):
the exit code ``offchain.cli.main`` returns and what it printed, stdout and stderr apart."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click
from click.testing import CliRunner

from offchain import clikit


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def error_line(self, prog: str) -> str:
        """The one line the command printed on stderr, which must be an error of ``prog``."""
        lines = self.err.strip().splitlines()
        assert len(lines) == 1, self.err
        assert lines[0].startswith(f"{prog}: error: "), lines[0]
        return lines[0]


def run(command: click.Command, prog: str, *argv: str, env: dict[str, str] | None = None) -> Ran:
    runner = CliRunner(mix_stderr=False)
    with runner.isolation(env=env) as (out, err):
        code = clikit.run(command, list(argv), prog)
        sys.stdout.flush()  # what print() wrote
        sys.stderr.flush()
        return Ran(code, out.getvalue().decode(), err.getvalue().decode())


def opg(*argv: str, env: dict[str, str] | None = None) -> Ran:
    from offchain.cli import opg as root

    return run(root, "opg", *argv, env=env)


def every_command(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The argv of every command under ``group`` (groups and leaves)."""
    out = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        out.append((*path, name))
        if isinstance(sub, click.Group):
            out += every_command(sub, (*path, name))
    return out
