"""The payer side end to end against a real node process (``opg node run``, builtin model), the real relayer and a
private anvil: ``opg chat`` (one prompt with --json, and the interactive session), the openai package (sync and
async, with and without streaming) on the paying httpx clients, stock x402 clients (exact, and opg-credit with
OpgCreditClient registered), and an over-charging node (a tampering proxy in front of the real node re-signs
inflated receipts with the node's key) caught by the client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import ape
import httpx
import pytest
from client_kit import TamperProxy, cli, start_node, write_keystore
from eth_account import Account

from offchain.client import Payer, async_payment_http_client, payment_http_client
from offchain.deployments import PROJECT_ROOT
from offchain.devkit.devnet import OPG, wait_until
from offchain.schemes.credit.client import OpgCreditClient

PROMPT = "What does the relayer settle?"
PASSWORD = "payer-pw"


@ape.fixture(scope="module", chain_isolation=False)
def node_actor(devnet):
    return devnet.new_node()


@ape.fixture(scope="module", chain_isolation=False)
def node(devnet, relayer, node_actor, tmp_path_factory):
    proc = start_node(devnet, node_actor, relayer.url, tmp_path_factory.mktemp("node"), "--max-tokens", "24")
    yield proc
    proc.stop()


@pytest.fixture()
def payer_actor(devnet):
    return devnet.new_payer(deposit=50 * OPG)


@pytest.fixture()
def keyed(devnet, relayer, node, payer_actor, tmp_path):
    """CLI arguments and environment of a payer with a keystore."""
    keystore = write_keystore(tmp_path / "payer.json", payer_actor.key, PASSWORD)
    args = ["--rpc-url", devnet.url, "--deployment", str(devnet.deployment_file), "--relayer-url", relayer.url,
            "--node-url", node.url, "--state-dir", str(tmp_path / "state")]
    return args, ["--keystore", str(keystore)], {"OPG_CLIENT_PASSWORD": PASSWORD}


@pytest.fixture()
def payer(devnet, relayer, payer_actor, tmp_path) -> Payer:
    return Payer.from_key(payer_actor.key, devnet.deployment_file, relayer_url=relayer.url, rpc_url=devnet.url,
                          state=tmp_path / "state")


def messages(text: str = PROMPT) -> list[dict]:
    return [{"role": "user", "content": text}]


# opg chat ---------------------------------------------------------------------------------------------------------
def test_opg_chat_json_reports_cost_credits_left_and_the_settlement(keyed, payer_actor, tmp_path):
    args, key, env = keyed
    proc = subprocess.run([sys.executable, "-m", "offchain.cli", "chat", PROMPT, "--json", "--wait-settled", "30",
                           *args, *key], capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=180,
                          env={**os.environ, **env})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] is True and out["answer"]
    assert 0 < int(out["cost"]) <= int(out["quote"])
    assert 0 < int(out["creditsLeft"]) < 50 * OPG
    assert out["status"] == "settled" and isinstance(out["batchId"], int) and out["tx"].startswith("0x")
    assert out["payer"] == out["signer"] == payer_actor.address
    record = json.loads((tmp_path / "state" / "requests" / f"{out['receiptId']}.json").read_text())
    assert record["answer"] == out["answer"] and record["checks"]["inputHash"] is True


def test_opg_chat_signs_with_the_session_key_and_never_loads_the_main_key(keyed, payer_actor, devnet):
    args, key, env = keyed
    code, out, err = cli("session", "--allowance", "5", "--json", *args, *key, env=env)
    assert code == 0, err
    session_key = json.loads(out)["key"]
    # no key flags, no password: only the stored session key can sign
    code, out, err = cli("chat", PROMPT, "--json", "--payer", payer_actor.address, *args)
    assert code == 0, err
    answer = json.loads(out)
    assert answer["ok"] and answer["signer"] == session_key and answer["payer"] == payer_actor.address


def test_interactive_chat_streams_answers_with_one_row_each(keyed, relayer):
    args, key, env = keyed
    proc = subprocess.Popen([sys.executable, "-m", "offchain.cli", "chat", *args, *key], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT_ROOT,
                            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"})
    try:
        proc.stdin.write("Hello there\n")
        proc.stdin.flush()
        lines = []
        while not any("this answer cost" in line for line in lines):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line)
        state = args[args.index("--state-dir") + 1]
        [first] = [p.stem for p in (Path(state) / "requests").glob("0x*.json")]
        relayer.wait_receipts([first], timeout=30)
        out, err = proc.communicate("Tell me more\n/model\n/quit\n", timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    text = "".join(lines) + out
    rows = [line for line in text.splitlines() if "this answer cost" in line]
    assert len(rows) == 2
    assert "pending" in rows[0] or "settled" in rows[0]
    assert "previous: settled in batch" in rows[1]
    assert "* builtin" in text  # /model lists the node's models
    assert "\x1b[" not in text  # no colour when stdout is not a terminal


# openai package ---------------------------------------------------------------------------------------------------
def test_openai_sync_client_pays_without_streaming(node, payer):
    import openai

    ai = openai.OpenAI(base_url=node.url + "/v1", api_key="unused", http_client=payment_http_client(payer))
    reply = ai.chat.completions.create(model="builtin", messages=messages(), max_tokens=12)
    payment = reply.model_extra["x_opg_payment"]
    assert reply.choices[0].message.content
    record = payer.state.load_request(payment["receiptId"])
    assert record["ok"] and record["answer"] == reply.choices[0].message.content


def test_openai_sync_client_pays_a_stream(node, payer):
    import openai

    ai = openai.OpenAI(base_url=node.url + "/v1", api_key="unused", http_client=payment_http_client(payer))
    pieces, payment = [], None
    for chunk in ai.chat.completions.create(model="builtin", messages=messages(), max_tokens=12, stream=True,
                                            stream_options={"include_usage": True}):
        pieces += [c.delta.content or "" for c in chunk.choices]
        payment = (chunk.model_extra or {}).get("x_opg_payment") or payment
    assert payment is not None and "".join(pieces)
    record = payer.state.load_request(payment["receiptId"])
    assert record["ok"] and record["answer"] == "".join(pieces) and record["checks"]["outputHash"] is True


def test_openai_async_client_pays_without_streaming(node, payer):
    import openai

    async def go():
        ai = openai.AsyncOpenAI(base_url=node.url + "/v1", api_key="unused",
                                http_client=async_payment_http_client(payer))
        return await ai.chat.completions.create(model="builtin", messages=messages(), max_tokens=12)

    reply = asyncio.run(go())
    assert payer.state.load_request(reply.model_extra["x_opg_payment"]["receiptId"])["ok"]


def test_openai_async_client_pays_a_stream(node, payer):
    import openai

    async def go():
        ai = openai.AsyncOpenAI(base_url=node.url + "/v1", api_key="unused",
                                http_client=async_payment_http_client(payer))
        pieces, payment = [], None
        stream = await ai.chat.completions.create(model="builtin", messages=messages(), max_tokens=12, stream=True)
        async for chunk in stream:
            pieces += [c.delta.content or "" for c in chunk.choices]
            payment = (chunk.model_extra or {}).get("x_opg_payment") or payment
        return "".join(pieces), payment

    text, payment = asyncio.run(go())
    record = payer.state.load_request(payment["receiptId"])
    assert record["ok"] and record["answer"] == text


def test_concurrent_requests_on_one_channel_all_pay_and_check_out(node, payer, node_actor):
    import openai

    async def go():
        ai = openai.AsyncOpenAI(base_url=node.url + "/v1", api_key="unused",
                                http_client=async_payment_http_client(payer), max_retries=0)
        return await asyncio.gather(*[ai.chat.completions.create(model="builtin", messages=messages(f"{PROMPT} {i}"),
                                                                 max_tokens=12) for i in range(6)])

    replies = asyncio.run(go())
    payments = [r.model_extra["x_opg_payment"] for r in replies]
    records = [payer.state.load_request(p["receiptId"]) for p in payments]
    assert all(r["ok"] for r in records), [r["problem"] for r in records]
    st = payer.channel_state(node_actor.address)
    assert st.charged == max(int(p["cumulative"]) for p in payments) == sum(int(p["cost"]) for p in payments)
    assert st.inflight == {} and st.blocked is None


def test_paying_client_pays_exact_from_the_wallet_when_asked_to(node, devnet, relayer, tmp_path):
    actor = devnet.new_payer(deposit=0, extra_opg=5 * OPG)
    payer = Payer.from_key(actor.key, devnet.deployment_file, relayer_url=relayer.url, rpc_url=devnet.url,
                           state=tmp_path / "exact")
    with payment_http_client(payer, exact=True, schemes=("exact",), base_url=node.url) as http:
        res = http.post("/v1/chat/completions", json={"model": "builtin", "messages": messages(), "max_tokens": 8})
    assert res.status_code == 200, res.text
    outcome = res.extensions["opg_payment"].outcome
    assert outcome.ok and outcome.scheme == "exact" and outcome.transaction.startswith("0x")
    assert devnet.opg.functions.balanceOf(actor.address).call() == 5 * OPG - outcome.cost


# stock x402 clients -----------------------------------------------------------------------------------------------
def test_stock_x402_client_pays_exact_once_opg_is_allow_listed(node, devnet):
    from x402 import x402Client
    from x402.http.clients import x402HttpxClient
    from x402.mechanisms.evm.exact import ExactEvmScheme

    actor = devnet.new_payer(deposit=0, extra_opg=5 * OPG)
    client = x402Client()
    client.register(devnet.network, ExactEvmScheme(Account.from_key(actor.key)))
    client.set_spend_controls({"allowed_assets": [{"network": devnet.network, "asset": devnet.opg.address}]})

    async def go():
        async with x402HttpxClient(client, base_url=node.url, timeout=60) as http:
            return await http.post("/v1/chat/completions", json={"model": "builtin", "messages": messages(),
                                                                  "max_tokens": 8})

    res = asyncio.run(go())
    assert res.status_code == 200, res.text
    payment = res.json()["x_opg_payment"]
    assert payment["scheme"] == "exact" and payment["transaction"].startswith("0x")
    assert devnet.opg.functions.balanceOf(actor.address).call() == 5 * OPG - int(payment["cost"])


def test_stock_x402_client_pays_opg_credit_with_opg_credit_client(node, payer, devnet):
    from x402 import x402Client
    from x402.http.clients import x402HttpxClient

    client = x402Client()
    scheme = OpgCreditClient(payer)
    client.register(devnet.network, scheme)
    client.set_spend_controls({"allowed_assets": [{"network": devnet.network, "asset": devnet.opg.address}]})

    async def go():
        async with x402HttpxClient(client, base_url=node.url, timeout=60) as http:
            return [await http.post("/v1/chat/completions", json={"model": "builtin", "messages": messages(),
                                                                   "max_tokens": 8}) for _ in range(2)]

    answers = asyncio.run(go())
    assert [r.status_code for r in answers] == [200, 200], answers[-1].text
    assert all(r.json()["x_opg_payment"]["scheme"] == "opg-credit" for r in answers)
    assert scheme.check(answers[-1].headers["PAYMENT-RESPONSE"]).ok


# an over-charging node --------------------------------------------------------------------------------------------
def test_an_over_charging_node_is_caught_and_not_paid_again(devnet, node, node_actor, keyed, tmp_path):
    args, key, env = keyed
    proxy = TamperProxy(node.url, node_actor, devnet, extra=OPG)
    try:
        args = [a if a != node.url else proxy.url for a in args]
        code, out, err = cli("chat", PROMPT, "--json", *args, *key, env=env)
        assert code == 1
        answer = json.loads(out)
        assert answer["ok"] is False and "above the quote" in answer["problem"]
        code, out, err = cli("chat", PROMPT, *args, *key, env=env)
        assert code == 1 and "refusing to pay node" in err and node_actor.address in err
        code, out, err = cli("balance", "--json", *args, *key, env=env)
        [channel] = json.loads(out)["channels"]
        assert channel["blocked"] and "above the quote" in channel["blocked"]
    finally:
        proxy.stop()


def test_settlement_status_is_looked_up_from_the_relayer(node, payer, relayer):
    with payment_http_client(payer, base_url=node.url) as http:
        res = http.post("/v1/chat/completions", json={"model": "builtin", "messages": messages(), "max_tokens": 8})
    outcome = res.extensions["opg_payment"].outcome
    assert outcome.ok and outcome.status == "pending"
    view = wait_until(lambda: (v := payer.settlement(outcome.receipt_id)) and v["status"] == "settled" and v,
                      timeout=30)
    assert view["batchId"] and view["tx"]
    assert httpx.get(relayer.url + f"/receipts/{outcome.receipt_id}").json()["status"] == "settled"


class Exchanges(httpx.HTTPTransport):
    """The real transport, recording each exchange's status and whether it carried a payment."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, bool, str | None]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.seen.append((response.status_code, "payment-signature" in request.headers,
                          response.headers.get("cache-control")))
        return response


def test_a_request_the_client_was_quoted_before_is_paid_with_its_first_attempt(node, payer, devnet, payer_actor,
                                                                               relayer, node_actor, tmp_path):
    from offchain.client import PayingTransport

    body = {"model": "builtin", "messages": messages("quote me once"), "max_tokens": 8}
    wire = Exchanges()
    with httpx.Client(transport=PayingTransport(payer, wire), base_url=node.url, timeout=60) as http:
        first = http.post("/v1/chat/completions", json=body)
        assert first.status_code == 200 and first.extensions["opg_payment"].wait(5).ok
        assert wire.seen == [(402, False, "no-store"), (200, True, None)]  # the quote, then the payment
        second = http.post("/v1/chat/completions", json=body)
        assert second.status_code == 200 and second.extensions["opg_payment"].wait(5).ok
        assert wire.seen[2:] == [(200, True, None)]  # the same request again: paid with its first attempt
        # another device of this payer moves the channel on: the remembered quote's voucher is short, the node's 402
        # is a cache miss (no-store), and the fresh quote is paid
        twin = Payer.from_key(payer_actor.key, devnet.deployment_file, relayer_url=relayer.url,
                              state=tmp_path / "twin")
        with payment_http_client(twin, base_url=node.url, timeout=60) as other:  # once the relayer saw the receipts
            wait_until(lambda: other.post("/v1/chat/completions", json=body).status_code == 200, timeout=30)
        third = http.post("/v1/chat/completions", json=body)
        assert third.status_code == 200, third.text
        assert wire.seen[3:] == [(402, True, "no-store"), (200, True, None)]
        outcome = third.extensions["opg_payment"].wait(5)
        assert outcome.ok and outcome.cumulative == int(payer.channel_state(node_actor.address).charged)
        # a different request is not paid blindly: its first attempt asks for the quote
        http.post("/v1/chat/completions", json={**body, "max_tokens": 9})
        assert wire.seen[5] == (402, False, "no-store")
