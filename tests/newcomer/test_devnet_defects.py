"""Issue 16's devnet defects, each performed on a real ``make devnet`` (scripts/devnet.py): the chain's clock, a
stock x402 ``exact`` client, ``opg withdraw --wait`` on an idle chain, a session key close to expiry, and a gasless
deposit retried after a frozen relayer."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest
from eth_account import Account
from web3 import Web3

from offchain.chain import Chain
from offchain.client import OpgClient
from offchain.client.payer import Payer
from offchain.client.transport import payment_http_client
from offchain.client.wallet import WalletError
from offchain.daemon.keys import anvil_key
from offchain.devkit.devchain import transact

OPG = 10**18


def chain(devnet) -> Chain:
    return Chain.connect(devnet.rpc_url, devnet.deployment)


def fund(devnet, address: str, opg: int) -> None:
    c = chain(devnet)
    transact(c.w3, anvil_key(0), c.opg.functions.transfer(address, opg))


def test_chain_clock_follows_the_wall_clock_and_moves_while_idle(devnet):
    first = devnet.chain_time()
    assert abs(first - time.time()) <= 2, "the devnet's chain clock must agree with the wall clock"
    time.sleep(3)  # nobody transacts
    later = devnet.chain_time()
    assert later >= first + 2 and abs(later - time.time()) <= 2


def test_stock_x402_exact_client_pays_a_devnet_node_unchanged(devnet):
    """The x402 package's httpx client, OPG allow-listed, signs validBefore by the wall clock: the chain agrees."""
    from x402 import x402Client
    from x402.http.clients import x402HttpxClient
    from x402.mechanisms.evm.exact import ExactEvmScheme

    c = chain(devnet)
    payer = Account.create()
    fund(devnet, payer.address, 2 * OPG)
    client = x402Client()
    client.register("eip155:31337", ExactEvmScheme(payer))
    client.set_spend_controls({"allowed_assets": [{"network": "eip155:31337", "asset": c.opg.address}]})

    async def go():
        async with x402HttpxClient(client, base_url=devnet.node_url, timeout=120) as http:
            model = (await http.get("/v1/models")).json()["data"][0]["id"]
            return await http.post("/v1/chat/completions", json={
                "model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8})

    res = asyncio.run(go())
    assert res.status_code == 200, res.text
    payment = res.json()["x_opg_payment"]
    assert payment["scheme"] == "exact" and payment["success"] is True
    assert c.w3.eth.get_transaction_receipt(payment["transaction"])["status"] == 1
    assert c.opg.functions.balanceOf(payer.address).call() == 2 * OPG - int(payment["cost"])


def test_withdraw_wait_completes_on_an_idle_devnet(devnet, cli):
    c = chain(devnet)
    payer = Account.from_key(anvil_key(7))
    fund(devnet, payer.address, 3 * OPG)
    assert cli("deposit", "3", "--dev-account", "7")[0] == 0
    before = c.opg.functions.balanceOf(payer.address).call()
    started = time.monotonic()
    code, out, err = cli("withdraw", "2", "--wait", "--dev-account", "7")  # nobody else transacts meanwhile
    assert code == 0, err
    assert "withdrew 2 OPG" in out
    thaw = c.escrow.functions.thaw_period().call()
    assert time.monotonic() - started < thaw + 30
    assert c.opg.functions.balanceOf(payer.address).call() == before + 2 * OPG


def test_session_key_close_to_expiry_is_refused_up_front_by_client_and_node(devnet, cli, tmp_path):
    """A key that expires sooner than the thaw period (what settlement needs) is refused before anything is signed:
    by the CLI (no silent fall-back to the main key either), and by the node and relayer for a client that tries."""
    c = chain(devnet)
    account = Account.from_key(anvil_key(7))
    wallet = OpgClient(account, devnet.rpc_url, devnet.deployment, relayer_url=devnet.relayer_url,
                       state=tmp_path / "opg")
    fund(devnet, account.address, 2 * OPG)
    wallet.deposit(2 * OPG)
    thaw = c.escrow.functions.thaw_period().call()
    key = Account.create()
    expiry = wallet.chain_now() + thaw + 6
    record = {"payer": account.address, "address": key.address, "key": "0x" + bytes(key.key).hex(),
              "expiry": expiry, "allowance": str(OPG), "chainId": 31337, "escrow": c.escrow.address,
              "createdAt": int(time.time())}
    wallet.state.save_session(31337, c.escrow.address, account.address, record)
    wallet._send(c.escrow.functions.authorize_signer(key.address, expiry, OPG))
    while wallet.chain_now() < expiry - thaw + 2:  # now it expires in less than the thaw period
        time.sleep(0.5)
    node = devnet.node_url
    spent = c.escrow.functions.spent(account.address, Web3.to_checksum_address(
        Account.from_key(anvil_key(1)).address)).call()

    code, _, err = cli("chat", "hi", "--dev-account", "7")
    assert code == 1
    assert "expires in" in err and "sooner than the thaw period" in err and "opg session" in err

    # a client that pays with it anyway is refused by the node (the relayer's /verify) before the model runs
    payer = Payer.from_session(record, wallet.deployment, state=tmp_path / "raw", relayer_url=devnet.relayer_url,
                               rpc_url=devnet.rpc_url)
    with payment_http_client(payer, base_url=node, timeout=60) as http:
        model = http.get("/v1/models").json()["data"][0]["id"]
        res = http.post("/v1/chat/completions", json={"model": model, "max_tokens": 4,
                                                      "messages": [{"role": "user", "content": "hi"}]})
    assert res.status_code == 402, res.text
    assert "session_key_expiring" in res.text or "expires in" in res.text
    assert c.escrow.functions.spent(account.address, Account.from_key(anvil_key(1)).address).call() == spent


def test_expired_session_key_never_falls_back_to_the_main_key(devnet, cli, tmp_path):
    c = chain(devnet)
    account = Account.from_key(anvil_key(7))
    state = tmp_path / "opg"
    key = Account.create()
    # a stored key the chain does not know (expired, or revoked elsewhere)
    record = {"payer": account.address, "address": key.address, "key": "0x" + bytes(key.key).hex(),
              "expiry": int(time.time()) - 10, "allowance": str(OPG), "chainId": 31337, "escrow": c.escrow.address,
              "createdAt": int(time.time()) - 100}
    from offchain.client.state import ClientState

    ClientState(state).save_session(31337, c.escrow.address, account.address, record)
    code, _, err = cli("chat", "hi", "--dev-account", "7")
    assert code == 1 and "not in force" in err and "--no-session" in err


def test_gasless_deposit_retried_after_a_frozen_relayer_pays_once(devnet, cli, tmp_path):
    """The relayer frozen (SIGSTOP) while a gasless deposit waits: the client times out and says it may still
    complete; the relayer resumes (SIGCONT) and the deposit lands; the retry re-sends the same signed authorisation
    and the payer pays once."""
    c = chain(devnet)
    payer = Account.create()  # no ETH: gasless
    fund(devnet, payer.address, 5 * OPG)
    keystore, password = tmp_path / "payer.json", tmp_path / "password"
    password.write_text("pw")
    keystore.write_text(json.dumps(Account.encrypt(payer.key, "pw")))
    state = tmp_path / "opg"  # the cli fixture's state directory
    wallet = OpgClient(payer, devnet.rpc_url, devnet.deployment, relayer_url=devnet.relayer_url, state=state,
                       timeout=1)
    pid = devnet.relayer_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(WalletError) as refused:
            wallet.deposit_gasless(2 * OPG)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert "may still complete" in str(refused.value) and "re-sends the same authorisation" in str(refused.value)
    deadline = time.monotonic() + 60
    while c.escrow.functions.balance_of(payer.address).call() == 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert c.escrow.functions.balance_of(payer.address).call() == 2 * OPG  # it landed after all

    code, out, err = cli("deposit", "2", "--gasless", "--keystore", str(keystore), "--password-file", str(password))
    assert code == 0, err
    assert "re-sent" in out
    assert c.escrow.functions.balance_of(payer.address).call() == 2 * OPG  # paid once
    assert c.opg.functions.balanceOf(payer.address).call() == 3 * OPG

    # and a deposit after that is a new one
    code, out, err = cli("deposit", "1", "--gasless", "--keystore", str(keystore), "--password-file", str(password))
    assert code == 0, err
    assert c.escrow.functions.balance_of(payer.address).call() == 3 * OPG
