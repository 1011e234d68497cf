"""Crash recovery: the relayer killed (SIGKILL) with a batch sent but not confirmed pays every accepted receipt
exactly once after a restart; nothing acknowledged is lost, nothing is paid twice."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from relayer_faults import FAULT_EXIT_CODE
from test_relayer_rejection import unconfirmed_transactions
from web3.exceptions import TransactionNotFound

from offchain.devkit.devnet import OPG, ChannelSim, RelayerProc, wait_until

# The fault plug-in (tests/relayer/relayer_faults.py), installed in the relayer process through the environment.
FAULTS = {"OPG_RELAYER_PLUGINS": "relayer_faults",
          "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))}


@pytest.fixture()
def channels(devnet):
    nodes = [devnet.new_node() for _ in range(2)]
    payers = [devnet.new_payer(100 * OPG) for _ in range(2)]
    return [ChannelSim(devnet, p, n) for p in payers for n in nodes]


def submit(relayer: RelayerProc, channels: list[ChannelSim], rounds: int) -> list[str]:
    ids = []
    for _ in range(rounds):
        res = relayer.post("/settle", {"receipts": [ch.next(OPG // 5) for ch in channels]})
        assert res.status_code == 200 and res.json()["refused"] == 0, res.text
        ids += [r["id"] for r in res.json()["results"]]
    one = relayer.post("/settle", channels[0].next(OPG // 5))
    assert one.status_code == 200
    return ids + [one.json()["id"]]


def balances(devnet, channels):
    return {ch.payer.address: devnet.balance(ch.payer) for ch in channels}


def assert_paid_exactly_once(devnet, channels, before):
    for ch in channels:
        assert devnet.spent(ch.payer, ch.node) == ch.cumulative
    for payer, balance in before.items():
        paid = sum(ch.cumulative for ch in channels if ch.payer.address == payer)
        assert devnet.balance(next(ch.payer for ch in channels if ch.payer.address == payer)) == balance - paid


def mined(devnet, tx_hash: str):
    """The transaction's receipt, or None while it is recorded as sent but not yet broadcast or mined."""
    try:
        return devnet.w3.eth.get_transaction_receipt(tx_hash)
    except TransactionNotFound:
        return None


def test_sigkill_with_batch_pending_in_mempool(devnet, channels, tmp_path):
    """Automine off: the batch transaction waits in the mempool while the relayer is killed; mined, then restart."""
    before = balances(devnet, channels)
    relayer = RelayerProc(devnet, tmp_path / "r.sqlite3", dev_account=4).start()
    try:
        devnet.rpc("evm_setAutomine", False)
        ids = submit(relayer, channels, rounds=3)
        sent = wait_until(lambda: relayer.get("/batches", params={"status": "sent"}).json(), what="a sent batch")
        batch_id, tx_hash = sent[0]["id"], sent[0]["txHash"]
        more = submit(relayer, channels, rounds=1)  # accepted while the batch is in flight
        relayer.kill9()
    finally:
        relayer.kill9()
    pending_tx = devnet.w3.eth.get_transaction(tx_hash)
    assert pending_tx["blockNumber"] is None  # sent, not mined
    devnet.rpc("evm_mine")
    devnet.rpc("evm_setAutomine", True)
    assert devnet.w3.eth.get_transaction_receipt(tx_hash)["status"] == 1
    relayer.start()
    try:
        views = relayer.wait_receipts(ids + more)
        assert {v["batchId"] for v in views if v["id"] in ids[:4]} == {batch_id}
        batch = relayer.get(f"/batches/{batch_id}").json()
        assert batch["status"] == "confirmed" and batch["transactions"] == [tx_hash] and batch["txHash"] == tx_hash
        assert_paid_exactly_once(devnet, channels, before)
    finally:
        relayer.stop()


def test_exit_after_building_a_batch_before_signing_it(devnet, channels, tmp_path):
    """The relayer dies with a batch built (committed: its receipts point to it) and nothing signed for it: the
    restarted relayer sends that batch (or rebuilds it) and every accepted receipt is paid exactly once."""
    before = balances(devnet, channels)
    store = tmp_path / "r.sqlite3"
    crashing = RelayerProc(devnet, store, 5, env={**FAULTS, "OPG_RELAYER_FAULT": "exit_after_build"}).start()
    ids = submit(crashing, channels, rounds=2)
    assert crashing.wait_exit() == FAULT_EXIT_CODE
    crashing.stop()
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
        built = conn.execute("SELECT id FROM batches WHERE status = 'built'").fetchall()
        assert built, "the crash came after a batch was built"
        assert conn.execute("SELECT count(*) FROM transactions").fetchone()[0] == 0, "nothing was signed"
    assert all(devnet.spent(ch.payer, ch.node) == 0 for ch in channels)
    relayer = RelayerProc(devnet, store, 5).start()
    try:
        views = relayer.wait_receipts(ids)
        assert all(v["status"] == "settled" for v in views), views
        assert_paid_exactly_once(devnet, channels, before)
        assert {relayer.get(f"/batches/{v['batchId']}").json()["status"] for v in views} == {"confirmed"}
        wait_until(lambda: unconfirmed_transactions(store) == 0, what="every journal record marked done")
    finally:
        relayer.stop()


def test_exit_right_after_recording_sent(devnet, channels, tmp_path):
    """The relayer dies after recording the batch as sent and before broadcasting it: the transaction is unknown
    to the chain on restart, so the restarted relayer, taking the sending lease, re-broadcasts the journaled
    transaction (the very bytes signed before the crash: ``TxManager.takeover``) and the batch confirms with it."""
    before = balances(devnet, channels)
    store = tmp_path / "r.sqlite3"
    crashing = RelayerProc(devnet, store, 5, env=FAULTS).start()
    ids = submit(crashing, channels, rounds=2)
    assert crashing.wait_exit() == FAULT_EXIT_CODE
    crashing.stop()
    assert all(devnet.spent(ch.payer, ch.node) == 0 for ch in channels)
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
        [(recorded,)] = conn.execute("SELECT tx_hash FROM transactions WHERE kind = 'batch'").fetchall()
    with pytest.raises(TransactionNotFound):  # recorded, never broadcast
        devnet.w3.eth.get_transaction(recorded)
    relayer = RelayerProc(devnet, store, 5).start()
    try:
        views = relayer.wait_receipts(ids)
        batch = relayer.get(f"/batches/{views[0]['batchId']}").json()
        # One attempt: the recorded transaction itself, re-broadcast and mined; nothing signed again.
        assert batch["status"] == "confirmed" and batch["attempts"] == 1 and batch["transactions"] == [recorded]
        assert devnet.w3.eth.get_transaction_receipt(batch["txHash"])["status"] == 1
        assert batch["txHash"] == batch["transactions"][-1]
        assert_paid_exactly_once(devnet, channels, before)
        # Resubmitting everything after the restart changes nothing.
        again = relayer.post("/settle", channels[0].next(OPG // 5))
        assert again.status_code == 200
        relayer.wait_receipts([again.json()["id"]])
        assert_paid_exactly_once(devnet, channels, before)
        # The journal reflects the chain: every record (the retried one and any it replaced) is marked done.
        wait_until(lambda: unconfirmed_transactions(store) == 0, what="every journal record marked done")
    finally:
        relayer.stop()


def test_sigkill_while_waiting_for_confirmations(devnet, channels, tmp_path):
    """Mined but not yet N blocks deep when killed: after restart the batch confirms once deep enough."""
    before = balances(devnet, channels)
    relayer = RelayerProc(devnet, tmp_path / "r.sqlite3", 6, "--confirmations", "3").start()
    try:
        ids = submit(relayer, channels, rounds=1)
        sent = wait_until(lambda: relayer.get("/batches", params={"status": "sent"}).json(), what="a sent batch")
        wait_until(lambda: mined(devnet, sent[0]["txHash"]), what="mined")
        relayer.kill9()
        assert_paid_exactly_once(devnet, channels, before)  # paid on-chain already, not yet confirmed
        relayer.start()
        assert relayer.get(f"/batches/{sent[0]['id']}").json()["status"] == "sent"
        devnet.rpc("anvil_mine", "0x2")
        relayer.wait_receipts(ids)
        assert relayer.get(f"/batches/{sent[0]['id']}").json()["status"] == "confirmed"
        assert_paid_exactly_once(devnet, channels, before)
    finally:
        relayer.stop()
