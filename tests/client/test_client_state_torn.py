"""The channel file written in place off the request path (issue 15, item 7) is interrupted, torn, or lost: the
over-charge block survives in its own fsynced file, and the client still refuses to sign for the cheating node."""

from __future__ import annotations

import os
import secrets

import pytest
from eth_account import Account

from offchain.client import Payer
from offchain.client import state as st_mod
from offchain.client.state import ClientState, InFlight
from offchain.deployments import CONTRACT_NAMES, DeployedContract, Deployment, Params
from offchain.messages import Receipt

PAYER, NODE, ESCROW = "0x" + "aa" * 20, "0x" + "bb" * 20, "0x" + "cc" * 20


def _block(cs: ClientState) -> None:
    with cs.channel(31337, ESCROW, PAYER, NODE) as (st, _):
        st.inflight["t1"] = InFlight(cap=10**15, max_cumulative=10**15, pid=os.getpid(), deadline=0.0, started=0.0)
        st.unreceipted = [[10**15, 1.0]] * 20  # a long file, so the next write in place is shorter
    with cs.channel(31337, ESCROW, PAYER, NODE) as (st, _):
        st.blocked, st.blocked_receipt = "over-charged", "0x" + "11" * 32


def test_attack_interrupted_in_place_write_between_write_and_truncate_keeps_the_block(tmp_path, monkeypatch):
    cs = ClientState(tmp_path)
    _block(cs)

    def interrupted(fd, length):
        raise KeyboardInterrupt  # a second Ctrl-C after the write, before the truncation

    monkeypatch.setattr(st_mod.os, "ftruncate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        with cs.channel(31337, ESCROW, PAYER, NODE, durable=False) as (st, _):
            st.inflight.pop("t1")
            st.unreceipted = []
    monkeypatch.undo()
    after = cs.load_channel(31337, ESCROW, PAYER, NODE)
    assert after is not None and after.blocked == "over-charged", f"channel read back as {after!r}"
    assert after.inflight == {} and after.unreceipted == []  # the new text, padded: it parses
    with cs.channel(31337, ESCROW, PAYER, NODE, durable=False) as (st, existed):
        assert existed and st.blocked == "over-charged"
    raw = cs.channel_path(31337, ESCROW, PAYER, NODE).read_bytes()
    assert raw == raw.rstrip(b" ")  # the next write in place truncated the padding


def test_attack_torn_channel_file_is_recovered_without_forgetting_the_block(tmp_path):
    cs = ClientState(tmp_path)
    _block(cs)
    path = cs.channel_path(31337, ESCROW, PAYER, NODE)
    path.write_bytes(path.read_bytes()[:57] + b"\0" * 40)  # a power cut in the middle of a write in place
    after = cs.load_channel(31337, ESCROW, PAYER, NODE)
    assert after is not None and after.blocked == "over-charged" and after.blocked_receipt == "0x" + "11" * 32
    with cs.channel(31337, ESCROW, PAYER, NODE) as (st, existed):
        assert not existed  # rebuilt from the relayer by the caller ...
        assert st.blocked == "over-charged"  # ... with the block kept
    path.unlink()  # the channel file lost altogether
    assert cs.load_channel(31337, ESCROW, PAYER, NODE).blocked == "over-charged"


def test_a_cleared_block_stays_cleared_after_a_torn_write(tmp_path):
    cs = ClientState(tmp_path)
    _block(cs)
    with cs.channel(31337, ESCROW, PAYER, NODE) as (st, _):
        st.blocked = st.blocked_receipt = st.blocked_at = None  # `opg ... --unblock`
    path = cs.channel_path(31337, ESCROW, PAYER, NODE)
    path.write_bytes(b"{\"charged\": ")
    assert cs.load_channel(31337, ESCROW, PAYER, NODE) is None
    with cs.channel(31337, ESCROW, PAYER, NODE) as (st, existed):
        assert not existed and st.blocked is None


def test_attack_cheating_node_is_still_refused_after_its_channel_file_tore(tmp_path):
    deployment = Deployment(chainId=31337, contracts={n: DeployedContract(address=Account.create().address, block=0)
                                                      for n in CONTRACT_NAMES}, params=Params.devnet())
    payer = Payer.from_key("0x" + secrets.token_hex(32), deployment, state=tmp_path / "state",
                           relayer_url="http://127.0.0.1:9")
    node = Account.create()
    req = {"scheme": "opg-credit", "network": payer.network, "asset": payer.token, "amount": str(10**16),
           "payTo": node.address, "maxTimeoutSeconds": 300,
           "extra": {"escrow": payer.escrow, "staking": payer.staking, "charged": "0"}}
    res = payer.prepare(req)
    r = Receipt(request_id="0x" + secrets.token_hex(32), payer=payer.address, node=node.address,
                model_id="0x" + "11" * 32, input_hash="0x" + "22" * 32, output_hash="0x" + "33" * 32, amount=1,
                cumulative=5, timestamp=payer.now())  # bills 4 wei this client was never charged
    wire = {name: getattr(r, attr) for name, _t, attr in Receipt.FIELDS}
    bad = {"success": True, "receipt": {**wire, "signature": r.sign_with(node.key, payer.staking_domain)},
           "status": "pending"}
    assert not payer.complete(res, bad).ok
    path = payer.state.channel_path(31337, payer.escrow, payer.address, node.address)
    path.write_bytes(b"\0" * 16)  # torn
    with pytest.raises(Exception, match="refusing to pay node"):
        payer.prepare(req)
