"""Settings of ``opg operator``: the daemons' common fields (chain, deployment, key), read from flags, then
``OPG_OPERATOR_*`` environment variables, then an optional config file (section ``[operator]``)."""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from ..daemon.settings import DaemonSettings


class OperatorSettings(DaemonSettings):
    """The operator's account and where it lives. ``host``/``port``/``log_level`` are inherited and unused."""

    model_config = SettingsConfigDict(env_prefix="OPG_OPERATOR_", extra="forbid", validate_default=True)

    relayer_url: str | None = Field(None, description="relayer base URL; `status` then lists its slashing "
                                                      "submissions against this account (GET /slashes)")
    tx_timeout: float = Field(120, gt=0, description="seconds to wait for each transaction to be mined")
    from_block: int | None = Field(None, ge=0, description="first block scanned for events (default: the "
                                                           "deployment's first block)")

    @field_validator("relayer_url")
    @classmethod
    def _relayer(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/") if value else value
