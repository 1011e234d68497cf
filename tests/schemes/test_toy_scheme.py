"""A scheme added in one file pays a real node through the registry (``offchain.schemes``).

``toy-allowance``: the node holds a pre-shared allowance per payer (``TOY_ALLOWANCES=payer:wei,...`` in its
environment); the payer signs ``toy-allowance:<node>:<nonce>:<amount>`` (EIP-191) for exactly the request's quote, and
the node checks the signature, the nonce and the allowance itself (no facilitator), charging the quote in full.
This file declares the scheme's payload model and registers its client and server; run as a script it is the node
(``python tests/schemes/test_toy_scheme.py node run ...``: the registration, then ``opg``'s own CLI), so the node
under test is a real process on real HTTP, offering every registered scheme.
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass

from eth_account import Account
from eth_account.messages import encode_defunct
from pydantic import BaseModel, ConfigDict
from x402.schemas import PaymentPayload, PaymentRequirements

from offchain.client.payer import Payer, PaymentOutcome, PaymentRefused, Reservation
from offchain.node.payments import Admission, SchemeServer, Served
from offchain.node.x402 import PaymentRefused as NodeRefused
from offchain.node.x402 import Quote
from offchain.schemes import registry
from offchain.types import Address, Signature, Uint256

TOY = "toy-allowance"


class ToyPayload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payer: Address
    amount: Uint256
    nonce: str
    signature: Signature


def toy_message(node: str, nonce: str, amount: int):
    return encode_defunct(text=f"{TOY}:{node.lower()}:{nonce}:{amount}")


registry.declare(TOY, ToyPayload)


@dataclass
class ToyAdmission(Admission):
    amount: int = 0


@registry.server
class ToyServer(SchemeServer):
    scheme = TOY

    def __init__(self, ctx):
        super().__init__(ctx)
        self.allowance: dict[str, int] = {}
        for item in filter(None, os.environ.get("TOY_ALLOWANCES", "").split(",")):
            payer, wei = item.split(":")
            self.allowance[payer.lower()] = int(wei)
        self.nonces: set[str] = set()
        self.lock = threading.Lock()

    def requirement(self, quote: Quote, charged: int) -> PaymentRequirements:
        return self.base_requirement(quote, {"allowance": "pre-shared"})

    def admit(self, quote: Quote, payload: PaymentPayload) -> ToyAdmission:
        p: ToyPayload = self.parse(payload)
        signer = Account.recover_message(toy_message(self.ctx.node, p.nonce, p.amount), signature=p.signature)
        if signer != p.payer:
            raise NodeRefused("invalid_signature", f"signed by {signer}, not the payer {p.payer}", p.payer)
        if p.amount != quote.cap:
            raise NodeRefused("amount_mismatch", f"pays {p.amount}, the quote is {quote.cap}", p.payer)
        with self.lock:
            left = self.allowance.get(p.payer.lower(), 0)
            if p.nonce in self.nonces:
                raise NodeRefused("nonce_used", "this nonce already paid", p.payer)
            if left < p.amount:
                raise NodeRefused("allowance_exceeded", f"{left} wei of allowance left", p.payer)
            self.nonces.add(p.nonce)
            self.allowance[p.payer.lower()] = left - p.amount
        return ToyAdmission(scheme=TOY, payer=p.payer, quote=quote, amount=p.amount)

    def release(self, adm: Admission) -> None:
        assert isinstance(adm, ToyAdmission)
        adm.done = True
        with self.lock:
            self.allowance[adm.payer.lower()] += adm.amount

    def complete(self, adm: Admission, served: Served | None) -> dict:
        assert isinstance(adm, ToyAdmission)
        adm.done = True
        with self.lock:
            left = self.allowance[adm.payer.lower()]
        return {"success": True, "transaction": "", "network": self.ctx.network, "payer": adm.payer, "scheme": TOY,
                "receiptId": None, "receipt": None, "cost": str(adm.amount), "allowanceLeft": str(left),
                "status": "settled"}


@registry.client
class ToyClient:
    scheme = TOY
    default = False
    holds_channel = False

    def __init__(self, payer: Payer):
        self.payer = payer

    def fits(self, accept: dict) -> bool:
        return accept.get("network") == self.payer.network

    def prepare(self, req: dict, resource: dict | None, window=None, retry_of=None) -> Reservation:
        node, quote = self.payer.check_requirement(req)
        nonce = secrets.token_hex(16)
        signed = Account.sign_message(toy_message(node, nonce, quote), private_key=self.payer._signer_key)
        payload = {"x402Version": 2, "accepted": req, "payload": {
            "payer": self.payer.address, "amount": str(quote), "nonce": nonce,
            "signature": "0x" + bytes(signed.signature).hex()}}
        return Reservation(token=nonce, scheme=TOY, node=node, cap=quote, max_cumulative=quote, requirement=req,
                           payload=payload, reserved_at=time.time())

    def without_receipt(self, res: Reservation, payment: dict, outcome: PaymentOutcome) -> bool:
        outcome.ok = bool(payment.get("success"))
        return True

    def conclude(self, res, receipt, problem, outcome, payment) -> tuple[bool, str | None]:
        return problem is None, problem


if __name__ == "__main__":  # the node process: this scheme registered, then opg's CLI
    from offchain.cli import main

    sys.exit(main(sys.argv[1:]))


# The test ----------------------------------------------------------------------------------------------------------
import ape  # noqa: E402
import httpx  # noqa: E402
import pytest  # noqa: E402

from offchain.client import payment_http_client  # noqa: E402
from offchain.client.transport import payment_response_of  # noqa: E402
from offchain.devkit.devnet import OPG, RelayerProc  # noqa: E402

CHAT = "/v1/chat/completions"


@ape.fixture(scope="module", chain_isolation=False)
def toy_net(tmp_path_factory):
    from node.node_kit import NodeProc, past_devnet

    tmp = tmp_path_factory.mktemp("toy")
    devnet = past_devnet(tmp / "devnet")
    relayer = RelayerProc(devnet, tmp / "relayer.sqlite3", dev_account=1).start()
    payer = devnet.new_payer(deposit=1 * OPG)
    node = NodeProc(devnet, devnet.new_node(), relayer.url, tmp, "--max-tokens", "8",
                    env={**os.environ, "TOY_ALLOWANCES": f"{payer.address}:{3 * OPG // 100}"})
    node.args = [sys.executable, __file__, *node.args[3:]]  # this file's registration, then `opg node run`
    node.start()
    yield devnet, node, payer, tmp
    node.stop()
    relayer.stop()
    devnet.close()


def test_a_scheme_in_one_file_is_offered_and_pays_a_real_node(toy_net):
    devnet, node, actor, tmp = toy_net
    body = {"model": "builtin", "messages": [{"role": "user", "content": "hello toy"}], "max_tokens": 8}
    offer = httpx.post(node.url + CHAT, json=body, timeout=30)
    assert offer.status_code == 402
    assert [a["scheme"] for a in offer.json()["accepts"]] == ["opg-credit", "exact", TOY]
    toy = next(a for a in offer.json()["accepts"] if a["scheme"] == TOY)
    assert toy["extra"] == {"allowance": "pre-shared"} and toy["payTo"] == node.address

    payer = Payer.from_key(actor.key, devnet.deployment_file, state=tmp / "state")
    assert TOY in payer.schemes and payer.choose(offer.json()["accepts"]) ["scheme"] == "opg-credit"
    assert payer.choose(offer.json()["accepts"], schemes=(TOY,)) == toy
    outcomes: list = []
    payer.on_payment(outcomes.append)
    with payment_http_client(payer, schemes=(TOY,), timeout=60) as http:
        res = http.post(node.url + CHAT, json=body)
        assert res.status_code == 200, res.text
        paid = payment_response_of(res.headers, res.json())
        assert paid["scheme"] == TOY and paid["success"] and paid["cost"] == toy["amount"]
        assert int(paid["allowanceLeft"]) == 3 * OPG // 100 - int(toy["amount"])
        assert outcomes and outcomes[-1].scheme == TOY and outcomes[-1].ok
    # the node's allowance is what it says: spend it down until the node refuses
    refused = None
    with payment_http_client(payer, schemes=(TOY,), timeout=60) as http:
        for _ in range(20):
            res = http.post(node.url + CHAT, json=body)
            if res.status_code == 402:
                refused = res.json()
                break
    assert refused is not None and refused["error"] == "allowance_exceeded"
    # a payload signed by someone else is refused by the toy server's own check
    stranger = Payer.from_key(Account.create().key, devnet.deployment_file, state=tmp / "stranger")
    res = stranger.schemes[TOY].prepare(toy, None)
    res.payload["payload"]["payer"] = actor.address
    refusal = httpx.post(node.url + CHAT, json=body, headers={"PAYMENT-SIGNATURE": res.header()}, timeout=30)
    assert refusal.status_code == 402 and refusal.json()["error"] == "invalid_signature"
    with pytest.raises(PaymentRefused):
        payer.prepare({**toy, "scheme": "no-such-scheme"})
