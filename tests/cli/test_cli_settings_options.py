"""``clikit.settings_options``: one option per settings field (type as metavar, description, environment variable and
default in the help; booleans with a ``--no-`` form; secrets never), the command gets validated settings from
flags > environment > config file > defaults, and a bad value from any source is one line and exit 2. Also the
daemons' commands carry exactly their settings' fields, and colour is for terminals only."""

from __future__ import annotations

import io
from decimal import Decimal
from pathlib import Path

import click
import pytest
from cli_kit import opg, run
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from offchain import clikit
from offchain.cli import opg as root
from offchain.daemon.settings import SECRET_FIELDS


class ToySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OPG_TOY_", extra="forbid", validate_default=True)

    port: int = Field(8000, ge=1, description="listen port")
    price: Decimal = Field(Decimal("0.5"), ge=0, description="price in OPG")
    timeout: float | None = Field(None, gt=0, description="timeout (s)")
    store: Path = Field(Path("var/toy.sqlite3"), description="database file")
    heartbeat: bool = Field(True, description="send heartbeats")
    password: SecretStr | None = Field(None, description="never a flag")


@clikit.command("toy", epilog="example:\n  toy --port 9000")
@clikit.settings_options(ToySettings, section="toy", prog="toy")
@clikit.json_option
def toy(settings: ToySettings, as_json: bool) -> None:
    data = {"port": settings.port, "price": str(settings.price), "timeout": settings.timeout,
            "store": str(settings.store), "heartbeat": settings.heartbeat}
    clikit.emit(data, as_json, [f"{k}={v}" for k, v in data.items()])


def test_fields_become_options_with_their_help():
    options = {p.name: p for p in toy.params if isinstance(p, click.Option)}
    assert set(options) == {"config", "port", "price", "timeout", "store", "heartbeat", "as_json"}  # no password
    assert options["port"].metavar == "INT" and options["price"].metavar == "OPG"
    assert options["timeout"].metavar == "NUMBER" and options["store"].metavar == "PATH"
    assert options["heartbeat"].secondary_opts == ["--no-heartbeat"]
    help_ = run(toy, "toy", "--help").out
    for text in ("--port INT", "listen port", "OPG_TOY_PORT", "default 8000", "--no-heartbeat", "OPG_TOY_CONFIG",
                 "example:\n  toy --port 9000"):
        assert text in help_, text
    assert "--password" not in help_


def test_flags_beat_the_environment_which_beats_the_file_which_beats_defaults(tmp_path):
    config = tmp_path / "toy.toml"
    config.write_text('[toy]\nport = 7000\nprice = "2"\ntimeout = 3\n')
    ran = run(toy, "toy", "--config", str(config), "--port", "9000", "--no-heartbeat", "--json",
              env={"OPG_TOY_PRICE": "1.25"})
    assert ran.code == 0, ran.err
    import json

    assert json.loads(ran.out) == {"port": 9000, "price": "1.25", "timeout": 3.0, "store": "var/toy.sqlite3",
                                   "heartbeat": False}
    ran = run(toy, "toy", env={"OPG_TOY_CONFIG": str(config)})  # the file named by the environment
    assert "port=7000" in ran.out.splitlines()


@pytest.mark.parametrize("argv, env, field", [
    (["--port", "0"], None, "port"),
    (["--price", "cheap"], None, "price"),
    ([], {"OPG_TOY_TIMEOUT": "-1"}, "timeout"),
])
def test_a_bad_value_from_any_source_is_one_line_exit_2(argv, env, field):
    ran = run(toy, "toy", *argv, env=env)
    assert ran.code == 2 and f"invalid setting {field}" in ran.error_line("toy")


def test_each_daemon_command_has_one_option_per_setting():
    from offchain.node.config import NodeSettings
    from offchain.operator.settings import OperatorSettings
    from offchain.relayer.config import RelayerSettings
    from offchain.verifier.config import VerifierSettings

    ctx = click.Context(root)
    for path, cls in ((("relayer", "run"), RelayerSettings), (("node", "run"), NodeSettings),
                      (("node", "settle"), NodeSettings), (("verifier", "run"), VerifierSettings)):
        command = root.get_command(ctx, path[0]).get_command(ctx, path[1])
        names = {p.name for p in command.params if isinstance(p, click.Option)}
        assert set(cls.model_fields) - SECRET_FIELDS <= names, path
        assert not names & SECRET_FIELDS
    status = root.get_command(ctx, "operator").get_command(ctx, "status")
    assert {"rpc_url", "relayer_url", "from_block"} <= {p.name for p in status.params}
    assert "relayer_url" in OperatorSettings.model_fields


def test_a_flag_name_per_field_matches_the_environment_variable():
    ran = opg("relayer", "run", "--help")
    for name in ("batch_size", "max_fee_gwei", "validation_workers"):
        assert "--" + name.replace("_", "-") in ran.out and "OPG_RELAYER_" + name.upper() in ran.out


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert clikit.Style(io.StringIO()).red("x") == "x"
    assert clikit.Style(Terminal()).red("x") == "\x1b[31mx\x1b[0m"
    monkeypatch.setenv("NO_COLOR", "1")
    assert clikit.Style(Terminal()).red("x") == "x"
