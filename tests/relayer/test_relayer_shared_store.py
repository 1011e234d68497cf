"""Several relayer processes on one PostgreSQL database (issue 20): any of them answers ``/verify``, ``/settle``,
receipts and the feed, and nothing is promised or accepted twice. Two real relayer processes (A, B) on one real
PostgreSQL cluster (``offchain.devkit.postgres``) and one anvil; each test performs an attack or a race across them:

- a payer asks A and B at once for the same credits for different nodes: one promise, never two (the double spend
  of one balance);
- a payer's receipts of one channel split between A and B, the higher voucher first at one of them: no relayer
  overwrites the other's view of the channel, and every receipt is settled once, exactly as accepted;
- one receipt resent to A and B concurrently is stored once;
- a receipt B accepted is at once in A's ``/receipts/{id}``, feed and channel view;
- two stores on the database claim one ``exact`` authorisation concurrently: one claim;
- the follower (not the lease holder) counts live proposals and never mixes a settlement it caught up on with a
  balance read before it;
- store-level attacks on the catch-up (versions after a prune, an open transaction elsewhere, a skewed clock) and on
  the intake lock (a relayer frozen holding it), on both engines where they apply.
"""

from __future__ import annotations

import concurrent.futures
import sqlite3
import threading
import time
from pathlib import Path

import ape
import psycopg
import pytest
from test_relayer_priority import drain_claim, propose

from offchain.devkit.devnet import OPG, ChannelSim, Devnet, RelayerProc, item, wait_until
from offchain.devkit.postgres import PostgresCluster
from offchain.relayer.ledger import Ledger
from offchain.relayer.proposals import PROMISE_TTL, Reservations
from offchain.relayer.rules import ChannelState
from offchain.relayer.store import (
    INTAKE_LOCK,
    INTAKE_LOCK_WAIT,
    Channels,
    IntakeBusy,
    Promises,
    Receipts,
    Store,
    lock_intake,
)


@ape.fixture(scope="module", chain_isolation=False)
def cluster() -> PostgresCluster:
    c = PostgresCluster().start()
    yield c
    c.stop()


@ape.fixture(scope="module", chain_isolation=False)
def database(cluster: PostgresCluster) -> str:
    """The relayer processes' database."""
    return cluster.database()


@ape.fixture(scope="module", chain_isolation=False)
def stores_database(cluster: PostgresCluster) -> str:
    """A database of the store-level tests' own (no relayer process on it: their rows and locks stay theirs)."""
    return cluster.database()


@ape.fixture(scope="module", chain_isolation=False, params=["postgresql", "sqlite"])
def pair(request, devnet: Devnet, database: str, tmp_path_factory) -> tuple[RelayerProc, RelayerProc, str]:
    """Relayers A and B (accounts 1 and 2, both facilitators) on one PostgreSQL database, or as two processes on one
    SQLite file (``--shared-store``); and the store's location."""
    logs = tmp_path_factory.mktemp(f"shared-{request.param}")
    store = database if request.param == "postgresql" else str(logs / "shared.sqlite3")
    extra = ("--store", store) if request.param == "postgresql" else ("--shared-store",)
    procs = [RelayerProc(devnet, logs / f"{name}.sqlite3" if request.param == "postgresql" else Path(store), account,
                         *extra, "--validation-workers", "0") for name, account in (("a", 1), ("b", 2))]
    for p in procs:
        p.start()
    yield procs[0], procs[1], store
    for p in procs:
        p.stop()


def _verify_body(devnet: Devnet, ch: ChannelSim, cap: int, price: int = OPG) -> dict:
    v = ch.voucher(cap)
    requirements = {"scheme": "opg-credit", "network": devnet.network, "asset": devnet.opg.address,
                    "amount": str(price), "payTo": ch.node.address, "maxTimeoutSeconds": 60,
                    "extra": {"escrow": devnet.escrow.address, "staking": devnet.staking.address}}
    return {"x402Version": 2, "paymentRequirements": requirements, "paymentPayload": {
        "x402Version": 2, "accepted": requirements,
        "payload": {"voucher": {"payer": ch.payer.address, "node": ch.node.address, "maxCumulative": str(cap)},
                    "signature": v.signature}}}


def _verify(relayer: RelayerProc, devnet: Devnet, ch: ChannelSim, cap: int, price: int = OPG) -> dict:
    res = relayer.post("/verify", _verify_body(devnet, ch, cap, price))
    assert res.status_code == 200, res.text
    return res.json()


def _rows(store: str, sql: str, args: tuple = ()) -> list[tuple]:
    """Rows of ``sql`` (``?`` placeholders) read straight from the shared store."""
    if store.startswith("postgresql://"):
        with psycopg.connect(store) as conn:
            return conn.execute(sql.replace("?", "%s"), args).fetchall()
    conn = sqlite3.connect(store)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def test_one_balance_is_promised_once_across_relayers(pair, devnet):
    """The double spend of one balance through two relayers: the payer's 10 OPG asked for by four nodes at once,
    two through A and two through B, each for all of it. Exactly one is promised; then A's promise to node X counts
    at B: node Y is refused even 1 OPG there."""
    a, b, store = pair
    payer = devnet.new_payer(10 * OPG)
    nodes = [devnet.new_node() for _ in range(4)]
    channels = [ChannelSim(devnet, payer, n) for n in nodes]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: _verify((a, b)[i % 2], devnet, channels[i], 10 * OPG), range(4)))
    valid = [i for i, ans in enumerate(answers) if ans["isValid"]]
    assert len(valid) == 1, answers
    assert all(ans["invalidReason"] == "insufficient_balance" for ans in answers if not ans["isValid"]), answers
    # Sequentially: the relayer that did not promise refuses any other node, and the promised node is still
    # promised the balance at the other relayer (its own channel's cap counts once, not twice).
    promiser = (a, b)[valid[0] % 2]
    other = b if promiser is a else a
    x = channels[valid[0]]
    y = channels[(valid[0] + 1) % 4]
    assert _verify(other, devnet, y, OPG)["invalidReason"] == "insufficient_balance"
    assert _verify(other, devnet, x, 10 * OPG)["isValid"] is True


def test_a_channel_split_between_relayers_is_settled_once_as_accepted(pair, devnet):
    """Receipts of one channel handed over to A and B, the later one first: B stores the channel's best voucher (cap
    13 OPG, cumulative 3), then A accepts the earlier receipt (cumulative 1 on a voucher capped at exactly 1 OPG). A
    relayer deciding on its own view (A never saw the channel) would write charged 1 and cap 1 back over B's, and the
    batch would claim 3 OPG on a 1 OPG voucher and be skipped, its receipts rejected; decided under the intake lock on
    what is committed, the channel keeps B's voucher, and every receipt (more follow, alternately and concurrently)
    is settled once: spent equals the highest cumulative accepted, the payer paid exactly that."""
    a, b, store = pair
    payer, node = devnet.new_payer(100 * OPG), devnet.new_node()
    before = devnet.balance(payer)
    ch = ChannelSim(devnet, payer, node)
    first = item(ch.receipt(OPG), ch.voucher(OPG))  # cumulative 1, voucher cap 1
    second = item(ch.receipt(2 * OPG, cumulative=3 * OPG), ch.voucher(13 * OPG))  # cumulative 3, voucher cap 13
    ch.cumulative = 3 * OPG
    res = b.post("/settle", second)
    assert res.status_code == 200 and res.json()["status"] == "pending", res.text
    res = a.post("/settle", first)
    assert res.status_code == 200 and res.json()["status"] == "pending", res.text
    [(cap, charged)] = _rows(store, "SELECT cap, charged FROM channels WHERE payer = ? AND node = ?",
                             (payer.address, node.address))
    assert (int(cap), int(charged)) == (13 * OPG, 3 * OPG)
    # More of the channel, alternately, concurrently.
    more = [ch.next(amount=OPG) for _ in range(6)]
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda i: (a, b)[i % 2].post("/settle", more[i]), range(6)))
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    ids = [_rows(store, "SELECT id FROM receipts WHERE request_id = ?", (it["receipt"]["request_id"],))[0][0]
           for it in [first, second, *more]]
    views = a.wait_receipts(ids)
    assert all(v["status"] == "settled" for v in views)
    assert devnet.spent(payer, node) == ch.cumulative == 9 * OPG
    assert devnet.balance(payer) == before - ch.cumulative
    [(cap, charged, settled, pending)] = _rows(store, "SELECT cap, charged, settled, pending FROM channels"
                                               " WHERE payer = ? AND node = ?", (payer.address, node.address))
    assert (int(cap), int(charged), int(settled), pending) == (ch.best_cap, ch.cumulative, ch.cumulative, 0)
    # Each receipt is in exactly one confirmed batch; both relayers' views agree.
    batches = {bid for (bid,) in _rows(store, "SELECT DISTINCT batch_id FROM receipts WHERE payer = ?",
                                       (payer.address,))}
    assert all(_rows(store, "SELECT status FROM batches WHERE id = ?", (bid,)) == [("confirmed",)]
               for bid in batches)
    for relayer in (a, b):
        wait_until(lambda r=relayer: r.get(f"/channels/{payer.address}/{node.address}").json()["settled"]
                   == str(ch.cumulative), timeout=10, what="both relayers see the channel settled")


def test_one_receipt_resent_to_both_relayers_at_once_is_stored_once(pair, devnet):
    """A node (or an attacker replaying its traffic) sends one receipt to A and B concurrently, many times: every
    answer is the same receipt, exactly one of them stores it, and it is in the database once."""
    a, b, store = pair
    payer, node = devnet.new_payer(100 * OPG), devnet.new_node()
    ch = ChannelSim(devnet, payer, node)
    it = ch.next(amount=OPG)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: (a, b)[i % 2].post("/settle", it), range(16)))
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    bodies = [r.json() for r in results]
    assert len({body["id"] for body in bodies}) == 1
    assert sum(1 for body in bodies if not body["duplicate"]) == 1, bodies
    assert _rows(store, "SELECT count(*) FROM receipts WHERE id = ?", (bodies[0]["id"],)) == [(1,)]
    a.wait_receipts([bodies[0]["id"]])


def test_a_receipt_accepted_by_one_relayer_is_seen_by_the_other(pair, devnet):
    """B accepts; A answers ``/receipts/{id}`` and its feed with it at once, and its channel view within a
    catch-up."""
    a, b, store = pair
    payer, node = devnet.new_payer(100 * OPG), devnet.new_node()
    ch = ChannelSim(devnet, payer, node)
    after = a.get("/feed/receipts", params={"after": 0, "limit": 1000}).json()
    cursor = after["next"]
    while after["receipts"]:
        after = a.get("/feed/receipts", params={"after": cursor, "limit": 1000}).json()
        cursor = after["next"]
    res = b.post("/settle", ch.next(amount=OPG))
    assert res.status_code == 200, res.text
    rid = res.json()["id"]
    assert a.get(f"/receipts/{rid}").json()["id"] == rid
    feed = a.get("/feed/receipts", params={"after": cursor, "limit": 1000}).json()
    assert rid in [r["id"] for r in feed["receipts"]]
    wait_until(lambda: int(a.get(f"/channels/{payer.address}/{node.address}").json()["charged"]) == OPG,
               timeout=5, what="A's ledger catches up with B's receipt")


def test_an_exact_authorisation_is_claimed_once_by_two_stores(devnet, database):
    """Two relayers' stores on one database claim the same ``exact`` authorisation ``{from, nonce}`` at the same
    moment, again and again: exactly one claim each time (the row is the claim; the other finds it)."""
    stores = [Store(database, Ledger()) for _ in range(2)]
    for s in stores:
        s.open(devnet.chain_id, devnet.escrow.address, devnet.staking.address)
    try:
        for round_ in range(20):
            key = f"0x{'ab' * 20}:{round_}:{time.time_ns()}"
            futures = [s.submit(Store.job_exact_new, key, "0xp", "0xn", 5, {"n": i}, time.time())
                       for i, s in enumerate(stores)]
            claimed = [f.result() is None for f in futures]
            assert claimed.count(True) == 1, (round_, claimed)
    finally:
        for s in stores:
            s.close()


# The follower: the relayer that does not hold the sending lease -----------------------------------------------------
def _roles(pair) -> tuple[RelayerProc, RelayerProc]:
    """(leader, follower) of the pair, once one of them holds the lease."""
    a, b, _store = pair
    wait_until(lambda: any(p.get("/healthz").json()["lease"]["role"] == "leader" for p in (a, b)), timeout=20,
               what="a lease holder")
    leader = a if a.get("/healthz").json()["lease"]["role"] == "leader" else b
    return leader, (b if leader is a else a)


def test_attack_live_proposal_credits_are_not_promised_by_the_follower(pair, devnet):
    """R1 through the relayer that does not send: a colluding node proposes a batch draining 8 of the payer's 10 OPG;
    the follower must count the live proposal too (every process scans BatchProposed, relayer/watch.py), so 3 OPG
    for another node are refused there, as at the leader."""
    leader, follower = _roles(pair)
    payer, node, colluder = devnet.new_payer(10 * OPG), devnet.new_node(), devnet.new_node()
    propose(devnet, colluder, [drain_claim(devnet, payer, colluder, 8 * OPG)])
    ch = ChannelSim(devnet, payer, node)  # one channel: the follower's own promises on it never reserve more
    refused = wait_until(lambda: not (ans := _verify(follower, devnet, ch, 3 * OPG))["isValid"] and ans, timeout=8,
                         what="the follower counts the live proposal")
    assert refused["invalidReason"] == "insufficient_balance", refused
    wait_until(lambda: not _verify(leader, devnet, ch, 3 * OPG)["isValid"], timeout=8,
               what="the leader counts it too")


def test_attack_follower_never_promises_credits_a_settlement_already_took(pair, devnet):
    """The follower's /verify caches (spent, available_of) for 2 s; its catch-up in job_promise then applies the
    leader's settlement of another channel (less reserved) to its ledger: decided with the balance read before the
    settlement, the credits would be overstated by the amount paid. A payer's 6 OPG receipt is settled by the leader
    right after the follower cached the balance; asked for the whole 10 OPG again at once, the follower must refuse
    (4 OPG are left)."""
    leader, follower = _roles(pair)
    for _round in range(2):
        payer, n1, n2 = devnet.new_payer(10 * OPG), devnet.new_node(), devnet.new_node()
        first = ChannelSim(devnet, payer, n1)
        assert _verify(leader, devnet, first, 6 * OPG, price=6 * OPG)["isValid"] is True
        res = leader.post("/settle", item(first.receipt(6 * OPG), first.voucher(6 * OPG)))
        assert res.status_code == 200, res.text
        rid = res.json()["id"]
        second = ChannelSim(devnet, payer, n2)
        assert _verify(follower, devnet, second, 4 * OPG)["isValid"] is True  # fills the follower's cache
        wait_until(lambda r=rid: leader.receipt_status(r)["status"] == "settled", timeout=20, interval=0.003,
                   what="the leader settles the first channel")
        ans = _verify(follower, devnet, second, 10 * OPG)
        assert devnet.escrow.functions.available_of(payer.address).call() == 4 * OPG
        assert ans["isValid"] is False and ans["invalidReason"] == "insufficient_balance", ans


# The store: catch-up and the intake lock ----------------------------------------------------------------------------
@ape.fixture(scope="module", chain_isolation=False, params=["postgresql", "sqlite"])
def location(request, stores_database: str, tmp_path_factory) -> str:
    """The store-level tests' shared store: their PostgreSQL database, or one SQLite file."""
    if request.param == "postgresql":
        return stores_database
    return str(tmp_path_factory.mktemp("shared-stores") / "stores.sqlite3")


def _store(location: str, devnet: Devnet) -> Store:
    s = Store(location, Ledger(), reservations=Reservations(), shared=True, follow_interval=3600)
    s.open(devnet.chain_id, devnet.escrow.address, devnet.staking.address)
    return s


def _promise(store: Store, payer: str, node: str, cap: int) -> None:
    store.submit_job(store.job_promise, lambda: (None, {}, (payer, node, cap, "")), durable=False).result()


def _address(n: int) -> str:
    return f"0x{n:040x}"


def test_attack_a_promise_made_after_every_promise_was_pruned_is_counted_by_the_other_relayer(location, devnet):
    """Versions drawn as max(version) + 1 of the promises table fall when expired promises are pruned: the next
    promises get versions the other relayer's cursor already passed, it never sees them and promises the same
    credits again. The counter never falls: after a prune, A's new promise of the whole balance counts at B."""
    a, b = _store(location, devnet), _store(location, devnet)
    try:
        payer = _address(time.time_ns())
        for i in range(5):
            _promise(a, payer, _address(i + 1), 10)
        b.sync()
        assert b.reservations.promised_cap(payer, _address(5)) == 10
        a.call(lambda conn: Promises.prune(conn, -1e12))  # every promise ended (an idle night), pruned
        assert _rows(location, "SELECT count(*) FROM promises") == [(0,)]
        _promise(a, payer, _address(0xCC), 1000)
        b.sync()
        assert b.reservations.promised_cap(payer, _address(0xCC)) == 1000
    finally:
        a.close()
        b.close()


def test_attack_a_skewed_clock_neither_ignores_nor_deletes_the_other_relayers_promises(location, devnet, monkeypatch):
    """Promises end by the database's clock, not each relayer's: B, whose wall clock runs an hour ahead, prunes and
    catches up; A's fresh promise is still stored and B counts it for its whole time."""
    a, b = _store(location, devnet), _store(location, devnet)
    try:
        payer, node = _address(time.time_ns()), _address(0xDD)
        _promise(a, payer, node, 77)
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 3600)
        b.sync()  # prunes (first sync) and catches up
        monkeypatch.undo()
        assert b.reservations.promised_cap(payer, node) == 77
        [(until,)] = _rows(location, "SELECT until FROM promises WHERE payer = ?", (payer,))
        assert abs(until - (time.time() + PROMISE_TTL)) < 30
    finally:
        a.close()
        b.close()


def test_attack_an_open_transaction_elsewhere_does_not_make_every_catch_up_reread_everything(stores_database, devnet):
    """PostgreSQL: a cursor at the oldest running transaction (pg_snapshot_xmin) is pinned by any transaction left
    open on the cluster (a long import, an idle session): every catch-up, each /verify's among them, re-reads every
    channel changed since. Versions from a sequence drawn under the intake lock keep it incremental."""
    a, b = _store(stores_database, devnet), _store(stores_database, devnet)
    other = psycopg.connect(stores_database, autocommit=False)
    try:
        other.execute("SELECT pg_current_xact_id()")  # an open transaction holding an xid
        b.sync()
        tag = time.time_ns()
        a.call(_save_channels, tag, 300)
        assert b.sync() == 300
        assert [b.sync() for _ in range(3)] == [0, 0, 0]
    finally:
        other.rollback()
        other.close()
        a.close()
        b.close()


def _save_channels(conn, tag: int, n: int) -> None:
    lock_intake(conn)
    for i in range(n):
        Channels.save(conn, ChannelState(_address(tag + i), "0x" + "bb" * 20, 5, 10, "0x", 0), 1)


def test_attack_a_relayer_frozen_holding_the_intake_lock_gets_others_a_503_not_a_hang(stores_database, devnet):
    """PostgreSQL: relayer A frozen (SIGSTOP, a VM pause) inside its writer's group after taking the intake lock
    holds it until the server ends its session (idle_in_transaction_session_timeout). Meanwhile B's /verify and
    /settle jobs wait INTAKE_LOCK_WAIT at most and are refused 503 store_busy (never a hang, never a 500); once A's
    transaction ends, B goes on."""
    a, b = _store(stores_database, devnet), _store(stores_database, devnet)
    frozen, release = threading.Event(), threading.Event()

    def freeze(conn) -> None:
        lock_intake(conn)
        frozen.set()
        release.wait(30)

    try:
        held = a.submit(freeze)
        assert frozen.wait(10)
        started = time.monotonic()
        payer, node = _address(time.time_ns()), _address(0xEE)
        try:
            _promise(b, payer, node, 5)
            raise AssertionError("B promised while A held the intake lock")
        except IntakeBusy as exc:
            assert exc.status == 503 and exc.error == "store_busy", exc
        assert INTAKE_LOCK_WAIT <= time.monotonic() - started < INTAKE_LOCK_WAIT + 3
        release.set()
        held.result(10)  # A thawed: its transaction commits
        _promise(b, payer, node, 5)
        assert b.reservations.promised_cap(payer, node) == 5
    finally:
        release.set()
        a.close()
        b.close()


def test_attack_the_intake_lock_held_by_a_frozen_relayer_answers_503_over_http(pair, devnet):
    """PostgreSQL, end to end: while another session (a frozen relayer) holds the intake lock, a relayer's
    ``/verify`` and ``/settle`` answer 503 ``store_busy`` with a reason within INTAKE_LOCK_WAIT, never a 500 or a
    hang; once it is released, both are served."""
    a, _b, store = pair
    if not store.startswith("postgresql://"):
        pytest.skip("the intake lock is PostgreSQL's advisory lock (SQLite: the file's write lock)")
    payer, node = devnet.new_payer(10 * OPG), devnet.new_node()
    ch = ChannelSim(devnet, payer, node)
    it = ch.next(amount=OPG)
    with psycopg.connect(store, autocommit=False) as frozen:
        frozen.execute("SELECT pg_advisory_xact_lock(%s)", (INTAKE_LOCK,))
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            started = time.monotonic()
            verify = pool.submit(a.post, "/verify", _verify_body(devnet, ch, 2 * OPG))
            settle = pool.submit(a.post, "/settle", it)
            answers = [verify.result(), settle.result()]
        assert time.monotonic() - started < INTAKE_LOCK_WAIT + 5
        for res in answers:
            assert res.status_code == 503 and res.json()["error"] == "store_busy", res.text
        frozen.rollback()
    assert _verify(a, devnet, ch, 2 * OPG)["isValid"] is True
    res = a.post("/settle", it)
    assert res.status_code == 200 and res.json()["status"] == "pending", res.text


def test_attack_a_stale_batch_builder_cannot_move_receipts_out_of_the_sent_batch(location, devnet):
    """A leader that just lost the lease may still finish a batcher tick: its batch build must not move receipts
    the new leader already put in the batch it sent (``Receipts.assign`` only takes receipts in no batch)."""
    s = _store(location, devnet)
    try:
        tag = time.time_ns()
        ids = [f"0x{tag:x}{i:02x}" for i in range(3)]

        def insert(conn) -> None:
            for i, rid in enumerate(ids):
                Receipts.insert(conn, (rid, rid, f"r{tag}-{i}", _address(1), _address(tag), "m", "0x", "0x", "1",
                                       str(i + 1), 0, "0x", "9", "0x", time.time()))

        s.call(insert)
        sent = s.call(Store.job_build_batch, s.ledger, [{"payer": _address(1)}], "0x", {("p", "n"): ids}, [], {},
                      time.time())
        stale = s.call(Store.job_build_batch, s.ledger, [{"payer": _address(1)}], "0x", {("p", "n"): ids}, [], {},
                       time.time())
        assert stale != sent
        assert [r[0] for r in _rows(location, "SELECT DISTINCT batch_id FROM receipts WHERE id IN (?, ?, ?)",
                                    tuple(ids))] == [sent]
    finally:
        s.close()
