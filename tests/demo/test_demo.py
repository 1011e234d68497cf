"""`make demo` and `make devnet` run the whole system as real processes (anvil, relayer, nodes, verifiers) and stop
every one of them; the demo's summary is read from the chain and must reconcile."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from offchain.client import format_opg
from offchain.devkit.devchain import free_port

ROOT = Path(__file__).resolve().parents[2]


def _ports(n: int) -> list[int]:
    """``n`` consecutive free loopback ports (the demo numbers nodes and verifiers from a base port)."""
    while True:
        base = free_port()
        if base + n < 65_000 and all(_free(base + i) for i in range(n)):
            return list(range(base, base + n))


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _system_args(tmp_path: Path) -> tuple[list[str], list[int]]:
    rpc, relayer = free_port(), free_port()
    base = _ports(5)
    args = ["--rpc-port", str(rpc), "--relayer-port", str(relayer), "--base-port", str(base[0]),
            "--state-dir", str(tmp_path / "state"), "--deployments-dir", str(tmp_path / "deployments")]
    return args, [rpc, relayer, *base]


def test_demo_pays_every_answer_once_slashes_the_cheating_node_and_stops_every_process(tmp_path):
    args, ports = _system_args(tmp_path)
    out = subprocess.run(
        [sys.executable, "scripts/demo.py", *args, "--requests", "10", "--cheat-rate", "0.5", "--sample-rate", "1",
         "--max-tokens", "12", "--backend", "smollm2", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    report = json.loads([line for line in out.stdout.splitlines() if line.startswith("{")][-1])
    assert report["problems"] == []
    answers = [a for p in report["payers"] for a in p["answers"]]
    assert len(answers) == 10 and all(a["cost"] > 0 for a in answers)
    assert {a["scheme"] for a in answers} == {"opg-credit", "exact"}
    assert {a["mode"] for a in answers} >= {"sdk", "sdk-stream", "openai", "openai-stream", "exact"}
    cheat = next(n for n in report["nodes"] if n["cheat_rate"] > 0)
    honest = next(n for n in report["nodes"] if n["cheat_rate"] == 0)
    assert cheat["jailed"] and any(s["kind"] == "fraud" and s["node"] == cheat["address"] for s in report["slashes"])
    assert not any(s["node"] == honest["address"] for s in report["slashes"]) and honest["claimable"] > 0
    # the payers of the fraudulent answers got their money back or were never charged for them
    fraud_payers = {s["payer"] for s in report["slashes"] if s["kind"] == "fraud"}
    for payer in fraud_payers:
        refunds = sum(s["refund"] for s in report["slashes"] if s["payer"] == payer)
        voided = sum(v["amount"] for v in report["voided"] if v["payer"] == payer)
        assert refunds + voided > 0
    # each payer's open-season usage (docs/seasons.md, the seasons package's pure usage function over the demo's
    # blocks): what it settled with the honest node counts, its usage with the slashed cheating node counts zero
    season = report["season"]
    assert f"season S{season['season']} (open, blocks {season['from_block']}..{season['to_block']}" in out.stdout
    assert out.stdout.count(" season usage ") == len(report["payers"])
    for p in report["payers"]:
        s = season["payers"][p["address"]]
        with_honest = report["settled"].get(f"{p['address']}/{honest['address']}", 0)
        with_cheat = report["settled"].get(f"{p['address']}/{cheat['address']}", 0)
        assert s["settled"] == with_honest + with_cheat
        assert s["usage"] == with_honest and s["excluded"] == with_cheat
        assert (0 < s["fees"] < s["usage"]) if with_honest else s["fees"] == 0
        line = next(x for x in out.stdout.splitlines() if x.strip().startswith(f"{p['name']} ") and "season usage" in x)
        if with_cheat:
            assert s["zero"][cheat["name"]]["settled"] == with_cheat
            assert f"{format_opg(with_cheat)} OPG with {cheat['name']} counts zero (slashed for" in line
        else:
            assert "counts zero" not in line
    assert any(season["payers"][p["address"]]["usage"] > 0 for p in report["payers"])
    assert report["batches"] and all(b["gas"] > 0 for b in report["batches"])
    # the summary shows bench/gas.py's at-scale figures beside the demo's own
    assert report["at_scale"]["gas_per_request"] < 1_000 and report["at_scale"]["exact"] > 50_000
    assert "batching at scale (bench/gas.py" in out.stdout and "this demo:" in out.stdout
    assert "every process stopped" in out.stdout
    assert not any(_listening(p) for p in ports)


def test_devnet_comes_up_answers_a_paid_chat_from_the_cli_and_stops_on_sigint(tmp_path):
    args, ports = _system_args(tmp_path)
    log = open(tmp_path / "devnet.out", "w+")
    proc = subprocess.Popen([sys.executable, "scripts/devnet.py", *args, "--backend", "builtin"], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
    try:
        deadline = time.monotonic() + 300
        while "devnet is up" not in (tmp_path / "devnet.out").read_text():
            assert proc.poll() is None, (tmp_path / "devnet.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "devnet did not come up"
            time.sleep(0.5)
        rpc, relayer, node = ports[0], ports[1], ports[2]
        chat = subprocess.run(
            [sys.executable, "-m", "offchain.cli", "chat", "What is a voucher?", "--json", "--dev-account", "4",
             "--rpc-url", f"http://127.0.0.1:{rpc}", "--deployment", str(tmp_path / "deployments" / "31337.json"),
             "--relayer-url", f"http://127.0.0.1:{relayer}", "--node-url", f"http://127.0.0.1:{node}",
             "--state-dir", str(tmp_path / "client")],
            cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )
        assert chat.returncode == 0, chat.stdout + chat.stderr
        answer = json.loads(chat.stdout)
        assert int(answer["cost"]) > 0 and answer["answer"]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=120)
    assert code == 0, (tmp_path / "devnet.out").read_text()[-3000:]
    assert "every process stopped" in (tmp_path / "devnet.out").read_text()
    assert not any(_listening(p) for p in ports)
