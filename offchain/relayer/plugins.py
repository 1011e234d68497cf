"""Plug-ins a test harness installs into a relayer process without a production setting: the environment variable
``OPG_RELAYER_PLUGINS`` names modules (comma-separated, importable from ``PYTHONPATH``) whose ``install(events)`` is
called with the relayer's event hub once it is built (e.g. tests/relayer/relayer_faults.py exits hard after a batch
is recorded as sent, to test crash recovery)."""

from __future__ import annotations

import importlib
import logging
import os

from .events import Events

log = logging.getLogger("opg.relayer.plugins")
ENV = "OPG_RELAYER_PLUGINS"


def install_plugins(events: Events, names: str | None = None) -> list[str]:
    """Import and install each plug-in named (default: ``$OPG_RELAYER_PLUGINS``); returns their names."""
    wanted = [n.strip() for n in (os.environ.get(ENV, "") if names is None else names).split(",") if n.strip()]
    for name in wanted:
        importlib.import_module(name).install(events)
        log.warning("plug-in %s installed (%s)", name, ENV)
    return wanted
