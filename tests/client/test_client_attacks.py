"""Attacks on the paying client by a node that wants pay without work, performed on the client's own checks (no chain
needed: the node is a key that signs what a cheating node would send): the whole cap billed for a short answer, a
receipt for another payer, a receipt dated far ahead, and requirements that would have the client sign for another
chain, token or deployment. The end-to-end over-charging cases (amount above the quote, a padded cumulative, a
cumulative above the voucher, on a real node behind a tampering proxy) are in ``test_client_payments.py`` and
``test_client_e2e.py``."""

from __future__ import annotations

import secrets

import pytest
from eth_account import Account

from offchain.client import Overcharged, Payer, PaymentRefused
from offchain.deployments import CONTRACT_NAMES, DeployedContract, Deployment, Params
from offchain.inference import Pricing
from offchain.messages import Receipt

PRICING = Pricing(base=10**14, per_prompt_token=10**12, per_output_token=10**13)
PROMPT, MAX_TOKENS = 15, 100
CAP = PRICING.cap(PROMPT, MAX_TOKENS)


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    return Deployment(chainId=31337, contracts={n: DeployedContract(address=Account.create().address, block=0)
                                                for n in CONTRACT_NAMES},
                      params=Params.devnet())


@pytest.fixture()
def node():
    return Account.create()


@pytest.fixture()
def payer(deployment, tmp_path) -> Payer:
    return Payer.from_key("0x" + secrets.token_hex(32), deployment, state=tmp_path / "state")


def requirement(payer: Payer, node, **over) -> dict:
    req = {"scheme": "opg-credit", "network": payer.network, "asset": payer.token, "amount": str(CAP),
           "payTo": node.address, "maxTimeoutSeconds": 300,
           "extra": {"escrow": payer.escrow, "staking": payer.staking, "charged": "0", "maxCumulative": str(CAP),
                     "priceCap": str(CAP), "pricing": PRICING.wire(),
                     "requestTokens": {"prompt": PROMPT, "maxTokens": MAX_TOKENS}}}
    return {**req, **over}


def payment(payer: Payer, signer, amount: int, cumulative: int, *, payer_address: str | None = None,
            node_address: str | None = None, timestamp: int | None = None) -> dict:
    r = Receipt(request_id="0x" + secrets.token_hex(32), payer=payer_address or payer.address,
                node=node_address or signer.address, model_id="0x" + "11" * 32, input_hash="0x" + "22" * 32,
                output_hash="0x" + "33" * 32, amount=amount, cumulative=cumulative,
                timestamp=payer.now() if timestamp is None else timestamp)
    wire = {name: getattr(r, attr) for name, _t, attr in Receipt.FIELDS}
    return {"success": True, "receipt": {**wire, "signature": r.sign_with(signer.key, payer.staking_domain)},
            "status": "pending"}


def usage(output_tokens: int) -> dict:
    return {"prompt_tokens": PROMPT, "completion_tokens": output_tokens, "total_tokens": PROMPT + output_tokens}


def test_attack_node_billing_the_whole_cap_for_a_short_answer_is_caught_and_blocked(payer, node):
    res = payer.prepare(requirement(payer, node))
    outcome = payer.complete(res, payment(payer, node, CAP, CAP), usage=usage(3))  # 3 tokens, billed as 100
    assert not outcome.ok and outcome.checks["amountWithinUsage"] is False
    assert "the node's own usage" in outcome.problem
    with pytest.raises(Overcharged, match="refusing to pay node"):
        payer.prepare(requirement(payer, node))


def test_a_receipt_billing_exactly_the_answer_s_usage_passes(payer, node):
    res = payer.prepare(requirement(payer, node))
    amount = PRICING.cost(PROMPT, 3)
    outcome = payer.complete(res, payment(payer, node, amount, amount), usage=usage(3))
    assert outcome.ok and outcome.checks["amountWithinUsage"] is True


def test_attack_receipt_for_another_payer_blocks_the_node(payer, node):
    res = payer.prepare(requirement(payer, node))
    outcome = payer.complete(res, payment(payer, node, 1, 1, payer_address=Account.create().address))
    assert not outcome.ok and "receipt is for payer" in outcome.problem
    assert payer.channel_state(node.address).blocked


def test_attack_receipt_dated_far_in_the_future_blocks_the_node(payer, node):
    res = payer.prepare(requirement(payer, node))
    outcome = payer.complete(res, payment(payer, node, 1, 1, timestamp=payer.now() + 3600))
    assert not outcome.ok and "in the future" in outcome.problem


@pytest.mark.parametrize("field, value, code", [
    ("network", "eip155:1", "network_mismatch"),
    ("asset", "0x" + "34" * 20, "asset_mismatch"),
])
def test_attack_requirement_for_another_chain_or_token_is_not_signed(payer, node, field, value, code):
    with pytest.raises(PaymentRefused) as refused:
        payer.prepare(requirement(payer, node, **{field: value}))
    assert refused.value.code == code
    assert payer.channel_state(node.address) is None or payer.channel_state(node.address).max_signed == 0


def test_attack_requirement_naming_another_staking_contract_is_not_signed(payer, node):
    req = requirement(payer, node)
    req["extra"] = {**req["extra"], "staking": Account.create().address}
    with pytest.raises(PaymentRefused) as refused:
        payer.prepare(req)
    assert refused.value.code == "wrong_deployment"


def test_a_requirement_for_another_escrow_is_never_chosen(payer, node):
    foreign = requirement(payer, node)
    foreign["extra"] = {**foreign["extra"], "escrow": Account.create().address}
    assert payer.choose([foreign]) is None
    assert payer.choose([foreign, requirement(payer, node)])["extra"]["escrow"] == payer.escrow
