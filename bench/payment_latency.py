"""Payment latency: the same chat request with no payment, paid with ``opg-credit`` and paid with ``exact``, side by
side in one run at a steady request rate, through the client SDK's paying httpx client against real processes.

    python bench/payment_latency.py [--duration 60] [--rate 5] [--exact-requests 60] [--json-out FILE]

System: a private anvil (``offchain.devkit.devchain.Anvil``), the contracts (``deploy_web3``, devnet parameters), ``opg
relayer run``, and ``opg node run --backend builtin`` (deterministic, about a millisecond per answer, so the model
does not hide the payment), registered with its URL; all real processes on loopback.

No payment. The node has no unpaid mode: ``Payments.admit`` answers 402 to any request without PAYMENT-SIGNATURE,
even at zero prices (a zero-priced node still wants a voucher and still calls the relayer's ``/verify``, and the SDK
refuses a zero quote). So the baseline is a second node process started by this script (``--serve-unpaid-node``):
the same ``offchain.node.service.Node`` with the same flags and backend, served by the same ``create_asgi`` and
``serve`` as ``opg node run``, with only ``Payments.admit`` / ``complete`` / ``release`` replaced by no-ops. Its
requests take the same route (pricing, thread hops, model, OpenAI JSON, PAYMENT-RESPONSE header), minus the payment.

Load. ``--rate`` rounds per second for ``--duration`` s; each round sends one no-payment and one opg-credit request
(and, in ``--exact-requests`` evenly spread rounds, one exact request) at randomly assigned thirds of the round, so
every mode sees the same machine load. Open loop: a request is sent at its scheduled time whatever earlier ones did;
its latency counts from that time to the full answer (body read, receipt checked). Each mode has its own load
process (no shared GIL), its own keep-alive httpx client (the SDK's ``payment_http_client`` for the paid modes:
``schemes=("exact",)`` for exact) and its own payer. Before the run each client is warmed up (connection, channel
state); separately, first requests of new clients (new connection; new or existing state directory) are measured.

Where the time goes: every HTTP exchange with a node is timed (an inner httpx transport), the SDK's ``prepare`` /
``complete`` are timed, the node's store-commit and generation histograms are read from ``/metrics``, and after the
run the pieces on the node's path (the relayer's ``/verify`` from its 2 s cache and on a cache miss, its reads as one
raw JSON-RPC batch, one chain read through web3.py and raw, an fsync of the client's state directory, the
signatures) are timed one by one; the relayer's ``opg_relayer_verify_credit_reads`` metric counts the run's
``/verify`` judgements answered from the cache.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from eth_account import Account  # noqa: E402
from web3 import Web3  # noqa: E402

from offchain.daemon.keys import anvil_key  # noqa: E402
from offchain.deployments import Params, save_deployment  # noqa: E402
from offchain.devkit.devchain import Anvil, deploy_web3, free_port, send, stop_process, transact  # noqa: E402
from offchain.messages import Domain, Registration  # noqa: E402

OPG = 10**18
RESULTS = ROOT / "bench" / "results" / "payment_latency.json"
TARGET_P50_MS, TARGET_P99_MS = 2.0, 5.0  # issue 15, item 7: opg-credit over no payment
IDLE_PROBE_S = 3.0
MODES = ("none", "credit", "exact")
LABEL = {"none": "no payment", "credit": "opg-credit", "exact": "exact"}
RELAYER_ACCOUNT, NODE_ACCOUNT, BASELINE_ACCOUNT = 9, 3, 4
CHAT = {"model": "builtin", "messages": [{"role": "user", "content": "How long does a paid request take to answer?"}],
        "max_tokens": 32}
BODY = json.dumps(CHAT, separators=(",", ":")).encode()
JSON_HEADERS = {"content-type": "application/json"}


# The baseline node: the real Node with its payment step replaced by no-ops ------------------------------------------
def serve_unpaid_node(argv: list[str]) -> int:
    """``opg node run`` (same settings, same app, same server), except that no request is asked to pay."""
    from offchain.clikit import parse_settings
    from offchain.daemon.serve import serve, setup_logging
    from offchain.node.api import create_asgi
    from offchain.node.config import NodeSettings
    from offchain.node.payments import Admission
    from offchain.node.service import Node

    settings = parse_settings(NodeSettings, argv, section="node", prog="payment_latency.py --serve-unpaid-node")
    setup_logging(settings.log_level)
    node = Node(settings)
    payments = node.payments

    def admit(quote: Any, header: str | None) -> Admission:
        return Admission(scheme="none", payer="0x" + "00" * 20, quote=quote)

    def complete(adm: Admission, served: Any) -> dict:
        adm.done = True
        return {"success": True, "transaction": "", "network": node.network, "payer": None, "scheme": "none",
                "receiptId": None, "receipt": None, "cost": "0", "status": "unpaid"}

    def release(adm: Admission) -> None:
        adm.done = True

    payments.admit, payments.complete, payments.release = admit, complete, release
    return serve(create_asgi(node), settings.host, settings.port, settings.log_level,
                 banner=f"unpaid baseline node on http://{settings.host}:{settings.port}")


# Measuring one request --------------------------------------------------------------------------------------------
PROBE = threading.local()  # per request (each runs in one thread): HTTP exchanges and SDK step times


class TimedTransport(httpx.BaseTransport):
    """Inner transport: times every HTTP exchange with the node (request sent to body read) and keeps its status."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        t0 = time.perf_counter()
        response = self.inner.handle_request(request)
        response.read()
        legs = getattr(PROBE, "legs", None)
        if legs is not None:
            legs.append((response.status_code, time.perf_counter() - t0))
        return response

    def close(self) -> None:
        self.inner.close()


def instrument(payer: Any) -> Any:
    """Time the Payer steps the paying transport calls (signing and state before, receipt checks and state after,
    the relayer look-up of a channel this state directory does not know)."""
    for name in ("prepare", "complete", "sync_from_relayer"):
        original = getattr(payer, name)

        def timed(*args: Any, _original: Any = original, _name: str = name, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return _original(*args, **kw)
            finally:
                times = getattr(PROBE, "times", None)
                if times is not None:
                    times[_name] = times.get(_name, 0.0) + time.perf_counter() - t0
        setattr(payer, name, timed)
    return payer


def make_payer(key: str, deployment: str, state: Path, relayer_url: str, rpc_url: str) -> Any:
    from offchain.client import Payer

    return instrument(Payer.from_key(key, deployment, state=state, relayer_url=relayer_url, rpc_url=rpc_url))


def make_client(mode: str, payer: Any) -> httpx.Client:
    from offchain.client import payment_http_client

    if mode == "none":
        return httpx.Client(transport=TimedTransport(), timeout=httpx.Timeout(300, connect=10))
    if mode == "credit":
        return payment_http_client(payer, transport=TimedTransport())
    return payment_http_client(payer, schemes=("exact",), transport=TimedTransport())


def one_request(mode: str, client: httpx.Client, url: str) -> dict:
    """POST the chat; ``ok`` = 200 and, when paid, the SDK accepted the node's payment response."""
    PROBE.legs, PROBE.times = [], {}
    t0 = time.perf_counter()
    ok, status, problem = False, None, None
    try:
        res = client.post(url + "/v1/chat/completions", content=BODY, headers=JSON_HEADERS)
        status = res.status_code
        ok = status == 200
        if ok and mode != "none":
            ticket = res.extensions.get("opg_payment")
            outcome = ticket.outcome if ticket is not None else None
            ok = outcome is not None and outcome.ok
            if not ok:
                problem = outcome.problem if outcome is not None else "no payment ticket"
            elif mode == "exact" and outcome.status != "settled":
                ok, problem = False, f"exact status {outcome.status}"
        elif not ok:
            problem = res.text[:300]
    except Exception as exc:  # a failure is counted, never fatal
        problem = f"{exc.__class__.__name__}: {exc}"[:300]
    elapsed = time.perf_counter() - t0
    return {"ok": ok, "status": status, "problem": problem, "service": elapsed, "legs": list(PROBE.legs),
            "times": dict(PROBE.times)}


# The schedule and the load processes ------------------------------------------------------------------------------
def schedule(duration: float, rate: float, exact_requests: int, seed: int) -> list[tuple[float, str, int]]:
    """(offset s, mode, round): ``rate`` rounds/s; in each, the modes present take random thirds of the round."""
    rounds = max(1, int(duration * rate))
    period = 1.0 / rate
    n_exact = min(exact_requests, rounds)
    exact_rounds = {int(i * rounds / n_exact) for i in range(n_exact)} if n_exact else set()
    rng = random.Random(seed)
    out = []
    for k in range(rounds):
        modes = ["none", "credit"] + (["exact"] if k in exact_rounds else [])
        for mode, slot in zip(modes, rng.sample(range(3), len(modes)), strict=True):
            out.append((k * period + slot * period / 3, mode, k))
    return sorted(out)


def load_process(mode: str, spec: dict, plan: list[tuple[float, int]], ready: Any, go: Any, results: Any) -> None:
    """One mode's load generator (its own process): warm up, report ready, wait for the common start time, then
    send each request at its scheduled time from a thread pool (open loop)."""
    payer = None if mode == "none" else make_payer(spec["key"], spec["deployment"], Path(spec["state"]),
                                                   spec["relayer_url"], spec["rpc_url"])
    client = make_client(mode, payer)
    url = spec["url"]
    warm = [one_request(mode, client, url) for _ in range(spec["warmup"])]
    ready.put((mode, [w["ok"] for w in warm]))
    start_wall = go.get()
    start = time.perf_counter() + (start_wall - time.time())
    out: list[dict] = []
    lock = threading.Lock()

    def run(offset: float, rnd: int) -> None:
        rec = one_request(mode, client, url)
        end = time.perf_counter()
        rec.update(offset=offset, round=rnd, latency=end - (start + offset), lag=end - rec["service"] - (start + offset))
        with lock:
            out.append(rec)

    cpu = time.process_time()
    with ThreadPoolExecutor(max_workers=16, thread_name_prefix=f"load-{mode}") as pool:
        for offset, rnd in plan:
            delay = start + offset - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(run, offset, rnd)
    cpu = time.process_time() - cpu
    client.close()
    results.put((mode, {"records": out, "cpu_s": cpu}))


# Statistics ---------------------------------------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def ms(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(1000 * value, digits)


def summarize(records: list[dict], key: str = "latency") -> dict:
    good = [r[key] for r in records if r["ok"]]
    out: dict[str, Any] = {"count": len(records), "failures": sum(1 for r in records if not r["ok"])}
    if good:
        out.update(p50_ms=ms(statistics.median(good)), p90_ms=ms(percentile(good, 90)),
                   p99_ms=ms(percentile(good, 99)), mean_ms=ms(statistics.fmean(good)), max_ms=ms(max(good)))
    problems = sorted({str(r["problem"]) for r in records if not r["ok"]})
    if problems:
        out["failure_reasons"] = problems[:5]
    return out


def legs_summary(records: list[dict]) -> dict:
    """HTTP exchanges with the node per request, and the median time of each by position."""
    good = [r for r in records if r["ok"]]
    counts: dict[str, int] = {}
    for r in good:
        shape = "+".join(str(s) for s, _ in r["legs"])
        counts[shape] = counts.get(shape, 0) + 1
    common = max(counts, key=counts.get) if counts else ""
    same = [r for r in good if "+".join(str(s) for s, _ in r["legs"]) == common]
    per_leg = [ms(statistics.median(r["legs"][i][1] for r in same)) for i in range(len(common.split("+")))] \
        if same else []
    return {"exchanges_by_status_sequence": counts, "most_common": common, "median_ms_per_exchange": per_leg}


def sdk_times(records: list[dict]) -> dict:
    good = [r for r in records if r["ok"]]
    names = sorted({n for r in good for n in r["times"]})
    return {name: {"median_ms": ms(statistics.median(r["times"].get(name, 0.0) for r in good)),
                   "calls": sum(1 for r in good if name in r["times"])} for name in names}


# Setup ------------------------------------------------------------------------------------------------------------
def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not healthy after {timeout:.0f} s: {log.read_text()[-2000:]}")


def node_metrics(url: str) -> dict[str, float]:
    out = {}
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(("opg_node_store_commit_seconds_sum", "opg_node_store_commit_seconds_count",
                            "opg_node_generation_seconds_sum", "opg_node_generation_seconds_count",
                            "opg_relayer_verify_credit_reads")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time of a process and its live descendants (anvil's npm launcher runs the real binary as a
    child), from /proc."""
    parent, ticks = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)], ticks[int(entry)] = int(fields[1]), int(fields[11]) + int(fields[12])
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def metric_mean(before: dict, after: dict, name: str) -> dict:
    n = after.get(f"{name}_count", 0) - before.get(f"{name}_count", 0)
    s = after.get(f"{name}_sum", 0) - before.get(f"{name}_sum", 0)
    return {"count": int(n), "mean_ms": ms(s / n, 3) if n else None}


def timed_n(fn: Any, n: int, pause: float = 0.0) -> dict:
    """Wall time of ``fn`` (median, p90) and this process's CPU time during it (median); ``pause`` s of sleep before
    each sample (not timed)."""
    values, cpu = [], []
    for _ in range(n):
        if pause:
            time.sleep(pause)
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        values.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"median_ms": ms(statistics.median(values), 3), "p90_ms": ms(percentile(values, 90), 3),
            "caller_cpu_median_ms": ms(statistics.median(cpu), 3), "samples": n}


def first_requests(tmp: Path, node_url: str, baseline_url: str, spec: dict, first_key: str, n: int) -> dict:
    """Requests of brand-new clients: a new connection; for opg-credit a new or an existing state directory."""
    out: dict[str, Any] = {}
    rows: dict[str, list[dict]] = {"none_new_client": [], "credit_new_state_dir": [],
                                   "credit_new_state_dir_second_request": [], "credit_existing_state_dir_new_client": []}
    for i in range(n):
        with make_client("none", None) as client:
            rows["none_new_client"].append(one_request("none", client, baseline_url))
        # a payer's first request from a new state directory (i == 0: a new channel; later: the node and the
        # relayer know the channel, this directory does not: the SDK asks the relayer for it)
        payer = make_payer(first_key, spec["deployment"], tmp / f"first-state-{i}", spec["relayer_url"],
                           spec["rpc_url"])
        with make_client("credit", payer) as client:
            rows["credit_new_state_dir"].append(one_request("credit", client, node_url))
            rows["credit_new_state_dir_second_request"].append(one_request("credit", client, node_url))
        # the main credit payer's state directory (its channel known and warm), in a new client (new connection)
        payer = make_payer(spec["key"], spec["deployment"], Path(spec["state"]), spec["relayer_url"], spec["rpc_url"])
        with make_client("credit", payer) as client:
            rows["credit_existing_state_dir_new_client"].append(one_request("credit", client, node_url))
    for name, recs in rows.items():
        out[name] = {**summarize(recs, "service"), "requests_ms": [ms(r["service"]) for r in recs],
                     **legs_summary(recs), "sdk": sdk_times(recs)}
    return out


def breakdown(tmp: Path, w3: Web3, system: Any, node_url: str, relayer_url: str, spec: dict,
              pids: dict[str, int]) -> dict:
    """The pieces on opg-credit's path, each timed alone (after the run, sequentially)."""
    from offchain.client.state import _atomic_write
    from offchain.client.transport import payment_required_of
    from offchain.messages import Receipt, Voucher, recover_signer
    from offchain.sdk.relayer_client import RelayerClient

    payer = make_payer(spec["key"], spec["deployment"], Path(spec["state"]), spec["relayer_url"], spec["rpc_url"])
    address = payer.address
    http = httpx.Client(timeout=30)
    # the node's 402 challenge (what the SDK's first exchange costs the node: pricing, challenge, JSON)
    challenge = timed_n(lambda: http.post(node_url + "/v1/chat/completions", content=BODY,
                                          headers={**JSON_HEADERS, "X-OPG-Payer": address}), 50)
    res = http.post(node_url + "/v1/chat/completions", content=BODY, headers={**JSON_HEADERS, "X-OPG-Payer": address})
    required = payment_required_of(res)
    requirement = payer.choose(required["accepts"])
    reservation = payer.prepare(requirement, required.get("resource"))
    payer.rejected(reservation)
    body = {"x402Version": 2, "paymentPayload": {**reservation.payload, "accepted": requirement},
            "paymentRequirements": requirement}
    relayer = RelayerClient(relayer_url, 10)
    status, answer = relayer.verify(body)
    cpu0 = {k: tree_cpu_seconds(pid) for k, pid in pids.items()}
    verify = timed_n(lambda: relayer.verify(body), 50)
    cpu1 = {k: tree_cpu_seconds(pid) for k, pid in pids.items()}
    verify["valid"] = bool(status == 200 and answer.get("isValid"))
    verify["cpu_ms_per_call"] = {k: ms((cpu1[k] - cpu0[k]) / 50) for k in pids}
    # the same, each call more than the relayer's /verify cache TTL (2 s) after the previous: every call reads the
    # chain (one JSON-RPC batch: is_active_as, spent, available_of)
    verify_cold = timed_n(lambda: relayer.verify(body), 12, pause=2.2)
    healthz = timed_n(lambda: relayer.http().get("/healthz"), 50)
    escrow = system.escrow
    node_address = Account.from_key(anvil_key(NODE_ACCOUNT)).address
    call = escrow.functions.spent(address, node_address)
    chain_read = timed_n(call.call, 50)
    rpc = httpx.Client(timeout=30)
    raw = {"jsonrpc": "2.0", "id": 1, "method": "eth_call",
           "params": [{"to": escrow.address, "data": call._encode_transaction_data()}, "latest"]}
    chain_read_raw = timed_n(lambda: rpc.post(spec["rpc_url"], json=raw).json(), 50)
    rpc.close()
    from offchain.sdk.constants import ROLE_INFERENCE
    from offchain.sdk.reads import RawReader

    reader = RawReader(spec["rpc_url"], escrow.address, system.staking.address)
    batch = [reader.is_active_as(node_address, ROLE_INFERENCE), reader.spent(address, node_address),
             reader.available_of(address)]
    reads_batch = timed_n(lambda: reader.many(batch), 50)
    state_file = tmp / "fsync-probe" / "channel.json"
    record = json.loads(Path(next((Path(spec["state"]) / "channels").rglob("*.json"))).read_text())
    fsync = timed_n(lambda: _atomic_write(state_file, record), 50)
    from offchain.client.payer import RpcBlockTime
    from offchain.sdk.clock import ProtocolClock

    key = spec["key"]
    chain_id = w3.eth.chain_id
    escrow_domain = Domain.escrow(chain_id, system.escrow.address)
    staking_domain = Domain.staking(chain_id, system.staking.address)
    voucher = Voucher(payer=address, node=node_address, max_cumulative=10**18)
    vsig = voucher.sign_with(key, escrow_domain)
    receipt = Receipt(request_id="0x" + "11" * 32, payer=address, node=node_address, model_id="0x" + "22" * 32,
                      input_hash="0x" + "33" * 32, output_hash="0x" + "44" * 32, amount=1, cumulative=1,
                      timestamp=int(time.time()))
    http.close()
    return {
        "node_402_challenge_round_trip": challenge,
        "relayer_verify_round_trip": {**verify, "what": "the node's own RelayerClient.verify with the body the node "
                                      "sends (a fresh voucher of this payer), 50 calls back to back: HTTP + the "
                                      "relayer's checks; staking.is_active_as, escrow.spent and escrow.available_of "
                                      "come from the relayer's 2 s cache on all but the first call"},
        "relayer_verify_round_trip_cache_miss": {**verify_cold, "what": "the same call, each 2.2 s after the previous "
                                                 "(past the cache TTL): the relayer reads the three values in one "
                                                 "JSON-RPC batch request"},
        "relayer_healthz_round_trip": {**healthz, "what": "the same HTTP client and relayer, GET /healthz (not free: it "
                                                "reads the block number through web3.py and pings the store)"},
        "chain_read": {**chain_read, "what": "one eth_call (escrow.spent) through a web3.py contract function, as "
                                            "the relayer and the node read the chain, to the local anvil"},
        "chain_read_raw_json_rpc": {**chain_read_raw, "what": "the same eth_call as raw JSON-RPC on a keep-alive "
                                                              "httpx client: the part anvil and HTTP take"},
        "chain_reads_raw_batch": {**reads_batch, "what": "is_active_as, spent and available_of as one JSON-RPC batch "
                                                        "through offchain.sdk.reads.RawReader (keep-alive "
                                                        "requests.Session, hand-rolled ABI): what a /verify cache "
                                                        "miss reads"},
        "client_state_write_fsync": {**fsync, "what": "the SDK's _atomic_write of a channel file (write, fsync, "
                                     "rename); prepare does one, complete two (channel file, request record)"},
        "httpx_client_creation": {**timed_n(lambda: httpx.Client().close(), 20),
                                  "what": "httpx.Client() and close (it builds an SSL context): what each module-level "
                                          "httpx.post/get of the SDK pays (the chain clock every 5 s, relayer look-ups)"},
        "sdk_chain_clock_refresh": {**timed_n(lambda: ProtocolClock(RpcBlockTime(spec["rpc_url"])).now(), 20),
                                    "what": "the SDK's chain clock read (httpx.post eth_getBlockByNumber to the RPC); "
                                            "a Payer does it on its first receipt check and then every 5 s"},
        "voucher_sign": timed_n(lambda: voucher.sign_with(key, escrow_domain), 100),
        "signature_recover": timed_n(lambda: recover_signer(voucher.fast_digest(escrow_domain), vsig), 100),
        "receipt_sign": timed_n(lambda: receipt.sign_with(key, staking_domain), 100),
    }


def start_process(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=ROOT, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)


# Main ---------------------------------------------------------------------------------------------------------------
def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-unpaid-node":
        return serve_unpaid_node(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of measured load (default 60)")
    parser.add_argument("--rate", type=float, default=5.0,
                        help="rounds per second: requests/s of no-payment and of opg-credit each (default 5; 20 "
                             "saturated opg-credit on the 2-CPU machine of the committed results)")
    parser.add_argument("--exact-requests", type=int, default=60,
                        help="exact requests, spread evenly over the run (default 60)")
    parser.add_argument("--first-requests", type=int, default=5, help="repetitions of each first-request case")
    parser.add_argument("--warmup", type=int, default=10, help="unmeasured requests per client before the run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--note", action="append", default=[], help="a line to add to the results' notes")
    parser.add_argument("--json-out", type=Path, default=RESULTS)
    args = parser.parse_args()
    began = time.monotonic()
    load_before = os.getloadavg()

    tmp = Path(tempfile.mkdtemp(prefix="opg-bench-payment-"))
    print(f"work dir {tmp}", flush=True)
    procs: list[subprocess.Popen] = []
    with Anvil() as anvil:
        try:
            w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 60}))
            params = Params.devnet()
            deployer = anvil_key(0)
            system = deploy_web3(w3, deployer, params=params)
            deployment_file = save_deployment(system.deployment, tmp)
            chain_id = w3.eth.chain_id
            staking_domain = Domain.staking(chain_id, system.staking.address)

            relayer_port, node_port, baseline_port = free_port(), free_port(), free_port()
            relayer_url = f"http://127.0.0.1:{relayer_port}"
            node_url, baseline_url = f"http://127.0.0.1:{node_port}", f"http://127.0.0.1:{baseline_port}"
            # the node: staked and registered with its URL, as `opg operator register` does
            node_key = anvil_key(NODE_ACCOUNT)
            node_address = Account.from_key(node_key).address
            stake = params.min_inference_stake * 2
            transact(w3, deployer, system.opg.functions.transfer(node_address, stake))
            transact(w3, node_key, system.opg.functions.approve(system.staking.address, stake))
            proof = Registration(account=node_address).sign_with(node_key, staking_domain)
            transact(w3, node_key, system.staking.functions.register(1, stake, node_url, bytes.fromhex(proof[2:])))
            # payers: opg-credit (credits in the escrow), exact (OPG in the wallet), first requests (credits)
            payers = {name: Account.create() for name in ("credit", "exact", "first")}
            for name, acct in payers.items():
                key = "0x" + bytes(acct.key).hex()
                send(w3, deployer, {"to": acct.address, "value": 10**18, "gas": 21_000})
                transact(w3, deployer, system.opg.functions.transfer(acct.address, 1_000 * OPG))
                if name != "exact":
                    transact(w3, key, system.opg.functions.approve(system.escrow.address, 1_000 * OPG))
                    transact(w3, key, system.escrow.functions.deposit(1_000 * OPG))

            relayer_log = tmp / "relayer.log"
            procs.append(start_process([
                sys.executable, "-m", "offchain.cli", "relayer", "run", "--rpc-url", anvil.url,
                "--deployment", str(deployment_file), "--store", str(tmp / "relayer.sqlite3"),
                "--confirmations", "1", "--dev-account", str(RELAYER_ACCOUNT), "--host", "127.0.0.1",
                "--port", str(relayer_port), "--log-level", "warning"], relayer_log))
            wait_healthy(relayer_url, procs[-1], relayer_log)
            common = ["--rpc-url", anvil.url, "--deployment", str(deployment_file), "--relayer-url", relayer_url,
                      "--backend", "builtin", "--host", "127.0.0.1", "--log-level", "warning"]
            node_log, baseline_log = tmp / "node.log", tmp / "baseline-node.log"
            procs.append(start_process([sys.executable, "-m", "offchain.cli", "node", "run", *common,
                                        "--store", str(tmp / "node.sqlite3"), "--dev-account", str(NODE_ACCOUNT),
                                        "--port", str(node_port)], node_log))
            procs.append(start_process([sys.executable, str(Path(__file__).resolve()), "--serve-unpaid-node", *common,
                                        "--store", str(tmp / "baseline-node.sqlite3"),
                                        "--dev-account", str(BASELINE_ACCOUNT), "--port", str(baseline_port)],
                                       baseline_log))
            wait_healthy(node_url, procs[-2], node_log)
            wait_healthy(baseline_url, procs[-1], baseline_log)
            print(f"anvil, deployment, relayer and two nodes up in {time.monotonic() - began:.1f}s", flush=True)

            def spec_of(mode: str) -> dict:
                acct = payers.get(mode)
                return {"url": baseline_url if mode == "none" else node_url,
                        "key": "0x" + bytes(acct.key).hex() if acct else None, "deployment": str(deployment_file),
                        "state": str(tmp / f"state-{mode}"), "relayer_url": relayer_url, "rpc_url": anvil.url,
                        "warmup": max(2, args.warmup // 3) if mode == "exact" else args.warmup}

            specs = {m: spec_of(m) for m in MODES}
            # warm the credit payer's state first (the first-request cases reuse its state directory)
            with make_client("credit", make_payer(specs["credit"]["key"], str(deployment_file),
                                                  Path(specs["credit"]["state"]), relayer_url, anvil.url)) as c:
                one_request("credit", c, node_url)
            first = first_requests(tmp, node_url, baseline_url, specs["credit"],
                                   "0x" + bytes(payers["first"].key).hex(), args.first_requests)
            print("first requests measured", flush=True)

            plan = schedule(args.duration, args.rate, args.exact_requests, args.seed)
            ctx = mp.get_context("spawn")
            ready, results = ctx.Queue(), ctx.Queue()
            gos = {m: ctx.Queue() for m in MODES}
            workers = {m: ctx.Process(target=load_process, args=(
                m, specs[m], [(o, k) for o, mode, k in plan if mode == m], ready, gos[m], results), daemon=True)
                for m in MODES}
            for w in workers.values():
                w.start()
            warm = dict(ready.get(timeout=120) for _ in MODES)
            metrics_before = {"node": node_metrics(node_url), "baseline": node_metrics(baseline_url),
                              "relayer": node_metrics(relayer_url)}
            load_start = os.getloadavg()
            pids = {"anvil": anvil.process.pid, "relayer": procs[0].pid, "node": procs[1].pid,
                    "baseline_node": procs[2].pid}
            idle_from = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
            time.sleep(IDLE_PROBE_S)  # each server's CPU use with no requests (pollers, timers), for reference
            cpu_before = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
            idle = {name: round((cpu_before[name] - idle_from[name]) / IDLE_PROBE_S, 4) for name in pids}
            start_wall = time.time() + 0.5
            for q in gos.values():
                q.put(start_wall)
            print(f"measuring {args.duration:.0f}s at {args.rate:g} rounds/s ({len(plan)} requests)", flush=True)
            finished = dict(results.get(timeout=args.duration + 300) for _ in MODES)
            cpu_after = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
            records: dict[str, list[dict]] = {m: finished[m]["records"] for m in MODES}
            cpu = {"servers_s": {k: round(cpu_after[k] - cpu_before[k], 3) for k in pids},
                   "load_processes_s": {m: round(finished[m]["cpu_s"], 3) for m in MODES},
                   "servers_idle_cpu_s_per_s": idle, "measured_phase_s": round(time.time() - start_wall, 2)}
            for w in workers.values():
                w.join(timeout=30)
            load_end = os.getloadavg()
            metrics_after = {"node": node_metrics(node_url), "baseline": node_metrics(baseline_url),
                             "relayer": node_metrics(relayer_url)}
            parts = breakdown(tmp, w3, system, node_url, relayer_url, specs["credit"], pids)
            healths = {"node": httpx.get(node_url + "/healthz", timeout=10).json()}
        finally:
            for proc in reversed(procs):
                stop_process(proc, timeout=20)

    results_json = build_results(args, records, first, parts, metrics_before, metrics_after, warm, healths, cpu,
                                 plan, load_before, load_start, load_end, time.monotonic() - began)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(results_json, indent=2) + "\n")
    print_table(results_json)
    print(f"written {args.json_out}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def cpu_per_request(cpu: dict, records: dict) -> dict:
    """CPU time per request over the measured phase: each server's, divided by the requests it took part in."""
    n = {m: len(records[m]) for m in MODES}
    paid = n["credit"] + n["exact"]
    clients = cpu["load_processes_s"]
    # less what the server burns with no requests at all (its pollers), over the same time
    servers = {k: max(0.0, v - cpu["servers_idle_cpu_s_per_s"][k] * cpu["measured_phase_s"])
               for k, v in cpu["servers_s"].items()}
    return {
        "definition": "user + system CPU time over the measured phase (servers: from /proc, with child processes, "
                      "less their idle CPU rate measured just before; load processes: process_time) divided by "
                      "request counts; the paid node and the relayer also "
                      "do background work for their requests (receipt hand-over, batch settlement), included; "
                      "anvil's is per request of any mode",
        "no_payment": {"baseline_node_ms": ms(servers["baseline_node"] / n["none"]) if n["none"] else None,
                       "client_ms": ms(clients["none"] / n["none"]) if n["none"] else None},
        "paid (opg-credit + exact)": {"node_ms": ms(servers["node"] / paid) if paid else None,
                                      "relayer_ms": ms(servers["relayer"] / paid) if paid else None},
        "opg-credit": {"client_ms": ms(clients["credit"] / n["credit"]) if n["credit"] else None},
        "exact": {"client_ms": ms(clients["exact"] / n["exact"]) if n["exact"] else None},
        "anvil_ms_per_request_any_mode": ms(servers["anvil"] / max(1, sum(n.values()))),
        "totals_s": cpu,
    }


def build_results(args: Any, records: dict, first: dict, parts: dict, before: dict, after: dict, warm: dict,
                  healths: dict, cpu: dict, plan: list, load_before: tuple, load_start: tuple, load_end: tuple,
                  wall: float) -> dict:
    summary = {m: {**summarize(records[m]), "offered_per_s": round(len(records[m]) / args.duration, 2)}
               for m in MODES}
    service = {m: summarize(records[m], "service") for m in MODES}
    none, credit = summary["none"], summary["credit"]
    p50_over = round(credit["p50_ms"] - none["p50_ms"], 2)
    p99_over = round(credit["p99_ms"] - none["p99_ms"], 2)
    # paired by round: the credit and no-payment requests of the same round ran under the same load
    by_round = {m: {r["round"]: r["latency"] for r in records[m] if r["ok"]} for m in ("none", "credit")}
    paired = [by_round["credit"][k] - by_round["none"][k] for k in by_round["credit"] if k in by_round["none"]]
    window = 10.0
    windows = []
    for start in range(0, int(args.duration), int(window)):
        sel = {m: [r["latency"] for r in records[m] if r["ok"] and start <= r["offset"] < start + window]
               for m in ("none", "credit")}
        if sel["none"] and sel["credit"]:
            windows.append(ms(statistics.median(sel["credit"]) - statistics.median(sel["none"])))
    by_window = {m: [] for m in MODES}
    for m in MODES:
        for start in range(0, int(args.duration), int(window)):
            sel = [r["latency"] for r in records[m] if r["ok"] and start <= r["offset"] < start + window]
            by_window[m].append(ms(statistics.median(sel)) if sel else None)
    for m in MODES:
        seen = [v for v in by_window[m] if v is not None]
        # steady: the latency does not grow through the run (a queue building up would)
        summary[m]["p50_ms_by_10s_window"] = by_window[m]
        summary[m]["steady"] = bool(seen) and seen[-1] <= 2 * seen[0] + 10
    lags = [r["lag"] for m in MODES for r in records[m]]
    legs = {m: legs_summary(records[m]) for m in MODES}
    sdk = {m: sdk_times(records[m]) for m in ("credit", "exact")}
    node_side = {
        "paid_node_store_commit": metric_mean(before["node"], after["node"], "opg_node_store_commit_seconds"),
        "paid_node_generation": metric_mean(before["node"], after["node"], "opg_node_generation_seconds"),
        "baseline_node_generation": metric_mean(before["baseline"], after["baseline"], "opg_node_generation_seconds"),
    }
    verify_reads = {src: int(after["relayer"].get(f'opg_relayer_verify_credit_reads{{source="{src}"}}', 0)
                             - before["relayer"].get(f'opg_relayer_verify_credit_reads{{source="{src}"}}', 0))
                    for src in ("cache", "chain")}
    c_legs = legs["credit"]["median_ms_per_exchange"]
    n_legs = legs["none"]["median_ms_per_exchange"]
    credit_sdk = sdk["credit"]
    estimate = {
        "definition": "medians over the run's successful opg-credit requests (so the parts need not add up exactly "
                      "to the p50 latency); 'node payment work' = the paid exchange minus the no-payment "
                      "request, both the same node program and model",
        "exchange_402_ms (a quote cache miss only)": c_legs[0] if len(c_legs) > 1 else None,
        "paid_exchange_ms": c_legs[-1] if c_legs else None,
        "no_payment_exchange_ms": n_legs[0] if n_legs else None,
        "node_payment_work_ms": round(c_legs[-1] - n_legs[0], 2) if c_legs and n_legs else None,
        "sdk_prepare_ms": credit_sdk.get("prepare", {}).get("median_ms"),
        "sdk_complete_ms": credit_sdk.get("complete", {}).get("median_ms"),
        "inside_node_payment_work": {
            "relayer_verify_ms (cache hit)": parts["relayer_verify_round_trip"]["median_ms"],
            "relayer_verify_ms (cache miss: one JSON-RPC batch)":
                parts["relayer_verify_round_trip_cache_miss"]["median_ms"],
            "relayer_cpu_per_verify_ms (cache hit)": parts["relayer_verify_round_trip"]["cpu_ms_per_call"]["relayer"],
            "relayer_healthz_round_trip_ms (a web3.py block-number read + store ping)":
                parts["relayer_healthz_round_trip"]["median_ms"],
            "verify judgements during the run: from cache / from chain": verify_reads,
            "the 3 reads as one raw JSON-RPC batch (ms)": parts["chain_reads_raw_batch"]["median_ms"],
            "the 3 reads as web3.py eth_calls, as /verify did before (ms)": round(3 * parts["chain_read"]["median_ms"],
                                                                                  3),
            "receipt_commit_fsync_ms (node /metrics mean)": node_side["paid_node_store_commit"]["mean_ms"],
            "receipt_sign_ms": parts["receipt_sign"]["median_ms"],
            "voucher_recover_ms": parts["signature_recover"]["median_ms"],
        },
        "inside_sdk": {
            "state_file_fsync_ms (what one costs; none on an accepted request's path now)":
                parts["client_state_write_fsync"]["median_ms"],
            "chain_clock_refresh_ms (every 5 s: a new httpx client)": parts["sdk_chain_clock_refresh"]["median_ms"],
            "voucher_sign_ms": parts["voucher_sign"]["median_ms"],
            "receipt_recover_ms": parts["signature_recover"]["median_ms"],
        },
    }
    notes = [
        f"This machine ({os.cpu_count()} CPUs) was loaded by other work during the run: 1-minute load average "
        f"{load_before[0]:.2f} before setup, {load_start[0]:.2f} at the start and {load_end[0]:.2f} at the end of the "
        "measured load. anvil, the relayer, both nodes and the three load processes share these CPUs, so absolute "
        "latencies (and their tails) are inflated and vary between runs; the side-by-side comparison is what the "
        "interleaved schedule protects.",
        "The SDK (offchain.client.transport.PayingTransport) remembers the requirement it paid for each request and "
        "pays the same request again with its first attempt (the voucher signed against its channel view); the "
        "node's 402 is then a cache miss (no-store). Warm opg-credit requests are one HTTP exchange; a client's "
        "first request of a kind is 402 + 200.",
        "The relayer's /verify, which the node calls on every opg-credit request before the model runs, needs "
        "staking.is_active_as, escrow.spent and escrow.available_of. It reads them as raw eth_calls in one JSON-RPC "
        f"batch request ({parts['chain_reads_raw_batch']['median_ms']:.1f} ms here) and reuses them for up to 2 s "
        "(accepting only; docs/relayer.md); during the run "
        f"{verify_reads['cache']} judgements came from the cache and {verify_reads['chain']} read the chain. "
        "Before this, it made three web3.py contract calls on every /verify: one costs "
        f"{parts['chain_read']['median_ms']:.1f} ms ({parts['chain_read']['caller_cpu_median_ms']:.1f} ms of the "
        f"caller's CPU) against {parts['chain_read_raw_json_rpc']['median_ms']:.1f} ms for the same eth_call as raw "
        "JSON-RPC.",
        "No-payment baseline: the node has no unpaid mode (a request without PAYMENT-SIGNATURE always gets 402, at "
        "any price, zero included), so the baseline is the same Node program served the same way with "
        "Payments.admit/complete/release replaced by no-ops (see 'baseline'). Suggested node change, not made: a "
        "zero-price model (or a --free flag) served without x402.",
    ]
    unsteady = [LABEL[m] for m in MODES if not summary[m]["steady"]]
    if unsteady:
        notes.append(f"NOT steady at this rate: {', '.join(unsteady)} (the latency grew through the run: requests "
                     "queued faster than they were answered), so its percentiles measure a queue, not a request; "
                     "see p50_ms_by_10s_window and dispatch_lag_ms")
    notes += args.note
    if not all(all(v) for v in warm.values()):
        notes.append(f"some warm-up requests failed: {warm}")
    return {
        "summary": summary,
        "overhead_credit_vs_none": {
            "p50_ms": p50_over, "p99_ms": p99_over,
            "p50_ratio": round(credit["p50_ms"] / none["p50_ms"], 3),
            "p99_ratio": round(credit["p99_ms"] / none["p99_ms"], 3),
            "paired_by_round_median_ms": ms(statistics.median(paired)) if paired else None,
            "p50_ms_by_10s_window": windows,
            "exact_p50_ms_over_none": round(summary["exact"]["p50_ms"] - none["p50_ms"], 2)
            if summary["exact"].get("p50_ms") is not None else None,
        },
        "target": {"what": "opg-credit over no payment: p50 <= 2 ms and p99 <= 5 ms (issue 15, item 7)",
                   "limit_p50_ms": TARGET_P50_MS, "limit_p99_ms": TARGET_P99_MS,
                   "measured_p50_ms": p50_over, "measured_p99_ms": p99_over,
                   "met": p50_over <= TARGET_P50_MS and p99_over <= TARGET_P99_MS},
        "first_requests": first,
        "http_exchanges_with_node": legs,
        "sdk_steps": sdk,
        "node_side": node_side,
        "cpu_per_request": cpu_per_request(cpu, records),
        "where_the_time_goes_credit": estimate,
        "component_timings": parts,
        "service_time": {"definition": "from the request's actual send to the full answer (excludes the load "
                                       "generator's dispatch lag)", **service},
        "dispatch_lag_ms": {"p50": ms(statistics.median(lags), 3), "p99": ms(percentile(lags, 99), 3),
                            "max": ms(max(lags), 3)},
        "baseline": {
            "how": "a second node process (bench/payment_latency.py --serve-unpaid-node): offchain.node.service.Node "
                   "with the same flags and builtin backend as the paid `opg node run`, served by the same "
                   "offchain.node.api.create_asgi and offchain.daemon.serve.serve, with Payments.admit returning a "
                   "no-op admission and Payments.complete/release doing nothing. The request goes through the same "
                   "route: pricing (Catalog.prepare), the admission thread hop, the model in a worker thread, "
                   "the OpenAI JSON and a PAYMENT-RESPONSE header; the client is a plain keep-alive httpx.Client.",
            "why": "the node answers 402 to every request without PAYMENT-SIGNATURE, at any price: with zero prices "
                   "it still wants a voucher and calls the relayer's /verify, and the SDK refuses a zero quote "
                   "('requirement amount must be positive'); so zero pricing is not an unpaid mode",
            "excluded_from_baseline": "all payment work: the 402 exchange, the SDK's signing, state files and receipt "
                                      "checks, the node's voucher checks, relayer /verify, receipt signing and its "
                                      "durable commit",
        },
        "definitions": {
            "latency": "open loop: from the request's scheduled send time to its full answer (body read; for paid "
                       "modes the SDK has checked the receipt / payment response)",
            "schedule": f"{args.rate:g} rounds/s for {args.duration:g} s; each round one no-payment and one "
                        "opg-credit request (and one exact in evenly spread rounds) at random distinct thirds of the "
                        "round; each mode from its own process, keep-alive client and thread pool",
            "p50/p90/p99": "nearest rank over successful requests",
            "failures": "not 200, or the SDK did not accept the payment response (exact: not settled)",
        },
        "setup": {
            "command": "python bench/payment_latency.py " + " ".join(sys.argv[1:]),
            "cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
            "duration_s": args.duration, "rate_rounds_per_s": args.rate, "exact_requests": args.exact_requests,
            "warmup_requests_per_client": args.warmup, "seed": args.seed, "requests_scheduled": len(plan),
            "chat": CHAT, "backend": "builtin", "node_flags": "defaults (pricing 0.0001 OPG/request + 0.000001/prompt "
            "token + 0.00001/output token, settled-ttl 2 s)", "relayer_flags": "defaults, --confirmations 1",
            "anvil": "automine", "contracts_params": "Params.devnet()",
            "payer_keys": "the payers' own keys (Payer.from_key), state directories under the run's temp dir",
            "node_health_at_end": {k: healths["node"].get(k) for k in ("registered", "active", "outboxBacklog",
                                                                       "outboxRefused", "relayerReachable")},
            "load_average_before_start_end": [round(load_before[0], 2), round(load_start[0], 2),
                                              round(load_end[0], 2)],
            "wall_time_s": round(wall, 1),
        },
        "notes": notes,
    }


def print_table(r: dict) -> None:
    s = r["summary"]
    legs = r["http_exchanges_with_node"]
    print()
    print(f"{'mode':<12} {'count':>6} {'fail':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'mean ms':>8}  "
          f"exchanges/request")
    print("-" * 78)
    for m in MODES:
        row = s[m]
        print(f"{LABEL[m]:<12} {row['count']:>6} {row['failures']:>5} {row.get('p50_ms', '-'):>8} "
              f"{row.get('p90_ms', '-'):>8} {row.get('p99_ms', '-'):>8} {row.get('mean_ms', '-'):>8}  "
              f"{legs[m]['most_common']} ({' + '.join(str(x) for x in legs[m]['median_ms_per_exchange'])} ms)"
              + ("" if row["steady"] else "  NOT STEADY"))
    o = r["overhead_credit_vs_none"]
    t = r["target"]
    print()
    print(f"opg-credit over no payment: p50 +{o['p50_ms']} ms (x{o['p50_ratio']}), p99 +{o['p99_ms']} ms "
          f"(x{o['p99_ratio']}); paired by round +{o['paired_by_round_median_ms']} ms; by 10 s window "
          f"{o['p50_ms_by_10s_window']}")
    print(f"target p50 overhead <= {t['limit_p50_ms']} ms and p99 <= {t['limit_p99_ms']} ms: "
          f"{'met' if t['met'] else 'NOT met'} (p50 {t['measured_p50_ms']} ms, p99 {t['measured_p99_ms']} ms)")
    print()
    print("first requests (new client; medians, ms):")
    for name, row in r["first_requests"].items():
        print(f"  {name:<40} {row.get('p50_ms', '-'):>8}  exchanges {row['most_common']}  "
              f"sdk {({k: v['median_ms'] for k, v in row['sdk'].items()})}")
    e = r["where_the_time_goes_credit"]
    print()
    print("opg-credit, where the time goes (medians, ms):")
    for key in ("exchange_402_ms (a quote cache miss only)", "paid_exchange_ms", "no_payment_exchange_ms",
                "node_payment_work_ms", "sdk_prepare_ms", "sdk_complete_ms"):
        print(f"  {key:<40} {e[key]}")
    for group in ("inside_node_payment_work", "inside_sdk"):
        for key, value in e[group].items():
            print(f"  {group}: {key:<45} {value}")
    c = r["cpu_per_request"]
    print(f"CPU per request (ms): no payment: baseline node {c['no_payment']['baseline_node_ms']}, client "
          f"{c['no_payment']['client_ms']}; paid: node {c['paid (opg-credit + exact)']['node_ms']}, relayer "
          f"{c['paid (opg-credit + exact)']['relayer_ms']}, opg-credit client {c['opg-credit']['client_ms']}; "
          f"anvil {c['anvil_ms_per_request_any_mode']}")
    print(f"(cpus: {r['setup']['cpus']}, load average before/start/end {r['setup']['load_average_before_start_end']})")


if __name__ == "__main__":
    sys.exit(main())
