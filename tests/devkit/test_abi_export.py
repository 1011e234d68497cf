"""The ABIs committed for the daemons are the ones the contracts compile to."""

import json

import pytest

from offchain.abi import ABI_DIR
from offchain.devkit.compiler import compiled


@pytest.mark.parametrize("name", ["OPG", "CreditEscrow", "NodeStaking", "RewardDistributor", "SeasonDistributor"])
def test_committed_abi_matches_contract_source(name):
    committed = json.loads((ABI_DIR / f"{name}.json").read_text())
    assert committed == compiled(name)["abi"], f"run `opg abi` to refresh offchain/abi/{name}.json"
