"""NodeStaking: connect and constructor."""

from __future__ import annotations

import ape
import pytest
from node_staking_kit import MAX_MIN_STAKE, NOT_OWNER, OPG, ZERO_ADDRESS


def constructor_args(opg, distributor_, evidence_, **changes) -> list:
    values = dict(
        token=opg, distributor=distributor_, evidence=evidence_, min_inf=OPG, min_ver=OPG, window=86_400,
        unbonding=2 * 86_400,
        warmup=86_400, eq=5_000, fraud=2_000, challenger=2_000, multiplier=10, quorum=6_667, delay=3 * 86_400,
    )
    values.update(changes)
    return list(values.values())


def test_connect_only_once(staking, deployer, escrow):
    with ape.reverts("NodeStaking: already connected"):
        staking.connect(escrow, sender=deployer)


def test_connect_by_non_owner_reverts(staking, node, escrow):
    with ape.reverts(NOT_OWNER):
        staking.connect(escrow, sender=node.account)


def test_connect_fresh_deployment_wires_escrow_once(project, opg, distributor, deployer, escrow, staking):
    fresh = project.NodeStaking.deploy(*constructor_args(opg, distributor, staking.evidence()), sender=deployer)
    assert fresh.escrow() == ZERO_ADDRESS
    with ape.reverts("NodeStaking: zero address"):
        fresh.connect(ZERO_ADDRESS, sender=deployer)
    tx = fresh.connect(escrow, sender=deployer)
    assert tx.decode_logs(fresh.Connected)[0].escrow == escrow.address
    with ape.reverts("NodeStaking: already connected"):
        fresh.connect(escrow, sender=deployer)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"unbonding": 86_400}, "NodeStaking: unbonding out of bounds"),
        ({"warmup": 3_600}, "NodeStaking: warmup out of bounds"),
        ({"quorum": 4_999}, "NodeStaking: fraud quorum out of bounds"),
        ({"min_inf": 0}, "NodeStaking: min stake out of bounds"),
        ({"min_ver": MAX_MIN_STAKE + 1}, "NodeStaking: min stake out of bounds"),
        ({"multiplier": 0}, "NodeStaking: multiplier out of bounds"),
        ({"delay": 3 * 86_400 - 1}, "timelock: delay below the floor"),
        ({"distributor": ZERO_ADDRESS}, "NodeStaking: zero address"),
        ({"token": ZERO_ADDRESS}, "NodeStaking: zero address"),
    ],
)
def test_constructor_enforces_parameter_bounds(project, opg, distributor, deployer, changes, message, staking):
    with ape.reverts(message):
        project.NodeStaking.deploy(*constructor_args(opg, distributor, staking.evidence(), **changes), sender=deployer)
