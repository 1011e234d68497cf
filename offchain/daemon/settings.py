"""Daemon settings: defaults < config file (TOML or JSON) < environment (``OPG_<ROLE>_*``) < flags.

Each daemon declares one pydantic-settings class (subclassing :class:`DaemonSettings` for the fields every daemon
has); :func:`load_settings` merges the four sources. ``offchain.clikit.settings_options`` turns a class's fields into
command-line options.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

S = TypeVar("S", bound=BaseSettings)


class ConfigError(Exception):
    """A configuration a daemon refuses to start with; the message is one readable line."""


class DaemonSettings(BaseSettings):
    """Fields every daemon has: chain, deployment, store, HTTP listener, signing key, logging."""

    rpc_url: str = Field("http://127.0.0.1:8545", description="JSON-RPC endpoint of the chain")
    deployment: Path | None = Field(None, description="deployment file (default: deployments/<chainId>.json)")
    host: str = Field("127.0.0.1", description="listen address")
    port: int = Field(8402, ge=0, le=65_535, description="listen port")
    keystore: Path | None = Field(None, description="eth-account / ape keystore JSON of this daemon's key")
    password: SecretStr | None = Field(None, description="keystore password (use the environment, not a flag)")
    password_file: Path | None = Field(None, description="file holding the keystore password")
    dev_account: int | None = Field(None, ge=0, le=999, description="anvil development account (chain 31337 only)")
    log_level: str = Field("info", description="debug, info, warning or error")

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.lower()
        if value not in {"debug", "info", "warning", "error"}:
            raise ValueError("must be debug, info, warning or error")
        return value

    @field_validator("rpc_url")
    @classmethod
    def _rpc(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL")
        return value


SECRET_FIELDS = {"password"}  # environment or file only, never a flag


class _FileSource(PydanticBaseSettingsSource):
    """Values read from the config file (already parsed)."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]):
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def read_config_file(path: Path, section: str) -> dict[str, Any]:
    """A TOML or JSON file; keys are setting names (dashes allowed), at top level or under ``[section]``."""
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ConfigError(f"config file {path} is not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table/object of settings")
    if isinstance(data.get(section), dict):
        data = data[section]
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def env_prefix(cls: type[BaseSettings]) -> str:
    return str(cls.model_config.get("env_prefix", ""))


def load_settings(cls: type[S], flags: dict[str, Any] | None = None, config_file: Path | None = None,
                  section: str = "") -> S:
    """Settings of class ``cls`` from the flags given (None = not given), the environment and the config file."""
    file_values = read_config_file(config_file, section) if config_file else {}
    unknown = sorted(set(file_values) - set(cls.model_fields))
    if unknown:
        raise ConfigError(f"config file {config_file}: unknown setting {unknown[0]!r}")

    class _Settings(cls):  # type: ignore[valid-type, misc]
        @classmethod
        def settings_customise_sources(cls_, settings_cls, init_settings, env_settings, dotenv_settings,
                                       file_secret_settings):
            return init_settings, env_settings, _FileSource(settings_cls, file_values)

    _Settings.__name__ = cls.__name__
    try:
        settings = _Settings(**{k: v for k, v in (flags or {}).items() if v is not None})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {name}: {first['msg']}") from None
    return settings
