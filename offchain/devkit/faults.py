"""The crash plug-in of the fault tests, for any daemon (``OPG_<ROLE>_PLUGINS=offchain.devkit.faults``, see
``offchain/daemon/plugins.py``): the process exits hard (``os._exit(137)``: no cleanup, no flush, no atexit, as a
SIGKILL) at the step named by ``OPG_FAULT_STEP`` (an event of the daemon's hub: ``node/events.py``,
``verifier/events.py``, ``relayer/events.py``), the ``OPG_FAULT_AT``-th time it happens (default the first); with
``OPG_FAULT_KIND`` only events whose ``kind`` is that count (a recorded transaction's kind: ``flag``, ``batch``...).
``fault_env`` builds that environment for a daemon process."""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from offchain.daemon.plugins import plugins_env

FAULT_EXIT_CODE = 137
log = logging.getLogger("opg.faults")


def fault_env(role: str, step: str, at: int = 1, kind: str | None = None) -> dict[str, str]:
    """The environment that makes a ``role`` daemon exit hard at ``step`` (its ``at``-th time)."""
    env = {plugins_env(role): __name__, "OPG_FAULT_STEP": step, "OPG_FAULT_AT": str(at)}
    if kind is not None:
        env["OPG_FAULT_KIND"] = kind
    return env


def install(events: Any) -> None:
    step, at, kind = os.environ["OPG_FAULT_STEP"], int(os.environ.get("OPG_FAULT_AT", "1")), \
        os.environ.get("OPG_FAULT_KIND")
    signal = getattr(events, step, None)
    if signal is None or not hasattr(signal, "subscribe"):
        raise ValueError(f"OPG_FAULT_STEP={step!r}: no such event in {type(events).__name__}")
    seen, lock = [0], threading.Lock()

    def crash(value: Any) -> None:
        if kind is not None and getattr(value, "kind", None) != kind:
            return
        with lock:
            seen[0] += 1
            if seen[0] < at:
                return
        log.warning("faults: exiting hard at %s #%d (%s)", step, seen[0], str(value)[:200])
        logging.shutdown()
        os._exit(FAULT_EXIT_CODE)

    signal.subscribe(crash)
