"""SeasonDistributor: expiry is measured in time, not in how fast the owner publishes seasons.

The review's attack: the owner publishes K unchanged roots, one root delay apart, then anyone expires an account's
unclaimed season-1 earnings and a treasury the owner installs at once takes them. With production-like parameters
(root delay 1 day, K = 4, seasons at least 7 days, the treasury change behind a 7-day timelock) each step fails,
while the honest cadence still expires unclaimed earnings after K seasons of the real length. Tests named
``test_attack_*`` perform an attack and show it fails.
"""

from __future__ import annotations

import ape
import pytest
from eth_utils import keccak

from offchain.seasons.merkle import MerkleTree

OPG = 10**18
DAY = 86_400
ROOT_DELAY = DAY
EXPIRY = 4
SEASON = 7 * DAY  # min_season_length: the production floor
GOVERNANCE = 7 * DAY  # the treasury's timelock (the production floor of every contract)
TABLE = keccak(b"table")


@pytest.fixture(scope="module")
def opg(project, deployer, treasury):
    return project.OPG.deploy(treasury.address, sender=deployer)


@pytest.fixture(scope="module")
def seasons(project, deployer, opg, treasury):
    return project.SeasonDistributor.deploy(opg, treasury.address, ROOT_DELAY, EXPIRY, SEASON, GOVERNANCE,
                                            sender=deployer)


@pytest.fixture(scope="module")
def alice(accounts):
    return accounts.generate_test_account()


@pytest.fixture(scope="module")
def thief(accounts):
    account = accounts.generate_test_account()
    accounts[0].transfer(account, 10**19)
    return account


@pytest.fixture
def tree(seasons, opg, treasury, alice):
    """Alice earns 1,000 OPG in season 1 and never claims; the contract holds exactly that."""
    opg.transfer(seasons, 1_000 * OPG, sender=treasury)
    return MerkleTree.build({alice.address: 1_000 * OPG})


def advance(chain, seconds):
    chain.pending_timestamp += seconds
    chain.mine()


def proof(tree, account):
    return list(tree.proof(account.address))


def queue_treasury(seasons, deployer, new_treasury):
    call = seasons.set_treasury.encode_input(new_treasury)
    return seasons.queue_change(call, sender=deployer)


def test_attack_owner_expires_unclaimed_rewards_by_back_to_back_seasons(chain, seasons, opg, deployer, treasury,
                                                                        alice, thief, tree):
    start = chain.pending_timestamp
    seasons.propose_root(tree.root, 1_000 * OPG, 1, TABLE, sender=deployer)
    advance(chain, ROOT_DELAY)
    seasons.accept_root(sender=deployer)
    # the owner installs its own treasury at once: refused, a treasury change must be queued and wait its delay
    with ape.reverts("timelock: change not queued"):
        seasons.set_treasury(thief.address, sender=deployer)
    queue_treasury(seasons, deployer, thief.address)  # public (ChangeQueued) from now on
    # K more unchanged roots, one root delay apart: every acceptance of season 2 is refused (season 3 cannot
    # even be proposed before season 2 is accepted), so on day 5 season 1 is still the last season
    for _ in range(EXPIRY):
        seasons.propose_root(tree.root, 1_000 * OPG, 2, TABLE, sender=deployer)  # replaces the waiting proposal
        advance(chain, ROOT_DELAY)
        with ape.reverts("SeasonDistributor: season too short"):
            seasons.accept_root(sender=deployer)
        with ape.reverts("SeasonDistributor: not the next season"):
            seasons.propose_root(tree.root, 1_000 * OPG, 3, TABLE, sender=deployer)
    assert seasons.season() == 1 and seasons.next_season_at() == seasons.season_accepted_at(1) + SEASON
    assert (chain.pending_timestamp - start) // DAY == EXPIRY + 1
    # day 5: nothing of season 1 can expire, and the queued treasury change comes due only after 7 days
    with ape.reverts("SeasonDistributor: season not expired"):
        seasons.expire(alice.address, 1, 1_000 * OPG, proof(tree, alice), sender=thief)
    with ape.reverts("timelock: change not due"):
        seasons.set_treasury(thief.address, sender=thief)
    advance(chain, 3 * DAY)
    seasons.set_treasury(thief.address, sender=thief)  # the change is public for 7 days, then anyone executes it
    assert seasons.treasury() == thief.address
    with ape.reverts("SeasonDistributor: season not expired"):
        seasons.expire(alice.address, 1, 1_000 * OPG, proof(tree, alice), sender=thief)
    assert seasons.surplus() == 0
    with ape.reverts("SeasonDistributor: amount exceeds surplus"):
        seasons.withdraw_surplus(1_000 * OPG, sender=thief)
    # alice's entitlement is whole: she (or anyone for her) claims it
    assert seasons.claimable(alice.address, 1_000 * OPG, proof(tree, alice)) == 1_000 * OPG
    seasons.claim(alice.address, 1_000 * OPG, proof(tree, alice), sender=thief)
    assert opg.balanceOf(alice.address) == 1_000 * OPG and opg.balanceOf(thief.address) == 0


def test_attack_back_to_back_seasons_cannot_expire_before_the_expiry_period(chain, seasons, deployer, alice, thief,
                                                                            tree):
    # the owner publishes as fast as the contract lets it: K seasons of exactly the minimum length
    seasons.propose_root(tree.root, 1_000 * OPG, 1, TABLE, sender=deployer)
    advance(chain, ROOT_DELAY)
    seasons.accept_root(sender=deployer)
    accepted = seasons.season_accepted_at(1)
    for season in range(2, EXPIRY + 2):
        seasons.propose_root(tree.root, 1_000 * OPG, season, TABLE, sender=deployer)
        chain.pending_timestamp = seasons.next_season_at() - 1
        with ape.reverts("SeasonDistributor: season too short"):
            seasons.accept_root(sender=deployer)
        chain.pending_timestamp = seasons.next_season_at()
        seasons.accept_root(sender=deployer)
        if season <= EXPIRY:
            with ape.reverts("SeasonDistributor: season not expired"):
                seasons.expire(alice.address, 1, 1_000 * OPG, proof(tree, alice), sender=thief)
    assert seasons.season() == EXPIRY + 1
    assert seasons.expires_at(1) == accepted + EXPIRY * SEASON == accepted + seasons.expiry_period()
    assert seasons.expiry_period() == 28 * DAY  # K x the minimum season length
    assert seasons.season_accepted_at(EXPIRY + 1) >= seasons.expires_at(1)


def test_unclaimed_earnings_expire_after_the_real_duration(chain, seasons, opg, deployer, treasury, alice, thief,
                                                           tree):
    seasons.propose_root(tree.root, 1_000 * OPG, 1, TABLE, sender=deployer)
    advance(chain, ROOT_DELAY)
    seasons.accept_root(sender=deployer)
    expires = seasons.expires_at(1)
    for season in range(2, EXPIRY + 2):  # one season a week, as the operator closes them
        seasons.propose_root(tree.root, 1_000 * OPG, season, TABLE, sender=deployer)
        advance(chain, SEASON)
        if season <= EXPIRY:
            with ape.reverts("SeasonDistributor: season not expired"):
                seasons.expire(alice.address, 1, 1_000 * OPG, proof(tree, alice), sender=thief)
        seasons.accept_root(sender=deployer)
    assert chain.blocks.head.timestamp >= expires
    tx = seasons.expire(alice.address, 1, 1_000 * OPG, proof(tree, alice), sender=thief)
    assert tx.return_value == 1_000 * OPG
    assert seasons.claimable(alice.address, 1_000 * OPG, proof(tree, alice)) == 0
    seasons.withdraw_surplus(1_000 * OPG, sender=treasury)
    assert opg.balanceOf(seasons) == 0 and seasons.total_expired() == 1_000 * OPG


def test_treasury_changes_through_the_timelock(chain, seasons, opg, deployer, treasury, thief):
    with ape.reverts("ownable: caller is not the owner"):
        queue_treasury(seasons, thief, thief.address)
    tx = queue_treasury(seasons, deployer, thief.address)
    change = tx.events[0]
    assert change.eta == chain.blocks.head.timestamp + GOVERNANCE and seasons.delay() == GOVERNANCE
    # the owner may cancel while it waits
    seasons.cancel_change(change.id, sender=deployer)
    advance(chain, GOVERNANCE)
    with ape.reverts("timelock: change not queued"):
        seasons.set_treasury(thief.address, sender=deployer)
    queue_treasury(seasons, deployer, thief.address)
    advance(chain, GOVERNANCE)
    with ape.reverts("timelock: change not queued"):  # only the queued arguments execute
        seasons.set_treasury(deployer.address, sender=deployer)
    tx = seasons.set_treasury(thief.address, sender=treasury)
    assert seasons.treasury() == thief.address
    assert [e.event_name for e in tx.events] == ["ChangeExecuted", "TreasuryUpdated"]
    opg.transfer(seasons, 5 * OPG, sender=treasury)  # excess funding: no root owes it
    with ape.reverts("SeasonDistributor: caller is not the treasury"):
        seasons.withdraw_surplus(5 * OPG, sender=treasury)
    seasons.withdraw_surplus(5 * OPG, sender=thief)
