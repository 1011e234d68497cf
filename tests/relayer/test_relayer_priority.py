"""R1 and R2 (issue 13) against the real relayer: credits /verify promised to one node cannot be spent elsewhere.

A relayer with a long batch age (nothing settles on its own for minutes), so what settles does so because the
relayer reacted: a payer's proposal (``BatchProposed``) makes it settle that payer's accepted receipts at once, well
inside the escrow's claim delay; a live proposal's claims and every voucher /verify accepted are reserved credits;
and in a batch, the claims of channels /verify promised go before claims nobody was promised.
"""

from __future__ import annotations

import time

import pytest

from offchain.devkit.devchain import transact
from offchain.devkit.devnet import OPG, ChannelSim, RelayerProc, item, wait_until
from offchain.messages import Claim

SETTLED = 0
SKIP_INSUFFICIENT_BALANCE = 4


def credit_request(devnet, payer_addr, node_addr, cap, signature, price=OPG):
    requirements = {"scheme": "opg-credit", "network": devnet.network, "asset": devnet.opg.address,
                    "amount": str(price), "payTo": node_addr, "maxTimeoutSeconds": 60,
                    "extra": {"escrow": devnet.escrow.address, "staking": devnet.staking.address}}
    return {"x402Version": 2, "paymentRequirements": requirements, "paymentPayload": {
        "x402Version": 2, "accepted": requirements,
        "payload": {"voucher": {"payer": payer_addr, "node": node_addr, "maxCumulative": str(cap)},
                    "signature": signature}}}


@pytest.fixture(scope="module")
def slow_relayer(devnet, tmp_path_factory):
    """Settles only when something makes a payer urgent (batch age 10 minutes)."""
    proc = RelayerProc(devnet, tmp_path_factory.mktemp("priority") / "relayer.sqlite3", dev_account=6,
                       batch_age=600, batch_size=10_000).start()
    yield proc
    proc.stop()


def verify(relayer, devnet, ch: ChannelSim, cap: int, price: int = OPG) -> dict:
    v = ch.voucher(cap)
    res = relayer.post("/verify", credit_request(devnet, ch.payer.address, ch.node.address, cap, v.signature, price))
    assert res.status_code == 200, res.text
    return res.json()


def propose(devnet, proposer, claims: list[tuple], root: bytes = b"\x00" * 32) -> tuple[int, int]:
    receipt = transact(devnet.w3, proposer.key, devnet.escrow.functions.propose_batch(claims, root))
    [due, expires] = devnet.escrow.functions.proposal_of(
        devnet.escrow.functions.proposal_id(claims, root).call()).call()
    assert receipt["status"] == 1
    return due, expires


def drain_claim(devnet, payer, colluder, amount: int) -> tuple:
    ch = ChannelSim(devnet, payer, colluder)
    v = ch.voucher(amount)
    return Claim(payer=payer.address, node=colluder.address, max_cumulative=amount, signature=v.signature,
                 total=amount).as_tuple()


def test_attack_payer_proposing_to_settle_its_credits_to_its_own_node_is_beaten_by_the_relayer(
    devnet, slow_relayer
):
    """The honest node served (almost) the whole balance against a voucher /verify accepted; the payer proposes to
    settle everything to a node it controls. The relayer settles the honest receipt before the proposal is due,
    and the colluding claim is skipped for the balance it no longer has."""
    payer, node, colluder = devnet.new_payer(10 * OPG), devnet.new_node(), devnet.new_node()
    ch = ChannelSim(devnet, payer, node)
    assert verify(slow_relayer, devnet, ch, 10 * OPG, price=9 * OPG)["isValid"] is True
    receipt = ch.receipt(9 * OPG)
    ch.cumulative = 9 * OPG
    res = slow_relayer.post("/settle", item(receipt, ch.voucher(10 * OPG)))
    assert res.status_code == 200 and res.json()["status"] == "pending", res.text
    time.sleep(2)
    assert devnet.spent(payer, node) == 0  # nothing settles by itself
    drain = [drain_claim(devnet, payer, colluder, 10 * OPG)]
    due, _ = propose(devnet, colluder, drain)
    wait_until(lambda: devnet.spent(payer, node) == 9 * OPG, timeout=due - devnet.chain_now() + 5,
               what="the relayer settling the promised receipt before the proposal is due")
    assert devnet.chain_now() < due  # well inside the claim delay
    while devnet.chain_now() < due:
        time.sleep(0.5)
        devnet.rpc("evm_mine")
    fn = devnet.escrow.functions.settle_batch(drain, b"\x00" * 32)
    assert fn.call({"from": colluder.address}) == [SKIP_INSUFFICIENT_BALANCE]
    transact(devnet.w3, colluder.key, fn, gas=500_000)
    assert devnet.spent(payer, colluder) == 0 and devnet.spent(payer, node) == 9 * OPG
    assert slow_relayer.receipt_status(res.json()["id"])["status"] == "settled"


def test_attack_live_proposal_credits_are_not_promised_to_another_node(devnet, slow_relayer):
    """A proposal made in advance cannot be a standing option: until it expires, /verify counts its claims as
    reserved, so no node is promised the credits it may take."""
    payer, node, colluder = devnet.new_payer(10 * OPG), devnet.new_node(), devnet.new_node()
    propose(devnet, colluder, [drain_claim(devnet, payer, colluder, 8 * OPG)])
    time.sleep(3)  # the relayer polls BatchProposed every second
    ch = ChannelSim(devnet, payer, node)
    body = verify(slow_relayer, devnet, ch, 3 * OPG)
    assert body["isValid"] is False and body["invalidReason"] == "insufficient_balance", body
    assert verify(slow_relayer, devnet, ch, 2 * OPG)["isValid"] is True  # what the proposal leaves


def test_attack_second_node_is_not_promised_credits_promised_to_the_first(devnet, slow_relayer):
    """/verify reserves what it accepts at once, not only when the receipt arrives after serving: two nodes are
    never promised the same credits."""
    payer, node, other = devnet.new_payer(10 * OPG), devnet.new_node(), devnet.new_node()
    assert verify(slow_relayer, devnet, ChannelSim(devnet, payer, node), 7 * OPG)["isValid"] is True
    body = verify(slow_relayer, devnet, ChannelSim(devnet, payer, other), 4 * OPG)
    assert body["isValid"] is False and body["invalidReason"] == "insufficient_balance", body
    assert verify(slow_relayer, devnet, ChannelSim(devnet, payer, other), 3 * OPG)["isValid"] is True


def test_attack_unpromised_receipts_handed_to_the_relayer_are_paid_after_the_promised_ones(devnet, slow_relayer):
    """A colluding node hands the relayer receipts under a voucher for the whole balance that /verify never
    accepted, in the same batch as the honest node's: the honest (promised) claim goes first whatever the
    addresses' order, and the colluding one is rejected for the balance left."""
    payer = devnet.new_payer(10 * OPG)
    colluder, node = sorted([devnet.new_node(), devnet.new_node()], key=lambda a: a.address.lower())
    # The colluder's address sorts first: in an order by node alone its claim would be paid first.
    honest = ChannelSim(devnet, payer, node)
    assert verify(slow_relayer, devnet, honest, 10 * OPG, price=6 * OPG)["isValid"] is True
    honest_receipt = honest.receipt(6 * OPG)
    bad = ChannelSim(devnet, payer, colluder)
    bad_receipt = bad.receipt(10 * OPG)
    bad_res = slow_relayer.post("/settle", item(bad_receipt, bad.voucher(10 * OPG)))
    good_res = slow_relayer.post("/settle", item(honest_receipt, honest.voucher(10 * OPG)))
    assert bad_res.status_code == 200 and good_res.status_code == 200
    # Make the payer urgent (a withdrawal request): the batch with both claims is built at once.
    transact(devnet.w3, payer.key, devnet.escrow.functions.request_withdrawal(OPG))
    wait_until(lambda: slow_relayer.receipt_status(good_res.json()["id"])["status"] != "pending", timeout=30,
               what="the batch")
    assert slow_relayer.receipt_status(good_res.json()["id"])["status"] == "settled"
    assert slow_relayer.receipt_status(bad_res.json()["id"])["status"] == "rejected"
    assert devnet.spent(payer, node) == 6 * OPG and devnet.spent(payer, colluder) == 0


def test_verify_promises_a_node_no_more_than_its_pay_capacity(devnet, slow_relayer):
    """The honest path of R10 at /verify: a node is promised up to its pay capacity (what settlement may still pay
    it), counting what it was already promised on other channels, and no more."""
    node = devnet.new_node()
    capacity = devnet.staking.functions.pay_capacity(node.address).call()
    first, second = devnet.new_payer(capacity), devnet.new_payer(capacity)
    assert verify(slow_relayer, devnet, ChannelSim(devnet, first, node), capacity - 3 * OPG)["isValid"] is True
    body = verify(slow_relayer, devnet, ChannelSim(devnet, second, node), 3 * OPG + 1)
    assert body["isValid"] is False and body["invalidReason"] == "node_capacity_exceeded", body
    assert verify(slow_relayer, devnet, ChannelSim(devnet, second, node), 3 * OPG)["isValid"] is True


def test_attack_one_wei_proposal_to_a_node_cannot_leave_its_promised_pay_short(devnet, slow_relayer):
    """The review's capacity grief (v3): an accomplice proposes a 1-wei claim to an honest node, so that once it
    settles the node's pay capacity is 1 wei short of what a payer is served, whose claim would then be skipped
    (reason 2) while it withdraws its credits. /verify counts the live proposal against the node's capacity (the
    payer is promised at most capacity - 1 wei), and the relayer settles the node's receipts at once since a live
    proposal pays that node: the node is paid in full, the 1 wei too."""
    node = devnet.new_node()
    capacity = devnet.staking.functions.pay_capacity(node.address).call()
    payer, accomplice = devnet.new_payer(capacity), devnet.new_payer(1)
    fill = [Claim(payer=accomplice.address, node=node.address, max_cumulative=1,
                  signature=ChannelSim(devnet, accomplice, node).voucher(1).signature, total=1).as_tuple()]
    due, _ = propose(devnet, accomplice, fill)
    time.sleep(3)  # the relayer polls BatchProposed every second
    ch = ChannelSim(devnet, payer, node)
    body = verify(slow_relayer, devnet, ch, capacity, price=capacity)
    assert body["isValid"] is False and body["invalidReason"] == "node_capacity_exceeded", body
    served = capacity - 1  # what the proposal leaves of the node's capacity
    assert verify(slow_relayer, devnet, ch, served, price=served)["isValid"] is True
    receipt = ch.receipt(served)
    ch.cumulative = served
    res = slow_relayer.post("/settle", item(receipt, ch.voucher(served)))
    assert res.status_code == 200 and res.json()["status"] == "pending", res.text
    # received after the proposal: settled at once all the same (batch age is 10 minutes)
    wait_until(lambda: devnet.spent(payer, node) == served, timeout=max(5, due - devnet.chain_now() + 5),
               what="the relayer settling the node's promised receipt before the proposal is due")
    assert devnet.chain_now() < due
    while devnet.chain_now() < due:
        time.sleep(0.5)
        devnet.rpc("evm_mine")
    fn = devnet.escrow.functions.settle_batch(fill, b"\x00" * 32)
    assert fn.call({"from": accomplice.address}) == [SETTLED]  # the 1 wei fits in what is left
    transact(devnet.w3, accomplice.key, fn, gas=500_000)
    assert devnet.balance(payer) == 1  # the payer keeps only what it was never served
    assert devnet.spent(payer, node) + devnet.spent(accomplice, node) == capacity  # paid in full
    assert slow_relayer.receipt_status(res.json()["id"])["status"] == "settled"


def test_unfunded_proposal_to_a_node_holds_only_what_its_payer_can_pay(devnet, slow_relayer):
    """Counting proposals against a node's pay capacity is no free lever on the node: a proposed claim counts only
    what its payer's credits can pay (here 1 wei of a claim for the whole capacity), so an unfunded proposal
    cannot make /verify refuse the node's paying customers."""
    node = devnet.new_node()
    capacity = devnet.staking.functions.pay_capacity(node.address).call()
    payer, griefer = devnet.new_payer(capacity), devnet.new_payer(1)
    claim = Claim(payer=griefer.address, node=node.address, max_cumulative=capacity,
                  signature=ChannelSim(devnet, griefer, node).voucher(capacity).signature, total=capacity)
    propose(devnet, griefer, [claim.as_tuple()])
    time.sleep(3)  # the relayer polls BatchProposed every second
    ch = ChannelSim(devnet, payer, node)
    body = verify(slow_relayer, devnet, ch, capacity)
    assert body["isValid"] is False and body["invalidReason"] == "node_capacity_exceeded", body
    assert verify(slow_relayer, devnet, ch, capacity - 1)["isValid"] is True
