"""Attacks on the inference node, performed against the real node process, the real relayer and anvil: a payer who
wants answers for free (racing one voucher or one exact authorisation, leaving a stream before its receipt,
emptying its wallet while an exact answer is generated, a session key past its allowance, oversized requests,
choosing request ids) and someone who wants other payers' prompts (payload requests signed for another node or
receipt, by an inference node, by a verifier that just unbonded). Each test shows the attack fails.

The node serves ``builtin`` (instant) and ``slow`` (the same model, 30 ms per token); a second node (``offline``)
points at a relayer nobody runs, so it checks payments on-chain only."""

from __future__ import annotations

import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import ape
import httpx
from eth_account import Account
from node_kit import (
    NodeProc,
    Payer,
    ask_payload,
    b64json,
    chat_body,
    cost,
    payment_of,
    requirement,
    sse_events,
    voucher_header,
)

from offchain.devkit.devchain import free_port, transact
from offchain.devkit.devnet import OPG, Actor, new_key, wait_until
from offchain.messages import Domain, TransferWithAuthorization


@ape.fixture(scope="module", chain_isolation=False)
def node_actor(devnet) -> Actor:
    return devnet.new_node()


@ape.fixture(scope="module", chain_isolation=False)
def node(devnet, relayer, workdir, node_actor):
    proc = NodeProc(devnet, node_actor, relayer.url, workdir, "--max-tokens", "32", "--max-tokens-limit", "512",
                    backend="builtin,builtin?name=slow&token_delay=0.03").start()
    yield proc
    proc.stop()


@ape.fixture(scope="module", chain_isolation=False)
def offline(devnet, workdir):
    """A node whose relayer is unreachable: it checks opg-credit payments on the escrow alone."""
    proc = NodeProc(devnet, devnet.new_node(), f"http://127.0.0.1:{free_port()}", workdir, "--relayer-timeout", "1",
                    name="offline").start()
    yield proc
    proc.stop()


@ape.fixture(scope="module", chain_isolation=False)
def payer(devnet, node) -> Payer:
    return Payer(devnet.new_payer(deposit=100 * OPG), node.url)


@ape.fixture(scope="module", chain_isolation=False)
def served(node, payer) -> dict:
    res = payer.pay(chat_body("A private question about my taxes", max_tokens=12))
    assert res.status_code == 200, res.text
    return payment_of(res)


def post_with(node, body: dict, header: str) -> httpx.Response:
    return node.client.post("/v1/chat/completions", json=body, headers={"PAYMENT-SIGNATURE": header})


def error_of(res: httpx.Response) -> str:
    assert res.status_code == 402, res.text
    return res.json()["error"]


def content_of(events: list) -> str:
    return "".join(e["choices"][0]["delta"].get("content") or "" for e in events
                   if isinstance(e, dict) and e.get("choices"))


def long_prompt(min_tokens: int) -> str:
    from offchain.backends import BuiltinBackend
    from offchain.inference import ChatMessage, GenParams

    builtin = BuiltinBackend()
    for i in range(1000):
        prompt = f"Explain the settlement of vouchers at length, take {i}"
        if builtin.generate([ChatMessage(role="user", content=prompt)], GenParams(max_tokens=512)).output_tokens \
                >= min_tokens:
            return prompt
    raise AssertionError("no long prompt found")


# exact ------------------------------------------------------------------------------------------------------------
def exact_header(devnet, actor: Actor, req: dict, *, to: str | None = None) -> str:
    """PAYMENT-SIGNATURE for exact: an EIP-3009 TransferWithAuthorization of the requirement's amount."""
    auth = TransferWithAuthorization(owner=actor.address, to=to or req["payTo"], value=int(req["amount"]),
                                     valid_after=0, valid_before=int(time.time()) + 3600,
                                     nonce="0x" + secrets.token_hex(32))
    signature = auth.sign_with(actor.key, Domain.token(devnet.w3.eth.chain_id, devnet.opg.address))
    return b64json({"x402Version": 2, "accepted": req, "payload": {
        "authorization": {"from": auth.owner, "to": auth.to, "value": str(auth.value),
                          "validAfter": str(auth.valid_after), "validBefore": str(auth.valid_before),
                          "nonce": auth.nonce},
        "signature": signature}})


def exact_requirement(node, body: dict) -> dict:
    return requirement(node.client.post("/v1/chat/completions", json=body).json(), "exact")


def opg_balance(devnet, address: str) -> int:
    return devnet.opg.functions.balanceOf(address).call()


def empty_wallet(devnet, actor: Actor) -> None:
    """The payer moves all its OPG elsewhere, so the authorisation it gave can no longer be settled."""
    transact(devnet.w3, actor.key, devnet.opg.functions.transfer(new_key().address, opg_balance(devnet, actor.address)))


def exact_verified(node) -> int:
    found = re.search(r'opg_node_verify_total\{scheme="exact",result="valid"\} (\d+)', node.client.get("/metrics").text)
    return int(found.group(1)) if found else 0


def test_attack_exact_payer_emptying_its_wallet_during_generation_gets_no_answer(node, devnet, node_actor):
    actor = devnet.new_payer(deposit=0, extra_opg=10 * OPG)
    body = chat_body(long_prompt(40), max_tokens=64, model="slow")
    header = exact_header(devnet, actor, exact_requirement(node, body))
    before, node_before = exact_verified(node), opg_balance(devnet, node_actor.address)
    answer: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: answer.append(post_with(node, body, header)))
    worker.start()
    wait_until(lambda: exact_verified(node) > before, timeout=10, what="the node to admit the exact payment")
    empty_wallet(devnet, actor)  # while the model runs (about 1.2 s or more)
    worker.join(30)
    [res] = answer
    assert res.status_code == 402, res.text  # the answer is withheld
    assert "settlement failed" in res.json()["reason"] and "choices" not in res.json()
    assert opg_balance(devnet, node_actor.address) == node_before


def test_attack_exact_stream_is_settled_before_its_first_piece_so_emptying_the_wallet_after_it_pays_anyway(
        node, devnet, node_actor):
    actor = devnet.new_payer(deposit=0, extra_opg=10 * OPG)
    body = chat_body(long_prompt(40), max_tokens=64, model="slow", stream=True)
    req = exact_requirement(node, body)
    cap, node_before = int(req["amount"]), opg_balance(devnet, node_actor.address)
    lines: list[str] = []
    emptied = False
    with node.client.stream("POST", "/v1/chat/completions", json=body,
                            headers={"PAYMENT-SIGNATURE": exact_header(devnet, actor, req)}) as res:
        assert res.status_code == 200
        for line in res.iter_lines():
            lines.append(line)
            if not emptied and '"content":"' in line and '"content":""' not in line:
                empty_wallet(devnet, actor)  # the first piece is here: too late to take the money back
                emptied = True
    events = sse_events(lines)
    assert events[-1] == "[DONE]" and len(content_of(events)) > 20
    payment = events[-2]["x_opg_payment"]
    assert payment["success"] is True and payment["cost"] == str(cap)
    assert opg_balance(devnet, node_actor.address) == node_before + cap


def test_attack_exact_authorization_paying_another_node_is_refused(node, devnet):
    actor = devnet.new_payer(deposit=0, extra_opg=10 * OPG)
    body = chat_body("Somebody else's authorisation", max_tokens=6)
    header = exact_header(devnet, actor, exact_requirement(node, body), to=devnet.new_node().address)
    assert error_of(post_with(node, body, header)) == "invalid_exact_evm_payload_recipient_mismatch"
    assert opg_balance(devnet, actor.address) == 10 * OPG


def test_attack_one_exact_authorization_raced_by_concurrent_requests_is_served_once(node, devnet):
    actor = devnet.new_payer(deposit=0, extra_opg=10 * OPG)
    body = chat_body("Race one authorisation", max_tokens=16, model="slow")
    req = exact_requirement(node, body)
    header = exact_header(devnet, actor, req)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: post_with(node, body, header), range(6)))
    assert sorted(a.status_code for a in answers) == [200] + [402] * 5, [a.text for a in answers]
    assert {a.json()["error"] for a in answers if a.status_code == 402} == {"invalid_exact_evm_nonce_already_used"}
    assert opg_balance(devnet, actor.address) == 10 * OPG - int(req["amount"])


# opg-credit -------------------------------------------------------------------------------------------------------
def test_attack_one_voucher_raced_by_concurrent_requests_is_admitted_once(node, devnet, node_actor):
    racer = Payer(devnet.new_payer(deposit=10 * OPG), node.url)
    body = chat_body("Race one voucher", max_tokens=16, model="slow")
    req = requirement(racer.challenge(body), "opg-credit")
    header = voucher_header(req, racer.actor, int(req["extra"]["maxCumulative"]))  # room for one cap
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: post_with(node, body, header), range(6)))
    assert sorted(a.status_code for a in answers) == [200] + [402] * 5, [a.text for a in answers]
    assert {a.json()["error"] for a in answers if a.status_code == 402} == {"cap_exceeded"}
    [ok] = [a for a in answers if a.status_code == 200]
    assert racer.charged(body) == int(payment_of(ok)["cumulative"]) == int(payment_of(ok)["cost"])


def test_attack_client_leaving_after_the_last_piece_but_before_the_receipt_pays_in_full(node, payer):
    body = chat_body(long_prompt(20), max_tokens=40, model="slow", stream=True)
    req = requirement(payer.challenge(body), "opg-credit")
    before = int(req["extra"]["charged"])
    header = voucher_header(req, payer.actor, int(req["extra"]["maxCumulative"]))
    lines = []
    with httpx.Client(base_url=node.url, timeout=30) as http:
        with http.stream("POST", "/v1/chat/completions", json=body, headers={"PAYMENT-SIGNATURE": header}) as res:
            for line in res.iter_lines():
                lines.append(line)
                if '"finish_reason":"' in line:
                    break  # every piece is here: leave before the receipt
    events = sse_events(lines)
    pieces = sum(1 for e in events if e["choices"] and e["choices"][0]["delta"].get("content"))
    prompt = int(req["extra"]["requestTokens"]["prompt"])
    full = cost(prompt, pieces, output="0.0001")
    assert wait_until(lambda: payer.charged(body) - before == full or None, timeout=10,
                      what="the full charge of the stream")


def test_attack_session_key_past_its_allowance_is_refused(node, devnet):
    owner = Payer(devnet.new_payer(deposit=10 * OPG), node.url)
    session = Account.create()
    body = chat_body("Spend beyond my key's allowance", max_tokens=24)
    cap = int(requirement(owner.challenge(body), "opg-credit")["extra"]["priceCap"])
    transact(devnet.w3, owner.actor.key, devnet.escrow.functions.authorize_signer(
        session.address, devnet.chain_now() + 30 * 86400, cap - 1))
    res = owner.pay(body, key="0x" + bytes(session.key).hex())
    assert error_of(res) == "allowance_exceeded"
    assert owner.charged(body) == 0


def generations(node) -> float:
    """How many answers the node's models generated (its /metrics)."""
    text = httpx.get(node.url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("opg_node_generation_seconds_count"))


def test_attack_known_payer_refused_by_the_relayer_while_the_model_ran_gets_402_and_pays_nothing(node, devnet):
    """A payer the relayer accepted a moment ago is verified while its model runs (issue 15, item 7): a payment the
    relayer then refuses (a session key past its allowance) is still a 402, charged nothing and streamed nothing."""
    owner = Payer(devnet.new_payer(deposit=10 * OPG), node.url)
    body = chat_body("Trust me once, then pay with a key that cannot", max_tokens=24)
    assert owner.pay(body).status_code == 200  # the relayer accepted this payer: the node trusts it a while
    charged = owner.charged(body)
    session = Account.create()
    transact(devnet.w3, owner.actor.key, devnet.escrow.functions.authorize_signer(
        session.address, devnet.chain_now() + 30 * 86400, 1))  # an allowance of 1 wei
    key = "0x" + bytes(session.key).hex()
    ran = generations(node)
    assert error_of(owner.pay(body, key=key)) == "allowance_exceeded"
    assert generations(node) == ran + 1  # the model ran while the relayer judged the payment
    assert owner.charged(body) == charged
    assert error_of(owner.pay(body, key=key)) == "allowance_exceeded"  # no longer trusted: refused before the model
    assert generations(node) == ran + 1
    assert owner.pay(body).status_code == 200  # trusted again
    charged = owner.charged(body)
    slow = {**chat_body("Stream me nothing", max_tokens=8), "model": "slow", "stream": True}
    req = requirement(owner.challenge(slow), "opg-credit")
    header = voucher_header(req, owner.actor, int(req["extra"]["maxCumulative"]), key=key)
    streamed = owner.http.post("/v1/chat/completions", json=slow, headers={"PAYMENT-SIGNATURE": header})
    assert error_of(streamed) == "allowance_exceeded"  # a 402 before any text, not a stream
    assert owner.charged(body) == charged


def test_attack_one_paid_answer_buys_no_burst_of_unfunded_generations(node, devnet):
    """Review F1 (issue 15, item 7): once trusted, a payer fires many requests at once with a voucher no credits stand
    behind (free to sign); the node's local checks pass, but none may run the model before the relayer refuses it."""
    owner = Payer(devnet.new_payer(deposit=OPG), node.url)
    body = chat_body("Pay once, then ask for free many times", max_tokens=24)
    assert owner.pay(body).status_code == 200  # the relayer accepted this payer: it is trusted a while
    charged = owner.charged(body)
    req = requirement(owner.challenge(body), "opg-credit")
    n = 12
    header = voucher_header(req, owner.actor, charged + 2 * OPG + n * int(req["extra"]["priceCap"]))  # 1 OPG credits
    ran = generations(node)

    def ask(_: int) -> httpx.Response:
        return httpx.post(node.url + "/v1/chat/completions", json=body, headers={"PAYMENT-SIGNATURE": header},
                          timeout=60)

    with ThreadPoolExecutor(n) as pool:
        answers = list(pool.map(ask, range(n)))
    assert {error_of(res) for res in answers} == {"insufficient_balance"}
    assert generations(node) == ran  # no model ran for any of them
    assert owner.charged(body) == charged
    assert owner.pay(body).status_code == 200  # an honest voucher of the same payer is still served


def test_attack_session_key_past_its_allowance_is_refused_while_the_relayer_is_down(offline, devnet):
    owner = Payer(devnet.new_payer(deposit=10 * OPG), offline.url)
    session = Account.create()
    body = chat_body("Spend beyond my key's allowance, no relayer", max_tokens=24)
    cap = int(requirement(owner.challenge(body), "opg-credit")["extra"]["priceCap"])
    transact(devnet.w3, owner.actor.key, devnet.escrow.functions.authorize_signer(
        session.address, devnet.chain_now() + 30 * 86400, cap - 1))
    key = "0x" + bytes(session.key).hex()
    res = owner.pay(body, key=key)
    assert error_of(res) == "allowance_exceeded" and "allowance" in res.json()["reason"]
    assert owner.charged(body) == 0
    transact(devnet.w3, owner.actor.key, devnet.escrow.functions.authorize_signer(
        session.address, devnet.chain_now() + 30 * 86400, cap))  # honest: an allowance that covers the cap
    assert owner.pay(body, key=key).status_code == 200


def test_attack_request_body_over_the_size_limit_is_refused_before_it_is_read(node):
    res = node.client.post("/v1/chat/completions", json=chat_body("x " * 600_000))
    assert res.status_code == 413


def test_attack_prompt_over_the_context_is_refused_before_payment(node):
    res = node.client.post("/v1/chat/completions", json=chat_body("word " * 9000))
    assert res.status_code == 400 and res.json()["error"] == "context_length_exceeded"


def test_attack_client_cannot_choose_the_request_id(node, payer):
    chosen = "0x" + "ab" * 32
    body = chat_body("Same question twice", max_tokens=6, request_id=chosen, requestId=chosen, id=chosen,
                     user=chosen)
    ids = []
    for _ in range(2):
        req = requirement(payer.challenge(body), "opg-credit")
        res = node.client.post("/v1/chat/completions", json=body, headers={
            "PAYMENT-SIGNATURE": voucher_header(req, payer.actor, int(req["extra"]["maxCumulative"])),
            "X-Request-Id": chosen})
        assert res.status_code == 200, res.text
        ids.append(payment_of(res)["receipt"]["requestId"])
    assert len(set(ids)) == 2 and chosen not in ids


# Payload release --------------------------------------------------------------------------------------------------
def test_attack_payload_request_signed_for_another_node_is_refused(node, devnet, served):
    verifier = devnet.new_verifier()
    res, _ = ask_payload(node.url, devnet.new_node().address, served["receiptId"], verifier, devnet.staking_domain)
    assert res.status_code == 400 and res.json()["error"] == "invalid_signature"


def test_attack_payload_request_signed_for_another_receipt_is_refused(node, devnet, served, node_actor):
    verifier = devnet.new_verifier()
    with httpx.Client(base_url=node.url, timeout=30) as http:
        nonce = http.get("/v1/payloads/challenge").json()["nonce"]
        from offchain.messages import PayloadRequest

        signature = PayloadRequest(node=node_actor.address, receipt_id="0x" + "cd" * 32, requester=verifier.address,
                                   nonce=nonce).sign_with(verifier.key, devnet.staking_domain)
        res = http.post(f"/v1/payloads/{served['receiptId']}",
                        json={"requester": verifier.address, "nonce": nonce, "signature": signature})
    assert res.status_code == 400 and res.json()["error"] == "invalid_signature"


def test_attack_another_inference_node_is_refused_payloads(node, devnet, served, node_actor):
    res, _ = ask_payload(node.url, node_actor.address, served["receiptId"], devnet.new_node(), devnet.staking_domain)
    assert res.status_code == 403 and res.json()["error"] == "not_authorized"


def test_attack_verifier_that_unbonded_is_refused_payloads_at_once(node, devnet, served, node_actor):
    verifier = devnet.new_verifier()
    res, _ = ask_payload(node.url, node_actor.address, served["receiptId"], verifier, devnet.staking_domain)
    assert res.status_code == 200, res.text  # honest: an active verifier
    transact(devnet.w3, verifier.key, devnet.staking.functions.request_unbond(1))  # below the minimum stake
    assert not devnet.staking.functions.is_active_as(verifier.address, 2).call()
    res, _ = ask_payload(node.url, node_actor.address, served["receiptId"], verifier, devnet.staking_domain)
    assert res.status_code == 403 and res.json()["error"] == "not_authorized"
