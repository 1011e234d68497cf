"""Payer wallet commands against a real anvil and a real relayer: deposit (own gas, and gasless through the relayer's
POST /deposits), balance, withdraw with its thaw, session keys."""

from __future__ import annotations

import json
import stat
import subprocess
import sys

import ape
import httpx
import pytest
from client_kit import cli, write_keystore
from eth_account import Account

from offchain.client import OpgClient, parse_opg
from offchain.daemon.keys import anvil_key
from offchain.deployments import PROJECT_ROOT
from offchain.devkit.devchain import transact
from offchain.devkit.devnet import OPG, new_key

DEV = 3  # anvil account the --dev-account tests pay from (holds ETH; gets OPG from the deployer)


@ape.fixture(scope="module", chain_isolation=False)
def dev_payer(devnet):
    address = Account.from_key(anvil_key(DEV)).address
    transact(devnet.w3, devnet.deployer, devnet.opg.functions.transfer(address, 1_000 * OPG))
    return address


@pytest.fixture()
def base(devnet, relayer, tmp_path):
    return ["--rpc-url", devnet.url, "--deployment", str(devnet.deployment_file), "--relayer-url", relayer.url,
            "--state-dir", str(tmp_path / "state")]


def test_deposit_with_a_dev_account_moves_opg_into_credits(devnet, dev_payer, base):
    before = devnet.escrow.functions.balance_of(dev_payer).call()
    code, out, err = cli("deposit", "25", "--dev-account", str(DEV), "--json", *base)
    assert code == 0, err
    answer = json.loads(out)
    assert answer["gasless"] is False and answer["transaction"].startswith("0x")
    assert devnet.escrow.functions.balance_of(dev_payer).call() == before + 25 * OPG


def test_gasless_deposit_from_a_keystore_needs_no_eth(devnet, relayer, base, tmp_path):
    payer = new_key()
    transact(devnet.w3, devnet.deployer, devnet.opg.functions.transfer(payer.address, 50 * OPG))
    keystore = write_keystore(tmp_path / "payer.json", payer.key, "s3cret")
    relayer_nonce = devnet.w3.eth.get_transaction_count(relayer.address)
    code, out, err = cli("deposit", "12.5", "--gasless", "--keystore", str(keystore), "--json", *base,
                         env={"OPG_CLIENT_PASSWORD": "s3cret"})
    assert code == 0, err
    answer = json.loads(out)
    assert answer["status"] == "confirmed" and answer["balance"] == str(parse_opg("12.5"))
    assert devnet.escrow.functions.balance_of(payer.address).call() == parse_opg("12.5")
    assert devnet.w3.eth.get_balance(payer.address) == 0
    assert devnet.w3.eth.get_transaction_count(relayer.address) == relayer_nonce + 1  # the relayer paid the gas


def test_gasless_deposit_posted_twice_is_sent_once(devnet, relayer):
    payer = new_key()
    transact(devnet.w3, devnet.deployer, devnet.opg.functions.transfer(payer.address, 20 * OPG))
    client = OpgClient(Account.from_key(payer.key), devnet.url, devnet.deployment_file, relayer_url=relayer.url)
    body = client.sign_deposit_authorization(5 * OPG)
    first = relayer.post("/deposits", body)
    again = relayer.post("/deposits", body)
    assert first.status_code == 200 and again.status_code == 200, (first.text, again.text)
    assert first.json()["transaction"] == again.json()["transaction"]
    assert devnet.escrow.functions.balance_of(payer.address).call() == 5 * OPG


def test_gasless_deposit_refuses_an_authorization_not_to_the_escrow(devnet, relayer):
    payer = new_key()
    transact(devnet.w3, devnet.deployer, devnet.opg.functions.transfer(payer.address, 20 * OPG))
    client = OpgClient(Account.from_key(payer.key), devnet.url, devnet.deployment_file, relayer_url=relayer.url)
    body = client.sign_deposit_authorization(5 * OPG)
    body["authorization"]["to"] = payer.address
    res = relayer.post("/deposits", body)
    assert res.status_code == 400
    assert res.json()["field"] == "authorization.to"


def test_gasless_deposit_refuses_a_signature_of_someone_else(devnet, relayer):
    payer, other = new_key(), new_key()
    transact(devnet.w3, devnet.deployer, devnet.opg.functions.transfer(payer.address, 20 * OPG))
    forged = OpgClient(Account.from_key(other.key), devnet.url, devnet.deployment_file).sign_deposit_authorization(
        5 * OPG)
    forged["authorization"]["from"] = payer.address
    res = relayer.post("/deposits", forged)
    assert res.status_code == 400 and res.json()["error"] == "invalid_signature"
    assert devnet.escrow.functions.balance_of(payer.address).call() == 0


def test_balance_reports_wallet_credits_and_available(devnet, dev_payer, base):
    code, out, err = cli("balance", "--dev-account", str(DEV), "--json", *base)
    assert code == 0, err
    b = json.loads(out)
    assert b["payer"] == dev_payer
    assert int(b["credits"]) == devnet.escrow.functions.balance_of(dev_payer).call()
    assert int(b["available"]) == devnet.escrow.functions.available_of(dev_payer).call()
    assert b["withdrawal"]["state"] == "none"


def test_withdraw_shows_the_time_left_then_completes_after_the_thaw(devnet, base):
    payer = devnet.new_payer(deposit=30 * OPG)
    keystore_env: dict[str, str] = {}  # the password comes from --password-file here
    keystore = write_keystore(devnet.tmp / f"{payer.address}.json", payer.key, "pw")
    password_file = devnet.tmp / f"{payer.address}.pw"
    password_file.write_text("pw\n")
    args = ["--keystore", str(keystore), "--password-file", str(password_file), *base]
    code, out, err = cli("withdraw", "10", *args, env=keystore_env)
    assert code == 0, err
    assert "ready in" in out
    code, out, err = cli("withdraw", *args, env=keystore_env)
    assert code == 1
    assert "still thawing" in err and " s left" in err
    assert devnet.escrow.functions.available_of(payer.address).call() == 20 * OPG
    devnet.advance(devnet.params.thaw_period + 1)
    wallet_before = devnet.opg.functions.balanceOf(payer.address).call()
    code, out, err = cli("withdraw", "--json", *args, env=keystore_env)
    assert code == 0, err
    assert json.loads(out)["amount"] == str(10 * OPG)
    assert devnet.opg.functions.balanceOf(payer.address).call() == wallet_before + 10 * OPG
    assert devnet.escrow.functions.balance_of(payer.address).call() == 20 * OPG


def test_session_key_is_authorised_with_expiry_and_allowance_and_kept_private(devnet, dev_payer, base, tmp_path):
    code, out, err = cli("session", "--allowance", "5", "--expiry", "2h", "--dev-account", str(DEV), "--json", *base)
    assert code == 0, err
    answer = json.loads(out)
    expiry, allowance = devnet.escrow.functions.signer_of(dev_payer, answer["key"]).call()
    assert allowance == 5 * OPG and expiry == answer["expiry"] and expiry >= devnet.chain_now() + 7000
    files = list((tmp_path / "state" / "sessions").rglob("*.json"))
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    stored = json.loads(files[0].read_text())
    assert Account.from_key(stored["key"]).address == answer["key"] and stored["payer"] == dev_payer


def test_session_top_up_keeps_the_key_and_raises_its_allowance(devnet, dev_payer, base):
    code, out, _ = cli("session", "--allowance", "5", "--dev-account", str(DEV), "--json", *base)
    first = json.loads(out)
    code, out, err = cli("session", "--allowance", "8", "--dev-account", str(DEV), "--json", *base)
    assert code == 0, err
    second = json.loads(out)
    assert second["key"] == first["key"]
    assert devnet.escrow.functions.signer_of(dev_payer, first["key"]).call()[1] == 8 * OPG


def test_session_revoke_ends_the_key_after_the_thaw_and_forgets_it(devnet, dev_payer, base):
    code, out, _ = cli("session", "--allowance", "3", "--new", "--dev-account", str(DEV), "--json", *base)
    key = json.loads(out)["key"]
    code, out, err = cli("session", "--revoke", "--dev-account", str(DEV), "--json", *base)
    assert code == 0, err
    expiry, _ = devnet.escrow.functions.signer_of(dev_payer, key).call()
    assert expiry <= devnet.chain_now() + devnet.params.thaw_period + 5
    code, out, _ = cli("session", "--dev-account", str(DEV), *base)
    assert code == 1 and "no session key" in out


def test_a_command_without_a_key_is_a_usage_error(base):
    code, out, err = cli("deposit", "1", *base)
    assert code == 2
    assert err.startswith("opg deposit: error: no signer") and len(err.strip().splitlines()) == 1


def test_opg_dispatches_payer_commands(devnet, dev_payer, base):
    proc = subprocess.run([sys.executable, "-m", "offchain.cli", "balance", "--dev-account", str(DEV), "--json",
                           *base], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["payer"] == dev_payer


def test_relayer_documents_the_deposit_route(relayer):
    paths = httpx.get(relayer.url + "/openapi.json", timeout=10).json()["paths"]
    assert "/deposits" in paths


def test_opg_dispute_is_handed_to_the_dispute_command():
    proc = subprocess.run([sys.executable, "-m", "offchain.cli", "dispute", "--help"], capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "opg dispute" in proc.stdout
