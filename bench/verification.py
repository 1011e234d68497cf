"""Verification benchmark: real anvil, ``opg relayer run``, ``opg node run`` and ``opg verifier run`` processes over
HTTP (the test kit of offchain/devkit/devnet.py and tests/verifier/verifier_kit.py).

Measures
  receipts_per_s           receipts one verifier daemon judges per second, from its start (after /healthz) to its
                           last verdict, on a backlog of paid receipts: feed, payload challenge + fetch from the node,
                           re-execution, verdict signed and stored; per backend (builtin, and smollm2 if installed)
  bare_judge_per_s         the same re-executions in-process (offchain.verifier.judge.judge, one thread): what the
                           model alone allows; ``daemon / bare`` is the share of it the daemon achieves
  fraud_to_slash_s         a fraudulent answer (node --backend "builtin?cheat_rate=1") handed to its payer -> the fraud proven
                           on-chain (NodeStaking.fraud_proven_at set), with two verifier daemons forming the quorum;
                           split into answer -> relayer acceptance -> last verdict decided -> proof mined

The measured verifier holds a third of the live weight (an idle verifier holds the rest), so its verdicts never reach
a quorum and no proof transaction competes with it. Everything shares the machine's cores: the load average before
and after is recorded.

    python bench/verification.py [--quick] [--receipts N] [--smollm2-receipts N] [--samples N]
    python bench/verification.py --calibration [--calibration-prompts N] [--calibration-tokens N]
        [--calibration-cheat-prompts N] [--calibration-workers N] [--cost-prompts N]
        [--calibration-scorings native,f32] [--calibration-only "row;row"]

``--calibration`` runs only the teacher-forcing calibration (bench/teacher_forcing.py: honest perturbations, cheats'
detection rates by length, the drift test, cost) and stores it under ``teacher_forcing`` in the same JSON, keeping
the other results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for extra in (ROOT, ROOT / "tests", ROOT / "tests" / "verifier", ROOT / "bench"):
    sys.path.insert(0, str(extra))

from verifier_kit import (  # noqa: E402
    fraud_proven,
    live,
    metric,
    node_proc,
    past_devnet,
    pay_chat,
    receipt_hash_of,
    stop_all,
    verifier_proc,
)

from offchain.devkit.devnet import OPG, RelayerProc, wait_until  # noqa: E402
from offchain.inference import ChatMessage, GenParams, Pricing, canonical_request, input_hash, output_hash  # noqa: E402
from offchain.messages import Receipt  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "verification.json"
MAX_TOKENS = 24
MODEL_NAMES = {"builtin": "builtin", "smollm2": "smollm2-135m-instruct"}


def prompt(i: int) -> str:
    return f"Question {i}: in one sentence, why does a verifier re-execute a sampled request?"


def load_avg() -> float:
    return round(os.getloadavg()[0], 2)


def smollm2_available() -> bool:
    try:
        from offchain.backends import load_backend

        load_backend("smollm2")
        return True
    except Exception:
        return False


# In-process re-execution -------------------------------------------------------------------------------------------
def bare_judge_rate(spec: str, n: int) -> dict:
    """Serve ``n`` requests with the backend (as a node would), then judge each (re-execution + checks), timed."""
    from offchain.backends import load_backend
    from offchain.verifier.judge import judge

    backend = load_backend(spec)
    pricing = Pricing(base=10**15, per_prompt_token=10**13, per_output_token=10**14)
    cases = []
    for i in range(n):
        messages, params = [ChatMessage(role="user", content=prompt(i))], GenParams(max_tokens=MAX_TOKENS)
        gen = backend.generate(messages, params)
        request = canonical_request(backend.name, messages, params)
        receipt = Receipt(request_id="0x" + os.urandom(32).hex(), payer="0x" + "11" * 20, node="0x" + "22" * 20,
                          model_id=backend.model_id, input_hash=input_hash(request), output_hash=output_hash(gen.text),
                          amount=pricing.cost(gen.prompt_tokens, gen.output_tokens), cumulative=10**18, timestamp=1)
        cases.append((receipt, {"request": request, "output": gen.text, "pricing": pricing.wire(), "usage": {
            "promptTokens": gen.prompt_tokens, "outputTokens": gen.output_tokens}, "finishReason": gen.finish_reason}))
    start = time.perf_counter()
    valid = sum(judge(r, p, backend).valid for r, p in cases)
    elapsed = time.perf_counter() - start
    assert valid == n, f"{n - valid} honest answers judged invalid"
    return {"receipts": n, "seconds": round(elapsed, 3), "per_s": round(n / elapsed, 2)}


# The daemon on a backlog -------------------------------------------------------------------------------------------
def daemon_rate(spec: str, n: int, folder: Path, workers: int) -> dict:
    devnet = past_devnet(folder / f"devnet-{spec}")
    relayer = RelayerProc(devnet, folder / f"relayer-{spec}.sqlite3", dev_account=1).start()
    procs = []
    try:
        p = devnet.params
        measured, idle = devnet.new_verifier(p.min_verifier_stake), devnet.new_verifier(2 * p.min_verifier_stake)
        live(devnet, [measured, idle])
        node, payer = devnet.new_node(), devnet.new_payer(100 * OPG)
        node_daemon = node_proc(devnet, relayer, node, folder, backend=spec, name=f"node-{spec}")
        procs.append(node_daemon.start(timeout=180))
        started = time.monotonic()
        ids = [pay_chat(devnet, node_daemon.url, payer, prompt(i), max_tokens=MAX_TOKENS,
                        model=MODEL_NAMES[spec], timeout=300)["receiptId"] for i in range(n)]
        serving = time.monotonic() - started
        wait_until(lambda: all(relayer.get(f"/receipts/{i}").status_code == 200 for i in ids), timeout=120,
                   what="every receipt at the relayer")
        vproc = verifier_proc(devnet, relayer, measured, folder, "--workers", str(workers), backends=spec,
                              name=f"verifier-{spec}")
        launched = time.monotonic()
        procs.append(vproc.start(timeout=180))
        ready = time.monotonic()
        wait_until(lambda: metric(vproc, "opg_verifier_receipts_checked_total") >= n, timeout=60 + 30 * n,
                   interval=0.05, what=f"{n} receipts judged")
        done = time.monotonic()
        agreed = metric(vproc, "opg_verifier_receipts_agreed_total")
        reexec_sum = metric(vproc, "opg_verifier_reexecution_seconds_sum")
        fetch_sum = metric(vproc, "opg_verifier_payload_fetch_seconds_sum")
        assert agreed == n, f"{n - agreed} honest receipts judged invalid"
        return {"receipts": n, "workers": workers, "per_s": round(n / (done - ready), 2),
                "seconds": round(done - ready, 3), "startup_s": round(ready - launched, 2),
                "mean_reexecution_ms": round(1000 * reexec_sum / n, 2), "mean_fetch_ms": round(1000 * fetch_sum / n, 2),
                "node_serving_per_s": round(n / serving, 2)}
    finally:
        stop_all(*procs)
        relayer.stop()
        devnet.close()


# Fraud to slash ----------------------------------------------------------------------------------------------------
def fraud_to_slash(samples: int, folder: Path) -> dict:
    devnet = past_devnet(folder / "devnet-fraud")
    relayer = RelayerProc(devnet, folder / "relayer-fraud.sqlite3", dev_account=1).start()
    procs = []
    rows = []
    try:
        p = devnet.params
        verifiers = [devnet.new_verifier(p.min_verifier_stake) for _ in range(2)]
        live(devnet, verifiers)
        vprocs = [verifier_proc(devnet, relayer, v, folder, name=f"fraud-verifier{i}") for i, v in enumerate(verifiers)]
        for v in vprocs:
            procs.append(v.start())
        for i in range(samples):
            node, payer = devnet.new_node(), devnet.new_payer(20 * OPG)
            node_daemon = node_proc(devnet, relayer, node, folder, name=f"cheater{i}", backend="builtin?cheat_rate=1")
            node_daemon.start()
            try:
                answered_wall = time.time()
                got = pay_chat(devnet, node_daemon.url, payer, prompt(1000 + i), max_tokens=MAX_TOKENS)
                answered, answered_wall = time.monotonic(), time.time()
                h = receipt_hash_of(got["receipt"])
                wait_until(lambda h=h: fraud_proven(devnet, h), timeout=60, interval=0.02, what="fraud proven")
                proven = time.monotonic()
                accepted_at = relayer.get(f"/receipts/{got['receiptId']}").json()["acceptedAt"]
                decided = [v.client.get(f"/checks/{got['receiptId']}").json().get("decidedAt") for v in vprocs]
                rows.append({"answer_to_proof_s": proven - answered,
                             "answer_to_relayer_s": max(0.0, accepted_at - answered_wall),
                             "answer_to_last_verdict_s": max(d for d in decided if d) - answered_wall})
            finally:
                node_daemon.stop()
        total = [r["answer_to_proof_s"] for r in rows]
        return {"samples": samples, "median_s": round(statistics.median(total), 3), "max_s": round(max(total), 3),
                "min_s": round(min(total), 3),
                "median_answer_to_relayer_s": round(statistics.median(r["answer_to_relayer_s"] for r in rows), 3),
                "median_answer_to_last_verdict_s": round(statistics.median(r["answer_to_last_verdict_s"]
                                                                           for r in rows), 3),
                "each": [{k: round(v, 3) for k, v in r.items()} for r in rows],
                "verifiers": 2, "relayer_poll_s": 0.05, "verifier_poll_s": 0.2}
    finally:
        stop_all(*procs)
        relayer.stop()
        devnet.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small runs (a smoke test of the benchmark)")
    parser.add_argument("--receipts", type=int, default=None, help="builtin backlog (default 200, quick 30)")
    parser.add_argument("--smollm2-receipts", type=int, default=None, help="smollm2 backlog (default 12, quick 3)")
    parser.add_argument("--samples", type=int, default=None, help="fraud-to-slash samples (default 3, quick 1)")
    parser.add_argument("--workers", type=int, default=2, help="the measured verifier's --workers")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--calibration", action="store_true", help="only the teacher-forcing calibration")
    parser.add_argument("--calibration-prompts", type=int, default=300, help="prompts (receipts per perturbation)")
    parser.add_argument("--calibration-cheat-prompts", type=int, default=None,
                        help="receipts per Q4_0 / Q2_K substitute (default: as many as --calibration-prompts)")
    parser.add_argument("--calibration-workers", type=int, default=2, help="worker processes of the calibration")
    parser.add_argument("--cost-prompts", type=int, default=32, help="answers timed in the calibration's cost phase")
    parser.add_argument("--calibration-only", default=None,
                        help="comma-separated rows to run again (e.g. 'proxy,proxy, tokenizer split,Q4_0'); the "
                             "other rows of the stored result are kept, marked with the run they come from")
    parser.add_argument("--calibration-scorings", default="native,f32",
                        help="the verifiers that judge every row: native (the packed weights), f32 (their F32 "
                             "expansion, LlamaBackend scoring='f32')")
    parser.add_argument("--calibration-tokens", type=int, default=48, help="max_tokens of the calibration answers")
    args = parser.parse_args()
    if args.calibration:
        unknown = set(args.calibration_scorings.split(",")) - {"native", "f32"}
        if unknown:
            parser.error(f"--calibration-scorings: unknown {', '.join(sorted(unknown))} (native, f32)")
        return calibrate(args)
    n_builtin = args.receipts or (30 if args.quick else 200)
    n_small = args.smollm2_receipts or (3 if args.quick else 12)
    samples = args.samples or (1 if args.quick else 3)
    load_before = load_avg()
    backends = ["builtin"] + (["smollm2"] if smollm2_available() else [])
    results: dict = {"throughput": {}, "setup": {}}
    with tempfile.TemporaryDirectory(prefix="opg-bench-verification-") as tmp:
        folder = Path(tmp)
        for spec in backends:
            n = n_builtin if spec == "builtin" else n_small
            daemon = daemon_rate(spec, n, folder, args.workers)
            bare = bare_judge_rate(spec, n)
            results["throughput"][spec] = {"daemon": daemon, "bare_judge": bare,
                                           "daemon_over_bare": round(daemon["per_s"] / bare["per_s"], 3)}
        results["fraud_to_slash_s"] = fraud_to_slash(samples, folder)
    t = results["throughput"]
    if "smollm2" in t:
        results["builtin_over_smollm2"] = {
            "daemon": round(t["builtin"]["daemon"]["per_s"] / t["smollm2"]["daemon"]["per_s"], 1),
            "bare_judge": round(t["builtin"]["bare_judge"]["per_s"] / t["smollm2"]["bare_judge"]["per_s"], 1)}
    results["setup"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
                        "load_avg_before": load_before, "load_avg_after": load_avg(), "max_tokens": MAX_TOKENS,
                        "backends": backends, "quick": args.quick,
                        "note": "anvil, relayer, node(s), verifier(s) and this driver share the cores"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"written {args.out}")
    return 0


def calibrate(args) -> int:
    import teacher_forcing

    load_before = load_avg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="opg-bench-tf-") as tmp:
        only = None
        if args.calibration_only:
            only = {name.strip() for name in args.calibration_only.split(";" if ";" in args.calibration_only
                                                                          else ",")}
        tf = teacher_forcing.run(args.calibration_prompts, args.calibration_tokens, Path(tmp),
                                 workers=args.calibration_workers, cheat_prompts=args.calibration_cheat_prompts,
                                 cost_prompts=args.cost_prompts, only=only,
                                 scorings=tuple(x.strip() for x in args.calibration_scorings.split(",")))
    run_id = {"commit": _commit(), "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "seconds": round(time.perf_counter() - started, 1), "load_avg_before": load_before,
              "load_avg_after": load_avg(), "only": sorted(only) if only else None}
    tf["setup"].update({"cpus": os.cpu_count(), "load_avg_before": load_before, "load_avg_after": run_id[
        "load_avg_after"], "seconds": run_id["seconds"]})
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    old = results.get("teacher_forcing") if only else None
    for section in ("honest", "cheats"):
        for row in tf[section].values():
            row["run"] = run_id["at"]
        if old:  # rows not run again keep the earlier run's figures (each row says which run it comes from)
            for name, row in old.get(section, {}).items():
                tf[section].setdefault(name, {**row, "run": row.get("run", old["setup"].get("run", "earlier"))})
    tf["setup"]["run"] = run_id["at"]
    tf["runs"] = [*((old or {}).get("runs") or ([{"at": "earlier", **{k: old["setup"].get(k) for k in (
        "seconds", "load_avg_before", "load_avg_after")}}] if old else [])), run_id]
    results["teacher_forcing"] = tf
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    teacher_forcing.print_table(tf)
    print(f"written {args.out}")
    return 0


def _commit() -> str:
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def print_table(r: dict) -> None:
    print()
    print(f"{'backend':<10} {'daemon/s':>9} {'bare/s':>9} {'daemon/bare':>12} {'re-exec ms':>11} {'fetch ms':>9} "
          f"{'receipts':>9}")
    print("-" * 75)
    for spec, t in r["throughput"].items():
        d = t["daemon"]
        print(f"{spec:<10} {d['per_s']:>9.2f} {t['bare_judge']['per_s']:>9.2f} {t['daemon_over_bare']:>12.3f} "
              f"{d['mean_reexecution_ms']:>11.2f} {d['mean_fetch_ms']:>9.2f} {d['receipts']:>9}")
    if "builtin_over_smollm2" in r:
        ratio = r["builtin_over_smollm2"]
        print(f"builtin / smollm2: daemon {ratio['daemon']}x, bare {ratio['bare_judge']}x")
    f = r["fraud_to_slash_s"]
    print(f"fraudulent answer -> fraud proven on-chain: median {f['median_s']} s (min {f['min_s']}, max {f['max_s']}, "
          f"{f['samples']} samples; answer -> relayer {f['median_answer_to_relayer_s']} s, -> last verdict "
          f"{f['median_answer_to_last_verdict_s']} s)")
    s = r["setup"]
    print(f"(cpus: {s['cpus']}; load average {s['load_avg_before']} -> {s['load_avg_after']}; all processes share them)")


if __name__ == "__main__":
    sys.exit(main())
