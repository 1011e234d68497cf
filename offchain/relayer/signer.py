"""The relayer's transaction key (see ``offchain.daemon.keys``)."""

from __future__ import annotations

from ..daemon.keys import load_account

__all__ = ["load_account"]
