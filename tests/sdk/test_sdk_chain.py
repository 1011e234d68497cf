"""The SDK against a real deployment on a private anvil: connect's refusals, the dataclass reads and the one
BatchSettled decoder, the protocol constants against the contracts, the clock, and the transaction manager (nonce
gaps, replacing a stuck transaction with automine off, the write-ahead journal surviving a restart)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from eth_account import Account

from offchain.daemon.keys import anvil_key
from offchain.daemon.settings import ConfigError, DaemonSettings
from offchain.devkit.devchain import transact
from offchain.devkit.devnet import OPG, Devnet, new_key, rand32
from offchain.messages import Claim, Voucher
from offchain.sdk import constants
from offchain.sdk.clock import ProtocolClock
from offchain.sdk.connect import connect
from offchain.sdk.contracts import BatchSettled, Channel, NodeRecord, Withdrawal
from offchain.sdk.tx import BroadcastError, FileJournal, NotSender, TxFailed, TxManager, TxPolicy


def _settings(devnet: Devnet, **kw) -> DaemonSettings:
    return DaemonSettings(rpc_url=devnet.url, deployment=devnet.deployment_file, **kw)


# connect ------------------------------------------------------------------------------------------------------
def test_connect_builds_the_connection(sdk_devnet):
    conn = connect(_settings(sdk_devnet, dev_account=3))
    assert conn.chain_id == 31337 and conn.network == "eip155:31337"
    assert conn.address == Account.from_key(anvil_key(3)).address
    assert conn.contracts.escrow.address == sdk_devnet.escrow.address
    assert conn.escrow_domain == sdk_devnet.escrow_domain and conn.staking_domain == sdk_devnet.staking_domain
    assert conn.thread_contracts().staking.address == sdk_devnet.staking.address
    reader = connect(_settings(sdk_devnet), need_key=False)
    assert reader.account is None


def test_connect_refuses_unreachable_chain_missing_file_and_no_code(sdk_devnet, tmp_path):
    with pytest.raises(ConfigError, match=r"^cannot reach the chain at http://127\.0\.0\.1:9 "):
        connect(DaemonSettings(rpc_url="http://127.0.0.1:9", dev_account=1))
    with pytest.raises(ConfigError, match="no deployment file at"):
        connect(DaemonSettings(rpc_url=sdk_devnet.url, deployment=tmp_path / "none.json", dev_account=1))
    # a deployment file whose addresses hold no code (a restarted chain): refused with one line
    stale = tmp_path / "31337.json"
    text = sdk_devnet.deployment_file.read_text().replace(sdk_devnet.escrow.address, "0x" + "12" * 20)
    stale.write_text(text)
    with pytest.raises(ConfigError) as err:
        connect(DaemonSettings(rpc_url=sdk_devnet.url, deployment=stale, dev_account=1))
    assert str(err.value).startswith("no contract code at CreditEscrow 0x1212") and "\n" not in str(err.value)


def test_connect_refuses_a_dev_key_and_a_wrong_chains_file_off_31337(sdk_devnet, tmp_path):
    other = Devnet(tmp_path, anvil_extra=["--chain-id", "777"])
    try:
        with pytest.raises(ConfigError, match="--dev-account uses anvil's public development keys and is refused "
                                              "on chain 777"):
            connect(DaemonSettings(rpc_url=other.url, deployment=other.deployment_file, dev_account=1))
        # the 31337 deployment file against the 777 chain
        with pytest.raises(ConfigError, match="is for chain 31337, not 777"):
            connect(DaemonSettings(rpc_url=other.url, deployment=sdk_devnet.deployment_file), need_key=False)
    finally:
        other.close()


# reads and decoders --------------------------------------------------------------------------------------------
def test_dataclass_reads_and_batch_settled(sdk_devnet):
    d = sdk_devnet
    c = connect(_settings(d), need_key=False).contracts
    node = d.new_node()
    record = c.staking.node(node.address)
    assert isinstance(record, NodeRecord) and record.is_inference and not record.jailed
    assert record.stake == d.params.min_inference_stake * 2 == d.stake(node)[0]
    assert record == NodeRecord.of(d.staking.functions.nodes(node.address).call())
    payer = d.new_payer(deposit=100 * OPG)
    assert c.escrow.withdrawal(payer.address) == Withdrawal(0, 0)
    transact(d.w3, payer.key, d.escrow.functions.request_withdrawal(OPG))
    w = c.escrow.withdrawal(payer.address)
    assert w.amount == OPG and w.ready_at >= d.chain_now()
    assert c.escrow.channel(payer.address, node.address) == Channel(payer.address, node.address, 0, 0, 0)
    # settle one claim as a facilitator (anvil account 1) and decode the log both ways
    voucher = Voucher(payer=payer.address, node=node.address, max_cumulative=5 * OPG)
    claim = Claim(payer=payer.address, node=node.address, max_cumulative=5 * OPG,
                  signature=voucher.sign_with(payer.key, d.escrow_domain), total=3 * OPG)
    root = bytes.fromhex(rand32()[2:])
    receipt = transact(d.w3, anvil_key(1), d.escrow.functions.settle_batch([claim.as_tuple()], root))
    events = d.escrow.events.BatchSettled().process_receipt(receipt)
    decoded = BatchSettled.from_event(events[0])
    raw = next(lg for lg in receipt["logs"] if bytes(lg["topics"][0]) == BatchSettled.TOPIC)
    assert BatchSettled.from_raw(dict(raw)).claims == decoded.claims
    assert decoded.receipts_root == root and decoded.amount == 3 * OPG
    assert decoded.per_channel() == {(payer.address, node.address): 3 * OPG}
    assert c.escrow.batches(receipt["blockNumber"]) == [decoded]
    channel = c.escrow.channel(payer.address, node.address)
    assert channel.spent == 3 * OPG and channel.last_settled_at > 0 and channel.spent_before_last == 0


# clock --------------------------------------------------------------------------------------------------------
def test_clock_follows_a_chain_ahead_and_caps_receipt_dates(sdk_devnet):
    conn = connect(_settings(sdk_devnet), need_key=False)
    clock = ProtocolClock.of_web3(conn.w3, refresh=0.0)
    assert abs(clock.now() - max(int(time.time()), sdk_devnet.chain_now())) <= 2
    sdk_devnet.advance(3_600)  # the chain's clock runs an hour ahead of the wall clock
    chain = sdk_devnet.chain_now()
    assert chain <= clock.now() <= chain + 2
    assert clock.block_time() == chain
    assert clock.receipt_time() <= chain + constants.FUTURE_MARGIN + 2
    dead = ProtocolClock.of_web3(_dead_w3())
    assert abs(dead.now() - time.time()) <= 1 and dead.chain_time() is None  # unreachable: the wall clock


def _dead_w3():
    from offchain.sdk.connect import web3_of

    return web3_of("http://127.0.0.1:9", timeout=1)


# transactions -------------------------------------------------------------------------------------------------
def _funded(d: Devnet):
    actor = new_key()
    d.fund(actor, opg=1_000 * OPG)
    return Account.from_key(actor.key)


def test_tx_nonces_without_gaps_and_revert_reasons(sdk_devnet, tmp_path):
    d = sdk_devnet
    account = _funded(d)
    tm = TxManager(d.w3, account, d.chain_id, FileJournal(tmp_path / "journal.jsonl"))
    first = tm.send(d.opg.functions.transfer(d.escrow.address, 0))
    second = tm.send(d.opg.functions.approve(d.escrow.address, OPG))
    assert second.nonce == first.nonce + 1
    # a transaction the node refuses (too little gas) resets the counter: the next one takes its nonce, no gap
    with pytest.raises(BroadcastError):
        tm.send(d.opg.functions.approve(d.escrow.address, 2 * OPG), gas=1_000)
    third = tm.transact(d.opg.functions.approve(d.escrow.address, 3 * OPG), timeout=30)
    assert d.w3.eth.get_transaction(third["transactionHash"])["nonce"] == second.nonce + 1
    assert d.opg.functions.allowance(account.address, d.escrow.address).call() == 3 * OPG
    with pytest.raises(Exception, match="erc20: insufficient allowance"):
        tm.transact(d.escrow.functions.deposit(10**30), timeout=30)  # estimate fails with the contract's reason
    assert tm.resume() == []  # every recorded transaction was mined


def test_tx_replaces_a_stuck_transaction(sdk_devnet, tmp_path):
    d = sdk_devnet
    account = _funded(d)
    journal = FileJournal(tmp_path / "journal.jsonl")
    tm = TxManager(d.w3, account, d.chain_id, journal)
    d.rpc("evm_setAutomine", False)
    try:
        fn = d.opg.functions.approve(d.escrow.address, 7 * OPG)
        stuck = tm.send(fn, "approve", "7")
        assert tm.wait(stuck.tx_hash, 0.3) is None  # stuck: no block comes

        def mine_once_replaced():  # the next block comes once the replacement is in the pool
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and len(journal.unconfirmed()) < 2:
                time.sleep(0.05)
            d.rpc("evm_mine")

        miner = threading.Thread(target=mine_once_replaced)
        miner.start()
        replacement = tm.send(fn, "approve", "7", gas=stuck.gas, nonce=stuck.nonce, bump=1)
        assert replacement.max_fee > stuck.max_fee and replacement.tip > stuck.tip
        hashes = [stuck.tx_hash, replacement.tx_hash]
        receipt = tm.wait_any(hashes, 15)
        miner.join()
        assert receipt is not None and receipt["status"] == 1
        mined = "0x" + bytes(receipt["transactionHash"]).hex()
        assert mined == hashes[-1]  # the higher-fee transaction took the nonce
        assert d.w3.eth.get_transaction(mined)["nonce"] == stuck.nonce
        journal.done(mined)
        assert journal.unconfirmed() == []  # the mined nonce retires the replaced transaction too
    finally:
        d.rpc("evm_setAutomine", True)


def test_tx_transact_bumps_until_mined(sdk_devnet, tmp_path):
    """transact(replace_after=...) replaces its transaction while blocks do not come, then returns the receipt."""
    d = sdk_devnet
    account = _funded(d)
    tm = TxManager(d.w3, account, d.chain_id, FileJournal(tmp_path / "journal.jsonl"))
    d.rpc("evm_setAutomine", False)
    mined = threading.Timer(1.0, lambda: d.rpc("evm_mine"))
    try:
        mined.start()
        receipt = tm.transact(d.opg.functions.approve(d.escrow.address, 9 * OPG), replace_after=0.3, timeout=20)
        assert receipt["status"] == 1
        assert d.opg.functions.allowance(account.address, d.escrow.address).call() == 9 * OPG
        assert tm.journal.unconfirmed() == []
    finally:
        mined.cancel()
        d.rpc("evm_setAutomine", True)
    with pytest.raises(TxFailed, match="not mined within"):
        d.rpc("evm_setAutomine", False)
        try:
            tm.transact(d.opg.functions.approve(d.escrow.address, 1), timeout=0.5)
        finally:
            d.rpc("evm_mine")
            d.rpc("evm_setAutomine", True)


class Crash(Exception):
    """The process dying between a transaction's write-ahead record and its broadcast."""


def crash_after_record(ref: str | None = None):
    """A TxManager ``after_record`` hook raising ``Crash`` after the record of ``ref`` (of any, if None)."""

    def crash(sent) -> None:
        if ref is None or sent.ref == ref:
            raise Crash

    return crash

def test_tx_write_ahead_record_survives_a_restart(sdk_devnet, tmp_path):
    """A crash between the record and the broadcast: the next process finds the signed transaction in the journal
    and broadcasts it (same hash, same nonce), never signing a second one."""
    d = sdk_devnet
    account = _funded(d)
    path = tmp_path / "journal.jsonl"
    tm = TxManager(d.w3, account, d.chain_id, FileJournal(path), after_record=crash_after_record())
    with pytest.raises(Crash):
        tm.send(d.opg.functions.approve(d.escrow.address, 11 * OPG), "approve", "11")
    (recorded,) = FileJournal(path).unconfirmed()
    assert not TxManager(d.w3, account, d.chain_id).known(recorded.tx_hash)  # never broadcast
    restarted = TxManager(d.w3, account, d.chain_id, FileJournal(Path(path)))
    assert [t.tx_hash for t in restarted.resume()] == [recorded.tx_hash]
    assert restarted.wait(recorded.tx_hash, 10)["status"] == 1
    assert d.opg.functions.allowance(account.address, d.escrow.address).call() == 11 * OPG
    assert restarted.resume() == [] and FileJournal(path).unconfirmed() == []



def test_tx_takeover_rebroadcasts_the_journal_then_continues_above_it_and_a_non_sender_signs_nothing(sdk_devnet,
                                                                                                    tmp_path):
    """Another process becomes the account's sender (relayer.lease): a transaction the old one broadcast and one it
    only recorded are both re-broadcast (same hashes) and the next nonce comes after them; while it may not send,
    nothing is signed or recorded."""
    d = sdk_devnet
    account = _funded(d)
    path = tmp_path / "journal.jsonl"
    old = TxManager(d.w3, account, d.chain_id, FileJournal(path), after_record=crash_after_record("2"))
    d.rpc("evm_setAutomine", False)
    try:
        first = old.send(d.opg.functions.approve(d.escrow.address, 1), "approve", "1")
        with pytest.raises(Crash):  # recorded, never broadcast
            old.send(d.opg.functions.approve(d.escrow.address, 2), "approve", "2")
        sending = threading.Event()
        new = TxManager(d.w3, account, d.chain_id, FileJournal(path), may_send=sending.is_set)
        with pytest.raises(NotSender):
            new.send(d.opg.functions.approve(d.escrow.address, 3), "approve", "3")
        assert len(FileJournal(path).unconfirmed()) == 2  # the refused one was never signed
        sending.set()
        waiting = new.takeover()
        assert [(t.nonce, t.ref) for t in waiting] == [(first.nonce, "1"), (first.nonce + 1, "2")]
        assert all(new.known(t.tx_hash) for t in waiting)
        third = new.send(d.opg.functions.approve(d.escrow.address, 3), "approve", "3")
        assert third.nonce == first.nonce + 2
        d.rpc("evm_mine")
    finally:
        d.rpc("evm_setAutomine", True)
    assert [new.wait(t.tx_hash, 10)["status"] for t in [*waiting, third]] == [1, 1, 1]
    assert d.opg.functions.allowance(account.address, d.escrow.address).call() == 3

@contextmanager
def _manager_without_automine(d: Devnet, tmp_path: Path) -> Iterator[TxManager]:
    """A TxManager of a funded account with a file journal; blocks mined only by ``evm_mine`` meanwhile."""
    tm = TxManager(d.w3, _funded(d), d.chain_id, FileJournal(tmp_path / "journal.jsonl"))
    d.rpc("evm_setAutomine", False)
    try:
        yield tm
    finally:
        d.rpc("evm_setAutomine", True)


def test_tx_a_dropped_nonce_goes_at_once_only_to_the_same_subject_sent_again(sdk_devnet, tmp_path):
    """A transaction unknown to the node (dropped here; behind a load-balanced provider, maybe only a lagging
    backend's answer): its nonce goes at once to the same subject sent again, to another subject only after
    ``TxPolicy.unknown_grace`` s (meanwhile it takes the next nonce), so a lagging answer never has two subjects
    signed at one nonce."""
    d = sdk_devnet
    with _manager_without_automine(d, tmp_path) as tm:
        first = tm.send(d.opg.functions.approve(d.escrow.address, 1), "approve", "a")
        d.rpc("anvil_dropTransaction", first.tx_hash)
        other = tm.send(d.opg.functions.transfer(d.escrow.address, 0), "transfer", "b")
        assert other.nonce == first.nonce + 1  # another subject: not at the nonce the node forgot (yet)
        again = tm.send(d.opg.functions.approve(d.escrow.address, 1), "approve", "a")
        assert again.nonce == first.nonce  # the same subject: at once
        tm.policy = TxPolicy(unknown_grace=0.0)
        third = tm.send(d.opg.functions.approve(d.escrow.address, 3), "approve", "c")
        d.rpc("anvil_dropTransaction", third.tx_hash)
        fourth = tm.send(d.opg.functions.approve(d.escrow.address, 4), "approve", "d")
        assert fourth.nonce == third.nonce  # unknown past the grace: free for another subject
        d.rpc("evm_mine")
    assert [tm.wait(t.tx_hash, 10)["status"] for t in (again, other, fourth)] == [1, 1, 1]
    assert d.opg.functions.allowance(tm.address, d.escrow.address).call() == 4


def test_tx_the_same_signed_bytes_broadcast_again_are_already_known(sdk_devnet, tmp_path):
    """A re-broadcast of a transaction the node holds (a resume, a takeover) is harmless: whatever the node calls it
    ("already known", anvil/reth "transaction already imported"), no ``BroadcastError``, the nonce sequence kept."""
    d = sdk_devnet
    with _manager_without_automine(d, tmp_path) as tm:
        sent = tm.send(d.opg.functions.approve(d.escrow.address, 5), "approve", "5")
        with pytest.raises(Exception, match="already"):  # the node does refuse the bytes a second time
            d.w3.eth.send_raw_transaction(sent.raw)
        tm._broadcast(sent)
        assert tm.send(d.opg.functions.approve(d.escrow.address, 6), "approve", "6").nonce == sent.nonce + 1
        d.rpc("evm_mine")
    assert tm.wait(sent.tx_hash, 10)["status"] == 1


def test_clock_has_one_reader_at_a_time(sdk_devnet):
    """Threads asking for the time while the chain is being read use the last reading instead of reading too."""
    w3 = connect(_settings(sdk_devnet), need_key=False).w3
    reads, inflight, most = [], [0], [0]
    lock = threading.Lock()

    def slow_read() -> int:
        with lock:
            inflight[0] += 1
            most[0] = max(most[0], inflight[0])
        try:
            time.sleep(0.2)
            reads.append(1)
            return int(w3.eth.get_block("latest")["timestamp"])
        finally:
            with lock:
                inflight[0] -= 1

    clock = ProtocolClock(slow_read, refresh=0.0)
    clock.now()
    threads = [threading.Thread(target=clock.now) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1 and len(reads) < 9
    assert clock.read_now() >= sdk_devnet.chain_now()
