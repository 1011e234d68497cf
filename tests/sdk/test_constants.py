"""The protocol constants mirrored in offchain code (``offchain/sdk/constants.py``) against the contracts: the public
getters of a real deployment on anvil, and the Vyper sources for the private ones."""

from __future__ import annotations

import re

from offchain.daemon.settings import DaemonSettings
from offchain.deployments import PROJECT_ROOT
from offchain.sdk import constants
from offchain.sdk.connect import connect


def _source_constant(contract: str, name: str) -> int:
    text = (PROJECT_ROOT / "contracts" / f"{contract}.vy").read_text()
    found = re.search(rf"^{name}: (?:public\()?constant\(\w+\)\)? = ([0-9_* ]+)", text, re.M)
    assert found, f"{contract}.{name} not found"
    return int(eval(found.group(1).replace("_", "")))  # noqa: S307 - integer literals from our own sources


def test_constants_match_the_contracts(sdk_devnet):
    c = connect(DaemonSettings(rpc_url=sdk_devnet.url, deployment=sdk_devnet.deployment_file),
                need_key=False).contracts
    stk, esc, dist = c.staking.functions, c.escrow.functions, c.distributor.functions
    assert constants.MAX_FUTURE == stk.MAX_FUTURE().call()
    assert constants.FUTURE_MARGIN < constants.MAX_FUTURE
    assert (constants.ROLE_INFERENCE, constants.ROLE_VERIFIER) == (stk.ROLE_INFERENCE().call(),
                                                                   stk.ROLE_VERIFIER().call())
    assert constants.MAX_CLAIMS == esc.MAX_CLAIMS().call()
    assert constants.BPS == dist.BPS().call() == _source_constant("NodeStaking", "_BPS")
    # every claim outcome of the source has its constant and its reason (and the deployed getters agree)
    source = (PROJECT_ROOT / "contracts" / "CreditEscrow.vy").read_text()
    outcomes = {m[0]: int(m[1]) for m in re.findall(r"^(SETTLED|SKIP_\w+): public\(constant\(uint8\)\) = (\d+)",
                                                     source, re.M)}
    assert len(outcomes) >= 6 and sorted(outcomes.values()) == sorted(constants.SKIP_REASONS)
    for name, value in outcomes.items():
        assert getattr(constants, name) == value, name
        if any(f["type"] == "function" and f["name"] == name for f in c.escrow.contract.abi):
            assert getattr(esc, name)().call() == value, name
    assert constants.AMOUNT_BITS == _source_constant("CreditEscrow", "_AMOUNT_BITS")
    assert constants.ROLE_NONE == _source_constant("NodeStaking", "_ROLE_NONE")
    for kind, name in constants.SLASH_KINDS.items():
        assert _source_constant("NodeStaking", f"_KIND_{name.upper()}") == kind
        assert getattr(constants, f"KIND_{name.upper()}") == kind
    assert constants.MAX_ENDPOINT_LENGTH == _source_constant("NodeStaking", "_MAX_ENDPOINT_LENGTH")
    assert constants.MIN_GOVERNANCE_DELAY == dist.MIN_DELAY().call() == _source_constant("modules/timelock",
                                                                                          "MIN_DELAY")
