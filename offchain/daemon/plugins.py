"""Plug-ins a test harness installs into a daemon process without a production setting: the environment variable
``OPG_<ROLE>_PLUGINS`` (``OPG_RELAYER_PLUGINS``, ``OPG_NODE_PLUGINS``, ``OPG_VERIFIER_PLUGINS``) names modules
(comma-separated, importable from ``PYTHONPATH``) whose ``install(events)`` is called with the daemon's event hub
(``relayer/events.py``, ``node/events.py``, ``verifier/events.py``) once it is built. The fault tests' plug-ins
subscribe to a step and exit the process hard there (tests/relayer/relayer_faults.py after a batch is recorded as
sent; ``offchain.devkit.faults`` at any step named in ``OPG_FAULT_STEP``). Unset, nothing is imported and nothing
subscribes."""

from __future__ import annotations

import importlib
import logging
import os
from typing import Any

log = logging.getLogger("opg.plugins")


def plugins_env(role: str) -> str:
    """The environment variable naming ``role``'s plug-ins."""
    return f"OPG_{role.upper()}_PLUGINS"


def install_plugins(events: Any, role: str, names: str | None = None) -> list[str]:
    """Import and install each plug-in named (default: ``$OPG_<ROLE>_PLUGINS``) into ``events``; their names."""
    env = plugins_env(role)
    wanted = [n.strip() for n in (os.environ.get(env, "") if names is None else names).split(",") if n.strip()]
    for name in wanted:
        importlib.import_module(name).install(events)
        log.warning("plug-in %s installed (%s)", name, env)
    return wanted
