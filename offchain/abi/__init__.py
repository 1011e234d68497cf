"""The protocol contracts' ABIs, committed as ``<Name>.json`` beside this file: all a daemon needs to talk to the
contracts (no compiler at run time). ``opg abi`` regenerates them from ``contracts/`` (``offchain.devkit.compiler``)
and ``tests/devkit/test_abi_export.py`` checks they match the sources."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

ABI_DIR = Path(__file__).resolve().parent
CONTRACTS = ("OPG", "CreditEscrow", "NodeStaking", "Evidence", "RewardDistributor", "SeasonDistributor")


@cache
def abi(name: str) -> list:
    """The committed ABI of protocol contract ``name``."""
    path = ABI_DIR / f"{name}.json"
    if not path.exists():
        raise KeyError(f"no committed ABI for {name!r} (offchain/abi/{name}.json): run `opg abi`")
    return json.loads(path.read_text())
