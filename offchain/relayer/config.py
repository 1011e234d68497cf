"""Relayer settings: defaults < config file (TOML or JSON, ``--config``) < environment (``OPG_RELAYER_*``) < flags."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "OPG_RELAYER_"


class ConfigError(Exception):
    """A configuration the relayer refuses to start with; the message is one readable line."""


class RelayerSettings(BaseSettings):
    """Everything ``opg relayer run`` can be told (each field is also ``--flag`` and ``OPG_RELAYER_FIELD``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    # Chain
    rpc_url: str = Field("http://127.0.0.1:8545", description="JSON-RPC endpoint of the chain")
    deployment: Path | None = Field(None, description="deployment file (default: deployments/<chainId>.json)")
    confirmations: int = Field(1, ge=1, le=10_000, description="blocks a batch needs to count as confirmed")
    # Store
    store: Path = Field(Path("var/relayer.sqlite3"), description="SQLite database file")
    # Batching
    batch_size: int = Field(100, ge=1, le=1_000_000, description="flush once this many receipts are pending")
    batch_age: float = Field(5.0, gt=0, le=86_400, description="flush once the oldest pending receipt is this old (s)")
    max_claims: int = Field(256, ge=1, le=256, description="most claims (channels) in one settle_batch")
    max_batch_receipts: int = Field(50_000, ge=1, description="most receipts one batch covers")
    poll_interval: float = Field(0.2, gt=0, le=60, description="chain worker tick (s)")
    validation_workers: int = Field(
        default_factory=lambda: min(4, os.cpu_count() or 1), ge=0, le=64,
        description="processes checking large bulk submissions (0: all in the HTTP process)")
    # HTTP
    host: str = Field("127.0.0.1", description="listen address")
    port: int = Field(8402, ge=0, le=65_535, description="listen port")
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="largest request body")
    max_bulk: int = Field(1_000, ge=1, le=10_000, description="most receipts in one bulk /settle")
    clock_skew: int = Field(120, ge=0, description="how far in the future a receipt timestamp may be (s)")
    max_receipt_age: int = Field(
        600, ge=1, description="how old a receipt may be when handed over (s; capped at the dispute window)")
    # Signer
    keystore: Path | None = Field(None, description="eth-account / ape keystore JSON of the relayer key")
    password: SecretStr | None = Field(None, description="keystore password (use the environment, not a flag)")
    password_file: Path | None = Field(None, description="file holding the keystore password")
    dev_account: int | None = Field(None, ge=0, le=999, description="anvil development account (chain 31337 only)")
    # Transactions
    gas_multiplier: float = Field(1.25, ge=1.0, le=10, description="gas limit = estimate x this")
    max_fee_gwei: float | None = Field(None, gt=0, description="cap on maxFeePerGas (gwei)")
    priority_fee_gwei: float | None = Field(None, ge=0, description="maxPriorityFeePerGas (default: the node's)")
    rpc_retries: int = Field(6, ge=0, le=50, description="retries of an RPC call that failed to connect")
    resend_after: float = Field(60.0, gt=0, description="re-broadcast with higher fees a tx pending this long (s)")
    exact_timeout: float = Field(30.0, gt=0, description="how long POST /settle waits for an exact transfer (s)")
    # Operations
    log_level: str = Field("info", description="debug, info, warning or error")
    fault_exit_after_sent: bool = Field(
        False, description="TESTING ONLY: exit hard right after a batch is recorded 'sent', before broadcasting it"
    )

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


class _FileSource(PydanticBaseSettingsSource):
    """Values read from the config file (already parsed)."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]):
        super().__init__(settings_cls)
        self._values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._values)


def read_config_file(path: Path) -> dict[str, Any]:
    """A TOML or JSON file; keys are setting names (dashes allowed), at top level or under ``[relayer]``."""
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
    if isinstance(data.get("relayer"), dict):
        data = data["relayer"]
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def load_settings(flags: dict[str, Any] | None = None, config_file: Path | None = None) -> RelayerSettings:
    """Settings from the flags given (None = not given), the environment and the config file."""
    file_values = read_config_file(config_file) if config_file else {}
    unknown = sorted(set(file_values) - set(RelayerSettings.model_fields))
    if unknown:
        raise ConfigError(f"config file {config_file}: unknown setting {unknown[0]!r}")

    class _Settings(RelayerSettings):
        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
            return init_settings, env_settings, _FileSource(settings_cls, file_values)

    try:
        settings = _Settings(**{k: v for k, v in (flags or {}).items() if v is not None})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        name = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {name}: {first['msg']}") from None
    return settings
