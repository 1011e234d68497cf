"""Soak: many payers drive real nodes for several minutes (opg-credit answers and streams, exact payments, streams
the client walks away from), against the relayer and a verifier; every daemon's memory is sampled, latency
percentiles are kept per minute, and afterwards every payment is reconciled with the chain.

    python bench/soak.py [--minutes 3] [--payers 6] [--rate 4] [--json-out bench/results/soak.json]

System: a private anvil, the contracts (devnet parameters), ``opg relayer run``, two ``opg node run --backend
builtin`` (staked, registered with their URLs), one ``opg verifier run`` (staked, live, sampling 10 %); all real
processes on loopback. Each payer is a thread with the SDK's paying httpx client and its own state directory.

Load: ``--rate`` requests per second in all, open loop, each given to a random payer and node and a random kind:
``credit`` (JSON), ``stream`` (SSE read to the end), ``exact`` (an EIP-3009 transfer per request, signed by the SDK
with the chain's clock) and ``disconnect`` (a stream closed after its first piece: the node charges what it sent).

Bounds: the run lasts ``--minutes``; the request rate is fixed; at most 32 requests are in flight.

Printed and saved: per minute, latency p50/p95/p99 and errors by kind; per daemon, RSS at start and end and its
slope over the run after the first minute (MiB/min, least squares over samples every 2 s; "flat" when below 1
MiB/min); the reconciliation: every channel the relayer knows has ``charged == settled == escrow.spent``, the sum of
the answers' costs a payer was told equals what it paid on chain (credit: escrow spent; exact: its wallet's
decrease), the relayer has nothing pending, no receipt was rejected, no answer 5xx.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402
from web3 import Web3  # noqa: E402

from offchain.daemon.keys import anvil_key  # noqa: E402
from offchain.deployments import Params, save_deployment  # noqa: E402
from offchain.devkit.devchain import Anvil, deploy_web3, free_port, send, transact  # noqa: E402
from offchain.messages import Domain, Registration  # noqa: E402
from offchain.sdk.constants import ROLE_INFERENCE, ROLE_VERIFIER  # noqa: E402

OPG = 10**18
RESULTS = ROOT / "bench" / "results" / "soak.json"
KINDS = ("credit", "stream", "exact", "disconnect")
RELAYER_ACCOUNT, NODE_ACCOUNTS, VERIFIER_ACCOUNT = 9, (3, 4), 5
FLAT_MIB_PER_MIN = 1.0


def chat(i: int, stream: bool = False) -> dict:
    return {"model": "builtin", "messages": [{"role": "user", "content": f"Soak request {i}: what is settled?"}],
            "max_tokens": 24, "stream": stream}


# Processes ----------------------------------------------------------------------------------------------------------
def start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "offchain.cli", *args], cwd=ROOT, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT)


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not healthy after {timeout:.0f} s: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def slope(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    if len(samples) < 3:
        return 0.0
    n = len(samples)
    mx = sum(t for t, _ in samples) / n
    my = sum(v for _, v in samples) / n
    den = sum((t - mx) ** 2 for t, _ in samples)
    return 0.0 if den == 0 else 60 * sum((t - mx) * (v - my) for t, v in samples) / den


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


# Load ---------------------------------------------------------------------------------------------------------------
class PayerThread:
    """One payer: the SDK's Payer and paying clients (credit, and exact only)."""

    def __init__(self, key: str, deployment: Path, state: Path, relayer_url: str, rpc_url: str):
        from offchain.client import Payer, payment_http_client

        self.payer = Payer.from_key(key, str(deployment), state=state, relayer_url=relayer_url, rpc_url=rpc_url)
        self.address = self.payer.address if hasattr(self.payer, "address") else Account.from_key(key).address
        self.credit = payment_http_client(self.payer)
        self.exact = payment_http_client(self.payer, schemes=("exact",))
        self.lock = threading.Lock()  # one request at a time per payer (its channel state is sequential)
        self.told = defaultdict(int)  # (scheme, node) -> sum of the costs the answers reported

    def request(self, kind: str, node_url: str, i: int) -> dict:
        t0 = time.perf_counter()
        status, ok, problem = None, False, None
        with self.lock:
            try:
                if kind in ("credit", "exact"):
                    client = self.credit if kind == "credit" else self.exact
                    res = client.post(node_url + "/v1/chat/completions", json=chat(i))
                    status = res.status_code
                    ok = self._count(res, kind)
                else:
                    with self.credit.stream("POST", node_url + "/v1/chat/completions", json=chat(i, True)) as res:
                        status = res.status_code
                        for line in res.iter_lines():
                            if kind == "disconnect" and line.startswith("data: ") and '"content"' in line \
                                    and '"content":""' not in line:
                                break  # walk away after the first piece
                        ok = status == 200
                        if kind == "stream":
                            ok = self._count(res, "credit")
            except Exception as exc:  # counted, never fatal
                problem = f"{exc.__class__.__name__}: {exc}"[:200]
        return {"kind": kind, "status": status, "ok": ok, "problem": problem, "latency": time.perf_counter() - t0}

    def _count(self, res: httpx.Response, scheme: str) -> bool:
        ticket = res.extensions.get("opg_payment")
        outcome = ticket.outcome if ticket is not None else None
        if res.status_code != 200 or outcome is None or not outcome.ok:
            return False
        self.told[(scheme, outcome.node)] += int(outcome.cost or 0)
        return True


# Main ---------------------------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=3.0, help="measured load (default 3)")
    parser.add_argument("--payers", type=int, default=6)
    parser.add_argument("--rate", type=float, default=4.0, help="requests per second in all (default 4)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json-out", type=Path, default=RESULTS)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="opg-soak-"))
    print(f"work dir {tmp}", flush=True)
    procs: dict[str, subprocess.Popen] = {}
    began = time.monotonic()
    with Anvil() as anvil:
        try:
            w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 60}))
            params = Params.devnet()
            deployer = anvil_key(0)
            system = deploy_web3(w3, deployer, params=params)
            deployment = save_deployment(system.deployment, tmp)
            domain = Domain.staking(w3.eth.chain_id, system.staking.address)
            ports = {name: free_port() for name in ("relayer", "node0", "node1", "verifier")}
            urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}

            def register(account: int, role: int, stake: int, url: str) -> None:
                key = anvil_key(account)
                address = Account.from_key(key).address
                transact(w3, deployer, system.opg.functions.transfer(address, stake))
                transact(w3, key, system.opg.functions.approve(system.staking.address, stake))
                proof = Registration(account=address).sign_with(key, domain)
                transact(w3, key, system.staking.functions.register(role, stake, url, bytes.fromhex(proof[2:])))

            for i, account in enumerate(NODE_ACCOUNTS):
                register(account, ROLE_INFERENCE, params.min_inference_stake * 2, urls[f"node{i}"])
            register(VERIFIER_ACCOUNT, ROLE_VERIFIER, params.min_verifier_stake, urls["verifier"])
            # the verifier becomes live: warm-up, heartbeat, the next epoch
            w3.provider.make_request("evm_increaseTime", [params.warmup + 1])
            w3.provider.make_request("evm_mine", [])
            transact(w3, anvil_key(VERIFIER_ACCOUNT), system.staking.functions.heartbeat())
            epoch = system.distributor.functions.epoch_now().call()
            while system.distributor.functions.epoch_now().call() == epoch:
                w3.provider.make_request("evm_increaseTime", [params.epoch_length])
                w3.provider.make_request("evm_mine", [])
            payer_keys = []
            for _ in range(args.payers):
                acct = Account.create()
                key = "0x" + bytes(acct.key).hex()
                send(w3, deployer, {"to": acct.address, "value": 10**18, "gas": 21_000})
                transact(w3, deployer, system.opg.functions.transfer(acct.address, 2_000 * OPG))
                transact(w3, key, system.opg.functions.approve(system.escrow.address, 1_000 * OPG))
                transact(w3, key, system.escrow.functions.deposit(1_000 * OPG))
                payer_keys.append(key)

            common = ["--rpc-url", anvil.url, "--deployment", str(deployment), "--host", "127.0.0.1",
                      "--log-level", "warning"]
            procs["relayer"] = start(["relayer", "run", *common, "--store", str(tmp / "relayer.sqlite3"),
                                      "--confirmations", "1", "--dev-account", str(RELAYER_ACCOUNT),
                                      "--port", str(ports["relayer"])], tmp / "relayer.log")
            wait_healthy(urls["relayer"], procs["relayer"], tmp / "relayer.log")
            for i, account in enumerate(NODE_ACCOUNTS):
                procs[f"node{i}"] = start(["node", "run", *common, "--relayer-url", urls["relayer"], "--backend",
                                           "builtin", "--store", str(tmp / f"node{i}.sqlite3"), "--dev-account",
                                           str(account), "--port", str(ports[f"node{i}"])], tmp / f"node{i}.log")
            procs["verifier"] = start(["verifier", "run", *common, "--relayer-url", urls["relayer"], "--backends",
                                       "builtin", "--store", str(tmp / "verifier.sqlite3"), "--dev-account",
                                       str(VERIFIER_ACCOUNT), "--sample-rate", "0.1",
                                       "--port", str(ports["verifier"])], tmp / "verifier.log")
            for name in ("node0", "node1", "verifier"):
                wait_healthy(urls[name], procs[name], tmp / f"{name}.log")
            print(f"anvil, relayer, 2 nodes and a verifier up in {time.monotonic() - began:.1f} s", flush=True)

            payers = [PayerThread(k, deployment, tmp / f"payer{i}", urls["relayer"], anvil.url)
                      for i, k in enumerate(payer_keys)]
            wallets_before = {p.address: system.opg.functions.balanceOf(p.address).call() for p in payers}
            node_urls = [urls["node0"], urls["node1"]]
            for p in payers:  # warm up: a channel with each node
                for u in node_urls:
                    p.request("credit", u, 0)

            pids = {name: proc.pid for name, proc in procs.items()}
            rss: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
            records: list[dict] = []
            stop_sampling = threading.Event()
            t_start = time.monotonic()

            def sample() -> None:
                while not stop_sampling.is_set():
                    for name, pid in pids.items():
                        value = rss_mib(pid)
                        if value is not None:
                            rss[name].append((time.monotonic() - t_start, value))
                    stop_sampling.wait(2.0)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            duration = args.minutes * 60
            plan = []
            t = 0.0
            while t < duration:
                t += rnd.expovariate(args.rate)
                plan.append((t, rnd.randrange(len(payers)), rnd.randrange(len(node_urls)),
                             rnd.choices(KINDS, weights=(5, 2, 1, 1))[0]))
            print(f"{len(plan)} requests over {args.minutes:g} min at {args.rate:g}/s", flush=True)
            lock = threading.Lock()

            def run(offset: float, pi: int, ni: int, kind: str, i: int) -> None:
                rec = payers[pi].request(kind, node_urls[ni], i)
                rec["minute"] = int(offset // 60)
                with lock:
                    records.append(rec)

            with ThreadPoolExecutor(max_workers=32) as pool:
                for i, (offset, pi, ni, kind) in enumerate(plan):
                    delay = t_start + offset - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    pool.submit(run, offset, pi, ni, kind, i)
            load_s = time.monotonic() - t_start
            stop_sampling.set()
            sampler.join()

            # Reconciliation ------------------------------------------------------------------------------------
            relayer = httpx.Client(base_url=urls["relayer"], timeout=30)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                h = relayer.get("/healthz").json()
                if h["pendingReceipts"] == 0 and h["inflightBatch"] is None:
                    break
                time.sleep(0.5)
            nodes = [Account.from_key(anvil_key(a)).address for a in NODE_ACCOUNTS]
            channels, mismatched, told_vs_paid = [], [], []
            for p in payers:
                exact_told = 0
                for node in nodes:
                    view = relayer.get(f"/channels/{p.address}/{node}").json()
                    spent = system.escrow.functions.spent(p.address, node).call()
                    ok = int(view["charged"]) == int(view["settled"]) == spent
                    channels.append({"payer": p.address, "node": node, "charged": view["charged"],
                                     "settled": view["settled"], "spent": str(spent), "ok": ok})
                    if not ok:
                        mismatched.append(channels[-1])
                    told = p.told[("opg-credit", node)]
                    told_vs_paid.append({"payer": p.address, "node": node, "scheme": "opg-credit",
                                         "told": str(told), "paid": str(spent)})
                    exact_told += p.told[("exact", node)]
                wallet_paid = wallets_before[p.address] - system.opg.functions.balanceOf(p.address).call()
                told_vs_paid.append({"payer": p.address, "scheme": "exact", "told": str(exact_told),
                                     "paid": str(wallet_paid)})
            rejected = len(relayer.get("/batches", params={"status": "failed"}).json())
            health = relayer.get("/healthz").json()
        finally:
            for proc in procs.values():
                stop(proc)

    # Results ------------------------------------------------------------------------------------------------------
    minutes: dict[int, dict] = {}
    for m in sorted({r["minute"] for r in records}):
        row = {}
        for kind in KINDS:
            rs = [r for r in records if r["minute"] == m and r["kind"] == kind]
            lat = [r["latency"] * 1000 for r in rs if r["ok"]]
            row[kind] = {"n": len(rs), "errors": sum(1 for r in rs if not r["ok"]),
                         "p50_ms": round(percentile(lat, 50), 1) if lat else None,
                         "p95_ms": round(percentile(lat, 95), 1) if lat else None,
                         "p99_ms": round(percentile(lat, 99), 1) if lat else None}
        minutes[m] = row
    memory = {}
    for name, samples in rss.items():
        steady = [s for s in samples if s[0] >= 60] if load_s > 120 else samples[len(samples) // 3:]
        memory[name] = {"start_mib": round(samples[0][1], 1) if samples else None,
                        "end_mib": round(samples[-1][1], 1) if samples else None,
                        "slope_mib_per_min": round(slope(steady), 3), "samples": len(samples)}
        memory[name]["flat"] = abs(memory[name]["slope_mib_per_min"]) < FLAT_MIB_PER_MIN
    server_errors = sum(1 for r in records if r["status"] is not None and r["status"] >= 500)
    problems = sorted({r["problem"] for r in records if r["problem"]})[:20]
    exact_ok = all(int(t["told"]) == int(t["paid"]) for t in told_vs_paid if t["scheme"] == "exact")
    # a walked-away stream is charged for what was sent but the payer never hears the cost: credit told <= paid
    credit_ok = all(int(t["told"]) <= int(t["paid"]) for t in told_vs_paid if t["scheme"] == "opg-credit")
    result = {
        "bench": "soak", "minutes": args.minutes, "payers": args.payers, "rate_per_s": args.rate, "seed": args.seed,
        "requests": len(records), "load_seconds": round(load_s, 1),
        "by_kind": {k: {"n": sum(1 for r in records if r["kind"] == k),
                        "errors": sum(1 for r in records if r["kind"] == k and not r["ok"])} for k in KINDS},
        "per_minute": minutes, "memory": memory, "server_errors": server_errors, "problems": problems,
        "reconciliation": {"channels": len(channels), "mismatched_channels": mismatched,
                           "relayer_pending_after": health["pendingReceipts"], "failed_batches": rejected,
                           "exact_told_equals_paid": exact_ok, "credit_told_at_most_paid": credit_ok,
                           "told_vs_paid": told_vs_paid},
        "nothing_lost": not mismatched and health["pendingReceipts"] == 0 and exact_ok and credit_ok,
        "machine": {"cpus": os.cpu_count(), "loadavg_after": os.getloadavg()},
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    print_table(result)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if result["nothing_lost"] and server_errors == 0 else 1


def print_table(r: dict) -> None:
    print(f"\nsoak: {r['requests']} requests, {r['payers']} payers, {r['minutes']:g} min at {r['rate_per_s']:g}/s")
    print(f"{'minute':>6} {'kind':>10} {'n':>5} {'err':>4} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}")
    for m, row in r["per_minute"].items():
        for kind, v in row.items():
            print(f"{m:>6} {kind:>10} {v['n']:>5} {v['errors']:>4} {v['p50_ms'] or '-':>9} {v['p95_ms'] or '-':>9} "
                  f"{v['p99_ms'] or '-':>9}")
    print(f"\n{'daemon':>10} {'start MiB':>10} {'end MiB':>10} {'slope MiB/min':>14} flat")
    for name, m in r["memory"].items():
        print(f"{name:>10} {m['start_mib']:>10} {m['end_mib']:>10} {m['slope_mib_per_min']:>14} {m['flat']}")
    rec = r["reconciliation"]
    print(f"\nreconciliation: {rec['channels']} channels, {len(rec['mismatched_channels'])} mismatched, relayer "
          f"pending {rec['relayer_pending_after']}, failed batches {rec['failed_batches']}, exact told == paid "
          f"{rec['exact_told_equals_paid']}, credit told <= paid {rec['credit_told_at_most_paid']}; 5xx "
          f"{r['server_errors']}; nothing lost: {r['nothing_lost']}")
    if r["problems"]:
        print("problems:", *r["problems"], sep="\n  ")


if __name__ == "__main__":
    sys.exit(main())
