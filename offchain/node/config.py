"""Node settings: defaults < config file (TOML or JSON, ``--config``, section ``[node]``) < environment
(``OPG_NODE_*``) < flags. The machinery is the daemon skeleton's (``offchain.daemon.settings``).

Also here: prices in OPG decimals (``"0.0001"``) turned into wei, the per-model pricing file, and the backend list
(``--backend "builtin,proxy:http://gpu:8000/v1#llama-3?timeout=60"``).
"""

from __future__ import annotations

import tomllib
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from ..backends import parse_spec
from ..daemon.settings import ConfigError, DaemonSettings
from ..inference import Pricing

ENV_PREFIX = "OPG_NODE_"
WEI_PER_OPG = 10**18

__all__ = ["ConfigError", "NodeSettings", "BackendSpec", "parse_backends", "opg_to_wei", "load_pricing_file",
           "ENV_PREFIX"]


class NodeSettings(DaemonSettings):
    """Everything ``opg node run`` can be told (each field is also ``--flag`` and ``OPG_NODE_FIELD``)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    port: int = Field(8500, ge=0, le=65_535, description="listen port")
    relayer_url: str = Field("http://127.0.0.1:8402", description="the relayer (x402 facilitator) base URL")
    store: Path = Field(Path("var/node.sqlite3"), description="SQLite database file (receipts, payloads, outbox)")
    # Models
    backend: str = Field(
        "builtin", description="model backend spec(s), comma-separated: builtin, smollm2, llama:/path/x.gguf, "
        "proxy:http://host:port/v1#model; options as spec?key=value&key=value (e.g. builtin?name=fast)")
    max_tokens: int = Field(256, ge=1, le=1_000_000, description="max_tokens of a request that gives none")
    max_tokens_limit: int = Field(4096, ge=1, le=1_000_000, description="largest max_tokens a request may ask for")
    # Prices (OPG, decimal)
    price_base: Decimal = Field(Decimal("0.0001"), ge=0, description="price per request (OPG)")
    price_prompt_token: Decimal = Field(Decimal("0.000001"), ge=0, description="price per prompt token (OPG)")
    price_output_token: Decimal = Field(Decimal("0.00001"), ge=0, description="price per output token (OPG)")
    pricing: Path | None = Field(None, description="TOML pricing file: [models.<name>] base/prompt-token/output-token "
                                 "(OPG) per model, overriding the --price-* flags")
    # Risk
    max_unsettled: Decimal = Field(Decimal("100"), ge=0, description="per-payer exposure: charged + caps in flight "
                                   "not yet settled on-chain beyond which new requests get 402 exposure_limit (OPG)")
    settled_ttl: float = Field(2.0, ge=0, le=600, description="how long escrow.spent reads are cached (s)")
    require_relayer_verify: bool = Field(
        False, description="refuse (503) opg-credit requests while the relayer's /verify is unreachable, instead of "
        "checking the payer's credits on-chain alone")
    # Outbox
    outbox_batch: int = Field(100, ge=1, le=1000, description="most receipts handed to the relayer in one POST")
    outbox_max_backoff: float = Field(10.0, gt=0, le=3600, description="longest wait between retries while the "
                                      "relayer is unreachable (s)")
    relayer_timeout: float = Field(10.0, gt=0, le=600, description="timeout of the relayer's /verify and receipt "
                                   "hand-over (s)")
    exact_timeout: float = Field(60.0, gt=0, le=600, description="how long an exact settlement may take (s)")
    # HTTP
    max_body_bytes: int = Field(1024 * 1024, ge=1024, description="largest request body (413 above)")

    @field_validator("relayer_url")
    @classmethod
    def _relayer(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/")

    def pricing_default(self) -> Pricing:
        return Pricing(base=opg_to_wei(self.price_base, "price_base"),
                       per_prompt_token=opg_to_wei(self.price_prompt_token, "price_prompt_token"),
                       per_output_token=opg_to_wei(self.price_output_token, "price_output_token"))

    @property
    def max_unsettled_wei(self) -> int:
        return opg_to_wei(self.max_unsettled, "max_unsettled")


def opg_to_wei(value: Any, name: str = "amount") -> int:
    """An OPG decimal (``"0.0001"``, ``1``, ``Decimal``) as integer wei; ConfigError if negative or finer than 1 wei."""
    try:
        dec = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ConfigError(f"invalid setting {name}: {value!r} is not a decimal OPG amount") from None
    if not dec.is_finite() or dec < 0:
        raise ConfigError(f"invalid setting {name}: {value!r} must be a non-negative OPG amount")
    wei = dec * WEI_PER_OPG
    if wei != wei.to_integral_value():
        raise ConfigError(f"invalid setting {name}: {value!r} has more than 18 decimals (finer than 1 wei)")
    return int(wei)


_PRICE_KEYS = {
    "base": "base", "price-base": "base", "price_base": "base",
    "prompt-token": "per_prompt_token", "prompt_token": "per_prompt_token", "per-prompt-token": "per_prompt_token",
    "per_prompt_token": "per_prompt_token", "price-prompt-token": "per_prompt_token",
    "output-token": "per_output_token", "output_token": "per_output_token", "per-output-token": "per_output_token",
    "per_output_token": "per_output_token", "price-output-token": "per_output_token",
}


def _pricing_table(table: Any, where: str, default: Pricing) -> Pricing:
    if not isinstance(table, dict):
        raise ConfigError(f"pricing file: {where} must be a table")
    values = default.model_dump()
    for key, value in table.items():
        field = _PRICE_KEYS.get(str(key))
        if field is None:
            raise ConfigError(f"pricing file: {where}: unknown key {key!r} (base, prompt-token, output-token)")
        values[field] = opg_to_wei(value, f"{where}.{key}")
    return Pricing(**values)


def load_pricing_file(path: Path, default: Pricing) -> tuple[Pricing, dict[str, Pricing]]:
    """``(default pricing, {model name: pricing})`` from a TOML file::

        [default]                 # optional: replaces the --price-* flags for models not listed
        base = "0.0001"
        prompt-token = "0.000001"
        output-token = "0.00001"

        [models."smollm2-135m-instruct"]
        base = "0.0002"            # keys not given fall back to [default]
        output-token = "0.00002"
    """
    try:
        data = tomllib.loads(Path(path).expanduser().read_text())
    except FileNotFoundError:
        raise ConfigError(f"pricing file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"pricing file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"default", "models"})
    if unknown:
        raise ConfigError(f"pricing file {path}: unknown table {unknown[0]!r} (default, models)")
    if "default" in data:
        default = _pricing_table(data["default"], "default", default)
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError(f"pricing file {path}: models must be a table of [models.<name>] tables")
    return default, {str(name): _pricing_table(t, f"models.{name}", default) for name, t in models.items()}


class BackendSpec:
    """One entry of ``--backend``: the spec ``offchain.backends.load_backend`` takes and its options."""

    def __init__(self, spec: str, options: dict[str, Any]):
        self.spec, self.options = spec, options

    def __repr__(self) -> str:
        return f"BackendSpec({self.spec!r}, {self.options!r})"


def parse_backends(value: str) -> list[BackendSpec]:
    """``"builtin,builtin?name=slow&token_delay=0.05"`` -> two BackendSpecs (ConfigError if malformed)."""
    out: list[BackendSpec] = []
    for raw in value.split(","):
        raw = raw.strip()
        if not raw:
            continue
        try:
            spec, options = parse_spec(raw)
        except ValueError as exc:
            raise ConfigError(f"invalid setting backend: {exc}") from None
        if "scoring" in options:
            raise ConfigError(f"invalid setting backend: scoring is a verifier's option (what its teacher forcing runs "
                              f"on), not a node's: {raw!r}")
        out.append(BackendSpec(spec, options))
    if not out:
        raise ConfigError("invalid setting backend: give at least one backend spec (e.g. builtin)")
    return out
