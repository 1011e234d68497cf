"""A real node process killed hard (``os._exit(137)`` from the fault plug-in ``offchain.devkit.faults``) at each step
of a paid request: the receipt committed (before the answer leaves), the answer sent, the receipt handed over to the
relayer (before the outbox records it). After each it restarts on the same store, serves the payer again, and a
reconciliation (``offchain.devkit.reconcile_stores.reconcile_node``) compares the node's store, the relayer's store and
the chain's ``BatchSettled`` events: every receipt handed over and settled, paid exactly once, no request signed twice,
no two receipts for one cumulative, nothing left pending. An ``exact`` payment whose transfer the relayer made while
the node died before recording it is found settled on-chain at the restart, not left claimed. The steps share one devnet, relayer, node and payer."""

from __future__ import annotations

import base64

import ape
import httpx
import pytest
from node_kit import NodeProc, Payer, chat_body, payment_of, x402_exact_client

from offchain.devkit.devnet import OPG
from offchain.devkit.faults import FAULT_EXIT_CODE, fault_env
from offchain.devkit.reconcile_stores import reconcile_node, until_consistent
from offchain.storage import Database

STEPS = ["receipt_stored", "answered", "handed_over"]


@ape.fixture(scope="module", chain_isolation=False)
def node_actor(devnet):
    return devnet.new_node()


@ape.fixture(scope="module", chain_isolation=False)
def node(devnet, relayer, workdir, node_actor):
    proc = NodeProc(devnet, node_actor, relayer.url, workdir)
    yield proc
    proc.stop()


@ape.fixture(scope="module", chain_isolation=False)
def payer(devnet, node):
    return Payer(devnet.new_payer(deposit=10 * OPG), node.url)


def problems(devnet, relayer, node) -> list[str]:
    return reconcile_node(Database.sqlite(node.store), Database.sqlite(relayer.store), node.address, devnet.escrow,
                          devnet.opg)


@pytest.mark.parametrize("step", STEPS)
def test_a_node_killed_at_each_step_pays_every_receipt_exactly_once(step, devnet, relayer, node, payer):
    node.env.update(fault_env("node", step))
    node.start()
    body = chat_body(f"The node dies at {step}", max_tokens=16)
    try:
        answer = payer.pay(body)
    except httpx.TransportError:  # killed before the answer left
        answer = None
    assert node.process.wait(timeout=30) == FAULT_EXIT_CODE, node.logs()[-2000:]
    node.stop()
    assert (answer is None) == (step == "receipt_stored"), answer and answer.text
    if answer is not None:
        assert answer.status_code == 200, answer.text

    for key in fault_env("node", step):
        node.env.pop(key)
    node.start()  # the same store
    after = payer.pay(chat_body(f"Served after dying at {step}", max_tokens=16))
    assert after.status_code == 200, after.text
    if answer is not None:  # the channel goes on from the receipt the node signed before dying, not beside it
        paid, again = payment_of(answer), payment_of(after)
        assert int(again["cumulative"]) == int(paid["cumulative"]) + int(again["cost"])
    assert until_consistent(lambda: problems(devnet, relayer, node)) == []
    node.stop()


def test_a_node_killed_after_an_exact_transfer_finds_it_settled_at_the_restart(devnet, relayer, node):
    from x402.schemas import PaymentRequired

    actor = devnet.new_payer(deposit=0, extra_opg=10 * OPG)
    body = chat_body("The node dies once the transfer is made", max_tokens=8)
    node.env.update(fault_env("node", "exact_settled"))
    node.start()
    required = PaymentRequired.model_validate(node.client.post("/v1/chat/completions", json=body).json())
    payload = x402_exact_client(devnet, actor, sync=True).create_payment_payload(required)
    header = base64.b64encode(payload.model_dump_json(by_alias=True, exclude_none=True).encode()).decode()
    with pytest.raises(httpx.TransportError):
        node.client.post("/v1/chat/completions", json=body, headers={"PAYMENT-SIGNATURE": header})
    assert node.process.wait(timeout=30) == FAULT_EXIT_CODE, node.logs()[-2000:]
    node.stop()
    for key in fault_env("node", "exact_settled"):
        node.env.pop(key)
    node.start()
    assert until_consistent(lambda: problems(devnet, relayer, node)) == []
    again = node.client.post("/v1/chat/completions", json=body, headers={"PAYMENT-SIGNATURE": header})
    assert again.status_code == 402 and again.json()["error"] == "invalid_exact_evm_nonce_already_used", again.text
    assert devnet.opg.functions.balanceOf(actor.address).call() == 10 * OPG - int(payload.accepted.amount)
    node.stop()
