"""The first install says what is happening and how long it takes, and shows pip's progress on a terminal (the
Makefile's recipe, shown with ``make -n`` as if requirements.lock had changed; nothing is installed)."""

from __future__ import annotations

import os
import pty
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DRY = ["make", "--no-print-directory", "-n", "-W", "requirements.lock", ".venv/.installed"]


def test_install_says_what_it_builds_and_how_long_it_takes_and_is_quiet_in_logs():
    out = subprocess.run(DRY, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "llama-cpp-python" in out.stdout and "about 8 minutes" in out.stdout
    pip = [line for line in out.stdout.splitlines() if "pip install" in line and "requirements.lock" in line]
    assert pip and "--quiet" in pip[0]  # not a terminal: a log stays short


def test_install_shows_pip_progress_on_a_terminal():
    controller, terminal = pty.openpty()
    try:
        out = subprocess.run(DRY, cwd=ROOT, stdout=subprocess.PIPE, stderr=terminal, text=True, timeout=60)
    finally:
        os.close(terminal)
        os.close(controller)
    assert out.returncode == 0
    pip = [line for line in out.stdout.splitlines() if "pip install" in line and "requirements.lock" in line]
    assert pip and "--quiet" not in pip[0] and "--progress-bar=on" in pip[0]
