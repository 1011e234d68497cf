"""NodeStaking v2: registration (with the account's Registration signature), stake management, unbonding,
heartbeats and vote weights, activity, timelocked parameters (attacks 8 and 17), connect and ownership.

Slashing lives in ``test_slashing_*.py``; fees and emissions in ``tests/contracts/reward_distributor/``.

NodeStaking v2 slashing: equivocation, invalid receipts, fraud by stake-weighted live quorum, verifier
accountability (double vote, lazy, false accuser), flags and payer disputes, freshness, replay, and the attack tests
of issue 6 (each performs the attack and shows it fails, next to the honest path).

Every signature is made with eth-account through the ``offchain.messages`` models; digest agreement with the SDK
is shown by the contract accepting those signatures.

Shared fixtures of test_staking_*.py and test_slashing_*.py.
"""

from __future__ import annotations

import pytest
from node_staking_kit import OPG, VERIFIER, deposit_and_settle, make_receipt, sig


@pytest.fixture
def challenger(make_actor):
    return make_actor(0)


@pytest.fixture
def equivocation(node, payer, chain, staking_domain):
    """Two different receipts of ``node`` for the same request id, both signed."""
    ts = chain.pending_timestamp
    a = make_receipt(node, payer, chain, output="out-a", timestamp=ts)
    b = make_receipt(node, payer, chain, output="out-b", timestamp=ts)
    return a, sig(a, node.key, staking_domain), b, sig(b, node.key, staking_domain)


@pytest.fixture
def settled_receipt(opg, escrow, escrow_domain, payer, node, chain, staking_domain):
    """A receipt for 10 OPG (cumulative 10 OPG) whose voucher has been settled through the escrow."""
    receipt = make_receipt(node, payer, chain, amount=10 * OPG)
    deposit_and_settle(opg, escrow, escrow_domain, payer, node.address, 10 * OPG, deposit_amount=100 * OPG)
    assert escrow.spent(payer.address, node.address) == 10 * OPG
    return receipt, sig(receipt, node.key, staking_domain)


@pytest.fixture
def sybils(make_actor, register, params):
    out = []
    for _ in range(2):
        actor = make_actor()
        register(actor, VERIFIER, params.min_verifier_stake, "http://sybil.invalid")
        out.append(actor)
    return out
