"""The inference node end to end: a real anvil, the relayer and the node as real processes, real HTTP (httpx), real
signatures (eth-account). The node serves the builtin stand-in model three ways: ``builtin`` (instant), ``slow``
(the same model, 30 ms per token, priced by a pricing file) and ``broken`` (a proxy to a port nobody listens on: every
generation fails)."""

from __future__ import annotations

import asyncio
import base64
import time
from concurrent.futures import ThreadPoolExecutor

import ape
import httpx
from eth_account import Account
from node_kit import (
    PRICE_BASE,
    PRICE_OUTPUT,
    PRICE_PROMPT,
    NodeProc,
    Payer,
    ask_payload,
    b64json,
    chat_body,
    cost,
    live,
    payment_of,
    receipt_time,
    requirement,
    sse_events,
    unb64,
    voucher_header,
    wait_receipts_settled,
    wait_relayer_idle,
    wei,
    x402_exact_client,
)

from offchain.backends import BuiltinBackend
from offchain.devkit.devchain import transact
from offchain.devkit.devnet import OPG, Actor, new_key, wait_until
from offchain.inference import ChatMessage, GenParams, canonical_request, input_hash, output_hash
from offchain.messages import Domain, Receipt, recover_signer

SLOW_OUTPUT = "0.0002"  # the pricing file's output-token price of the "slow" model
BUILTIN = BuiltinBackend()


@ape.fixture(scope="module", chain_isolation=False)
def node_actor(devnet) -> Actor:
    return devnet.new_node()


@ape.fixture(scope="module", chain_isolation=False)
def node(devnet, relayer, workdir, node_actor):
    pricing = workdir / "pricing.toml"
    pricing.write_text(f'[models.slow]\noutput-token = "{SLOW_OUTPUT}"\n')
    proc = NodeProc(devnet, node_actor, relayer.url, workdir,
                    "--pricing", str(pricing), "--max-tokens", "32", "--max-tokens-limit", "512",
                    backend="builtin,builtin?name=slow&token_delay=0.03,proxy:http://127.0.0.1:9/v1#broken").start()
    yield proc
    proc.stop()


@ape.fixture(scope="module", chain_isolation=False)
def payer(devnet, node) -> Payer:
    return Payer(devnet.new_payer(deposit=100 * OPG), node.url)


def natural_answer(prompt: str, max_tokens: int = 10_000):
    return BUILTIN.generate([ChatMessage(role="user", content=prompt)], GenParams(max_tokens=max_tokens))


# Models, health ---------------------------------------------------------------------------------------------------
def test_models_lists_each_model_with_its_pricing_and_model_id(node, node_actor):
    data = node.client.get("/v1/models").json()
    assert data["object"] == "list"
    models = {m["id"]: m for m in data["data"]}
    assert set(models) == {"builtin", "slow", "broken"}
    m = models["builtin"]
    assert m["object"] == "model" and m["owned_by"] == node_actor.address
    assert m["opg"]["modelId"] == BUILTIN.model_id and m["opg"]["deterministic"] is True
    assert m["opg"]["descriptor"] == BUILTIN.descriptor
    assert m["opg"]["pricing"] == {"base": str(wei(PRICE_BASE)), "perPromptToken": str(wei(PRICE_PROMPT)),
                                   "perOutputToken": str(wei(PRICE_OUTPUT))}
    assert models["slow"]["opg"]["pricing"]["perOutputToken"] == str(wei(SLOW_OUTPUT))  # from the pricing file
    assert models["broken"]["opg"]["deterministic"] is False


def test_health_reports_registration_relayer_and_outbox(node, node_actor, relayer):
    h = node.client.get("/healthz").json()
    assert h["ok"] is True and h["node"] == node_actor.address
    assert h["registered"] is True and h["payable"] is True and h["active"] is True
    assert h["endpoint"] == node.url
    assert h["relayer"] == relayer.url and h["relayerReachable"] is True
    assert h["outboxBacklog"] == 0 and h["outboxAlive"] is True
    paths = node.client.get("/openapi.json").json()["paths"]
    assert {"/v1/chat/completions", "/v1/models", "/v1/payloads/challenge", "/v1/payloads/{receipt_id}", "/healthz",
            "/metrics"} <= set(paths)


# The 402 challenge -------------------------------------------------------------------------------------------------
def test_challenge_offers_both_schemes_and_the_header_is_the_body(node, devnet, node_actor):
    body = chat_body(max_tokens=20)
    res = node.client.post("/v1/chat/completions", json=body)
    assert res.status_code == 402
    challenge = res.json()
    assert unb64(res.headers["PAYMENT-REQUIRED"]) == challenge
    assert challenge["x402Version"] == 2 and challenge["error"] == "payment_required"
    assert challenge["resource"]["url"].endswith("/v1/chat/completions")
    assert challenge["resource"]["mimeType"] == "application/json"
    prompt_tokens = BUILTIN.count_prompt_tokens([ChatMessage(role="user", content=body["messages"][0]["content"])])
    cap = cost(prompt_tokens, 20)
    credit, exact = requirement(challenge, "opg-credit"), requirement(challenge, "exact")
    assert [a["scheme"] for a in challenge["accepts"]] == ["opg-credit", "exact"]
    for req in (credit, exact):
        assert req["network"] == devnet.network and req["asset"] == devnet.opg.address
        assert req["amount"] == str(cap) and req["payTo"] == node_actor.address and req["maxTimeoutSeconds"] == 300
    assert credit["extra"] == {
        "escrow": devnet.escrow.address, "staking": devnet.staking.address, "charged": "0",
        "maxCumulative": str(cap), "priceCap": str(cap), "model": "builtin",
        "pricing": {"base": str(wei(PRICE_BASE)), "perPromptToken": str(wei(PRICE_PROMPT)),
                    "perOutputToken": str(wei(PRICE_OUTPUT))},
        "requestTokens": {"prompt": prompt_tokens, "maxTokens": 20}}
    assert exact["extra"] == {"name": "OpenGradient", "version": "1"}


def test_challenge_of_a_stream_and_default_max_tokens(node):
    res = node.client.post("/v1/chat/completions", json={"model": "builtin", "stream": True,
                                                          "messages": [{"role": "user", "content": "hi"}]})
    assert res.status_code == 402
    assert res.json()["resource"]["mimeType"] == "text/event-stream"
    assert requirement(res.json(), "opg-credit")["extra"]["requestTokens"]["maxTokens"] == 32  # --max-tokens


def test_unknown_model_and_too_many_tokens_are_refused_before_payment(node):
    res = node.client.post("/v1/chat/completions", json=chat_body(model="gpt-5"))
    assert res.status_code == 404 and res.json()["error"] == "model_not_found"
    res = node.client.post("/v1/chat/completions", json=chat_body(max_tokens=513))
    assert res.status_code == 400 and res.json()["field"] == "max_tokens"
    res = node.client.post("/v1/chat/completions", json={"model": "builtin", "messages": []})
    assert res.status_code == 400 and res.json()["field"] == "messages"


# Paid with opg-credit ----------------------------------------------------------------------------------------------
def check_receipt(devnet, node_actor, payment: dict, prompt: str, max_tokens: int, text: str) -> Receipt:
    r = payment["receipt"]
    receipt = Receipt(request_id=r["requestId"], payer=r["payer"], node=r["node"], model_id=r["modelId"],
                      input_hash=r["inputHash"], output_hash=r["outputHash"], amount=int(r["amount"]),
                      cumulative=int(r["cumulative"]), timestamp=r["timestamp"])
    assert recover_signer(receipt.digest(devnet.staking_domain), r["signature"]) == node_actor.address
    assert payment["receiptId"] == "0x" + receipt.fast_digest(devnet.staking_domain).hex()
    request = canonical_request("builtin", [ChatMessage(role="user", content=prompt)],
                                GenParams(max_tokens=max_tokens))
    assert receipt.input_hash == input_hash(request) and receipt.output_hash == output_hash(text)
    assert receipt.model_id == BUILTIN.model_id
    assert abs(receipt.timestamp - receipt_time(devnet)) < 30
    return receipt


def test_paid_credit_chat_answers_with_a_signed_receipt_and_the_credit_row(node, devnet, relayer, payer,
                                                                            node_actor):
    prompt = "Tell me about vouchers and receipts"
    body = chat_body(prompt, max_tokens=24)
    before = payer.charged(body)
    res = payer.pay(body)
    assert res.status_code == 200, res.text
    data = res.json()
    payment = payment_of(res)
    assert data["x_opg_payment"] == payment
    assert data["object"] == "chat.completion" and data["model"] == "builtin"
    expected = natural_answer(prompt, 24)
    choice = data["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": expected.text, "refusal": None}
    assert choice["finish_reason"] == expected.finish_reason
    assert data["usage"] == {"prompt_tokens": expected.prompt_tokens, "completion_tokens": expected.output_tokens,
                             "total_tokens": expected.prompt_tokens + expected.output_tokens}
    amount = cost(expected.prompt_tokens, expected.output_tokens)
    assert payment["success"] is True and payment["scheme"] == "opg-credit" and payment["transaction"] == ""
    assert payment["network"] == devnet.network and payment["payer"] == payer.actor.address
    assert payment["cost"] == str(amount) and payment["cumulative"] == str(before + amount)
    assert payment["status"] == "pending"
    assert int(payment["creditsLeft"]) == 100 * OPG - (before + amount)
    receipt = check_receipt(devnet, node_actor, payment, prompt, 24, expected.text)
    assert receipt.amount == amount and receipt.cumulative == before + amount
    assert data["id"] == "chatcmpl-" + receipt.request_id[2:26]
    assert payer.charged(body) == before + amount
    [view] = wait_receipts_settled(relayer, [payment["receiptId"]])
    assert view["amount"] == str(amount) and view["requestId"] == receipt.request_id
    assert devnet.spent(payer.actor, node_actor) == before + amount


def test_paid_credit_stream_is_openai_chunks_ending_with_the_payment(node, devnet, payer, node_actor):
    prompt = "Stream me an answer about settlement"
    body = chat_body(prompt, max_tokens=40)
    before = payer.charged(body)
    res, events = payer.stream(body)
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/event-stream")
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "builtin" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    assert chunks[0]["choices"] == [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                                     "finish_reason": None}]
    expected = natural_answer(prompt, 40)
    pieces = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert "".join(pieces) == expected.text
    assert chunks[-2]["choices"] == [{"index": 0, "delta": {}, "logprobs": None,
                                      "finish_reason": expected.finish_reason}]
    last = chunks[-1]
    assert last["choices"] == []
    assert last["usage"] == {"prompt_tokens": expected.prompt_tokens, "completion_tokens": expected.output_tokens,
                             "total_tokens": expected.prompt_tokens + expected.output_tokens}
    payment = last["x_opg_payment"]
    amount = cost(expected.prompt_tokens, expected.output_tokens)
    assert payment["success"] is True and payment["cost"] == str(amount)
    assert payment["cumulative"] == str(before + amount)
    check_receipt(devnet, node_actor, payment, prompt, 40, expected.text)


def test_openai_package_parses_paid_answers_and_streams(node, payer):
    import openai

    client = openai.OpenAI(base_url=node.url + "/v1", api_key="unused", max_retries=0)
    prompt = "Answer through the openai package"
    body = chat_body(prompt, max_tokens=16)
    req = requirement(payer.challenge(body), "opg-credit")
    header = voucher_header(req, payer.actor, int(req["extra"]["maxCumulative"]))
    answer = client.chat.completions.create(model="builtin", messages=body["messages"], max_tokens=16,
                                            extra_headers={"PAYMENT-SIGNATURE": header})
    assert answer.choices[0].message.content == natural_answer(prompt, 16).text
    assert answer.model_extra["x_opg_payment"]["success"] is True

    req = requirement(payer.challenge({**body, "stream": True}), "opg-credit")
    header = voucher_header(req, payer.actor, int(req["extra"]["maxCumulative"]))
    stream = client.chat.completions.create(model="builtin", messages=body["messages"], max_tokens=16, stream=True,
                                            stream_options={"include_usage": True},
                                            extra_headers={"PAYMENT-SIGNATURE": header})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == natural_answer(prompt, 16).text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == natural_answer(prompt, 16).output_tokens
    assert chunks[-1].model_extra["x_opg_payment"]["success"] is True


def test_a_session_key_pays_for_its_payer(node, devnet, node_actor):
    payer = Payer(devnet.new_payer(deposit=10 * OPG), node.url)
    session = Account.create()
    expiry = devnet.chain_now() + 3600
    transact(devnet.w3, payer.actor.key, devnet.escrow.functions.authorize_signer(session.address, expiry, 5 * OPG))
    body = chat_body("Pay with my session key", max_tokens=8)
    res = payer.pay(body, key="0x" + bytes(session.key).hex())
    assert res.status_code == 200, res.text
    assert payment_of(res)["payer"] == payer.actor.address


# Refused payments --------------------------------------------------------------------------------------------------
def refused(res, error: str) -> dict:
    """A 402 with ``error``, its PAYMENT-REQUIRED header equal to the body, and a readable reason."""
    assert res.status_code == 402, res.text
    body = res.json()
    assert unb64(res.headers["PAYMENT-REQUIRED"]) == body
    assert body["error"] == error, body
    assert isinstance(body["reason"], str) and len(body["reason"]) > 10
    assert {a["scheme"] for a in body["accepts"]} == {"opg-credit", "exact"}
    return body


def post_with(node, body: dict, header: str):
    return node.client.post("/v1/chat/completions", json=body, headers={"PAYMENT-SIGNATURE": header})


def test_malformed_payment_headers_get_402_saying_what_is_wrong(node, payer):
    body = chat_body(max_tokens=8)
    req = requirement(payer.challenge(body), "opg-credit")
    good = unb64(voucher_header(req, payer.actor, int(req["extra"]["maxCumulative"])))
    refused(post_with(node, body, "not base64 at all!"), "invalid_payment")
    refused(post_with(node, body, base64.b64encode(b"{not json").decode()), "invalid_payment")
    refused(post_with(node, body, b64json({"x402Version": 2, "payload": {}})), "invalid_payment")
    refused(post_with(node, body, b64json({**good, "x402Version": 1})), "unsupported_x402_version")
    no_signature = {**good, "payload": {"voucher": good["payload"]["voucher"]}}
    assert "signature" in refused(post_with(node, body, b64json(no_signature)), "invalid_payment")["reason"]
    upto = {**good, "accepted": {**good["accepted"], "scheme": "upto"}}
    refused(post_with(node, body, b64json(upto)), "unsupported_scheme")
    bad_sig = {**good, "payload": {**good["payload"], "signature": "0x" + "11" * 65}}
    refused(post_with(node, body, b64json(bad_sig)), "invalid_signature")


def test_an_under_capped_voucher_gets_a_corrective_402_with_what_to_sign(node, payer):
    body = chat_body("Under-capped", max_tokens=8)
    req = requirement(payer.challenge(body), "opg-credit")
    right = int(req["extra"]["maxCumulative"])
    res = post_with(node, body, voucher_header(req, payer.actor, right - 1))
    challenge = refused(res, "cap_exceeded")
    fix = requirement(challenge, "opg-credit")
    assert fix["extra"]["maxCumulative"] == str(right) and str(right) in challenge["reason"]
    assert post_with(node, body, voucher_header(fix, payer.actor, right)).status_code == 200


def test_a_replayed_voucher_below_the_charge_is_stale(node, payer):
    body = chat_body("Replay me", max_tokens=8)
    req = requirement(payer.challenge(body), "opg-credit")
    first = voucher_header(req, payer.actor, int(req["extra"]["maxCumulative"]))
    assert post_with(node, body, first).status_code == 200
    assert payer.pay(body).status_code == 200
    challenge = refused(post_with(node, body, first), "stale_voucher")
    assert requirement(challenge, "opg-credit")["extra"]["charged"] == str(payer.charged(body))


def test_foreign_chain_and_foreign_escrow_payments_are_refused(node, payer, devnet):
    body = chat_body("Other chains", max_tokens=8)
    req = requirement(payer.challenge(body), "opg-credit")
    cap = int(req["extra"]["maxCumulative"])
    on_mainnet = {**req, "network": "eip155:1"}
    refused(post_with(node, body, voucher_header(req, payer.actor, cap, accepted=on_mainnet)), "network_mismatch")
    other_domain = Domain.escrow(1, devnet.escrow.address)
    refused(post_with(node, body, voucher_header(req, payer.actor, cap, domain=other_domain)), "invalid_signature")
    other_escrow = {**req, "extra": {**req["extra"], "escrow": "0x" + "12" * 20}}
    refused(post_with(node, body, voucher_header(req, payer.actor, cap, accepted=other_escrow)), "escrow_mismatch")
    other_asset = {**req, "asset": "0x" + "34" * 20}
    refused(post_with(node, body, voucher_header(req, payer.actor, cap, accepted=other_asset)), "asset_mismatch")


def test_payments_to_another_node_are_refused(node, payer, devnet):
    body = chat_body("Wrong node", max_tokens=8)
    req = requirement(payer.challenge(body), "opg-credit")
    cap = int(req["extra"]["maxCumulative"])
    other = devnet.new_node().address
    refused(post_with(node, body, voucher_header(req, payer.actor, cap, node=other)), "recipient_mismatch")
    pay_other = {**req, "payTo": other}
    refused(post_with(node, body, voucher_header(req, payer.actor, cap, accepted=pay_other)), "recipient_mismatch")


def test_a_payer_out_of_credits_gets_402_insufficient_balance(node, devnet):
    poor = Payer(devnet.new_payer(deposit=wei("0.001")), node.url)
    body = chat_body("I have almost nothing", max_tokens=30)
    challenge = refused(poor.pay(body), "insufficient_balance")
    assert "available" in challenge["reason"]
    assert poor.charged(body) == 0


# Failures and disconnects -------------------------------------------------------------------------------------------
def test_a_model_error_charges_nothing(node, payer):
    body = chat_body("The broken model", max_tokens=8, model="broken")
    before = payer.charged(body)
    res = payer.pay(body)
    assert res.status_code == 502 and res.json()["error"] == "model_error"
    assert "PAYMENT-RESPONSE" not in res.headers
    res, _events = payer.stream(body)
    assert res.status_code == 502 and res.json()["error"] == "model_error"
    assert payer.charged(body) == before


def long_prompt(min_tokens: int) -> tuple[str, int]:
    """A prompt the builtin model answers with at least ``min_tokens`` tokens (its natural length varies)."""
    for i in range(1000):
        prompt = f"Explain settlement in detail, take {i}"
        n = natural_answer(prompt).output_tokens
        if n >= min_tokens:
            return prompt, n
    raise AssertionError("no long prompt found")


def test_a_client_leaving_mid_stream_pays_only_for_what_was_delivered(node, payer):
    prompt, natural = long_prompt(36)
    body = chat_body(prompt, max_tokens=64, model="slow")
    before = payer.charged(body)
    req = requirement(payer.challenge({**body, "stream": True}), "opg-credit")
    header = voucher_header(req, payer.actor, int(req["extra"]["maxCumulative"]))
    read = 0
    with httpx.Client(base_url=node.url, timeout=30) as http:
        with http.stream("POST", "/v1/chat/completions", json={**body, "stream": True},
                         headers={"PAYMENT-SIGNATURE": header}) as res:
            assert res.status_code == 200
            for line in res.iter_lines():
                if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                    read += 1
                    if read == 3:
                        break  # leave: closing the stream closes the connection
    assert read == 3
    cap = int(req["extra"]["priceCap"])  # held while the request is in flight, then replaced by the charge

    def settled_charge():
        delta = payer.charged(body) - before
        return delta if 0 < delta < cap else None

    charged = wait_until(settled_charge, timeout=10, what="the charge of the stream cut short")
    prompt_tokens = int(req["extra"]["requestTokens"]["prompt"])
    billed, rest = divmod(charged - wei(PRICE_BASE) - wei(PRICE_PROMPT) * prompt_tokens, wei(SLOW_OUTPUT))
    assert rest == 0
    assert 3 <= billed <= 8 and billed < natural, (billed, natural)


def test_eight_parallel_requests_on_one_channel_are_each_charged_once(node, devnet, relayer, node_actor):
    payer = Payer(devnet.new_payer(deposit=50 * OPG), node.url)
    bodies = [chat_body(f"Parallel question number {i}", max_tokens=12, model="slow") for i in range(8)]
    challenge = requirement(payer.challenge(bodies[0]), "opg-credit")
    cap = int(challenge["extra"]["priceCap"])
    headers = [voucher_header(challenge, payer.actor, 8 * cap + 8 * 1000) for _ in bodies]  # room for 8 caps

    def one(i: int):
        return post_with(node, bodies[i], headers[i])

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    payments = sorted((payment_of(a) for a in answers), key=lambda p: int(p["cumulative"]))
    total = 0
    for p, a in zip(payments, sorted(answers, key=lambda a: int(payment_of(a)["cumulative"])), strict=True):
        usage = a.json()["usage"]
        amount = cost(usage["prompt_tokens"], usage["completion_tokens"], output=SLOW_OUTPUT)
        assert int(p["cost"]) == amount
        total += amount
        assert int(p["cumulative"]) == total
    assert len({p["receiptId"] for p in payments}) == 8
    assert len({p["receipt"]["requestId"] for p in payments}) == 8
    wait_receipts_settled(relayer, [p["receiptId"] for p in payments])
    assert devnet.spent(payer.actor, node_actor) == total
    assert devnet.balance(payer.actor) == 50 * OPG - total


# exact ------------------------------------------------------------------------------------------------------------
def test_exact_is_paid_by_the_stock_x402_client(node, devnet, node_actor):
    from x402.http.clients import x402HttpxClient

    actor = devnet.new_payer(deposit=0, extra_opg=10 * OPG)
    body = chat_body("Pay me exactly", max_tokens=10)
    cap = int(requirement(node.client.post("/v1/chat/completions", json=body).json(), "exact")["amount"])
    node_before = devnet.opg.functions.balanceOf(node_actor.address).call()

    async def chat():
        async with x402HttpxClient(x402_exact_client(devnet, actor), base_url=node.url, timeout=60) as http:
            return await http.post("/v1/chat/completions", json=body)

    res = asyncio.run(chat())
    assert res.status_code == 200, res.text
    payment = payment_of(res)
    assert payment["success"] is True and payment["scheme"] == "exact" and payment["status"] == "settled"
    assert payment["payer"] == actor.address and payment["cost"] == str(cap) and payment["amount"] == str(cap)
    tx = devnet.w3.eth.get_transaction_receipt(payment["transaction"])
    assert tx["status"] == 1
    assert devnet.opg.functions.balanceOf(actor.address).call() == 10 * OPG - cap
    assert devnet.opg.functions.balanceOf(node_actor.address).call() == node_before + cap
    assert res.json()["choices"][0]["message"]["content"] == natural_answer("Pay me exactly", 10).text


def test_an_exact_authorization_pays_for_one_request_only(node, devnet):
    from x402.schemas import PaymentRequired

    actor = devnet.new_payer(deposit=0, extra_opg=10 * OPG)
    body = chat_body("Once only", max_tokens=6)
    required = PaymentRequired.model_validate(node.client.post("/v1/chat/completions", json=body).json())
    payload = x402_exact_client(devnet, actor, sync=True).create_payment_payload(required)
    header = base64.b64encode(payload.model_dump_json(by_alias=True, exclude_none=True).encode()).decode()
    assert post_with(node, body, header).status_code == 200
    refused(post_with(node, body, header), "invalid_exact_evm_nonce_already_used")
    other = chat_body("Once only, but longer", max_tokens=9)  # another price: the value no longer matches
    refused(post_with(node, other, header), "invalid_exact_evm_payload_authorization_value_mismatch")


def test_an_exact_payment_is_not_settled_when_the_model_fails(node, devnet):
    from x402.schemas import PaymentRequired

    actor = devnet.new_payer(deposit=0, extra_opg=10 * OPG)
    body = chat_body("Broken exact", max_tokens=6, model="broken")
    required = PaymentRequired.model_validate(node.client.post("/v1/chat/completions", json=body).json())
    payload = x402_exact_client(devnet, actor, sync=True).create_payment_payload(required)
    header = base64.b64encode(payload.model_dump_json(by_alias=True, exclude_none=True).encode()).decode()
    assert post_with(node, body, header).status_code == 502
    assert devnet.opg.functions.balanceOf(actor.address).call() == 10 * OPG



def test_an_exact_stream_ends_with_the_settled_transfer(node, devnet, node_actor):
    from x402.schemas import PaymentRequired

    actor = devnet.new_payer(deposit=0, extra_opg=10 * OPG)
    body = chat_body("Stream me, exactly", max_tokens=10, stream=True)
    required = PaymentRequired.model_validate(node.client.post("/v1/chat/completions", json=body).json())
    payload = x402_exact_client(devnet, actor, sync=True).create_payment_payload(required)
    header = base64.b64encode(payload.model_dump_json(by_alias=True, exclude_none=True).encode()).decode()
    with node.client.stream("POST", "/v1/chat/completions", json=body, headers={"PAYMENT-SIGNATURE": header}) as res:
        assert res.status_code == 200
        events = sse_events(list(res.iter_lines()))
    assert events[-1] == "[DONE]"
    payment = events[-2]["x_opg_payment"]
    cap = int(required.accepts[1].amount)
    assert payment["success"] is True and payment["scheme"] == "exact" and payment["cost"] == str(cap)
    assert devnet.w3.eth.get_transaction_receipt(payment["transaction"])["status"] == 1
    assert devnet.opg.functions.balanceOf(actor.address).call() == 10 * OPG - cap
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-2] if e["choices"])
    assert text == natural_answer("Stream me, exactly", 10).text

# Payload release --------------------------------------------------------------------------------------------------
@ape.fixture(scope="module", chain_isolation=False)
def served_receipt(node, payer) -> dict:
    res = payer.pay(chat_body("A private question", max_tokens=12))
    assert res.status_code == 200
    return payment_of(res)


def test_payloads_are_refused_to_an_account_without_stake(node, devnet, served_receipt, node_actor):
    stranger = new_key()
    res, _ = ask_payload(node.url, node_actor.address, served_receipt["receiptId"], stranger, devnet.staking_domain)
    assert res.status_code == 403 and res.json()["error"] == "not_authorized"


def test_payloads_are_refused_for_a_forged_or_reused_challenge_signature(node, devnet, served_receipt, node_actor):
    verifier = devnet.new_verifier()
    impostor = Account.create()
    res, _ = ask_payload(node.url, node_actor.address, served_receipt["receiptId"], verifier, devnet.staking_domain,
                         signer_key="0x" + bytes(impostor.key).hex())
    assert res.status_code == 400 and res.json()["error"] == "invalid_signature"
    res, sent = ask_payload(node.url, node_actor.address, served_receipt["receiptId"], verifier,
                            devnet.staking_domain)
    assert res.status_code == 200
    again = node.client.post(f"/v1/payloads/{served_receipt['receiptId']}", json=sent)
    assert again.status_code == 400 and again.json()["error"] == "invalid_nonce"
    other_domain = Domain.staking(1, devnet.staking.address)
    res, _ = ask_payload(node.url, node_actor.address, served_receipt["receiptId"], verifier, other_domain)
    assert res.status_code == 400 and res.json()["error"] == "invalid_signature"


def test_payloads_are_released_to_an_active_verifier(node, devnet, served_receipt, node_actor):
    verifier = devnet.new_verifier()
    res, _ = ask_payload(node.url, node_actor.address, served_receipt["receiptId"], verifier, devnet.staking_domain)
    assert res.status_code == 200, res.text
    p = res.json()
    assert p["receiptId"] == served_receipt["receiptId"] and p["receipt"] == served_receipt["receipt"]
    assert input_hash(p["request"]) == p["receipt"]["inputHash"]
    assert output_hash(p["output"]) == p["receipt"]["outputHash"]
    assert p["request"]["messages"] == [{"role": "user", "content": "A private question"}]
    assert p["request"]["params"] == {"max_tokens": 12} and p["request"]["model"] == "builtin"
    gen = natural_answer("A private question", 12)
    assert p["output"] == gen.text and p["finishReason"] == gen.finish_reason
    assert p["usage"]["promptTokens"] == gen.prompt_tokens and p["usage"]["outputTokens"] == gen.output_tokens
    assert p["pricing"]["perOutputToken"] == str(wei(PRICE_OUTPUT))


def test_payloads_are_released_to_the_receipt_s_payer(node, devnet, served_receipt, payer, node_actor):
    res, _ = ask_payload(node.url, node_actor.address, served_receipt["receiptId"], payer.actor,
                         devnet.staking_domain)
    assert res.status_code == 200 and res.json()["output"]


def test_payloads_of_unknown_receipts_and_unknown_nonces(node, devnet, payer, node_actor):
    res, _ = ask_payload(node.url, node_actor.address, "0x" + "ab" * 32, payer.actor, devnet.staking_domain)
    assert res.status_code == 404 and res.json()["error"] == "not_found"
    res, _ = ask_payload(node.url, node_actor.address, "0x" + "ab" * 32, payer.actor, devnet.staking_domain,
                         nonce="0x" + "cd" * 32)
    assert res.status_code == 400 and res.json()["error"] == "invalid_nonce"
    challenge = node.client.get("/v1/payloads/challenge").json()
    assert 55 <= challenge["expiresAt"] - time.time() <= 61 and len(challenge["nonce"]) == 66


# Operations -------------------------------------------------------------------------------------------------------
def test_metrics_count_requests_payments_and_the_outbox(node):
    text = node.client.get("/metrics").text
    assert 'opg_node_requests_total{scheme="opg-credit",mode="json",outcome="ok"}' in text
    assert 'opg_node_payment_required_total{error="payment_required"}' in text
    assert 'opg_node_outbox_total{result="delivered"}' in text
    assert 'opg_node_model_errors_total{model="broken"}' in text
    assert "opg_node_outbox_backlog 0" in text or "opg_node_outbox_backlog" in text
    assert 'opg_node_charged_wei_total{scheme="exact"}' in text


# Settlement and fees (last: it moves the chain's clock for the verifiers' warm-up) -------------------------------
def test_settlement_moves_credits_earnings_verifier_pool_and_treasury_exactly(node, devnet, relayer, node_actor):
    distributor = devnet.system.distributor.functions
    verifier = devnet.new_verifier()
    live(devnet, [verifier])
    time.sleep(1.5)  # the node re-reads the chain's clock (which just jumped) every second to date its receipts
    payer = Payer(devnet.new_payer(deposit=20 * OPG), node.url)
    wait_relayer_idle(relayer)
    treasury = distributor.treasury().call()
    protocol_bps, verifier_bps = distributor.protocol_fee_bps().call(), distributor.verifier_fee_bps().call()
    assert (protocol_bps, verifier_bps) == (devnet.params.protocol_fee_bps, devnet.params.verifier_fee_bps)
    node_before, treasury_before = distributor.claimable_of(node_actor.address).call(), \
        distributor.claimable_of(treasury).call()
    pools_before = {e: distributor.epoch_verifier_fees(e).call() for e in range(distributor.epoch_now().call() + 3)}
    res = payer.pay(chat_body("Fees, please", max_tokens=20))
    assert res.status_code == 200
    payment = payment_of(res)
    [view] = wait_receipts_settled(relayer, [payment["receiptId"]])
    gross = int(payment["cost"])
    assert devnet.balance(payer.actor) == 20 * OPG - gross
    assert devnet.spent(payer.actor, node_actor) == gross
    protocol_fee = -(-gross * protocol_bps // 10_000)
    verifier_fee = gross * verifier_bps // 10_000
    assert distributor.claimable_of(node_actor.address).call() == node_before + gross - protocol_fee - verifier_fee
    assert distributor.claimable_of(treasury).call() == treasury_before + protocol_fee
    block = relayer.get(f"/batches/{view['batchId']}").json()["blockNumber"]
    epoch = distributor.epoch_now().call(block_identifier=block)
    assert devnet.staking.functions.total_weight_in(epoch).call() > 0  # live verifiers: the pool takes the fee
    assert distributor.epoch_verifier_fees(epoch).call() == pools_before.get(epoch, 0) + verifier_fee
