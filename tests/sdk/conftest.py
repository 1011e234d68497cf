"""SDK fixtures: a private anvil with the system deployed (one per test module)."""

from __future__ import annotations

import pytest

from offchain.devkit.devnet import Devnet


@pytest.fixture(scope="module")
def sdk_devnet(tmp_path_factory) -> Devnet:
    d = Devnet(tmp_path_factory.mktemp("sdk-devnet"))
    yield d
    d.close()
