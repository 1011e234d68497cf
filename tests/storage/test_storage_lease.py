"""The relayer's sending lease (``offchain.relayer.lease``) on a real database, SQLite and PostgreSQL: one holder at
a time, a lapsed lease moves with a new epoch, and a holder fenced out by a newer epoch gets its write-ahead
transaction record refused (nothing recorded, so nothing broadcast) even though it still thinks it leads."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from test_storage_relayer import NODE, PAYER, _valid

from offchain.devkit.cluster import in_parallel
from offchain.devkit.devnet import wait_until
from offchain.relayer.batcher import fenced
from offchain.relayer.handover import Handover
from offchain.relayer.lease import Fenced, Lease
from offchain.relayer.ledger import Ledger
from offchain.relayer.rules import ClaimResult
from offchain.relayer.store import Store
from offchain.sdk.tx import SentTx
from offchain.storage import Database

ESCROW, STAKING = "0x" + "e" * 40, "0x" + "5" * 40
TTL = 0.4


def _tx(h: str, nonce: int) -> SentTx:
    return SentTx(kind="slash", ref="1", tx_hash=h, nonce=nonce, raw="0x02" + h[2:], max_fee=30, tip=2, gas=21_000,
                  sent_at=time.time())


def _recorded(store: Store) -> list[str]:
    return [r["tx_hash"] for r in store.db.read("SELECT tx_hash FROM transactions ORDER BY nonce")]


@pytest.fixture()
def relayer_store(store_location):
    store = Store(store_location, Ledger())
    store.open(31337, ESCROW, STAKING)
    yield store
    store.close()


def test_one_holder_at_a_time_and_a_lapsed_lease_moves_with_a_new_epoch(relayer_store, store_location):
    a = Lease(relayer_store.db, "relayer-a", TTL)
    b = Lease(Database.at(store_location), "relayer-b", TTL)
    assert a.try_take() and a.is_leader and a.epoch >= 1
    first = a.epoch
    assert not b.try_take() and not b.is_leader  # held and not expired
    assert b.state().as_json() == {"role": "follower", "instance": "relayer-b", "holder": "relayer-a", "epoch": first}
    assert a.renew() and not b.try_take()
    wait_until(lambda: b.try_take(), timeout=TTL * 10)  # a stopped renewing: the lease lapses by the database's clock
    assert b.epoch == first + 1 and b.state().role == "leader" and b.state().holder == "relayer-b"
    assert not a.renew() and not a.is_leader  # the old holder finds out it is a follower, with no error
    assert a.read()[:2] == ("relayer-b", first + 1)
    assert a.state().as_json() == {"role": "follower", "instance": "relayer-a", "holder": "relayer-b",
                                   "epoch": first + 1}
    b.release()  # a graceful stop: the other takes it at once, with the next epoch
    assert a.try_take() and a.epoch == first + 2
    a.close()
    b.close()


def test_a_fenced_out_holder_records_nothing_while_the_new_holder_records(relayer_store, store_location):
    other_store = Store(store_location, Ledger())
    other_store.open(31337, ESCROW, STAKING)
    try:
        a = Lease(relayer_store.db, "relayer-a", TTL)
        b = Lease(other_store.db, "relayer-b", TTL)
        journal_a, journal_b = relayer_store.tx_journal(), other_store.tx_journal()
        journal_a.fence, journal_b.fence = a.fence, b.fence
        with pytest.raises(Fenced):  # never held: refused
            journal_a.record(_tx("0x0a", 0))
        assert a.try_take()
        journal_a.record(_tx("0x01", 1))  # the holder records
        with pytest.raises(Fenced):  # the follower does not
            journal_b.record(_tx("0x0b", 2))
        wait_until(lambda: b.try_take(), timeout=TTL * 10)
        assert a.epoch and a.epoch < b.epoch  # a still believes it holds its epoch: only the database says no
        with pytest.raises(Fenced) as refused:
            journal_a.record(_tx("0x02", 2))
        assert refused.value.holder == "relayer-b" and refused.value.epoch == b.epoch and not a.is_leader
        assert a.fenced == 2  # both refusals counted (opg_relayer_lease_fenced)
        journal_b.record(_tx("0x03", 2))
        assert _recorded(relayer_store) == ["0x01", "0x03"]
        a.close()
        b.close()
    finally:
        other_store.close()


def test_on_postgresql_a_take_waits_for_a_record_in_flight_and_sees_it(relayer_store, store_location):
    """The fence's ``FOR SHARE``: a record checked just before the lease lapses commits before a contender's take,
    so the new leader's takeover finds it in the journal (and re-broadcasts it)."""
    if not str(store_location).startswith("postgresql://"):
        pytest.skip("SQLite: the writer holds the file's write lock for the record's whole transaction")
    a = Lease(relayer_store.db, "relayer-a", TTL)
    b = Lease(Database.at(store_location), "relayer-b", TTL)
    assert a.try_take()
    conn = relayer_store.db.connect()
    conn.execute("BEGIN")
    a.fence(conn)  # the record's check passed; its commit is still to come
    conn.execute("INSERT INTO transactions (tx_hash, kind, ref, nonce, raw, sent_at) VALUES ('0x77', 'slash', '1',"
                 " 7, '0x02', 0)")
    taken = threading.Event()
    threading.Thread(target=lambda: (wait_until(lambda: b.try_take(), timeout=TTL * 20), taken.set()), daemon=True).start()
    time.sleep(TTL * 2.5)  # lapsed by now, but the row is locked by the record's transaction
    assert not taken.is_set()
    # A take never hangs on it (lock_timeout ttl / 3): it fails fast and is retried at the next heartbeat.
    c = Lease(Database.at(store_location), "relayer-c", TTL)
    c.read()  # connected
    started = time.monotonic()
    assert not c.try_take()
    assert time.monotonic() - started < 1
    c.close()
    conn.execute("COMMIT")
    assert taken.wait(5)
    assert "0x77" in _recorded(relayer_store)
    conn.close()
    a.close()
    b.close()


def test_concurrent_first_starts_create_the_lease_once_and_a_dead_local_holder_is_taken_at_once(store_location):
    store = Store(store_location, Ledger())
    store.open(31337, ESCROW, STAKING)
    try:
        leases = [Lease(Database.at(store_location), f"r{i}", 30) for i in range(4)]
        in_parallel(Lease.try_take, leases)  # each creates the table on its first connection, then contends
        assert sum(lease.is_leader for lease in leases) == 1
        # A holder named by the default instance id (<host>-<pid>) whose process is gone is taken at once, whatever
        # its TTL left (a single relayer restarted after a crash does not wait it out).
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()
        crashed = Lease(Database.at(store_location), f"{socket.gethostname()}-{dead}", 30)
        winner = next(lease for lease in leases if lease.is_leader)
        winner.release()
        assert crashed._run("UPDATE relayer_lease SET holder = ?, expires_at = expires_at + 3600 WHERE name = ?"
                            " RETURNING epoch", (crashed.instance, crashed.name))
        restarted = Lease(Database.at(store_location), f"{socket.gethostname()}-{os.getpid()}", 30)
        assert restarted.try_take() and restarted.is_leader
        for lease in [*leases, crashed, restarted]:
            lease.close()
    finally:
        store.close()


@pytest.fixture()
def two_leases(relayer_store, store_location):
    """Relayers A (``relayer_store``) and B (a second store on the same database), each with its lease, and three
    accepted receipts of one channel: (other_store, a, b, ids, claim, key)."""
    other_store = Store(store_location, Ledger())
    other_store.open(31337, ESCROW, STAKING)
    a = Lease(relayer_store.db, "relayer-a", TTL)
    b = Lease(other_store.db, "relayer-b", TTL)
    items = [_valid(10 * (i + 1), 100) for i in range(3)]
    asyncio.run(relayer_store.accept(items))
    claim = {"payer": PAYER.address, "node": NODE.address, "total": "30"}
    yield other_store, a, b, [i.id for i in items], claim, (PAYER.address, NODE.address)
    a.close()
    b.close()
    other_store.close()


def test_attack_a_zombie_leaders_batch_jobs_change_nothing(relayer_store, two_leases):
    """A leader that lost the lease may still finish one batcher tick: its batch build, rebuild, failure and
    rejection jobs (``batcher.fenced``: the lease's fence in their transaction) are refused and change no receipt or
    batch, so it can neither move receipts out of the new leader's batch nor reject them."""
    other_store, a, b, ids, claim, key = two_leases
    assert a.try_take()
    bid = relayer_store.call(fenced(Store.job_build_batch, a.fence), relayer_store.ledger, [claim],
                             "0x" + "00" * 32, {key: ids}, [], {}, 1.0)
    held = a.epoch
    wait_until(lambda: b.try_take(), timeout=TTL * 10)  # a lost the lease; it still believes it leads

    def state() -> list[dict]:
        return other_store.db.read("SELECT id, batch_id, status, reason FROM receipts ORDER BY id") + \
            other_store.db.read("SELECT id, status, error FROM batches ORDER BY id")

    before = state()
    zombie = [(Store.job_rebuild_batch, (bid, [], "0x" + "11" * 32, [ClaimResult(*key, 0, 0)], 2.0)),
              (Store.job_batch_failed, (bid, "reverted", 2.0)),
              (Store.job_reject_batch, (bid, "ClaimTooLarge", 2.0)),
              (Store.job_build_batch, ([claim], "0x" + "22" * 32, {key: ids}, [], {}, 2.0))]
    for job, args in zombie:
        a.epoch = held  # as the zombie believes: each job's fence asks the database, not this local view
        with pytest.raises(Fenced):
            relayer_store.call(fenced(job, a.fence), relayer_store.ledger, *args)
    assert state() == before and a.fenced == len(zombie)
    other_store.call(fenced(Store.job_batch_failed, b.fence), other_store.ledger, bid, "reverted", 3.0)
    assert other_store.batch(bid)["status"] == "failed"  # the new leader's job goes through


def test_attack_a_batch_job_of_a_tick_begun_before_two_leader_changes_changes_nothing(relayer_store, two_leases):
    """A batcher tick granted epoch 1 that runs on after another leader (epoch 2) and this process's own re-take
    (epoch 3): its batch jobs are fenced under the epoch the tick was granted (``Batcher._granted``, passed to
    ``batcher.fenced``), so they are refused although this process leads again; a job of a fresh tick goes through."""
    other_store, a, b, ids, claim, key = two_leases
    assert a.try_take()
    a.sending.set()  # the keeper's takeover is done
    stale = a.permit()
    assert stale == a.epoch
    wait_until(lambda: b.try_take(), timeout=TTL * 10)
    b.close()
    wait_until(lambda: a.try_take(), timeout=TTL * 10)
    assert a.epoch > stale + 1 and a.permit() == a.epoch
    before = other_store.db.read("SELECT id, batch_id, status FROM receipts ORDER BY id")
    with pytest.raises(Fenced):
        relayer_store.call(fenced(Store.job_build_batch, a.fence, stale), relayer_store.ledger, [claim],
                           "0x" + "00" * 32, {key: ids}, [], {}, 1.0)
    assert other_store.db.read("SELECT id, batch_id, status FROM receipts ORDER BY id") == before
    bid = relayer_store.call(fenced(Store.job_build_batch, a.fence, a.permit()), relayer_store.ledger, [claim],
                             "0x" + "00" * 32, {key: ids}, [], {}, 2.0)
    assert bid is not None and relayer_store.batch(bid)["status"] == "built"


def test_handed_over_work_is_taken_once_and_its_notifications_wake_the_leader_and_the_follower(relayer_store,
                                                                                              store_location):
    """``relayer.handover``: a follower's queued deposit is taken by one leader only (a second take, or a take after
    the end, gets nothing), a dead leader's take is queued again, and on PostgreSQL the queue and the end are heard
    by a ``Listener`` at once (SQLite: its poll)."""
    other_store = Store(store_location, Ledger())
    other_store.open(31337, ESCROW, STAKING)
    follower, leader = Handover(relayer_store.db), Handover(other_store.db)
    woken = threading.Event()
    leader.wake_sender = woken.set
    listener = leader.listener()
    try:
        listener.tick()  # connects and catches up (the poll wakes the sender): start from quiet
        woken.clear()
        assert relayer_store.call(follower.job_queue, "deposit", "0xp:1", "{}", 1.0)
        assert not relayer_store.call(follower.job_queue, "deposit", "0xp:1", "{}", 1.0)  # queued already
        if str(store_location).startswith("postgresql://"):
            listener.tick()
            assert woken.is_set()  # heard, not polled
        assert [h.ref for h in leader.queued("deposit")] == ["0xp:1"]
        assert other_store.call(Handover.job_take, "deposit", "0xp:1", 2.0)
        assert not relayer_store.call(Handover.job_take, "deposit", "0xp:1", 2.0)  # one taker
        assert other_store.call(Handover.job_requeue_taken, "deposit", 3.0) == 1  # its taker died: queued again
        assert relayer_store.call(Handover.job_take, "deposit", "0xp:1", 4.0)
        ended = threading.Thread(target=lambda: time.sleep(0.2) or relayer_store.call(
            follower.job_end, "deposit", "0xp:1", "failed", '{"status": 400}', 5.0))
        ended.start()
        started = time.monotonic()
        waited = follower.wait_for(lambda: r if (r := follower.get("deposit", "0xp:1")).status == "failed" else None,
                                   timeout=5)
        assert waited is not None and waited.error == '{"status": 400}' and time.monotonic() - started < 1
        ended.join()
        assert not other_store.call(Handover.job_take, "deposit", "0xp:1", 6.0)  # ended: nothing to take
        assert relayer_store.call(follower.job_queue, "deposit", "0xp:1", "{}", 7.0)  # failed: may be posted again
        assert follower.wait_for(lambda: None, timeout=0.3) is None  # a bounded wait
    finally:
        listener.shutdown()
        other_store.close()
