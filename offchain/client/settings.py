"""Payer CLI settings: flags > environment (``OPG_CLIENT_*``) > defaults."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ..daemon.keys import anvil_key
from ..daemon.settings import ConfigError

ENV_PREFIX = "OPG_CLIENT_"

__all__ = ["ClientSettings", "ConfigError", "ENV_PREFIX"]


class ClientSettings(BaseSettings):
    """Where the chain, the relayer and the node are, where the state lives, and which key pays. The key fields
    are the daemon skeleton's (``offchain.daemon.keys.load_account`` reads them): ``--keystore`` with the password
    in ``OPG_CLIENT_PASSWORD`` or ``--password-file``, or ``--dev-account N`` (anvil, chain 31337 only)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    rpc_url: str = Field("http://127.0.0.1:8545", description="JSON-RPC endpoint of the chain")
    deployment: Path | None = Field(None, description="deployment file (default: deployments/<chainId>.json)")
    relayer_url: str | None = Field("http://127.0.0.1:8402", description="the relayer (gasless deposits, settlement)")
    node_url: str | None = Field("http://127.0.0.1:8500", description="the inference node to chat with")
    state_dir: Path = Field(Path("~/.opg"), description="local state: channels, session keys, answered requests")
    model: str | None = Field(None, description="model to chat with (default: the node's first)")
    payer: str | None = Field(None, description="payer address (to pick a stored session key without a key)")
    keystore: Path | None = Field(None, description="eth-account / ape keystore JSON of the payer's key")
    password: SecretStr | None = Field(None, description="keystore password (environment only)")
    password_file: Path | None = Field(None, description="file holding the keystore password")
    dev_account: int | None = Field(None, ge=0, le=999, description="anvil development account (chain 31337 only)")

    @field_validator("rpc_url", "relayer_url", "node_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http(s):// URL")
        return value.rstrip("/")

    def key_address(self) -> str | None:
        """The payer address the key settings name, without decrypting anything."""
        from eth_account import Account
        from eth_utils import to_checksum_address

        if self.dev_account is not None:
            return Account.from_key(anvil_key(self.dev_account)).address
        if self.keystore is not None:
            try:
                address = json.loads(self.keystore.expanduser().read_text()).get("address")
            except (OSError, ValueError, AttributeError):
                return None
            if address:
                return to_checksum_address(address if address.startswith("0x") else "0x" + address)
        return None
