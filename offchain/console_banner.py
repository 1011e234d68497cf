"""An IPython extension for ``make console``: shows the project's console banner (``ape_console_extras.py``: the
contracts bound, the OPG each holds, the helpers) when the console starts. Ape loads the extras lazily, at the first
name a command looks up, so without this the banner would appear only after the first command.

``make console`` loads it through ape's console plugins (``APE_CONSOLE_PLUGINS='["offchain.console_banner"]'``).
"""

from __future__ import annotations

from typing import Any


def load_ipython_extension(ipython: Any) -> None:
    """Look a bound name up once: ape's console namespace loads the extras (and prints their banner) on it."""
    try:
        ipython.user_ns["escrow"]
    except KeyError:  # nothing bound (no chain or no deployment): the extras printed why
        pass
