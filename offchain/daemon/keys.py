"""A daemon's signing key: an encrypted keystore (eth-account or ape format) or, on a devnet only, one of anvil's
public development keys. No private key is ever read from a flag or kept in the repository."""

from __future__ import annotations

import json

from eth_account import Account
from eth_account.signers.local import LocalAccount

from .settings import ConfigError, DaemonSettings, env_prefix

# Anvil's public development mnemonic: devnet only, never for a real chain.
ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
DEVNET_CHAIN_ID = 31337


def anvil_key(index: int) -> str:
    """Private key of anvil's development account ``index`` (public knowledge; devnet only)."""
    Account.enable_unaudited_hdwallet_features()
    return Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").key.hex()


def load_account(settings: DaemonSettings, chain_id: int) -> LocalAccount:
    """The account this daemon signs with; ConfigError if it cannot or must not be used."""
    password_env = env_prefix(type(settings)) + "PASSWORD"
    if settings.keystore is not None and settings.dev_account is not None:
        raise ConfigError("give either --keystore or --dev-account, not both")
    if settings.dev_account is not None:
        if chain_id != DEVNET_CHAIN_ID:
            raise ConfigError(
                f"--dev-account uses anvil's public development keys and is refused on chain {chain_id} "
                f"(only {DEVNET_CHAIN_ID}); use --keystore"
            )
        return Account.from_key(anvil_key(settings.dev_account))
    if settings.keystore is None:
        raise ConfigError(f"no signer: give --keystore PATH (password in {password_env} or --password-file) "
                          "or, on a devnet, --dev-account N")
    path = settings.keystore.expanduser()
    try:
        keyfile = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"keystore {path} does not exist") from None
    except ValueError:
        raise ConfigError(f"keystore {path} is not JSON") from None
    if settings.password is not None:
        password = settings.password.get_secret_value()
    elif settings.password_file is not None:
        try:
            password = settings.password_file.expanduser().read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"cannot read password file {settings.password_file}: {exc.strerror}") from None
    else:
        raise ConfigError(f"keystore needs a password: set {password_env} or give --password-file")
    try:
        key = Account.decrypt(keyfile, password)
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"cannot decrypt keystore {path}: wrong password or not a keystore file") from None
    return Account.from_key(key)
