"""Several relayer processes on one PostgreSQL database (issue 20): any of them answers ``/verify``, ``/settle``,
receipts and the feed, and nothing is promised or accepted twice. Two real relayer processes (A, B) on one real
PostgreSQL cluster (``offchain.devkit.postgres``) and one anvil; each test performs an attack or a race across them:

- a payer asks A and B at once for the same credits for different nodes: one promise, never two (the double spend
  of one balance);
- a payer's receipts of one channel split between A and B, the higher voucher first at one of them: no relayer
  overwrites the other's view of the channel, and every receipt is settled once, exactly as accepted;
- one receipt resent to A and B concurrently is stored once;
- a receipt B accepted is at once in A's ``/receipts/{id}``, feed and channel view;
- two stores on the database claim one ``exact`` authorisation concurrently: one claim.
"""

from __future__ import annotations

import concurrent.futures
import sqlite3
import time
from pathlib import Path

import ape
import psycopg

from offchain.devkit.devnet import OPG, ChannelSim, Devnet, RelayerProc, item, wait_until
from offchain.devkit.postgres import PostgresCluster
from offchain.relayer.ledger import Ledger
from offchain.relayer.store import Store


@ape.fixture(scope="module", chain_isolation=False)
def database() -> str:
    cluster = PostgresCluster().start()
    yield cluster.database()
    cluster.stop()


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


def _verify(relayer: RelayerProc, devnet: Devnet, ch: ChannelSim, cap: int, price: int = OPG) -> dict:
    v = ch.voucher(cap)
    requirements = {"scheme": "opg-credit", "network": devnet.network, "asset": devnet.opg.address,
                    "amount": str(price), "payTo": ch.node.address, "maxTimeoutSeconds": 60,
                    "extra": {"escrow": devnet.escrow.address, "staking": devnet.staking.address}}
    body = {"x402Version": 2, "paymentRequirements": requirements, "paymentPayload": {
        "x402Version": 2, "accepted": requirements,
        "payload": {"voucher": {"payer": ch.payer.address, "node": ch.node.address, "maxCumulative": str(cap)},
                    "signature": v.signature}}}
    res = relayer.post("/verify", body)
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
