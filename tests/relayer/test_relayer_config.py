"""Configuration: flags > environment > file > defaults; bad configuration exits non-zero with one readable line;
the signer comes from a keystore, or from anvil's development keys on chain 31337 only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account

from offchain.deployments import PROJECT_ROOT
from offchain.devkit.devchain import free_port
from offchain.devkit.devnet import Devnet, RelayerProc, new_key
from offchain.relayer.config import ConfigError, load_settings


def test_precedence_flags_env_file_defaults(tmp_path, monkeypatch):
    config = tmp_path / "relayer.toml"
    config.write_text('[relayer]\nbatch-size = 7\nbatch_age = 9.5\nport = 1111\nhost = "0.0.0.0"\n')
    monkeypatch.setenv("OPG_RELAYER_BATCH_AGE", "3")
    monkeypatch.setenv("OPG_RELAYER_PORT", "2222")
    s = load_settings({"port": "3333"}, config)
    assert s.port == 3333  # flag beats env and file
    assert s.batch_age == 3.0  # env beats file
    assert s.batch_size == 7  # file beats default
    assert s.host == "0.0.0.0"
    assert s.confirmations == 1 and s.max_body_bytes == 2 * 1024 * 1024  # defaults
    json_config = tmp_path / "relayer.json"
    json_config.write_text(json.dumps({"batch_size": 11, "confirmations": 4}))
    monkeypatch.delenv("OPG_RELAYER_BATCH_AGE")
    s = load_settings({}, json_config)
    assert (s.batch_size, s.confirmations, s.batch_age, s.port) == (11, 4, 5.0, 2222)


@pytest.mark.parametrize("content,message", [
    ("batch_size = 0\n", "invalid setting batch_size"),
    ("bogus = 1\n", "unknown setting 'bogus'"),
    ("batch_size = [\n", "not valid TOML"),
    ('rpc_url = "ws://x"\n', "invalid setting rpc_url"),
])
def test_bad_config_file(tmp_path, content, message):
    path = tmp_path / "bad.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_settings({}, path)


def run_cli(*args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "offchain.cli", "relayer", "run", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=PROJECT_ROOT, env={**os.environ, **(env or {})})


def assert_one_line_error(result: subprocess.CompletedProcess, words: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("opg relayer: error: ") and words in lines[0], lines[0]


def test_cli_bad_flag_value():
    assert_one_line_error(run_cli("--batch-size", "-3", "--dev-account", "1"), "invalid setting batch_size")


def test_cli_missing_config_file(tmp_path):
    assert_one_line_error(run_cli("--config", str(tmp_path / "nope.toml")), "does not exist")


def test_cli_unreachable_chain(tmp_path):
    result = run_cli("--rpc-url", f"http://127.0.0.1:{free_port()}", "--dev-account", "1", "--rpc-retries", "0",
                     "--store", str(tmp_path / "s.sqlite3"))
    assert_one_line_error(result, "cannot reach the chain")


@pytest.fixture(scope="module")
def other_chain(tmp_path_factory):
    """A devnet whose chain id is not 31337 (anvil development keys must be refused there)."""
    d = Devnet(tmp_path_factory.mktemp("chain1337"), anvil_extra=["--chain-id", "1337"])
    yield d
    d.close()


def test_dev_account_refused_off_devnet(other_chain, tmp_path):
    result = run_cli("--rpc-url", other_chain.url, "--deployment", str(other_chain.deployment_file),
                     "--dev-account", "1", "--store", str(tmp_path / "s.sqlite3"))
    assert_one_line_error(result, "refused on chain 1337")


def test_no_signer(other_chain, tmp_path):
    result = run_cli("--rpc-url", other_chain.url, "--store", str(tmp_path / "s.sqlite3"))
    assert_one_line_error(result, "no signer")


def test_keystore_signer(other_chain, tmp_path):
    key = new_key()
    other_chain.fund(key)
    keystore = tmp_path / "relayer.json"
    keystore.write_text(json.dumps(Account.encrypt(key.key, "correct horse", kdf="pbkdf2", iterations=1000)))
    base = ["--rpc-url", other_chain.url, "--deployment", str(other_chain.deployment_file),
            "--keystore", str(keystore), "--store", str(tmp_path / "s.sqlite3")]
    assert_one_line_error(run_cli(*base, env={"OPG_RELAYER_PASSWORD": "wrong"}), "wrong password")
    assert_one_line_error(run_cli(*base), "needs a password")
    password_file = tmp_path / "password"
    password_file.write_text("correct horse\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "offchain.cli", "relayer", "run", *base, "--password-file",
                             str(password_file), "--port", str(port)], cwd=PROJECT_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        import time

        import httpx

        deadline = time.monotonic() + 30
        while True:
            try:
                supported = httpx.get(f"http://127.0.0.1:{port}/supported", timeout=5).json()
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert supported["signers"]["eip155:*"] == [key.address]
        assert supported["kinds"][0]["network"] == "eip155:1337"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_store_of_another_deployment_is_refused(other_chain, tmp_path):
    key = new_key()
    keystore = tmp_path / "k.json"
    keystore.write_text(json.dumps(Account.encrypt(key.key, "pw", kdf="pbkdf2", iterations=1000)))
    store = tmp_path / "s.sqlite3"
    from offchain.relayer.ledger import Ledger
    from offchain.relayer.store import Store

    made = Store(store, Ledger())  # a store of another chain and deployment
    made.open(1337, "0x" + "00" * 20, "0x" + "00" * 20)
    made.close()
    result = run_cli("--rpc-url", other_chain.url, "--deployment", str(other_chain.deployment_file),
                     "--keystore", str(keystore), "--store", str(store), env={"OPG_RELAYER_PASSWORD": "pw"})
    assert_one_line_error(result, "use another --store")


def test_config_file_runs_the_relayer(devnet, tmp_path):
    config = tmp_path / "relayer.toml"
    port = free_port()
    config.write_text(f'rpc_url = "{devnet.url}"\ndeployment = "{devnet.deployment_file}"\n'
                      f'store = "{tmp_path / "s.sqlite3"}"\nport = {port}\ndev_account = 7\nbatch_size = 3\n')
    proc = RelayerProc(devnet, tmp_path / "unused.sqlite3", 7)
    proc.args = [sys.executable, "-m", "offchain.cli", "relayer", "run", "--config", str(config)]
    proc.port, proc.url = port, f"http://127.0.0.1:{port}"
    import httpx

    proc.client = httpx.Client(base_url=proc.url, timeout=30)
    proc.start()
    try:
        assert proc.get("/supported").json()["signers"]["eip155:*"] == [proc.address]
        assert Path(tmp_path / "s.sqlite3").exists()
    finally:
        proc.stop()
