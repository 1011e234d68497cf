"""The channel arithmetic of the payer (no chain needed): what cap a voucher gets with requests in flight, which node
claims it accepts, which receipts it refuses, and that the state is shared by processes on one state directory."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import textwrap

import pytest
from eth_account import Account

from offchain.client import ChannelConflict, Payer, format_opg, parse_opg
from offchain.deployments import PROJECT_ROOT, DeployedContract, Deployment, Params
from offchain.messages import Receipt

CAP = 10**16


def _address() -> str:
    return Account.create().address


@pytest.fixture(scope="module")
def deployment() -> Deployment:
    return Deployment(chainId=31337, contracts={n: DeployedContract(address=_address(), block=0) for n in
                                                ("OPG", "CreditEscrow", "NodeStaking", "RewardDistributor")},
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
