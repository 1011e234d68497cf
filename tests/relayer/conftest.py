"""Relayer end-to-end fixtures: a private anvil + deployment per test module and the relayer as a real subprocess
(``offchain.devkit.fixtures``). The kit itself lives in ``offchain/devkit/devnet.py`` (shared with the node,
verifier, client and demo tests)."""

from __future__ import annotations

from offchain.devkit.devnet import (  # noqa: F401  (re-exported for the relayer tests' ``from conftest import ...``)
    OPG,
    ROLE_INFERENCE,
    ROLE_VERIFIER,
    Actor,
    ChannelSim,
    Devnet,
    RelayerProc,
    camel,
    item,
    new_key,
    rand32,
    wait_until,
)
from offchain.devkit.fixtures import devnet, relayer  # noqa: F401
