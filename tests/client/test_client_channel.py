"""The channel arithmetic of the payer (no chain needed): what cap a voucher gets with requests in flight, which node
claims it accepts, which receipts it refuses, and that the state is shared by processes on one state directory."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest
from client_kit import ScriptedNode
from eth_account import Account

from offchain.client import ChannelConflict, Payer, PayingTransport, format_opg, parse_opg
from offchain.client import state as client_state
from offchain.deployments import CONTRACT_NAMES, PROJECT_ROOT, DeployedContract, Deployment, Params
from offchain.messages import Receipt

CAP = 10**16


def _address() -> str:
    return Account.create().address


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    return Deployment(chainId=31337, contracts={n: DeployedContract(address=_address(), block=0) for n in
                                                CONTRACT_NAMES},
                      params=Params.devnet())


@pytest.fixture()
def node():
    return Account.create()


@pytest.fixture()
def payer(deployment, tmp_path) -> Payer:
    return Payer.from_key("0x" + secrets.token_hex(32), deployment, state=tmp_path / "state")


def requirement(payer: Payer, node, cap: int = CAP, charged: int = 0) -> dict:
    return {"scheme": "opg-credit", "network": payer.network, "asset": payer.token, "amount": str(cap),
            "payTo": node.address, "maxTimeoutSeconds": 300,
            "extra": {"escrow": payer.escrow, "staking": payer.staking, "charged": str(charged)}}


def receipt(payer: Payer, node, amount: int, cumulative: int) -> dict:
    r = Receipt(request_id="0x" + secrets.token_hex(32), payer=payer.address, node=node.address,
                model_id="0x" + "11" * 32, input_hash="0x" + "22" * 32, output_hash="0x" + "33" * 32, amount=amount,
                cumulative=cumulative, timestamp=payer.now())
    wire = {name: getattr(r, attr) for name, _t, attr in Receipt.FIELDS}
    return {"success": True, "receipt": {**wire, "signature": r.sign_with(node.key, payer.staking_domain)},
            "status": "pending"}


def test_opg_amounts_are_decimal_for_people_and_wei_inside():
    assert parse_opg("12.5") == 12_500_000_000_000_000_000 and parse_opg("0.000000000000000001") == 1
    for bad in ("-1", "abc", "0.0000000000000000001", "nan"):
        with pytest.raises(ValueError):
            parse_opg(bad)
    assert format_opg(parse_opg("12.5")) == "12.5" and format_opg(0) == "0" and format_opg(1, 4) == "0.000000000000000001"


def test_the_voucher_covers_the_charge_and_every_cap_in_flight(payer, node):
    a = payer.prepare(requirement(payer, node))
    b = payer.prepare(requirement(payer, node))
    c = payer.prepare(requirement(payer, node, charged=CAP // 2))  # the node counts part of them already
    assert (a.max_cumulative, b.max_cumulative) == (CAP, 2 * CAP)
    assert c.max_cumulative == CAP // 2 + 2 * CAP + CAP


def test_a_node_claim_the_client_cannot_account_for_is_refused(payer, node):
    with pytest.raises(ChannelConflict):
        payer.prepare(requirement(payer, node, charged=1))


def test_a_quote_may_count_caps_of_requests_that_ended_while_it_was_on_its_way(payer, node):
    a = payer.prepare(requirement(payer, node))
    b = payer.prepare(requirement(payer, node))
    sent = time.time()  # c's request leaves; the node quotes it with a and b in flight: charged 2 CAP
    received = time.time()  # its 402 arrives, but a and b end here before the client reads it
    assert payer.complete(a, receipt(payer, node, 3, 3)).ok
    assert payer.complete(b, receipt(payer, node, 4, 7)).ok
    late = requirement(payer, node, charged=2 * CAP)
    with pytest.raises(ChannelConflict):  # what the client made of it before: 2 CAP - 7 wei unexplained
        payer.prepare(late)
    c = payer.prepare(late, window=(sent, received))
    assert c.max_cumulative == 2 * CAP + CAP
    assert payer.complete(c, receipt(payer, node, 5, 12)).ok


def test_a_claim_the_quote_s_window_does_not_explain_is_still_refused(payer, node):
    a = payer.prepare(requirement(payer, node))
    b = payer.prepare(requirement(payer, node))
    sent = time.time()
    received = time.time()
    assert payer.complete(a, receipt(payer, node, 3, 3)).ok
    assert payer.complete(b, receipt(payer, node, 4, 7)).ok
    with pytest.raises(ChannelConflict, match="ended while the node quoted"):  # one wei beyond their caps
        payer.prepare(requirement(payer, node, charged=2 * CAP + 1), window=(sent, received))
    time.sleep(0.01)
    # requests that ended before the quoted request was sent were not in flight when it was quoted
    with pytest.raises(ChannelConflict):
        payer.prepare(requirement(payer, node, charged=2 * CAP), window=(time.time(), time.time()))
    # nor were requests reserved after its 402 arrived
    sent, received = time.time(), time.time()
    time.sleep(0.01)
    d = payer.prepare(requirement(payer, node, charged=7))
    assert payer.complete(d, receipt(payer, node, 1, 8)).ok
    with pytest.raises(ChannelConflict):
        payer.prepare(requirement(payer, node, charged=7 + CAP), window=(sent, received))
    # and a refused payment's own cap is not in the 402 that refuses it
    sent = time.time()
    e = payer.prepare(requirement(payer, node, charged=8), window=(sent, time.time()))
    sent = time.time()
    payer.rejected(e)  # the node answered e's voucher with a corrective 402
    with pytest.raises(ChannelConflict):
        payer.prepare(requirement(payer, node, charged=8 + CAP), window=(sent, time.time()), retry_of=e)
    assert payer.prepare(requirement(payer, node, charged=8 + CAP), window=(sent, time.time())).max_cumulative \
        == 8 + 2 * CAP  # (another request's quote may have counted it)


@pytest.mark.parametrize("lie", [0, 1])
def test_concurrent_requests_whose_receipts_land_before_a_third_s_402_is_read(payer, node, lie):
    """The race a benchmark found: c's 402 counts the caps of a and b, in flight on the node; a and b end (their
    smaller costs recorded, their caps no longer in flight) before the client reads it. An honest node is paid; a
    node claiming one wei more than that is refused."""
    fake = ScriptedNode(payer, node, cost=CAP // 10, cap=CAP)
    c_quoted, ab_done = threading.Event(), threading.Event()

    def on_serve(body):  # a and b stay in flight on the node until c is quoted
        if body["messages"][0]["content"] != "c":
            assert c_quoted.wait(10)

    def on_quote(body):  # c's 402 leaves the node at once but reaches the client after a's and b's receipts
        if body["messages"][0]["content"] == "c":
            c_quoted.set()
            assert ab_done.wait(10)

    fake.on_serve, fake.on_quote = on_serve, on_quote
    results: dict[str, httpx.Response] = {}
    with httpx.Client(transport=PayingTransport(payer, fake.transport()), base_url="http://node") as http:
        def ask(name: str) -> None:
            results[name] = http.post("/v1/chat/completions",
                                      json={"model": "m", "messages": [{"role": "user", "content": name}]})

        first = [threading.Thread(target=ask, args=(n,)) for n in ("a", "b")]
        for t in first:
            t.start()
        deadline = time.time() + 10
        while len(fake.inflight) < 2 and time.time() < deadline:
            time.sleep(0.005)
        assert len(fake.inflight) == 2
        fake.extra_claim = lie
        third = threading.Thread(target=ask, args=("c",))
        third.start()
        assert c_quoted.wait(10)
        for t in first:
            t.join(10)
        assert [results[n].status_code for n in "ab"] == [200, 200]  # receipts checked, caps out of flight
        assert payer.channel_state(node.address).inflight == {}
        ab_done.set()
        third.join(10)
    assert fake.quotes[-1] == 2 * CAP + lie  # c's 402: a's and b's caps (and the lie)
    c = results["c"]
    if lie:
        assert c.status_code == 402 and c.headers["x-opg-client-refusal"] == "channel_conflict"
        assert fake.cumulative == 2 * fake.cost
    else:
        assert c.status_code == 200, c.text
        assert c.extensions["opg_payment"].outcome.ok
        st = payer.channel_state(node.address)
        assert st.charged == fake.cumulative == 3 * fake.cost and st.inflight == {}


def test_a_paid_request_fsyncs_nothing_on_its_path_and_a_block_with_its_evidence(payer, node, monkeypatch):
    calls = []
    real = client_state.os.fsync
    monkeypatch.setattr(client_state.os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    res = payer.prepare(requirement(payer, node))
    # the voucher's cap is written, not fsynced: a power cut loses it, and the node's corrective 402 (checked against
    # the relayer's channel view) restores it (issue 15, item 7: fsync off the request path)
    assert len(calls) == 0
    assert payer.complete(res, receipt(payer, node, 3, 3)).ok
    assert len(calls) == 0  # an accepted receipt's record is written, not fsynced; nor is the channel update
    payer.rejected(payer.prepare(requirement(payer, node, charged=3)))
    assert len(calls) == 0
    bad = payer.prepare(requirement(payer, node, charged=3))
    assert not payer.complete(bad, receipt(payer, node, CAP + 1, CAP + 4)).ok
    assert len(calls) == 4  # a block is: its own file (and its folder), the channel file, then the record (evidence)
    st = payer.channel_state(node.address)
    assert st.blocked and st.charged == 3 and st.inflight == {}


def test_one_http_client_per_payer_for_the_relayer_and_the_clock(deployment, tmp_path):
    p = Payer.from_key("0x" + secrets.token_hex(32), deployment, state=tmp_path / "s", rpc_url="http://127.0.0.1:9")
    client = p.http()
    assert p.http() is client and p.block_time._http() is client
    assert abs(p.now() - time.time()) <= 1  # an unreachable RPC: the wall clock
    p.close()
    assert p.http() is not client
    p.close()


def test_a_request_cut_short_leaves_its_cap_as_what_the_node_may_have_billed(payer, node):
    payer.abandon(payer.prepare(requirement(payer, node)))
    assert payer.prepare(requirement(payer, node, charged=CAP // 3)).max_cumulative == CAP // 3 + CAP
    with pytest.raises(ChannelConflict):
        payer.prepare(requirement(payer, node, charged=3 * CAP))


def test_receipts_of_concurrent_requests_may_arrive_in_any_order(payer, node):
    a = payer.prepare(requirement(payer, node))
    b = payer.prepare(requirement(payer, node))
    # the node finished a first (cumulative 3), then b (cumulative 3 + 4); the client reads b's receipt first
    assert payer.complete(b, receipt(payer, node, 4, 7)).ok
    assert payer.complete(a, receipt(payer, node, 3, 3)).ok
    st = payer.channel_state(node.address)
    assert st.charged == 7 and st.received == 7 and st.inflight == {}


def test_a_request_may_be_billed_under_a_later_voucher_of_the_channel(payer, node):
    a = payer.prepare(requirement(payer, node))  # voucher CAP
    b = payer.prepare(requirement(payer, node))  # voucher 2 CAP, the channel's best
    assert payer.complete(b, receipt(payer, node, CAP - 5, CAP - 5)).ok
    # a finished last: its cumulative is above its own voucher, within the best one (the node settles with that)
    outcome = payer.complete(a, receipt(payer, node, CAP - 5, 2 * CAP - 10))
    assert outcome.ok and outcome.checks["cumulativeWithinVoucher"]


def test_a_receipt_above_every_voucher_signed_blocks_the_node(payer, node):
    res = payer.prepare(requirement(payer, node))
    outcome = payer.complete(res, receipt(payer, node, 1, CAP + 1))
    assert not outcome.ok and "exceeds the highest voucher cap" in outcome.problem


def test_a_receipt_billing_requests_never_made_blocks_the_node(payer, node):
    res = payer.prepare(requirement(payer, node))
    outcome = payer.complete(res, receipt(payer, node, 1, 5))  # 4 wei "before" this request, never charged
    assert not outcome.ok and "this client was charged 0 wei" in outcome.problem
    with pytest.raises(Exception, match="refusing to pay node"):
        payer.prepare(requirement(payer, node))


def test_a_receipt_not_signed_by_the_node_blocks_it(payer, node):
    res = payer.prepare(requirement(payer, node))
    forged = receipt(payer, Account.create(), 1, 1)
    forged["receipt"]["node"] = node.address
    outcome = payer.complete(res, forged)
    assert not outcome.ok and "not signed by node" in outcome.problem


def test_caps_in_flight_in_another_process_count_and_a_dead_one_s_turn_unreceipted(payer, node, deployment,
                                                                                  tmp_path):
    dep = tmp_path / "deployment.json"
    dep.write_text(deployment.model_dump_json())
    script = textwrap.dedent(f"""
        import sys, time
        from offchain.client import Payer
        p = Payer("{payer.address}", "{payer._signer_key}", "{dep}", state="{payer.state.root}")
        req = {json.dumps(requirement(payer, node))}
        print(p.prepare(req).max_cumulative, flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT)
    try:
        assert int(child.stdout.readline()) == CAP
        assert payer.prepare(requirement(payer, node)).max_cumulative == 2 * CAP
    finally:
        child.kill()
        child.wait()
    payer.prepare(requirement(payer, node))  # the dead child's request now counts as ended without a receipt
    st = payer.channel_state(node.address)
    assert st.unreceipted_total == CAP and len(st.inflight) == 2
