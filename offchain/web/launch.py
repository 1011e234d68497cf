"""Start ``opg web`` as one more process of a ``offchain.devkit.system.System`` (``make devnet``, ``make demo``)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

DEFAULT_PORT = 8600


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def pick_port(port: int | None = None) -> int:
    """``port`` if given; else 8600 if it is free; else any free loopback port."""
    if port:
        return port
    if _free(DEFAULT_PORT):
        return DEFAULT_PORT
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_web(system, state_dir: Path, *, dev_account: int | None = None, payer: str | None = None,
              port: int | None = None) -> str | None:
    """``opg web`` for a payer of ``system`` (its main key by ``dev_account``, or only the session key stored for
    ``payer`` under ``state_dir``); returns its URL, or None (with one line on stderr) if it did not come up: the
    rest of the system does not depend on it."""
    port = pick_port(port)
    who = ["--dev-account", str(dev_account)] if dev_account is not None else ["--payer", str(payer)]
    url = f"http://127.0.0.1:{port}"
    try:
        system._spawn("web", [sys.executable, "-m", "offchain.cli", "web", *who, "--rpc-url", system.rpc_url,
                              "--relayer-url", system.relayer_url, "--deployment", str(system.deployment_file),
                              "--state-dir", str(state_dir), "--port", str(port)], url, timeout=60)
    except Exception as exc:  # noqa: BLE001 - reported, never fatal
        print(f"   opg web did not start ({str(exc).splitlines()[0]}); see {system.state_dir}/web.log",
              file=sys.stderr)
        return None
    return url + "/"
