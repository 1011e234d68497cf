"""Fixtures for the backend tests: the builtin backend, the real SmolLM2 model (loaded once per module) and a real
OpenAI-compatible upstream server process (tests/backends/openai_upstream.py) for the proxy backend."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from offchain.backends import load_backend
from offchain.devkit.devchain import free_port

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def builtin():
    return load_backend("builtin")


@pytest.fixture(scope="module")
def smollm2():
    return load_backend("smollm2", n_threads=2)


def start_upstream(tmp_path: Path, token_delay: float = 0.0):
    port = free_port()
    log = (tmp_path / f"upstream-{port}.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "openai_upstream.py"), "--port", str(port), "--token-delay", str(token_delay)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90  # a loaded 2-core machine (CI) can take long to import FastAPI
    while True:
        try:
            if httpx.get(f"{base}/v1/models", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"upstream did not start: {(tmp_path / f'upstream-{port}.log').read_text()}")
        time.sleep(0.1)
    return proc, base


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    proc, base = start_upstream(tmp_path_factory.mktemp("upstream"))
    yield base
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def slow_upstream(tmp_path_factory):
    """Streams one token every 300 ms (to see that an early stop really hangs up on the upstream)."""
    proc, base = start_upstream(tmp_path_factory.mktemp("slow-upstream"), token_delay=0.3)
    yield base
    proc.terminate()
    proc.wait(10)
