"""Which ``opg-credit`` requests may run the model before the relayer's ``/verify`` answers (review F1, issue 15 item 7).

Unit level: a real ``CreditServer`` with a scripted relayer whose answers are slow (the end-to-end attack, with a real
node and relayer, is ``tests/node/test_node_attacks.py::test_attack_one_paid_answer_buys_no_burst_of_unfunded_...``).
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from eth_account import Account
from x402.schemas import PaymentPayload

from offchain.inference import Pricing
from offchain.messages import Domain, Voucher
from offchain.node.channels import Channels
from offchain.node.x402 import PaymentRefused, Quote
from offchain.schemes.credit.server import SPECULATIVE_MAX, CreditServer

NODE = Account.create()
ESCROW, STAKING, OPG = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20
DOMAIN = Domain.escrow(31337, ESCROW)
CAP = 10**15


class Relayer:
    """Accepts the first voucher with ``balance`` credits and refuses every later one; a refusal checked while the
    model runs (on the server's verify pool) is held until ``answer`` is set: the relayer is slow."""

    def __init__(self, balance: int):
        self.calls, self.lock, self.balance, self.answer = 0, threading.Lock(), balance, threading.Event()

    def verify(self, body):
        with self.lock:
            self.calls += 1
            first = self.calls == 1
        if first:
            return 200, {"isValid": True, "payer": "", "extra": {"balance": str(self.balance), "outstanding": "0",
                                                                 "charged": "0"}}
        if threading.current_thread().name.startswith("credit-verify"):
            assert self.answer.wait(10)
        return 200, {"isValid": False, "invalidReason": "allowance_exceeded", "invalidMessage": "no allowance"}


def server_with(relayer: Relayer) -> CreditServer:
    chain = SimpleNamespace(session_expiry=lambda p, k: 0, chain_time=lambda: int(time.time()),
                            spent=lambda p, fresh=False: 0, now=lambda: int(time.time()))
    return CreditServer(SimpleNamespace(
        offer=SimpleNamespace(escrow=ESCROW, staking=STAKING, asset=OPG), node=NODE.address, network="eip155:31337",
        escrow_domain=DOMAIN, staking_domain=Domain.staking(31337, STAKING), chain=chain, channels=Channels(),
        max_unsettled=100 * 10**18, relayer=relayer, require_relayer=True,
        metrics=SimpleNamespace(verify=SimpleNamespace(inc=lambda *a: None))))


QUOTE = Quote(model="m", prompt_tokens=1, max_tokens=8, cap=CAP,
              pricing=Pricing(base=CAP, per_prompt_token=0, per_output_token=0), url="http://n/v1", stream=False)


def paid(server: CreditServer, payer, max_cumulative: int) -> PaymentPayload:
    v = Voucher(payer=payer.address, node=NODE.address, max_cumulative=max_cumulative)
    req = server.requirement(QUOTE, 0).model_dump(mode="json", by_alias=True)
    return PaymentPayload.model_validate({"x402Version": 2, "accepted": req, "payload": {
        "voucher": {"payer": payer.address, "node": NODE.address, "maxCumulative": str(max_cumulative)},
        "signature": v.sign_with(payer.key, DOMAIN)}})


def burst(server: CreditServer, payer, n: int, max_cumulative: int) -> tuple[list, int]:
    """``n`` requests at once: (those admitted before the relayer answered, how many were refused at once)."""
    skipped, refused = [], 0
    for _ in range(n):
        try:
            adm = server.admit(QUOTE, paid(server, payer, max_cumulative))
        except PaymentRefused:
            refused += 1
            continue
        if adm.pending is not None:
            skipped.append(adm)
    return skipped, refused


def test_attack_trusted_payer_with_vouchers_beyond_its_credits_runs_no_model_before_the_relayer_answers():
    server = server_with(Relayer(balance=CAP))
    payer = Account.create()
    first = server.admit(QUOTE, paid(server, payer, CAP))
    assert first.pending is None and first.verified is not None  # one paid request: the payer is trusted
    n = 50
    skipped, refused = burst(server, payer, n, CAP * (n + 2))  # vouchers no credits stand behind
    assert skipped == [] and refused == n  # each waited for the relayer's refusal before any model ran


def test_attack_trusted_payer_with_funded_vouchers_the_relayer_refuses_gets_at_most_a_few_runs():
    relayer = Relayer(balance=10**21)
    server = server_with(relayer)
    payer = Account.create()
    assert server.admit(QUOTE, paid(server, payer, CAP)).pending is None
    n = 50
    skipped, refused = burst(server, payer, n, CAP * (n + 2))  # credits cover them; the relayer still refuses
    assert len(skipped) == SPECULATIVE_MAX and refused == n - SPECULATIVE_MAX  # the rest waited for the relayer
    relayer.answer.set()
    for adm in skipped:
        with pytest.raises(PaymentRefused):
            server.confirm(adm)  # a 402 after the model ran: nothing charged
        server.release(adm)
    with pytest.raises(PaymentRefused):
        server.admit(QUOTE, paid(server, payer, 2 * CAP))  # the refusal ended the trust: verified before the model


def test_an_honest_trusted_payer_still_skips_the_wait():
    relayer = Relayer(balance=10**21)
    relayer.verify = lambda body: (200, {"isValid": True, "payer": "", "extra": {
        "balance": str(10**21), "outstanding": "0", "charged": "0"}})
    server = server_with(relayer)
    payer = Account.create()
    assert server.admit(QUOTE, paid(server, payer, CAP)).pending is None
    adm = server.admit(QUOTE, paid(server, payer, 2 * CAP))
    assert adm.pending is not None
    server.confirm(adm)
    assert adm.verified is not None
