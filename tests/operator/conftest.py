"""Operator CLI fixtures: a private anvil + deployment per test module (the relayer where a module needs one):
``devnet`` and ``relayer`` from ``offchain.devkit.fixtures``."""

from __future__ import annotations

import pytest
from operator_kit import OperatorCli

from offchain.devkit.fixtures import devnet, relayer  # noqa: F401


@pytest.fixture(scope="module")
def cli(devnet) -> OperatorCli:  # noqa: F811 (the devnet fixture imported above)
    return OperatorCli(devnet)
