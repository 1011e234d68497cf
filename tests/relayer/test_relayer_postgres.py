"""The relayer as a real process on PostgreSQL (``--store postgresql://...``): paid receipts are accepted into the
database, settled on-chain exactly as their vouchers allow, and a restarted relayer rebuilds its ledger from the
database. The cluster is a throwaway one (``offchain.devkit.postgres``); no SQLite file is made."""

from __future__ import annotations

import ape
import psycopg

from offchain.devkit.devnet import OPG, ChannelSim, Devnet, RelayerProc
from offchain.devkit.postgres import PostgresCluster


@ape.fixture(scope="module", chain_isolation=False)
def database() -> str:
    cluster = PostgresCluster().start()
    yield cluster.database()
    cluster.stop()


@ape.fixture(scope="module", chain_isolation=False)
def pg_relayer(devnet: Devnet, database: str, tmp_path_factory) -> RelayerProc:
    sqlite_path = tmp_path_factory.mktemp("pg-relayer") / "relayer.sqlite3"  # the kit's log lives beside it
    # the kit passes --store <file> first; a later --store wins (click keeps the last value of an option)
    proc = RelayerProc(devnet, sqlite_path, 1, "--store", database).start()
    yield proc
    proc.stop()
    assert not sqlite_path.exists()


def _stored(database: str, sql: str) -> list[tuple]:
    with psycopg.connect(database) as conn:
        return conn.execute(sql).fetchall()


def test_a_relayer_on_postgresql_settles_paid_receipts_and_rebuilds_its_ledger_after_a_restart(pg_relayer, devnet,
                                                                                                 database):
    health = pg_relayer.get("/healthz").json()
    assert health["ok"] and health["storeOk"]
    node, payer = devnet.new_node(), devnet.new_payer(100 * OPG)
    before = devnet.balance(payer)
    ch = ChannelSim(devnet, payer, node)
    res = pg_relayer.post("/settle", {"receipts": [ch.next(amount=OPG // 10 * (i + 1)) for i in range(4)]})
    assert res.status_code == 200, res.text
    ids = [r["id"] for r in res.json()["results"]]
    assert res.json()["accepted"] == 4 and all(r["status"] == "pending" for r in res.json()["results"])
    views = pg_relayer.wait_receipts(ids)
    assert all(v["batchId"] and v["tx"] for v in views)
    assert devnet.spent(payer, node) == ch.cumulative and devnet.balance(payer) == before - ch.cumulative
    # It is PostgreSQL that holds them: the receipts, in feed order, and the confirmed batch's transaction.
    rows = _stored(database, "SELECT id, status FROM receipts ORDER BY seq")
    assert rows == [(i, "settled") for i in ids]
    [(status, tx_hash)] = _stored(database, f"SELECT status, tx_hash FROM batches WHERE id = {views[0]['batchId']}")
    assert status == "confirmed" and tx_hash == views[0]["tx"]
    assert _stored(database, f"SELECT count(*) FROM transactions WHERE tx_hash = '{tx_hash}'") == [(1,)]
    # Restarted on the same database: the channel is rebuilt from it and a further receipt settles on top.
    pg_relayer.stop()
    pg_relayer.start()
    view = pg_relayer.get(f"/channels/{payer.address}/{node.address}").json()
    assert view["charged"] == view["settled"] == str(ch.cumulative) and view["pendingReceipts"] == 0
    res = pg_relayer.post("/settle", ch.next(amount=OPG // 2))
    assert res.status_code == 200 and res.json()["status"] == "pending", res.text
    pg_relayer.wait_receipts([res.json()["id"]])
    assert devnet.spent(payer, node) == ch.cumulative
