"""LlamaServer: ``python -m llama_cpp.server`` as a child process, an OpenAI-compatible upstream like a GPU node's
(vLLM, llama-server, Ollama), with its own batch and thread settings, for the proxy backend's open-weights tests and
the teacher-forcing calibration (bench/teacher_forcing.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from .devchain import free_port
from .devnet import wait_until


class LlamaServer:
    """Started on a free port (``url`` is its ``/v1`` base); its output goes to ``folder/upstream-<port>.log``.
    ``args`` are the server's own flags (``--n_threads 1``, ``--n_batch 64``, ``--chat_format gemma``, ...)."""

    def __init__(self, model: str, folder: Path, *args: str, timeout: float = 120):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log = open(Path(folder) / f"upstream-{self.port}.log", "ab")
        try:
            # ggml's threads wait passively as in the daemons (offchain.backends.llama): the server shares the cores
            self.proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", model, "--host",
                                          "127.0.0.1", "--port", str(self.port), "--verbose", "false", *args],
                                         stdout=self.log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        except BaseException:
            self.log.close()
            raise
        try:
            wait_until(self._up, timeout=timeout, interval=0.3, what="llama_cpp.server up")
        except BaseException:
            self.stop()
            raise

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited {self.proc.returncode} (log: {self.log.name})")
        try:
            return httpx.get(f"{self.url}/models", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.log.closed:
            self.log.close()
