"""The README's devnet walk-through, run as written, top to bottom, on a real ``make devnet``: the ``bash`` block of
"A devnet to play with" in one shell, then its Python snippets (the ``openai`` package, a stock x402 client).

The shell runs in a scratch directory laid out like the repository for these commands (``.venv/bin`` holding an
``opg`` that runs this tree's CLI, ``node_modules``, and ``deployments/`` holding the devnet's deployment), with
``OPG_CLIENT_*`` / ``OPG_OPERATOR_*`` pointing at the devnet's ports and ``HOME`` there (the client's state in
``~/.opg``). The snippets get the devnet's ports in place of the standard ones.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(title)
    end = README.find("\n### ", start + len(title))
    return README[start:end if end > 0 else None]


def blocks(text: str, lang: str) -> list[str]:
    """The fenced code blocks of ``lang`` in ``text``, de-indented."""
    out = []
    for m in re.finditer(r"^( *)```" + lang + r"\n(.*?)^\1```", text, re.S | re.M):
        indent = len(m.group(1))
        out.append("\n".join(line[indent:] for line in m.group(2).splitlines()))
    return out


def scratch(devnet, tmp: Path) -> tuple[Path, dict]:
    bin_dir = tmp / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    opg = bin_dir / "opg"
    opg.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m offchain.cli "$@"\n')
    opg.chmod(0o755)
    (tmp / "node_modules").symlink_to(ROOT / "node_modules")
    (tmp / "deployments").symlink_to(devnet.deployment.parent)
    (tmp / "home").mkdir()
    env = {**os.environ, **devnet.env(tmp / "home" / ".opg"), "HOME": str(tmp / "home"), "NO_COLOR": "1",
           "OPG_DEPLOYMENTS_DIR": str(devnet.deployment.parent)}  # the SDK's deployments/ (the repository's)
    env.pop("OPG_CLIENT_STATE_DIR")  # the default, ~/.opg, as a newcomer has it
    return tmp, env


def test_readme_devnet_walkthrough_runs_as_written(devnet, tmp_path):
    text = section("### A devnet to play with")
    (shell,) = blocks(text, "bash")
    assert shell.startswith("export PATH=$PWD/.venv/bin") and "opg deposit 10 --dev-account 4" in shell
    cwd, env = scratch(devnet, tmp_path)
    run = subprocess.run(["bash", "-e", "-x", "-c", shell], cwd=cwd, env=env, capture_output=True, text=True,
                         timeout=600, stdin=subprocess.DEVNULL)
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    out = run.stdout
    assert re.search(r"^deposited 10 OPG \(tx 0x[0-9a-f]{64}\); credits 110 OPG$", out, re.M), out
    assert re.search(r"^deposited 1 OPG \(gasless, relayer tx 0x[0-9a-f]{64}\); credits 111 OPG$", out, re.M), out
    assert re.search(r"^credits +111 OPG", out, re.M)
    assert "may spend 5 OPG for 24 h 0 min" in out
    row = re.search(r"^this answer cost (\d+\.\d+) OPG · (\d+\.\d+) OPG left of the session key's allowance · "
                    r"(pending|settled in batch \d+.*)$", out, re.M)
    assert row, out
    assert float(row.group(1)) > 0 and float(row.group(2)) < 5
    answer = json.loads((cwd / "answer.json").read_text())
    assert answer["ok"] and answer["receiptId"].startswith("0x") and answer["signer"] != answer["payer"]
    # the dispute opens (its bond in OPG), unless the verifiers, sampling, already judged that answer
    dispute = re.search(rf"^receipt {answer['receiptId']} of node 0x[0-9a-fA-F]{{40}}: (.*)$", out, re.M)
    assert dispute, out
    assert re.fullmatch(r"dispute opened, bond \d+(\.\d+)? OPG posted \(0x[0-9a-f]{64}\)|already proven valid|"
                        r"fraud already proven|already disputed", dispute.group(1)), dispute.group(1)
    assert "withdrawal of 5 OPG requested" in out
    assert re.search(r"^withdrew 5 OPG \(tx 0x[0-9a-f]{64}\)", out, re.M), log[-3000:]
    assert "registered" in out.lower() and "inference" in out


def test_readme_python_snippets_pay_a_devnet_node(devnet, tmp_path):
    text = section("### A devnet to play with")
    snippets = blocks(text, "python")
    assert len(snippets) == 2 and "import openai" in snippets[0] and "x402HttpxClient" in snippets[1]
    cwd, env = scratch(devnet, tmp_path)
    ports = {"127.0.0.1:8545": devnet.rpc_url[7:], "127.0.0.1:8402": devnet.relayer_url[7:],
             "127.0.0.1:8500": devnet.node_url[7:]}
    for code in snippets:
        for standard, here in ports.items():
            code = code.replace(standard, here)
        run = subprocess.run([sys.executable, "-c", code], cwd=cwd, env={**env, "PYTHONPATH": str(ROOT)},
                             capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert run.returncode == 0, (code, run.stdout, run.stderr[-3000:])
        words = run.stdout.split()
        assert len(words) >= 2, run.stdout
        # openai: the answer, then its cost in wei; x402: the answer, then its on-chain transaction
        assert words[-1].isdigit() or re.fullmatch(r"0x[0-9a-f]{64}", words[-1]), run.stdout
