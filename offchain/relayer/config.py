"""Relayer settings: defaults < config file (TOML or JSON, ``--config``) < environment (``OPG_RELAYER_*``) < flags.
The machinery is the daemon skeleton's (``offchain.daemon.settings``)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from ..daemon.settings import ConfigError, DaemonSettings
from ..daemon.settings import load_settings as _load
from ..storage.database import is_postgres_url

ENV_PREFIX = "OPG_RELAYER_"

__all__ = ["ConfigError", "RelayerSettings", "load_settings", "ENV_PREFIX"]


def default_instance() -> str:
    """A relayer process's default name in the sending lease: ``<hostname>-<pid>`` (``relayer.lease`` reads it back
    to take at once a lease whose holder's process on this host is gone)."""
    return f"{socket.gethostname()}-{os.getpid()}"


class RelayerSettings(DaemonSettings):
    """Everything ``opg relayer run`` can be told (each field is also ``--flag`` and ``OPG_RELAYER_FIELD``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    # Chain
    confirmations: int = Field(1, ge=1, le=10_000, description="blocks a batch needs to count as confirmed")
    # Store
    store: Path | str = Field(Path("var/relayer.sqlite3"),
                              description="SQLite database file, or a postgresql://user@host:port/db URL")
    store_reserve_mb: float = Field(64.0, ge=0, description="refuse new receipts (503 store_full) while a SQLite "
                                    "store's disk has less free space than this (MiB; 0: never)")
    shared_store: bool = Field(False, description="other relayer processes use this SQLite file too (a PostgreSQL "
                                                  "store is always shared): they follow each other's channels and "
                                                  "/verify promises")
    # Several relayers on one store (relayer.lease): one sends transactions at a time
    instance: str = Field(default_factory=default_instance, min_length=1, max_length=200,
                          description="this process's name in the sending lease, unique among the relayers of one "
                          "store (default: <hostname>-<pid>)")
    lease_ttl: float = Field(10.0, ge=0.5, le=600,
                             description="the sending lease lapses this long after its holder's last renewal (s)")
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
    port: int = Field(8402, ge=0, le=65_535, description="listen port")
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1024, description="largest request body")
    max_bulk: int = Field(1_000, ge=1, le=10_000, description="most receipts in one bulk /settle")
    clock_skew: int = Field(120, ge=0, description="how far in the future a receipt timestamp may be (s)")
    max_receipt_age: int = Field(
        600, ge=1, description="how old a receipt may be when handed over (s; capped at the dispute window)")
    # Transactions
    gas_multiplier: float = Field(1.25, ge=1.0, le=10, description="gas limit = estimate x this")
    max_fee_gwei: float | None = Field(None, gt=0, description="cap on maxFeePerGas (gwei)")
    priority_fee_gwei: float | None = Field(None, ge=0, description="maxPriorityFeePerGas (default: the node's)")
    rpc_retries: int = Field(6, ge=0, le=50, description="retries of an RPC call that failed to connect")
    resend_after: float = Field(60.0, gt=0, description="re-broadcast with higher fees a tx pending this long (s)")
    exact_timeout: float = Field(30.0, gt=0, description="how long POST /settle waits for an exact transfer (s)")
    # (and the skeleton's: rpc_url, deployment, host, keystore, password, dev_account, log_level)

    @field_validator("store", mode="before")
    @classmethod
    def _store(cls, value: Any) -> Path | str:
        return value if is_postgres_url(value) else Path(value)


def load_settings(flags: dict[str, Any] | None = None, config_file: Path | None = None) -> RelayerSettings:
    """Settings from the flags given (None = not given), the environment and the config file (``[relayer]``)."""
    return _load(RelayerSettings, flags, config_file, section="relayer")
