"""Scale benchmark: 100 inference nodes and 1,000 payers against 1 to 3 relayer processes sharing one database, on
SQLite (several processes on one file) and on PostgreSQL, for a bounded time per configuration.

Set-up (``offchain.devkit``): a ``Devnet`` (anvil with the system deployed), the nodes registered and staked and the
payers credited in the escrow (``loadgen.fund_population``); each payer pays ``--nodes-per-payer`` nodes. The chain is
snapshotted once funded and reverted before every configuration, so each starts from the same chain state, a fresh
database and fresh relayer processes (``opg relayer run``, real HTTP). The payers and nodes are simulated in this
process: their vouchers and receipts are signed with the SDK's signing and wire code (``loadgen.sign_channel``)
before the timed parts, so the client only sends pre-encoded bodies; the configurations with the same relayer count
send the same pre-signed receipts.

Per configuration (backend x relayer count), after a warm-up (not timed) of a receipt or two per channel (connections,
caches, channel rows, the relayers' validation workers):
  bulk     ``--seconds``/2 of node-style bulk ``POST /settle`` (100 receipts per request, each node pairing its receipts
           with the newest voucher of the channel), 4 concurrent requests per relayer
  single   ``--seconds``/2 of one receipt per ``POST /settle``, 16 connections per relayer (a lean HTTP/1.1 client)
  recovery the machine's raw signature-recovery rate, measured just before and just after each phase (the mean), in
           this process, one thread: receipts' signers recovered per CPU-second with the relayer's own code
           (``offchain.sdk.wire.SignatureChecker``); every throughput is also given as a ratio to it (the absolute
           figures depend on the machine and its load)
  cost     the relayer processes' CPU time (with their validation workers) per accepted receipt, in recoveries: what
           the relayer spends on a receipt beyond checking its signatures, nearly independent of the machine's load
  lag      a receipt's acceptance to its batch's confirmation on-chain (the relayer's ``settledAt - acceptedAt``),
           p50/p99 over a sample of the receipts sent, once every channel is paid on-chain
  memory   each relayer's RSS at the end of the load (and its peak, and its validation worker processes')
and at the end that every channel was paid on-chain exactly the highest cumulative the relayers accepted.

Load is spread round-robin over the relayers (as a load balancer would). With several relayers, every process accepts
receipts and the one holding the lease sends the transactions. The client, the relayers, anvil (and PostgreSQL) share
this machine's cores, as does whatever else runs on it: the results say how many and the load average.

    python bench/scale.py [--quick] [--seconds 20] [--relayers 1,2,3] [--backends sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadgen import (  # noqa: E402  (bench/loadgen.py: this script's directory is on sys.path)
    OPG,
    Workload,
    bulk_body,
    bulk_chunks,
    encode,
    interleave,
    percentile,
    receipt_id,
    run_bulk,
    run_single,
    settle_latencies,
)

from offchain.devkit.devnet import Devnet, RelayerProc  # noqa: E402
from offchain.devkit.postgres import PostgresCluster, PostgresMissing  # noqa: E402
from offchain.messages import SignedReceipt  # noqa: E402
from offchain.relayer.config import RelayerSettings  # noqa: E402
from offchain.sdk.wire import SignatureChecker, parse_receipt  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "scale.json"
BULK_SIZE, BULK_CONCURRENCY, SINGLE_CONCURRENCY = 100, 4, 16  # the last two per relayer
RELAYER_ACCOUNT = 1  # every relayer process signs with the same facilitator account (only the lease holder sends)
LEASE_TTL = 5.0  # several relayers: the sending lease's TTL (s)
GUESS = {"bulk": 1_500.0, "single": 600.0}  # receipts/s assumed before a phase was measured (sizes the signing)


# Processes ----------------------------------------------------------------------------------------------------------
def relayers_supported(count: int) -> str | None:
    """Why ``count`` relayer processes cannot share a database with this relayer (None: they can)."""
    fields = RelayerSettings.model_fields
    if count > 1 and not ("instance" in fields and "shared_store" in fields):
        return ("the relayer has no --instance (leadership lease) or --shared-store (intake across processes) "
                "setting in this tree: several processes cannot share one database yet")
    return None


def start_relayers(devnet: Devnet, store: str, count: int, log_dir: Path, batch_size: int,
                   batch_age: float) -> list[RelayerProc]:
    """``count`` relayers on ``store`` (a SQLite file or a PostgreSQL URL), all with the same key, each its own
    ``--instance``; the first alone (it migrates the empty database), then the others."""
    shared = ["--instance", "relayer-{}", "--lease-ttl", str(LEASE_TTL)] if count > 1 else []
    if count > 1 and not store.startswith("postgresql://"):
        shared.append("--shared-store")
    procs: list[RelayerProc] = []
    try:
        for i in range(count):
            extra = [a.format(i + 1) for a in shared]
            # the kit passes its --store <file> first (and names the log after it); a later --store wins
            procs.append(RelayerProc(devnet, log_dir / f"relayer-{i + 1}.sqlite3", RELAYER_ACCOUNT, "--store", store,
                                     "--log-level", "warning", *extra, batch_age=batch_age,
                                     batch_size=batch_size).start())
            procs[-1].name = f"relayer-{i + 1}"
    except Exception:
        for p in procs:
            p.stop()
        raise
    return procs


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out + [g for c in out for g in _children(c)]


def _status_mib(pid: int, key: str) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live descendants (the relayer's validation workers)."""
    total = 0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total / os.sysconf("SC_CLK_TCK")


def memory(proc: RelayerProc) -> dict:
    assert proc.process is not None
    pid = proc.process.pid
    return {"relayer": proc.name, "rss_mib": round(_status_mib(pid, "VmRSS"), 1),
            "peak_rss_mib": round(_status_mib(pid, "VmHWM"), 1),
            "workers_rss_mib": round(sum(_status_mib(c, "VmRSS") for c in _children(pid)), 1)}


# Measurements -------------------------------------------------------------------------------------------------------
def recovery_rate(receipts: list[SignedReceipt], checker: SignatureChecker) -> float:
    """Receipts' signers recovered per CPU-second of this thread with the relayer's ``SignatureChecker`` (best of 5
    short runs): timed on the thread's CPU clock, so the other processes sharing the cores do not count."""
    best = 0.0
    for _ in range(5):
        start = time.thread_time()
        for r in receipts:
            checker.signer(r, r.signature)
        best = max(best, len(receipts) / max(time.thread_time() - start, 1e-6))
    return best


def presign(load: Workload, pool: ProcessPoolExecutor, budgets: dict[str, int]) -> dict[str, list[list[dict]]]:
    """Receipts for each phase (``budgets``: phase -> receipts), each phase's continuing the channels' cumulatives
    where the previous phase's end. Every configuration starts from the same chain state and an empty database, so
    the configurations of one relayer count send the same receipts (signed once, minutes before, well within the
    relayer's receipt age limit)."""
    load.cumulative.clear()
    t0 = time.perf_counter()
    out = {kind: load.sign(total, pool) for kind, total in budgets.items()}
    n = sum(len(c) for chs in out.values() for c in chs)
    print(f"  (pre-signed {n:,} receipts and vouchers in {time.perf_counter() - t0:.1f}s: "
          f"{', '.join(f'{k} {v:,}' for k, v in budgets.items())})", flush=True)
    return out


class Run:
    """One configuration's load: the channels' accepted cumulatives, the sample of receipt ids for the lag."""

    def __init__(self, load: Workload, urls: list[str], pids: list[int]):
        self.load, self.urls, self.pids = load, urls, pids
        self.accepted: dict[tuple[str, str], int] = {}
        self.sample: list[str] = []

    def _sent(self, items: list[dict], samples: int) -> None:
        for x in items:
            r = x["receipt"]
            key = (r["payer"], r["node"])
            self.accepted[key] = max(self.accepted.get(key, 0), int(r["cumulative"]))
        if samples and items:
            self.sample += [receipt_id(x, self.load.staking_domain) for x in items[:: max(1, len(items) // samples)]]

    def phase(self, kind: str, channels: list[list[dict]], seconds: float | None, samples: int = 0,
              recovery: int = 0) -> dict:
        """Send the pre-signed receipts of ``channels`` (bulk or single) for at most ``seconds``; the measured
        figures. With ``recovery``: the recovery rate on that many of them just before and just after the load."""
        checker, probe = SignatureChecker(self.load.staking_domain), [
            parse_receipt(x["receipt"]) for x in interleave(channels)[:recovery]]
        before = recovery_rate(probe, checker) if probe else None
        if kind == "bulk":
            chunks = bulk_chunks(channels, BULK_SIZE, newest_voucher=True)
            bodies = [bulk_body(c) for c in chunks]
        else:
            items = interleave(channels)
            bodies = [encode(x) for x in items]
        cpu0, client0 = [cpu_seconds(p) for p in self.pids], time.process_time()
        answered: list[int] = []
        if kind == "bulk":
            res = asyncio.run(run_bulk(self.urls, bodies, BULK_CONCURRENCY * len(self.urls), seconds, answered))
            sent = [x for i in sorted(answered) for x in chunks[i]]
        else:
            res = asyncio.run(run_single(self.urls, bodies, SINGLE_CONCURRENCY * len(self.urls), seconds=seconds,
                                         answered=answered))
            sent = [items[i] for i in sorted(answered)]
        client_cpu = time.process_time() - client0
        relayer_cpu = sum(cpu_seconds(p) - c for p, c in zip(self.pids, cpu0, strict=True))
        after = recovery_rate(probe, checker) if probe else None
        self._sent(sent, samples)
        return {**{k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()},
                "recovery_per_s": round((before + after) / 2) if before and after else None,
                "recovery_before_after_per_s": [round(before), round(after)] if before and after else None,
                "receipts_sent": len(sent), "rejected": len(sent) - res["receipts"],
                "exhausted": len(answered) == len(bodies) and seconds is not None,
                "relayer_cpu_s": round(relayer_cpu, 2),
                "receipts_per_relayer_cpu_s": round(res["receipts"] / relayer_cpu, 1) if relayer_cpu else None,
                "client_cpu_share": round(client_cpu / res["seconds"], 3)}


def wait_paid(load: Workload, expected: dict[tuple[str, str], int], timeout: float) -> tuple[float, int]:
    """Wait until every channel is paid on-chain what was accepted; (seconds waited, channels still differing)."""
    start = time.monotonic()
    while True:
        unpaid = load.unpaid(expected)
        if not unpaid or time.monotonic() - start > timeout:
            return time.monotonic() - start, len(unpaid)
        time.sleep(0.5)


def lag(client: httpx.Client, ids: list[str], timeout: float = 20) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        latencies = settle_latencies(client, ids)
        if len(latencies) == len(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return {"p50": round(statistics.median(latencies), 3) if latencies else None,
            "p99": round(percentile(latencies, 99), 3) if latencies else None,
            "max": round(max(latencies), 3) if latencies else None,
            "sampled": len(ids), "unsettled": len(ids) - len(latencies)}


def configuration(devnet: Devnet, load: Workload, signed: dict[str, list[list[dict]]], backend: str, store: str,
                  count: int, args: argparse.Namespace, log_dir: Path) -> dict:
    relayers = start_relayers(devnet, store, count, log_dir, args.batch_size, args.batch_age)
    try:
        urls = [r.url for r in relayers]
        pids = [r.process.pid for r in relayers if r.process is not None]
        run = Run(load, urls, pids)
        warm = run.phase("bulk", signed["warm"], None)  # not timed: connections, caches, rows, validation workers
        out: dict[str, Any] = {"backend": backend, "relayers": count, "measured": True,
                               "load_average_before": round(os.getloadavg()[0], 2)}
        for kind in ("bulk", "single"):
            res = run.phase(kind, signed[kind], args.seconds / 2, samples=args.lag_samples // 2,
                            recovery=args.recovery_samples)
            rec = res["recovery_per_s"]
            res["ratio_to_recovery"] = round(res["rate"] / rec, 4)
            res["per_relayer_per_s"] = round(res["rate"] / count, 1)
            res["per_relayer_ratio_to_recovery"] = round(res["rate"] / count / rec, 4)
            per_cpu = res["receipts_per_relayer_cpu_s"]
            res["cpu_per_receipt_in_recoveries"] = round(rec / per_cpu, 2) if per_cpu else None
            out[kind] = res
            print(f"  {kind}: {res['rate']:8,.0f} receipts/s ({res['receipts']:,} in {res['seconds']:.1f}s"
                  f"{', all sent' if res['exhausted'] else ''}; {res['ratio_to_recovery']:.3f} of {rec:,} "
                  f"recoveries/s{'; 503 answers ' + str(res['unavailable']) if res['unavailable'] else ''})",
                  flush=True)
        out["memory"] = [memory(r) for r in relayers]
        out["lease_roles"] = [(r.get("/healthz").json().get("lease") or {}).get("role") for r in relayers]
        out["load_average_after"] = round(os.getloadavg()[0], 2)
        waited, unpaid = wait_paid(load, run.accepted, args.settle_timeout)
        out["drain_s"] = round(waited, 2)
        out["channels"] = len(run.accepted)
        out["channels_not_paid_exactly"] = unpaid
        out["paid_exactly"] = unpaid == 0 and warm["rejected"] == 0 and all(
            out[k]["rejected"] == 0 for k in ("bulk", "single"))
        out["settlement_lag_s"] = lag(relayers[0].client, run.sample)
        print(f"  lag p50 {out['settlement_lag_s']['p50']} s, p99 {out['settlement_lag_s']['p99']} s; "
              f"RSS {', '.join(str(m['rss_mib']) for m in out['memory'])} MiB; paid exactly: {out['paid_exactly']}",
              flush=True)
        return out
    finally:
        for r in relayers:
            r.stop()


# Main ---------------------------------------------------------------------------------------------------------------
def curve(configs: list[dict]) -> dict:
    """Per backend and relayer count: receipts/s (bulk, single), their ratios to the recovery rate, and each as a
    multiple of the same backend's one-relayer figure; PostgreSQL over SQLite at each relayer count."""
    out: dict[str, Any] = {}
    measured = {(c["backend"], c["relayers"]): c for c in configs if c.get("measured")}
    for (backend, n), c in sorted(measured.items()):
        one = measured.get((backend, 1))
        row = {}
        for kind in ("bulk", "single"):
            row[f"{kind}_per_s"] = round(c[kind]["rate"])
            row[f"{kind}_ratio_to_recovery"] = c[kind]["ratio_to_recovery"]
            row[f"{kind}_vs_one_relayer"] = round(c[kind]["rate"] / one[kind]["rate"], 3) if one else None
        out.setdefault(backend, {})[str(n)] = row
    for n in sorted({n for _, n in measured}):
        sq, pg = measured.get(("sqlite", n)), measured.get(("postgresql", n))
        if sq and pg:
            out.setdefault("postgresql_over_sqlite", {})[str(n)] = {
                kind: round(pg[kind]["ratio_to_recovery"] / sq[kind]["ratio_to_recovery"], 3)
                for kind in ("bulk", "single")}
    return out


def print_table(configs: list[dict]) -> None:
    print()
    head = (f"{'backend':<11}{'relayers':>8} {'bulk/s':>8} {'/relayer':>9} {'/recov':>7} {'single/s':>9} "
            f"{'/relayer':>9} {'/recov':>7} {'recov/s':>8} {'cost b/s':>9} {'lag p50':>8} {'lag p99':>8}  RSS MiB each  "
            "exact")
    print(head)
    print("-" * len(head))
    for c in configs:
        if not c.get("measured"):
            print(f"{c['backend']:<11}{c['relayers']:>8}  not measured: {c['reason'][:100]}")
            continue
        b, s, lag_ = c["bulk"], c["single"], c["settlement_lag_s"]
        rss = "/".join(f"{m['rss_mib']:.0f}" for m in c["memory"])
        cost = f"{b['cpu_per_receipt_in_recoveries']}/{s['cpu_per_receipt_in_recoveries']}"
        print(f"{c['backend']:<11}{c['relayers']:>8} {b['rate']:>8,.0f} {b['per_relayer_per_s']:>9,.0f} "
              f"{b['ratio_to_recovery']:>7.3f} {s['rate']:>9,.0f} {s['per_relayer_per_s']:>9,.0f} "
              f"{s['ratio_to_recovery']:>7.3f} {b['recovery_per_s']:>8,} {cost:>9} {lag_['p50']!s:>8} {lag_['p99']!s:>8}  "
              f"{rss:<12}  {'yes' if c['paid_exactly'] else 'NO'}")
    print("(/recov: receipts/s over one core's recovery rate (recov/s: per CPU-second, around the bulk phase); cost: "
          "the relayers' CPU per accepted receipt in recoveries, bulk/single; lag in s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 10 nodes, 50 payers, 4 s per configuration, 1 and 2 relayers")
    parser.add_argument("--seconds", type=float, help="load per configuration, half bulk, half single (default 20)")
    parser.add_argument("--nodes", type=int)
    parser.add_argument("--payers", type=int)
    parser.add_argument("--nodes-per-payer", type=int, default=3)
    parser.add_argument("--relayers", default=None, help="relayer counts, e.g. 1,2,3 (default; --quick: 1,2)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batch-age", type=float, default=1.0)
    parser.add_argument("--settle-timeout", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    quick = args.quick
    args.seconds = args.seconds or (4.0 if quick else 20.0)
    args.nodes = args.nodes or (10 if quick else 100)
    args.payers = args.payers or (50 if quick else 1000)
    args.relayers = [int(x) for x in (args.relayers or ("1,2" if quick else "1,2,3")).split(",")]
    backends = args.backends.split(",")
    args.recovery_samples = 500 if quick else 1_000
    args.lag_samples = 100 if quick else 400

    tmp = Path(tempfile.mkdtemp(prefix="opg-bench-scale-"))
    print(f"work dir {tmp}", flush=True)
    configs: list[dict] = []
    best: dict[str, float] = {}
    started = time.monotonic()
    devnet = Devnet(tmp)
    cluster: PostgresCluster | None = None
    try:
        t0 = time.perf_counter()
        load = Workload(devnet.w3, devnet.system, devnet.deployer, args.payers, args.nodes, deposit=10_000 * OPG,
                        nodes_per_payer=args.nodes_per_payer)
        print(f"funded {args.payers} payers and staked {args.nodes} nodes ({len(load.channels)} channels) in "
              f"{time.perf_counter() - t0:.1f}s", flush=True)
        snapshot = devnet.rpc("evm_snapshot")
        postgres_missing = None
        if "postgresql" in backends:
            try:
                cluster = PostgresCluster().start()
            except PostgresMissing as exc:
                postgres_missing = str(exc)
        with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            for count in args.relayers:
                signed: dict[str, list[list[dict]]] = {}
                for backend in backends:
                    print(f"{backend}, {count} relayer(s)", flush=True)
                    reason = relayers_supported(count) or (postgres_missing if backend == "postgresql" else None)
                    if reason:
                        configs.append({"backend": backend, "relayers": count, "measured": False, "reason": reason})
                        print(f"  not measured: {reason}", flush=True)
                        continue
                    if not signed:
                        signed = presign(load, pool, {"warm": max(len(load.channels), 20 * len(load.nodes)), **{
                            kind: int(max(GUESS[kind], 1.5 * best.get(kind, 0.0)) * args.seconds / 2)
                            for kind in ("bulk", "single")}})
                    devnet.rpc("evm_revert", snapshot)  # the funded chain, as before the first configuration
                    snapshot = devnet.rpc("evm_snapshot")
                    work = tmp / f"{backend}-{count}"  # the relayers' logs (and the SQLite store)
                    work.mkdir()
                    if backend == "sqlite":
                        store = str(work / "store.sqlite3")
                    else:
                        assert cluster is not None
                        store = cluster.database()
                    try:
                        config = configuration(devnet, load, signed, backend, store, count, args, work)
                    except Exception as exc:  # recorded as not measured, with the reason; the others still run
                        traceback.print_exc()
                        reason = f"{type(exc).__name__}: {str(exc)[-600:]}"
                        config = {"backend": backend, "relayers": count, "measured": False, "reason": reason}
                        print(f"  failed: {reason}", flush=True)
                    configs.append(config)
                    for kind in ("bulk", "single"):
                        if config.get("measured"):
                            best[kind] = max(best.get(kind, 0.0), config[kind]["rate"])
        configs.sort(key=lambda c: (backends.index(c["backend"]), c["relayers"]))
    finally:
        if cluster is not None:
            cluster.stop()
        devnet.close()

    results = {
        "configurations": configs,
        "curve": curve(configs),
        "definitions": {
            "rate": "receipts accepted per second by all the relayers together, closed loop, for the phase's time",
            "per_relayer_per_s": "rate / relayer processes",
            "recovery_per_s": "receipts' signers recovered per CPU-second by one thread of this process with "
                              "offchain.sdk.wire.SignatureChecker (the relayer's code), timed on the thread's CPU "
                              "clock (best of 5 short runs): the mean of two measurements, just before and just after "
                              "the phase; each receipt costs the relayer at least one such recovery (the node's), plus "
                              "one per voucher it does not know",
            "ratio_to_recovery": "rate / recovery_per_s (wall-clock throughput over one core's recovery rate)",
            "cpu_per_receipt_in_recoveries": "recovery_per_s / receipts_per_relayer_cpu_s: the CPU the relayer "
                                             "processes (with their validation workers) spent per accepted receipt, "
                                             "in recoveries; unlike the wall-clock rates it hardly depends on what "
                                             "else runs on the machine",
            "settlement_lag_s": "the relayer's settledAt - acceptedAt of a sample of the receipts sent: acceptance to "
                                "the batch's confirmation (1 block) on anvil (automine), batch-size / batch-age below",
            "memory": "VmRSS of each relayer process at the end of the load, its peak (VmHWM) and the RSS of its "
                      "validation worker processes",
            "paid_exactly": "every channel's escrow.spent equals the highest cumulative the relayers accepted, and no "
                            "receipt sent was refused",
            "unavailable": "503 answers (by error code) during the phase: the body was sent again after 0.2 s, as a "
                           "node's outbox would; a 503 is not counted in the latencies",
        },
        "setup": {
            "cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
            "nodes": args.nodes, "payers": args.payers, "nodes_per_payer": args.nodes_per_payer,
            "channels": len(load.channels), "seconds_per_configuration": args.seconds,
            "bulk": {"receipts_per_request": BULK_SIZE, "concurrency_per_relayer": BULK_CONCURRENCY},
            "single": {"concurrency_per_relayer": SINGLE_CONCURRENCY},
            "batch_size": args.batch_size, "batch_age_s": args.batch_age, "confirmations": 1, "quick": quick,
            "postgresql": "offchain.devkit.postgres.PostgresCluster (fsync off, on this machine)",
            "wall_clock_s": round(time.monotonic() - started, 1),
            "note": "The client (this process), the relayers, their validation workers, anvil and PostgreSQL share "
                    "this machine's cores with whatever else runs on it (load_average_before / _after per "
                    "configuration): compare the ratios, measured side by side, more than the absolute rates.",
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(configs)
    print(f"written {args.out}")
    return 0 if all(c.get("paid_exactly", True) for c in configs) else 1


if __name__ == "__main__":
    sys.exit(main())
