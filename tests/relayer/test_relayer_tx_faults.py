"""Transaction faults under a running relayer, on a real anvil: its batch transaction dropped from the mempool,
replaced by another transaction of the same nonce, its nonce taken by another sender before its broadcast, and its
batch reverted by a chain state changed between build and mining. Each time the relayer notices and re-sends (or
keeps the receipts pending and says why), and afterwards a reconciliation of its store with the chain's events
(``offchain.devkit.cluster.reconcile``) finds every accepted receipt settled exactly once, nothing left in the
mempool, every journal record done, the account's nonces contiguous, no batch mined twice. The transactions this
module sends from the relayer's key on purpose (the replacement, the stolen nonce) are the only ones the relayer's
journal does not know."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils import keccak
from test_relayer_rejection import make_facilitator

from offchain.daemon.keys import anvil_key
from offchain.devkit.cluster import Reconciliation, reconcile
from offchain.devkit.devchain import transact
from offchain.devkit.devnet import OPG, ChannelSim, RelayerProc, wait_until

ACCOUNT = 2  # a facilitator of the module's escrow, used by no other relayer of this module


@dataclass
class Faulty:
    """The module's relayer, the file arming its nonce-stealing fault, and the transactions of its account this
    module sent itself (the only ones its journal may not know)."""

    relayer: RelayerProc
    arm: Path
    outsiders: set[str] = field(default_factory=set)


@pytest.fixture(scope="module")
def faulty(devnet, tmp_path_factory) -> Iterator[Faulty]:
    """One relayer for the module, with the nonce-stealing fault installed (armed by a file, one batch at a time)."""
    tmp = tmp_path_factory.mktemp("tx-faults")
    arm = tmp / "steal-nonce"
    env = {"OPG_RELAYER_PLUGINS": "relayer_faults", "OPG_RELAYER_FAULT": "steal_nonce",
           "OPG_RELAYER_FAULT_ARM": str(arm), "OPG_RELAYER_FAULT_RPC": devnet.url,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))}
    relayer = RelayerProc(devnet, tmp / "relayer.sqlite3", ACCOUNT, env=env).start()
    yield Faulty(relayer, arm)
    relayer.stop()


@pytest.fixture()
def channels(devnet) -> list[ChannelSim]:
    node, payers = devnet.new_node(), [devnet.new_payer(20 * OPG) for _ in range(2)]
    return [ChannelSim(devnet, p, node) for p in payers]


def submit(relayer: RelayerProc, channels: list[ChannelSim]) -> list[str]:
    res = relayer.post("/settle", {"receipts": [ch.next(OPG // 4) for ch in channels]})
    assert res.status_code == 200 and res.json()["refused"] == 0, res.text
    return [r["id"] for r in res.json()["results"]]


def reconciled(devnet, faulty: Faulty, channels: list[ChannelSim], quiescent: bool = True) -> Reconciliation:
    """The relayer's store agrees with the chain; with ``quiescent`` every channel is paid its last receipt."""
    if quiescent:
        for ch in channels:
            assert devnet.spent(ch.payer, ch.node) == ch.cumulative
    relayer = faulty.relayer
    found = reconcile(devnet.w3, devnet.escrow, relayer.address, relayer.store, quiescent=quiescent)
    assert [p for p in found.problems if not any(h in p for h in faulty.outsiders)] == [], found.problems
    return found


@contextmanager
def automine_off(devnet) -> Iterator[None]:
    devnet.rpc("evm_setAutomine", False)
    try:
        yield
    finally:
        devnet.rpc("evm_setAutomine", True)
        devnet.rpc("evm_mine")


def in_mempool(devnet, relayer: RelayerProc) -> dict:
    """The batch the relayer sent, once its transaction waits in the mempool (automine off)."""
    batch = wait_until(lambda: next(iter(relayer.get("/batches", params={"status": "sent"}).json()), None),
                       what="a sent batch")
    wait_until(lambda: devnet.w3.eth.get_transaction_count(relayer.address, "pending")
               > devnet.w3.eth.get_transaction_count(relayer.address, "latest"), what="the batch in the mempool")
    return relayer.get(f"/batches/{batch['id']}").json()


def test_dropped_batch_transaction_is_sent_again_and_settles_once(devnet, faulty, channels):
    relayer = faulty.relayer
    with automine_off(devnet):
        ids = submit(relayer, channels)
        batch = in_mempool(devnet, relayer)
        dropped = batch["transactions"][-1]
        nonce = devnet.w3.eth.get_transaction(dropped)["nonce"]
        devnet.rpc("anvil_dropTransaction", dropped)
        assert devnet.w3.eth.get_transaction_count(relayer.address, "pending") == nonce  # gone from the mempool
        # The relayer finds its transaction unknown to the node and sends the batch again with the same nonce (the
        # same signed bytes if nothing changed meanwhile); with the next one it would wait behind the gap for ever.
        wait_until(lambda: devnet.w3.eth.get_transaction_count(relayer.address, "pending") == nonce + 1,
                   what="the batch sent again with the dropped transaction's nonce")
        resent = relayer.get(f"/batches/{batch['id']}").json()["transactions"][-1]
        assert devnet.w3.eth.get_transaction(resent)["nonce"] == nonce
    relayer.wait_receipts(ids)
    assert relayer.get(f"/batches/{batch['id']}").json()["status"] == "confirmed"
    reconciled(devnet, faulty, channels)


def test_replaced_batch_transaction_is_noticed_and_the_batch_settles_once(devnet, faulty, channels):
    """Another transaction of the relayer's account, same nonce and higher fees, is mined instead of the batch."""
    relayer = faulty.relayer
    key = anvil_key(ACCOUNT)
    with automine_off(devnet):
        ids = submit(relayer, channels)
        batch = in_mempool(devnet, relayer)
        pending = devnet.w3.eth.get_transaction(batch["transactions"][-1])
        other = Account.from_key(key).sign_transaction({
            "to": relayer.address, "value": 0, "gas": 21_000, "nonce": pending["nonce"], "chainId": devnet.chain_id,
            "maxFeePerGas": 3 * pending["maxFeePerGas"], "maxPriorityFeePerGas": 3 * pending["maxPriorityFeePerGas"]})
        replaced_by = devnet.w3.eth.send_raw_transaction(other.raw_transaction)
        faulty.outsiders.add("0x" + bytes(replaced_by).hex())
        devnet.rpc("evm_mine")
    assert devnet.w3.eth.get_transaction_receipt(replaced_by)["status"] == 1
    relayer.wait_receipts(ids)
    view = relayer.get(f"/batches/{batch['id']}").json()
    assert view["status"] == "confirmed" and view["txHash"] not in batch["transactions"], view
    assert devnet.w3.eth.get_transaction(view["txHash"])["nonce"] == pending["nonce"] + 1
    reconciled(devnet, faulty, channels)


def test_nonce_taken_by_another_sender_between_record_and_broadcast(devnet, faulty, channels):
    """The relayer's key used by another process: its recorded nonce is mined by someone else before its broadcast
    ("nonce too low"); the TxManager reads the chain's nonce again and the batch goes out with the next one."""
    relayer, arm = faulty.relayer, faulty.arm
    first = devnet.w3.eth.get_transaction_count(relayer.address)
    arm.touch()
    ids = submit(relayer, channels)
    relayer.wait_receipts(ids)
    assert not arm.exists()  # the fault fired
    batch = relayer.get(f"/batches/{relayer.get(f'/receipts/{ids[0]}').json()['batchId']}").json()
    assert devnet.w3.eth.get_transaction(batch["txHash"])["nonce"] == first + 1  # first went to the other sender
    [stolen] = [t for t in reconcile(devnet.w3, devnet.escrow, relayer.address, relayer.store).chain
                if t.nonce == first]
    assert devnet.w3.eth.get_transaction(stolen.tx_hash)["to"] == relayer.address  # the other sender's transfer
    faulty.outsiders.add(stolen.tx_hash)
    # The pipeline is not stuck: the next receipts settle at once with the following nonce.
    more = submit(relayer, channels)
    relayer.wait_receipts(more)
    reconciled(devnet, faulty, channels)


def queue_facilitator_removal(devnet, account: str) -> object:
    """The owner queues set_facilitator(account, false) and waits out the timelock; returns the call to execute."""
    escrow = devnet.escrow
    call = keccak(text="set_facilitator(address,bool)")[:4] + bytes(12) + bytes.fromhex(account[2:]) + bytes(32)
    receipt = transact(devnet.w3, devnet.deployer, escrow.functions.queue_change(call))
    [queued] = escrow.events.ChangeQueued().process_receipt(receipt)
    devnet.advance(queued["args"]["eta"] - devnet.chain_now() + 1)
    return escrow.functions.set_facilitator(account, False)


def test_batch_reverted_by_a_state_change_before_mining_keeps_its_receipts(devnet, faulty, channels):
    """The relayer stops being a facilitator in the block that mines its batch (ordered first by its higher tip):
    the batch reverts; its receipts go back to pending (never rejected, never lost), settlement is reported blocked,
    and everything settles once the account is a facilitator again."""
    relayer = faulty.relayer
    removal = queue_facilitator_removal(devnet, relayer.address)
    deployer = Account.from_key(devnet.deployer)
    with automine_off(devnet):
        ids = submit(relayer, channels)
        batch = in_mempool(devnet, relayer)
        tip = 20 * devnet.w3.eth.get_transaction(batch["transactions"][-1])["maxPriorityFeePerGas"]
        base = devnet.w3.eth.get_block("latest")["baseFeePerGas"]
        tx = removal.build_transaction({"from": deployer.address, "gas": 200_000, "chainId": devnet.chain_id,
                                        "nonce": devnet.w3.eth.get_transaction_count(deployer.address, "pending"),
                                        "maxPriorityFeePerGas": tip, "maxFeePerGas": 2 * base + tip})
        devnet.w3.eth.send_raw_transaction(deployer.sign_transaction(tx).raw_transaction)
        devnet.rpc("evm_mine")
    assert not devnet.escrow.functions.is_facilitator(relayer.address).call()
    assert devnet.w3.eth.get_transaction_receipt(batch["transactions"][-1])["status"] == 0  # reverted on chain
    failed = wait_until(lambda: (b := relayer.get(f"/batches/{batch['id']}").json())["status"] == "failed" and b,
                        what="the batch failed")
    assert "reverted" in failed["error"], failed
    health = wait_until(lambda: (r := relayer.get("/healthz")).status_code == 503 and r.json(), what="blocked")
    assert "is not a facilitator" in health["lastError"], health
    assert {relayer.receipt_status(i)["status"] for i in ids} == {"pending"}
    reconciled(devnet, faulty, channels, quiescent=False)
    make_facilitator(devnet, relayer.address)
    relayer.wait_receipts(ids, timeout=60)
    reconciled(devnet, faulty, channels)
