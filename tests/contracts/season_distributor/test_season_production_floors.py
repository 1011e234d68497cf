"""SeasonDistributor's floors off the devnet, on titanoboa's chain (id 1: mainnet rules, not anvil's 31337).

On every chain but 31337 a season lasts at least 7 days, its earnings take at least 30 days to expire, and a
treasury change waits at least 7 days (the floor of ``modules/timelock.vy``), whatever the deployer asks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

boa = pytest.importorskip("boa")

CONTRACTS = Path(__file__).resolve().parents[3] / "contracts"
DAY = 86_400


@pytest.fixture(scope="module")
def deploy():
    assert boa.env.evm.patch.chain_id != 31_337
    opg = boa.load_partial(str(CONTRACTS / "OPG.vy")).deploy(boa.env.eoa)
    factory = boa.load_partial(str(CONTRACTS / "SeasonDistributor.vy"))

    def deploy(root_delay=DAY, expiry=4, season=30 * DAY, governance=7 * DAY):
        return factory.deploy(opg.address, boa.env.eoa, root_delay, expiry, season, governance)

    return deploy


def test_attack_short_seasons_refused_off_the_devnet(deploy):
    # the review's parameters (1-day root delay, K = 4) with seasons as short as the root delay: refused
    with boa.reverts("SeasonDistributor: season length below the floor"):
        deploy(season=DAY)
    with boa.reverts("SeasonDistributor: season length below the floor"):
        deploy(season=7 * DAY - 1)
    # 4 weekly seasons would expire earnings after 28 days: below the 30-day floor
    with boa.reverts("SeasonDistributor: season length below the floor"):
        deploy(season=7 * DAY, expiry=4)


def test_attack_quick_treasury_change_refused_off_the_devnet(deploy):
    with boa.reverts("timelock: delay below the floor"):
        deploy(governance=2 * DAY)  # above root delay + 1 day, below the 7-day floor


def test_production_parameters_deploy(deploy):
    monthly = deploy()
    assert monthly.min_season_length() == 30 * DAY and monthly.expiry_period() == 120 * DAY
    weekly = deploy(season=7 * DAY, expiry=5)
    assert weekly.expiry_period() == 35 * DAY and weekly.delay() == 7 * DAY
