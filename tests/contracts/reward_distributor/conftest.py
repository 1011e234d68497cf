"""RewardDistributor v2: the fee split of settled vouchers, per-epoch verifier pools weighed by NodeStaking's
heartbeat snapshots, claims, emissions finalised in order, wash trading, and timelocked governance.

Fees reach the distributor the real way: a payer deposits, signs a Voucher with eth-account, and the claim is
settled (EIP-2098 compact signature) through ``CreditEscrow.settle_batch``. Tests named ``test_attack_*`` perform
an attack and show it fails; the honest path sits next to each.

Shared fixtures of test_rewards_*.py.
"""

from __future__ import annotations

import pytest
from reward_distributor_kit import INFERENCE, OPG


@pytest.fixture
def funded(opg, distributor, treasury):
    """100,000 OPG in the emission reserve."""
    amount = 100_000 * OPG
    opg.approve(distributor, amount, sender=treasury)
    distributor.fund_emissions(amount, sender=treasury)
    return amount


@pytest.fixture
def node2(make_actor, register, params):
    actor = make_actor()
    register(actor, INFERENCE, params.min_inference_stake)
    return actor


@pytest.fixture(autouse=True)
def backed_node(request, opg, staking, treasury, params):
    """NodeStaking v3 (R10) pays a node at most its stake / `fraud_multiplier` per two dispute windows: the session
    node stakes enough to back the largest pay these tests settle (66,000 OPG)."""
    if "node" not in request.fixturenames:
        return
    node = request.getfixturevalue("node")
    top_up = 66_000 * OPG * params.fraud_multiplier
    opg.transfer(node.address, top_up, sender=treasury)
    opg.approve(staking, top_up, sender=node.account)
    staking.add_stake(top_up, sender=node.account)


@pytest.fixture
def weights(staking, distributor, verifiers) -> dict:
    """The session verifiers' weights in the current epoch (500, 1,000 and 1,500 OPG)."""
    epoch = distributor.epoch_now()
    out = {v.address: staking.weight_in(epoch, v.address) for v in verifiers}
    assert sorted(out.values()) == [500 * OPG, 1_000 * OPG, 1_500 * OPG]
    assert staking.total_weight_in(epoch) == 3_000 * OPG
    return out
