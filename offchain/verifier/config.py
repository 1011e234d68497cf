"""Verifier settings: defaults < config file (TOML or JSON, ``--config``, keys under ``[verifier]`` or at top level)
< environment (``OPG_VERIFIER_*``) < flags. The machinery is the daemon skeleton's (``offchain.daemon.settings``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from ..daemon.settings import ConfigError, DaemonSettings

ENV_PREFIX = "OPG_VERIFIER_"

__all__ = ["ConfigError", "ENV_PREFIX", "VerifierSettings"]


class VerifierSettings(DaemonSettings):
    """Everything ``opg verifier run`` can be told (each field is also ``--flag`` and ``OPG_VERIFIER_FIELD``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    port: int = Field(8404, ge=0, le=65_535, description="listen port")
    relayer_url: str = Field("http://127.0.0.1:8402", description="the relayer (receipt feed, verdicts, reports)")
    store: Path = Field(Path("var/verifier.sqlite3"), description="SQLite database file (cursor, checks, verdicts)")
    backends: str = Field("builtin", description="comma-separated backend specs this verifier can run "
                                                 "(builtin, smollm2, llama:/path.gguf, proxy:URL#model), options "
                                                 "as spec?key=value&... (smollm2?scoring=f32: teacher "
                                                 "forcing on the F32 expansion, faster on CPU)")
    sample_rate: float = Field(0.1, ge=0, le=1, description="share of the feed's receipts re-executed (0..1)")
    payload_deadline: float = Field(30.0, gt=0, le=3_600, description="a node must release a sampled payload within "
                                                                      "this many seconds (retries until then)")
    payload_retry: float = Field(2.0, gt=0, le=600, description="seconds between payload fetch attempts")
    payload_timeout: float = Field(10.0, gt=0, le=600, description="HTTP timeout of one payload request (s)")
    poll_interval: float = Field(0.5, gt=0, le=60, description="feed and chain polling interval (s)")
    feed_batch: int = Field(200, ge=1, le=1_000, description="receipts asked of the feed per request")
    workers: int = Field(2, ge=1, le=64, description="checks run at once (fetch + re-execution)")
    flag_fraud: bool = Field(True, description="flag receipts found fraudulent on-chain (so every verifier checks)")
    heartbeat: bool = Field(True, description="send heartbeat() every epoch (live stake: votes count and earn)")
    proxy_tolerance: float = Field(2.0, ge=1, le=100, description="non-deterministic models: output tokens billed may "
                                                                  "exceed the re-run's by this factor")
    from_block: int | None = Field(None, ge=0, description="first block to follow Flagged events from "
                                                           "(default: the deployment's)")

    @field_validator("relayer_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/")

    @field_validator("backends")
    @classmethod
    def _specs(cls, value: str) -> str:
        specs = [s.strip() for s in value.split(",") if s.strip()]
        if not specs:
            raise ValueError("name at least one backend spec")
        return ",".join(specs)

    @property
    def backend_specs(self) -> list[str]:
        return self.backends.split(",")
