"""The paying side against a real relayer and chain and a stub node (a real HTTP server speaking the node's x402
shapes, see client_kit.StubNode): paying transports (sync, async, streaming), concurrency on one channel, channel
recovery from the relayer, receipt checks and the over-charge block, session keys, stored request records, and the
stock x402 clients with OpgCreditClient."""

from __future__ import annotations

import asyncio
import json
import threading

import ape
import httpx
import pytest
from client_kit import StubNode

from offchain.client import (
    ChannelConflict,
    ClientState,
    OpgClient,
    Payer,
    async_payment_http_client,
    payment_http_client,
)
from offchain.devkit.devnet import OPG, wait_until
from offchain.inference import input_hash, output_hash
from offchain.schemes.credit.client import OpgCreditClient

CHAT = "/v1/chat/completions"


def ask(text: str = "hello there", **kw) -> dict:
    return {"model": StubNode.MODEL, "messages": [{"role": "user", "content": text}], **kw}


@ape.fixture(scope="module", chain_isolation=False)
def node(devnet):
    return devnet.new_node()


@ape.fixture(scope="module", chain_isolation=False)
def stub(devnet, node, relayer):
    s = StubNode(devnet, node, relayer.url).start()
    yield s
    s.stop()


@pytest.fixture()
def make_payer(devnet, relayer, tmp_path):
    def make(deposit: int = 100 * OPG, state=None, **kw) -> tuple[Payer, object]:
        actor = devnet.new_payer(deposit=deposit)
        payer = Payer.from_key(actor.key, devnet.deployment_file, relayer_url=relayer.url, rpc_url=devnet.url,
                               state=state or tmp_path / "state", **kw)
        return payer, actor
    return make


def outcome_of(res: httpx.Response):
    ticket = res.extensions["opg_payment"]
    return ticket.wait(5)


def test_paying_client_answers_a_402_with_a_voucher(stub, make_payer, relayer):
    payer, _ = make_payer()
    with payment_http_client(payer, base_url=stub.url) as http:
        res = http.post(CHAT, json=ask())
    assert res.status_code == 200, res.text
    assert res.json()["choices"][0]["message"]["content"] == "the quick brown fox"
    o = outcome_of(res)
    assert o.ok and o.problem is None
    assert o.receipt_id == stub.receipts[-1]["id"]
    assert relayer.receipt_status(o.receipt_id)["status"] in ("pending", "settled")
    seen = stub.requests_seen[-2]["headers"]
    assert seen["X-OPG-Payer"] == payer.address  # the first attempt told the node who pays


def test_stream_receipt_is_checked_from_the_last_chunk(stub, make_payer):
    payer, _ = make_payer()
    text = []
    with payment_http_client(payer, base_url=stub.url) as http, \
            http.stream("POST", CHAT, json=ask(stream=True)) as res:
        assert res.status_code == 200
        for line in res.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:]).get("choices", []):
                    text.append(choice["delta"].get("content") or "")
        o = outcome_of(res)
    assert "".join(text) == "the quick brown fox"
    assert o.ok and o.cost == stub.pricing.cost(2, 4)
    record = payer.state.load_request(o.receipt_id)
    assert record["answer"] == "the quick brown fox" and record["checks"]["outputHash"] is True


def test_async_paying_client_pays_too(stub, make_payer):
    payer, _ = make_payer()

    async def go():
        async with async_payment_http_client(payer, base_url=stub.url) as http:
            return await http.post(CHAT, json=ask())

    res = asyncio.run(go())
    assert res.status_code == 200
    assert outcome_of(res).ok


def test_concurrent_requests_on_one_channel_all_pay(stub, make_payer):
    payer, actor = make_payer()
    stub.delay = 0.3
    results = []
    try:
        with payment_http_client(payer, base_url=stub.url) as http:
            def one():
                results.append(http.post(CHAT, json=ask()))
            threads = [threading.Thread(target=one) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        stub.delay = 0.0
    assert [r.status_code for r in results] == [200] * 4
    assert all(outcome_of(r).ok for r in results), [outcome_of(r).problem for r in results]
    st = payer.channel_state(stub.node.address)
    assert st.charged == stub.channel(actor.address)["cumulative"] == 4 * stub.pricing.cost(2, 4)
    assert st.inflight == {}


def test_lost_channel_state_is_recovered_from_the_relayer(stub, make_payer, relayer, devnet, tmp_path):
    payer, actor = make_payer()
    with payment_http_client(payer, base_url=stub.url) as http:
        assert http.post(CHAT, json=ask()).status_code == 200
    first = stub.channel(actor.address)["cumulative"]
    wait_until(lambda: int(relayer.get(f"/channels/{actor.address}/{stub.node.address}").json()["charged"]) == first)
    fresh = Payer.from_key(actor.key, devnet.deployment_file, relayer_url=relayer.url, rpc_url=devnet.url,
                           state=tmp_path / "elsewhere")
    with payment_http_client(fresh, base_url=stub.url) as http:
        res = http.post(CHAT, json=ask())
    assert res.status_code == 200 and outcome_of(res).ok
    st = fresh.channel_state(stub.node.address)
    assert st.recovered_from == "relayer" and st.charged == 2 * first


def test_a_node_claim_beyond_what_the_client_knows_is_refused(stub, make_payer):
    payer, actor = make_payer()
    with payment_http_client(payer, base_url=stub.url) as http:
        assert http.post(CHAT, json=ask()).status_code == 200
        stub.channel(actor.address)["cumulative"] += 5 * OPG  # the node pretends to have charged much more
        res = http.post(CHAT, json=ask())
    assert res.status_code == 402
    assert res.headers["x-opg-client-refusal"] == "channel_conflict"
    assert "refusing to sign a higher cap on the node's word" in res.json()["error"]["message"]


@pytest.mark.parametrize("mode, words", [
    ("inflate", "above the quote"),
    ("pad", "this client was charged"),
    ("over_voucher", "exceeds the highest voucher cap"),
])
def test_an_over_charging_node_is_detected_and_refused_from_then_on(devnet, node, make_payer, mode, words):
    cheat = StubNode(devnet, node, None, mode=mode).start()
    try:
        payer, _ = make_payer()
        with payment_http_client(payer, base_url=cheat.url) as http:
            res = http.post(CHAT, json=ask())
            o = outcome_of(res)
            assert res.status_code == 200 and not o.ok
            assert words in o.problem
            again = http.post(CHAT, json=ask())
        assert again.status_code == 402 and again.headers["x-opg-client-refusal"] == "node_overcharged"
        assert "refusing to pay node" in again.json()["error"]["message"]
        # persisted: another Payer on the same state directory refuses too
        twin = Payer(payer.address, payer._signer_key, devnet.deployment_file, state=payer.state.root)
        st = twin.channel_state(node.address)
        assert st.blocked and st.blocked_receipt == o.receipt_id
        assert payer.state.load_request(o.receipt_id)["problem"] == o.problem  # evidence kept for a dispute
    finally:
        cheat.stop()


def test_answered_requests_are_stored_for_disputes(stub, make_payer):
    payer, _ = make_payer()
    body = ask("what is two plus two", max_tokens=8, temperature=0.5)
    with payment_http_client(payer, base_url=stub.url) as http:
        o = outcome_of(http.post(CHAT, json=body))
    record = ClientState(payer.state.root).load_request(o.receipt_id)
    assert record["request"] == body and record["answer"] == "the quick brown fox"
    assert record["receipt"]["signature"] and record["receiptId"] == o.receipt_id
    assert input_hash(record["canonicalRequest"]) == record["receipt"]["inputHash"]
    assert output_hash(record["answer"]) == record["receipt"]["outputHash"]
    assert record["checks"]["inputHash"] is True and record["nodeUrl"] == stub.url


def test_a_session_key_signs_the_vouchers(stub, make_payer, devnet, relayer, tmp_path):
    _, actor = make_payer()
    from eth_account import Account

    wallet = OpgClient(Account.from_key(actor.key), devnet.url, devnet.deployment_file, relayer_url=relayer.url,
                       state=tmp_path / "state")
    wallet.authorize_session(expires_in=3600, allowance=10 * OPG)
    payer = wallet.payer()
    assert payer.is_session and payer.signer != actor.address and payer._owner_key is None
    with payment_http_client(payer, base_url=stub.url) as http:
        res = http.post(CHAT, json=ask())
    assert res.status_code == 200 and outcome_of(res).ok
    best = stub.channel(actor.address)["best"]
    assert best["payer"] == actor.address


def test_a_quote_above_the_limit_is_refused(stub, make_payer):
    payer, _ = make_payer(max_amount=10**12)
    with payment_http_client(payer, base_url=stub.url) as http:
        res = http.post(CHAT, json=ask())
    assert res.status_code == 402 and res.headers["x-opg-client-refusal"] == "quote_above_limit"


def test_openai_package_pays_through_the_client(stub, make_payer):
    import openai

    payer, _ = make_payer()
    ai = openai.OpenAI(base_url=stub.url + "/v1", api_key="unused", http_client=payment_http_client(payer))
    reply = ai.chat.completions.create(model=StubNode.MODEL, messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "the quick brown fox"
    assert reply.model_extra["x_opg_payment"]["receiptId"]


def test_stock_x402_httpx_client_pays_opg_credit_with_opg_credit_client(stub, make_payer, devnet):
    from x402 import x402Client
    from x402.http.clients import x402HttpxClient

    payer, actor = make_payer()
    client = x402Client()
    scheme = OpgCreditClient(payer)
    client.register(devnet.network, scheme)
    client.set_spend_controls({"allowed_assets": [{"network": devnet.network, "asset": devnet.opg.address}]})

    async def go():
        async with x402HttpxClient(client, base_url=stub.url, timeout=30) as http:
            return [await http.post(CHAT, json=ask()) for _ in range(3)]

    answers = asyncio.run(go())
    assert [r.status_code for r in answers] == [200, 200, 200]
    # the 2nd and 3rd were under-capped at first (no X-OPG-Payer: the quote says charged 0), corrected once each
    assert stub.channel(actor.address)["cumulative"] == 3 * stub.pricing.cost(2, 4)
    outcome = scheme.check(answers[-1].headers["PAYMENT-RESPONSE"])
    assert outcome.ok


def test_stock_x402_requests_session_pays_opg_credit(stub, make_payer, devnet):
    import requests
    from x402 import x402ClientSync
    from x402.http.clients import wrapRequestsWithPayment

    payer, actor = make_payer()
    client = x402ClientSync()
    client.register(devnet.network, OpgCreditClient(payer))
    client.set_spend_controls({"allowed_assets": [{"network": devnet.network, "asset": devnet.opg.address}]})
    session = wrapRequestsWithPayment(requests.Session(), client)
    codes = [session.post(stub.url + CHAT, json=ask(), timeout=30).status_code for _ in range(2)]
    assert codes == [200, 200]
    assert stub.channel(actor.address)["cumulative"] == 2 * stub.pricing.cost(2, 4)


def test_opg_credit_client_refuses_a_node_claim_it_cannot_account_for(stub, make_payer):
    payer, _ = make_payer()
    req = stub.requirement(cap=10**15, charged=50 * OPG, prompt=1, max_tokens=1)
    with pytest.raises(ChannelConflict, match="on the node's word"):
        OpgCreditClient(payer).create_payment_payload(req)
