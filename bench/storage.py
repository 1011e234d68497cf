"""Storage benchmark: the shared group-commit writer (offchain/storage) on a real SQLite file in a temporary folder.

Measures, for durable commits (``synchronous=FULL``: fsync before the caller hears back) and process-crash-safe
ones (``synchronous=NORMAL``: no fsync on the request path):
  single_ms        one writer thread, one job at a time: p50 / p99 latency of ``call`` (one commit per job)
  concurrent       N threads submitting at once: jobs per second, mean jobs per commit, p50 / p99 latency
  read_us          ``Database.read_one`` of one row by key from this thread's reader: p50 / p99 microseconds

With ``--postgres`` the same rows follow for a throwaway PostgreSQL cluster (``offchain.devkit.postgres``, fsync off:
the server's own WAL flush is measured, not the disk's) with ``synchronous_commit`` on and off, plus ``feed``: the
table's order column drawn at commit (``storage.postgres.commit_ordered``, the relayer's receipts on PostgreSQL), whose
cost is the ratio to the plain durable row in the same run.

Everything shares the machine's cores and disk; the numbers are what this machine did in this run.

    python bench/storage.py [--jobs N] [--threads N] [--postgres]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

from offchain.storage import CommitStats, Database, GroupCommitWriter, Migration, postgres

RESULTS = Path(__file__).parent / "results" / "storage.json"
_ROWS = "CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL);"
TABLE = [Migration(1, "rows", _ROWS, postgres.ddl(_ROWS))]


def _feed_rows(conn, dialect) -> None:
    conn.execute(postgres.ddl(_ROWS))
    conn.execute("ALTER TABLE rows ADD COLUMN seq BIGINT GENERATED ALWAYS AS IDENTITY")
    conn.execute("CREATE UNIQUE INDEX rows_seq ON rows(seq)")
    postgres.commit_ordered("rows", "id")(conn, dialect)


FEED_TABLE = [Migration(1, "rows", _ROWS, _feed_rows)]


def _insert(conn, i: int) -> None:
    conn.execute("INSERT INTO rows (id, body) VALUES (?, ?)", (i, "x" * 400))  # about a receipt's size


def _pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else values[0] * 1000


def run(location: str | Path, durable: bool, jobs: int, threads: int, feed: bool = False) -> dict:
    db = Database.at(location)
    db.open(FEED_TABLE if feed else TABLE)
    stats: list[CommitStats] = []
    writer = GroupCommitWriter(db, on_commit=stats.append)
    single = []
    for i in range(jobs // 4):
        t = time.perf_counter()
        writer.call(_insert, i, durable=durable)
        single.append(time.perf_counter() - t)
    stats.clear()
    latencies: list[float] = []
    lock = threading.Lock()
    base = jobs

    def worker(w: int) -> None:
        mine = []
        for k in range(jobs // threads):
            t = time.perf_counter()
            writer.call(_insert, base + w * jobs + k, durable=durable)
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    writer.close()
    reads = []
    for i in range(jobs * 2):
        t = time.perf_counter()
        db.read_one("SELECT body FROM rows WHERE id = ?", (i % (jobs // 4),))
        reads.append(time.perf_counter() - t)
    db.close()
    return {
        "engine": db.dialect.name,
        "feed": feed,
        "durable": durable,
        "single_ms": {"p50": round(_pct(single, 50), 3), "p99": round(_pct(single, 99), 3), "jobs": len(single)},
        "concurrent": {"threads": threads, "jobs": len(latencies), "jobs_per_s": round(len(latencies) / elapsed),
                       "jobs_per_commit": round(sum(s.jobs for s in stats) / max(len(stats), 1), 1),
                       "p50_ms": round(_pct(latencies, 50), 3), "p99_ms": round(_pct(latencies, 99), 3)},
        "read_us": {"p50": round(_pct(reads, 50) * 1000, 2), "p99": round(_pct(reads, 99) * 1000, 2),
                    "reads": len(reads)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--postgres", action="store_true", help="also a throwaway PostgreSQL cluster")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [run(Path(tmp) / f"bench-{durable}.sqlite3", durable, args.jobs, args.threads)
                   for durable in (True, False)]
    if args.postgres:
        from offchain.devkit.postgres import PostgresCluster

        with PostgresCluster() as cluster:
            results += [run(cluster.database(), durable, args.jobs, args.threads, feed)
                        for durable, feed in ((True, False), (False, False), (True, True))]
    print(f"{'engine':<11} {'commit':<14} {'single p50':>11} {'single p99':>11} {'jobs/s':>8} {'jobs/commit':>12} "
          f"{'conc p50':>9} {'conc p99':>9} {'read p50':>9} {'read p99':>9}")
    for r in results:
        s, c, rd = r["single_ms"], r["concurrent"], r["read_us"]
        commit = ("fsync" if r["durable"] else "no fsync") + (" feed" if r["feed"] else "")
        print(f"{r['engine']:<11} {commit:<14} {s['p50']:>9.3f}ms {s['p99']:>9.3f}ms "
              f"{c['jobs_per_s']:>8} {c['jobs_per_commit']:>12} {c['p50_ms']:>7.3f}ms {c['p99_ms']:>7.3f}ms "
              f"{rd['p50']:>7.2f}us {rd['p99']:>7.2f}us")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                   "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
