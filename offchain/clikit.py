"""The one CLI framework of every ``opg`` command (click): exit codes, one-line errors, options generated from the
pydantic settings classes, ``--json`` rendering and colour on a terminal only.

Exit codes (every command; ``opg --help`` prints them, docs/cli.md repeats them):

  0    done (an interactive chat: the person quit)
  1    refused or failed: the chain, the relayer, a node or a contract said no (the line says why)
  2    bad usage or configuration: an unknown option, a bad value, a bad settings file, no key
  130  interrupted (Ctrl-C)

Errors are one line on stderr, ``<command path>: error: <message>`` (``opg operator ... --json`` also prints
``{"ok": false, "error": ...}`` on stdout); a traceback means a bug, not a refusal.

A command is a function that computes data; it renders it with :func:`emit` (``--json``: one JSON document;
otherwise the human lines it is given). Daemon and client settings become options with :func:`settings_options`
(one ``--flag`` per field, its help naming the environment variable and default; the values are validated by the
settings class itself, so every source (flag, ``OPG_<ROLE>_*`` variable, config file) gives the same message).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import types
import typing
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:  # pydantic-settings is imported by the commands that use it: `opg --help` stays light
    from pydantic_settings import BaseSettings

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130
EXIT_CODES = """\
exit codes: 0 done, 1 refused or failed (the chain, the relayer or a node said no), 2 bad usage or configuration,
130 interrupted. Errors are one line on stderr: "<command>: error: <why>"."""

S = TypeVar("S", bound="BaseSettings")
F = TypeVar("F", bound=Callable[..., Any])
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 118}


class CliError(click.ClickException):
    """A refusal or failure the command reports as one line; ``prog`` names the command when it is not the path
    click knows (the daemons report as ``opg node``, not ``opg node run``)."""

    def __init__(self, message: str, code: int = FAILED, prog: str | None = None):
        super().__init__(message)
        self.exit_code = code
        self.prog = prog


# Running ----------------------------------------------------------------------------------------------------------
def error_line(prog: str, message: str) -> None:
    click.echo(f"{prog}: error: {message.strip().splitlines()[0] if message.strip() else 'failed'}", err=True)


def run(command: click.Command, argv: list[str] | None, prog: str) -> int:
    """Run a click command as ``prog`` with ``argv`` (default ``sys.argv[1:]``) and return its exit code: usage
    errors and refusals are one line on stderr, Ctrl-C is 130, ``--help`` is 0."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        result = command.main(args=argv, prog_name=prog, standalone_mode=False)
    except click.UsageError as exc:
        error_line(exc.ctx.command_path if exc.ctx else prog, exc.format_message())
        return USAGE
    except click.ClickException as exc:  # a CliError (named by the command that raised it) or click's own
        error_line(getattr(exc, "prog", None) or prog, exc.format_message())
        return exc.exit_code
    except (click.Abort, KeyboardInterrupt):
        return INTERRUPTED
    return result if isinstance(result, int) else OK


class VerbatimEpilog:
    """Help epilogs (examples) printed as written: click would re-wrap them."""

    epilog: str | None

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.epilog:
            formatter.write("\n" + self.epilog.rstrip() + "\n")


class Command(VerbatimEpilog, click.Command):
    """A command whose errors name its path (``opg operator register: error: ...``) and whose examples print
    verbatim."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as exc:
            if getattr(exc, "prog", None) is None:
                exc.prog = ctx.command_path  # type: ignore[attr-defined]
            raise


class Group(VerbatimEpilog, click.Group):
    """A group whose sub-commands are imported when used (``lazy={"name": ("module:attribute", "summary")}``), so
    ``opg chat`` never imports the relayer and ``opg --help`` imports none; help lists them with their summaries, in
    the order given."""

    command_class = Command

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None, **kwargs: Any):
        kwargs.setdefault("context_settings", CONTEXT)
        super().__init__(*args, **kwargs)
        self.lazy = {name: target for name, (target, _) in (lazy or {}).items()}
        self.summaries = {name: summary for name, (_, summary) in (lazy or {}).items()}

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The lazy commands by their summaries (the help imports nothing), then the others."""
        rows = [(name, self.summaries[name]) for name in self.lazy]
        rows += [(name, cmd.get_short_help_str(80)) for name, cmd in self.commands.items() if name not in self.lazy]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.lazy) + [name for name in self.commands if name not in self.lazy]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            import importlib

            module, _, attr = self.lazy[name].partition(":")
            self.commands[name] = getattr(importlib.import_module(module), attr)
        return self.commands.get(name)


NEGATIVE_OK = {**CONTEXT, "ignore_unknown_options": True}  # "-3" reaches an AMOUNT argument (and is refused there)


def command(name: str | None = None, **kwargs: Any) -> Callable[[Callable[..., Any]], Command]:
    """``click.command`` with this module's help layout (``-h``, examples kept verbatim)."""
    kwargs.setdefault("context_settings", CONTEXT)
    return click.command(name, cls=Command, **kwargs)


def group(name: str | None = None, **kwargs: Any) -> Callable[[Callable[..., Any]], Group]:
    kwargs.setdefault("context_settings", CONTEXT)
    return click.group(name, cls=Group, **kwargs)


# Options from settings ------------------------------------------------------------------------------------------
def _plain_type(annotation: Any) -> Any:
    """``int | None`` -> ``int``; other unions and generics as they are."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


METAVARS = {int: "INT", float: "NUMBER", Decimal: "OPG", Path: "PATH", str: "TEXT"}


def option_for(cls: type[BaseSettings], name: str) -> Callable[[F], F]:
    """The ``--flag`` of one settings field: its description, environment variable and default in the help. Values
    are passed on as text (booleans as flags with a ``--no-`` form) and validated by the settings class."""
    from .daemon.settings import env_prefix

    info = cls.model_fields[name]
    flag = "--" + name.replace("_", "-")
    default = info.get_default(call_default_factory=False)
    shown = "" if default is None or info.default_factory else f"; default {default}"
    help_ = f"{info.description or ''} [env {env_prefix(cls)}{name.upper()}{shown}]"
    kind = _plain_type(info.annotation)
    if kind is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_)
    return click.option(flag, name, default=None, metavar=METAVARS.get(kind, "TEXT"), help=help_)


def settings_options(cls: type[S], section: str = "", only: Iterable[str] | None = None,
                     skip: Iterable[str] = (), config: bool = True,
                     prog: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: one option per field of ``cls`` (secrets, ``skip`` excepted; ``only`` if given), plus ``--config``
    (TOML or JSON, also ``<PREFIX>CONFIG``) when ``config``; the command receives ``settings=`` (flags >
    environment > config file > defaults) instead of the fields. A bad value is a usage error (exit 2)."""
    from .daemon.settings import SECRET_FIELDS, ConfigError, env_prefix, load_settings

    names = [n for n in cls.model_fields if n not in SECRET_FIELDS and n not in set(skip)
             and (only is None or n in set(only))]
    prefix = env_prefix(cls)

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)
        def wrapper(**kwargs: Any) -> Any:
            flags = {n: kwargs.pop(n) for n in names if kwargs.get(n) is not None}
            for n in names:
                kwargs.pop(n, None)
            path = kwargs.pop("config", None) if config else None
            if path is None and config and os.environ.get(prefix + "CONFIG"):
                path = Path(os.environ[prefix + "CONFIG"])
            try:
                settings = load_settings(cls, flags, path, section)
            except ConfigError as exc:
                raise CliError(str(exc), USAGE, prog) from None
            return f(settings=settings, **kwargs)

        for n in reversed(names):
            wrapper = option_for(cls, n)(wrapper)
        if config:
            wrapper = click.option("--config", type=click.Path(path_type=Path, dir_okay=False), default=None,
                                   metavar="FILE", help=f"TOML or JSON settings file [env {prefix}CONFIG]")(wrapper)
        return wrapper

    return decorate


class Choice(click.Choice):
    """``click.Choice`` shown as ``{a,b}`` and refused as "invalid choice: 'x' (choose from a, b)"."""

    def __init__(self, choices: Iterable[str]):
        super().__init__(list(choices))

    def get_metavar(self, param: click.Parameter) -> str:
        return "{" + ",".join(self.choices) + "}"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value in self.choices:
            return value
        self.fail(f"invalid choice: {value!r} (choose from {', '.join(map(str, self.choices))})", param, ctx)


# Rendering --------------------------------------------------------------------------------------------------------
json_option = click.option("--json", "as_json", is_flag=True, help="print one JSON document (machine-readable)")


def emit(data: Any, as_json: bool, lines: Callable[[Any], Iterable[str]] | Iterable[str] | None = None,
         **dumps: Any) -> None:
    """Print ``data`` as one JSON document (``as_json``), or the human ``lines`` (a function of ``data`` or the
    lines themselves)."""
    if as_json:
        dumps.setdefault("indent", 2)
        click.echo(json.dumps(data, default=str, **dumps))
        return
    for line in (lines(data) if callable(lines) else lines or ()):
        click.echo(line)


class Style:
    """ANSI colour on a terminal (and not under ``NO_COLOR``); plain text in pipes, files and tests."""

    def __init__(self, stream: Any = None):
        stream = stream or sys.stdout
        self.on = bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.on else text

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def red(self, text: str) -> str:
        return self._wrap("31", text)

    def green(self, text: str) -> str:
        return self._wrap("32", text)


def one_line(exc: BaseException) -> str:
    """An exception as one readable line (its first line, or its class name)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


# Daemons ----------------------------------------------------------------------------------------------------------
def start_daemon(prog: str, factory: Any, settings: Any, refusals: tuple[type[BaseException], ...] = ()) -> Any:
    """Logging at the settings' level, then ``factory(settings)``; any start-up refusal (configuration, store, key,
    unreachable chain) is one line and exit 2."""
    from .daemon.serve import build_daemon, setup_logging
    from .daemon.settings import ConfigError

    setup_logging(settings.log_level)
    try:
        return build_daemon(factory, settings, refusals)
    except ConfigError as exc:
        raise CliError(str(exc), USAGE, prog) from None


def parse_settings(cls: type[S], argv: list[str], section: str = "", prog: str = "opg") -> S:
    """Settings of ``cls`` from command-line ``argv`` (the same options as :func:`settings_options` gives a command),
    the environment and the config file; for scripts that run a daemon their own way (benches)."""

    @command(prog)
    @settings_options(cls, section=section, prog=prog)
    def parse(settings: S) -> S:
        return settings

    return parse.main(args=list(argv), prog_name=prog, standalone_mode=False)
