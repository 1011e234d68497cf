"""The sending lease's fence against a send whose decision predates a change of leadership (review R2): the epoch a
send is granted under is read when ``TxManager.send`` decides to send and chooses its nonce (within a gated worker's
tick, the epoch the tick began in), and the journal's record refuses it unless the lease row still holds exactly
that epoch. Without it, a send stalled across two changes of leadership (A epoch 1, B epoch 2 sends the same batch,
A epoch 3) passed as A's new leadership: one batch, two nonces, both mined.

Real ``TxManager``, ``LeaseKeeper``, ``Gated`` worker, journal and fence on one store (SQLite and PostgreSQL; two
``Store`` objects, one per relayer), a real anvil; the one artificial piece is a gas estimate that answers late (a
slow RPC)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from eth_account import Account
from web3 import Web3

from offchain.daemon.keys import anvil_key
from offchain.daemon.worker import Gated
from offchain.devkit.devchain import Anvil
from offchain.devkit.devnet import wait_until
from offchain.relayer.lease import Fenced, Lease, LeaseKeeper
from offchain.relayer.ledger import Ledger
from offchain.relayer.store import Store
from offchain.sdk.tx import NotSender, PreparedCall, SentTx, TxManager

ESCROW, STAKING = "0x" + "e" * 40, "0x" + "5" * 40
TTL = 0.6


class SlowCall(PreparedCall):
    """A plain call whose gas estimate answers only once ``release`` is set (a slow RPC)."""

    def __init__(self, w3: Web3, to: str, release: threading.Event):
        super().__init__(w3, to, b"")
        self.release, self.entered = release, threading.Event()

    def estimate_gas(self, tx: dict) -> int:
        self.entered.set()
        assert self.release.wait(30)
        return super().estimate_gas(tx)


@pytest.fixture(scope="module")
def w3():
    with Anvil() as anvil:
        yield Web3(Web3.HTTPProvider(anvil.url))


class Relayer:
    """One relayer process's sending side on the shared store: its lease, keeper and transaction manager."""

    def __init__(self, path, name: str, w3: Web3, key: int):
        self.store = Store(path, Ledger(), shared=True)
        self.store.open(31337, ESCROW, STAKING)
        self.lease = Lease(self.store.db, name, TTL)
        self.journal = self.store.tx_journal()
        self.journal.fence = self.lease.fence
        self.tm = TxManager(w3, Account.from_key(anvil_key(key)), 31337, journal=self.journal,
                            may_send=self.lease.permit)
        self.keeper = LeaseKeeper(self.lease, self.tm.takeover)

    def take(self, epoch: int) -> None:
        """Tick the keeper until this relayer leads under ``epoch`` (its takeover done)."""
        wait_until(lambda: (self.keeper.tick(), self.lease.may_send())[1], timeout=TTL * 10, interval=0.02)
        assert self.lease.epoch == epoch


@pytest.fixture()
def relayers(store_location, w3, request):
    key = request.param
    pair = [Relayer(store_location, name, w3, key) for name in ("relayer-a", "relayer-b")]
    yield pair
    for r in pair:
        r.store.close()


def _batch_records(store: Store) -> list:
    return store.db.read("SELECT tx_hash, nonce FROM transactions WHERE kind = 'batch' AND ref = '9' ORDER BY nonce")


def _in_thread(fn: Callable[[], object], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - the test asserts which
            errors.append(exc)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("relayers", [6], indirect=True)
def test_attack_a_send_spanning_two_leader_changes_is_fenced(relayers, w3):
    """A's batcher passes ``may_send()`` at epoch 1 and stalls in a slow RPC holding ``TxManager.lock``; A cannot
    renew, B takes epoch 2, sends batch 9 and dies; A's keeper takes epoch 3 (its takeover waits for the lock). The
    stalled send resumes: refused by the fence (granted under epoch 1), nothing recorded or broadcast; batch 9 is on
    the chain once, and A still leads under epoch 3 once its takeover ran."""
    a, b = relayers
    to = Account.create().address
    a.take(1)
    release, errors = threading.Event(), []
    call = SlowCall(w3, to, release)
    sending = _in_thread(lambda: a.tm.send(call, "batch", "9"), errors)
    assert call.entered.wait(10)  # past may_send(), holding TxManager.lock
    b.take(2)  # A's lease lapsed (no renewal): B leads, finds batch 9 built and sends it
    b.tm.send(PreparedCall(w3, to, b""), "batch", "9")
    retake = _in_thread(lambda: a.take(3), errors)  # B died; A's keeper takes again, takeover waits for the lock
    wait_until(lambda: a.lease.epoch == 3, timeout=TTL * 10, interval=0.02)
    release.set()  # the slow RPC answers
    sending.join(30)
    retake.join(30)
    assert [type(e) for e in errors] == [Fenced], errors
    rows = _batch_records(a.store)
    assert len(rows) == 1, f"batch 9 recorded at nonces {[r['nonce'] for r in rows]}"
    assert w3.eth.wait_for_transaction_receipt(rows[0]["tx_hash"], 10)["status"] == 1
    assert w3.eth.get_transaction_count(a.tm.address, "pending") == rows[0]["nonce"] + 1  # nothing else broadcast
    assert a.lease.may_send() and a.lease.epoch == 3 and a.lease.fenced == 1  # the refusal cost A no leadership


@pytest.mark.parametrize("relayers", [7], indirect=True)
def test_attack_a_tick_begun_before_two_leader_changes_sends_nothing_after_the_retake(relayers, w3):
    """A gated worker's tick runs under the epoch it began in: A's batcher tick reads the store at epoch 1 and is
    slow; B takes epoch 2 and sends batch 9; A leads again (epoch 3, takeover done). The old tick's send, which starts
    only now, is refused (``NotSender``, nothing signed): its view of the batch predates B's send. A record granted
    under epoch 1 is refused by the fence too, while A's next tick sends under epoch 3."""
    a, b = relayers
    to = Account.create().address
    a.take(1)
    resume, started = threading.Event(), threading.Event()

    class Batcher:
        name = "batcher"

        def __init__(self) -> None:
            self.sent: list[str] = []
            self.ref = "9"

        def tick(self) -> float | None:
            started.set()
            assert resume.wait(30)  # a slow tick: the store read, the batch built, then the send
            self.sent.append(a.tm.send(PreparedCall(w3, to, b""), "batch", self.ref).tx_hash)
            return None

    batcher = Batcher()
    gated = Gated(batcher, a.lease.may_send, (NotSender,), a.lease.tick)
    errors: list[BaseException] = []
    ticking = _in_thread(gated.tick, errors)
    assert started.wait(10)
    b.take(2)
    b.tm.send(PreparedCall(w3, to, b""), "batch", "9")
    a.take(3)  # takeover done: A may send again, but not from the tick begun under epoch 1
    resume.set()
    ticking.join(30)
    assert errors == [] and batcher.sent == []  # the tick ended idle: refused before signing
    with pytest.raises(Fenced):
        a.journal.record(SentTx("batch", "9", "0x" + "ab" * 32, 99, "0x02", 1, 1, 21_000, time.time()), 1)
    assert len(_batch_records(a.store)) == 1
    assert a.lease.may_send() and a.lease.epoch == 3
    batcher.ref = "10"
    gated.tick()  # a tick begun under epoch 3 sends
    assert len(batcher.sent) == 1 and w3.eth.wait_for_transaction_receipt(batcher.sent[0], 10)["status"] == 1
