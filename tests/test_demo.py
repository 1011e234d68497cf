"""`make demo`'s main job runs end to end: deploy, stake, deposit, chat, batch settlement, slashing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from offchain.devchain import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_demo_settles_every_answer_and_slashes_the_equivocating_node(tmp_path):
    env = dict(
        os.environ,
        OPG_DEMO_PORT=str(free_port()),
        OPG_DEMO_RELAYER_PORT=str(free_port()),
        OPG_DEMO_DIR=str(tmp_path / "state"),
        OPG_DEPLOYMENTS_DIR=str(tmp_path / "deployments"),
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    )
    out = subprocess.run(
        ["bash", "scripts/demo.sh", "--keep-running", "no"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("credits left · ") == 5
    assert out.stdout.count("settled in batch #") == 5
    assert "relayer slashed the node" in out.stdout and "jailed=True" in out.stdout
    assert "== demo complete" in out.stdout
