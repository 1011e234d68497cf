"""A real node process killed hard (``os._exit(137)`` from the fault plug-in ``offchain.devkit.faults``) at each step
of a paid request: the receipt committed (before the answer leaves), the answer sent, the receipt handed over to the
relayer (before the outbox records it). After each it restarts on the same store, serves the payer again, and a
reconciliation (``offchain.devkit.reconcile_stores.reconcile_node``) compares the node's store, the relayer's store and
the chain's ``BatchSettled`` events: every receipt handed over and settled, paid exactly once, no request signed twice,
no two receipts for one cumulative, nothing left pending. The steps share one devnet, relayer, node and payer."""

from __future__ import annotations

import ape
import httpx
import pytest
from node_kit import NodeProc, Payer, chat_body, payment_of

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
    return reconcile_node(Database.sqlite(node.store), Database.sqlite(relayer.store), node.address, devnet.escrow)


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
