"""Several relayer processes on one PostgreSQL database, one sender at a time (``offchain/relayer/lease.py``): the
first takes the lease at start, the other follows and hands a gasless deposit and an exact payment posted to it to
the leader through the store (``offchain/relayer/handover.py``), answering the leader's one transaction; a leader
frozen (SIGSTOP) between a batch's write-ahead record and its broadcast loses the lease after the TTL, the new
leader re-broadcasts that journaled-but-unsent transaction (same signed bytes) and sends what comes next, and the
zombie, resumed (SIGCONT), comes back as a follower and sends nothing: every transaction of the shared account on the chain is one the journal holds, each mined once."""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import ape
import psycopg
from eth_account import Account
from lease_faults import PAUSE_FILE
from test_relayer_verify import authorization, exact_request

from offchain.client import OpgClient
from offchain.devkit.devchain import transact
from offchain.devkit.devnet import OPG, ChannelSim, Devnet, RelayerProc, new_key, wait_until
from offchain.devkit.postgres import PostgresCluster

TTL = 1.5
ACCOUNT = 6  # both relayers sign with this facilitator account: one nonce sequence, one sender at a time
PLUGIN = {"OPG_RELAYER_PLUGINS": "lease_faults",
          "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))}


@ape.fixture(scope="module", chain_isolation=False)
def database() -> str:
    cluster = PostgresCluster().start()
    yield cluster.database()
    cluster.stop()


def _lease(proc: RelayerProc) -> dict:
    res = proc.get("/healthz")
    return res.json()["lease"]


def _stored(database: str, sql: str) -> list[tuple]:
    with psycopg.connect(database) as conn:
        return conn.execute(sql).fetchall()


def _metric(proc: RelayerProc, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", proc.get("/metrics").text, re.M)
    assert found, name
    return float(found.group(1))


def _stopped(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"


def _settle(proc: RelayerProc, ch: ChannelSim, n: int) -> list[str]:
    res = proc.post("/settle", {"receipts": [ch.next(amount=OPG // 10) for _ in range(n)]})
    assert res.status_code == 200 and res.json()["accepted"] == n, res.text
    return [r["id"] for r in res.json()["results"]]


def _account_txs(devnet: Devnet, address: str, first_block: int) -> list[str]:
    out = []
    for number in range(first_block, devnet.w3.eth.block_number + 1):
        for tx in devnet.w3.eth.get_block(number, full_transactions=True)["transactions"]:
            if tx["from"] == address:
                out.append("0x" + bytes(tx["hash"]).hex())
    return out


def test_a_zombie_leader_sends_nothing_after_the_takeover_which_rebroadcasts_its_journaled_transaction(
        devnet: Devnet, database: str, tmp_path: Path):
    """End to end; the zombie's own deadline closes ``may_send()`` before its fence is asked: the fence itself is
    attacked at the storage level (``tests/storage/test_storage_fence.py``, ``test_storage_lease.py``)."""
    pause = tmp_path / "pause"
    common = ("--store", database, "--lease-ttl", str(TTL))
    started = time.monotonic()
    a = RelayerProc(devnet, tmp_path / "a.sqlite3", ACCOUNT, *common, "--instance", "relayer-a",
                    env={**PLUGIN, PAUSE_FILE: str(pause)}).start()
    b = None
    try:
        # A single relayer leads from its start (before it answers its first request).
        assert _lease(a) == {"role": "leader", "instance": "relayer-a", "holder": "relayer-a", "epoch": 1}
        assert time.monotonic() - started < 30
        b = RelayerProc(devnet, tmp_path / "b.sqlite3", ACCOUNT, *common, "--instance", "relayer-b").start()
        health = b.get("/healthz").json()
        assert health["ok"] and health["lease"] == {"role": "follower", "instance": "relayer-b",
                                                    "holder": "relayer-a", "epoch": 1}
        assert _metric(b, "opg_relayer_lease_leader") == 0 and _metric(a, "opg_relayer_lease_leader") == 1
        # A gasless deposit posted to the follower: it queues it for the leader through the store, the leader sends
        # it once, and the follower answers that transaction; then either answers it from the record.
        depositor = new_key()
        transact(devnet.w3, devnet.deployer, devnet.opg.functions.transfer(depositor.address, 10 * OPG))
        body = OpgClient(Account.from_key(depositor.key), devnet.url, devnet.deployment_file,
                         relayer_url=b.url).sign_deposit_authorization(5 * OPG)
        sent = b.post("/deposits", body)
        assert sent.status_code == 200 and sent.json()["status"] == "confirmed", sent.text
        assert int(sent.json()["balance"]) == 5 * OPG
        assert a.post("/deposits", body).json()["transaction"] == sent.json()["transaction"]
        assert b.post("/deposits", body).json()["transaction"] == sent.json()["transaction"]
        assert _stored(database, "SELECT tx_hash FROM transactions WHERE kind = 'deposit'") == \
            [(sent.json()["transaction"],)]
        # An exact payment posted to the follower: it hands the payment to the leader through the store, the leader
        # sends it once, and the follower answers that transfer; then either answers the same one.
        merchant = new_key().address
        payload = authorization(devnet, depositor, merchant, 2 * OPG)
        exact = exact_request(devnet, payload, merchant, 2 * OPG)
        paid = b.post("/settle", exact).json()
        assert paid["success"] is True and paid["transaction"], paid
        assert a.post("/settle", exact).json()["transaction"] == paid["transaction"]
        assert b.post("/settle", exact).json()["transaction"] == paid["transaction"]
        assert devnet.opg.functions.balanceOf(merchant).call() == 2 * OPG
        assert _stored(database, "SELECT tx_hash FROM transactions WHERE kind = 'exact'") == [(paid["transaction"],)]
        payer = devnet.new_payer(100 * OPG)
        first = ChannelSim(devnet, payer, devnet.new_node())
        a.wait_receipts(_settle(a, first, 3))  # the leader settles
        assert _metric(b, "opg_relayer_tx_broadcast") == 0  # the follower sent nothing
        broadcast_before = _metric(a, "opg_relayer_tx_broadcast")
        first_block = devnet.w3.eth.block_number + 1

        # A freezes right after recording its next batch transaction, before broadcasting it.
        pause.touch()
        second = ChannelSim(devnet, payer, devnet.new_node())
        ids = _settle(a, second, 3)
        wait_until(lambda: not pause.exists() and _stopped(a.process.pid), timeout=30, what="A frozen after a record")
        [(tx_hash, nonce)] = _stored(database, "SELECT tx_hash, nonce FROM transactions WHERE kind = 'batch' AND"
                                               " done_at IS NULL")
        assert devnet.w3.eth.get_transaction_count(a.address, "pending") == nonce  # never broadcast
        # An exact payment posted to the follower while the leader is frozen stays queued in the store; B answers it
        # once it leads and its own exact worker has sent it (after re-broadcasting A's transaction).
        late_merchant = new_key().address
        late = exact_request(devnet, authorization(devnet, depositor, late_merchant, OPG), late_merchant, OPG)
        with ThreadPoolExecutor(1) as pool:
            handed = pool.submit(b.post, "/settle", late)
            # B takes over after the TTL with the next epoch, re-broadcasts the journaled transaction and follows its
            # batch.
            wait_until(lambda: _lease(b)["role"] == "leader", timeout=TTL * 6, what="B leading")
            assert _lease(b) == {"role": "leader", "instance": "relayer-b", "holder": "relayer-b", "epoch": 2}
            views = b.wait_receipts(ids)
            assert {v["tx"] for v in views} == {tx_hash}  # the very bytes A signed, mined once
            late_paid = handed.result(timeout=30).json()
        assert late_paid["success"] is True and devnet.opg.functions.balanceOf(late_merchant).call() == OPG, late_paid
        [(late_nonce,)] = _stored(database, f"SELECT nonce FROM transactions WHERE tx_hash = '{late_paid['transaction']}'")
        assert late_nonce > nonce  # sent by B, above the transaction A recorded
        third = ChannelSim(devnet, payer, devnet.new_node())
        b.wait_receipts(_settle(b, third, 2))  # and B sends what comes next

        # A resumes: it finds it lost the lease, becomes a follower with no error and sends nothing more.
        log_mark = len(a.logs())
        os.kill(a.process.pid, signal.SIGCONT)
        wait_until(lambda: _lease(a)["role"] == "follower", timeout=TTL * 6, what="A following")
        health = a.get("/healthz").json()
        assert health["ok"] and health["lease"] == {"role": "follower", "instance": "relayer-a",
                                                    "holder": "relayer-b", "epoch": 2}
        fourth = ChannelSim(devnet, payer, devnet.new_node())
        b.wait_receipts(_settle(b, fourth, 2))
        time.sleep(TTL)  # room for a zombie's stray send to show
        # The only transaction A may still broadcast is the one it recorded while it led (same bytes: "already
        # known" or "nonce too low"); it signs and broadcasts nothing new.
        assert _metric(a, "opg_relayer_tx_broadcast") <= broadcast_before + 1
        assert "sent batch" not in a.logs()[log_mark:]
        # The chain: every transaction of the shared account since is in the journal, each mined once, and the
        # channels are paid exactly their receipts.
        # The account's nonce moved after the takeover only by the new leader: one nonce per transaction B
        # broadcast, starting with the one A recorded.
        assert devnet.w3.eth.get_transaction_count(a.address) == nonce + _metric(b, "opg_relayer_tx_broadcast")
        mined = _account_txs(devnet, a.address, first_block)
        journal = {h for (h,) in _stored(database, "SELECT tx_hash FROM transactions")}
        assert mined and len(mined) == len(set(mined)) and set(mined) <= journal
        for ch in (first, second, third, fourth):
            assert devnet.spent(ch.payer, ch.node) == ch.cumulative
    finally:
        if a.process and a.process.poll() is None:
            os.kill(a.process.pid, signal.SIGCONT)
        a.stop()
        if b is not None:
            b.stop()
