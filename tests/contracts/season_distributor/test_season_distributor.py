"""SeasonDistributor: the cumulative root's lifecycle (proposed, revocable during its delay, accepted by anyone),
claims by anyone for any account, multi-season cumulative claims, funding checks, expiry into a surplus.

Roots and proofs come from ``offchain.seasons.merkle``, the tree the operator's ``opg season build`` publishes, so
these tests also show the off-chain tree and snekmate's on-chain verification agree. Tests named ``test_attack_*``
perform an attack and show it fails.
"""

from __future__ import annotations

import ape
import pytest
from eth_utils import keccak

from offchain.seasons.merkle import MerkleTree, leaf_hash

OPG = 10**18
DELAY = 3_600
EXPIRY = 2
SEASON = 4 * DELAY  # min_season_length (the devnet allows any length >= the root delay)
GOVERNANCE = DELAY + 86_400  # the treasury's timelock: the least the contract allows
TABLE = keccak(b"table")


class Actor:
    def __init__(self, account):
        self.account = account
        self.address = account.address


@pytest.fixture(scope="module")
def opg(project, deployer, treasury):
    # the OPG token alone (the distributor needs nothing else of the system): its supply goes to the treasury
    return project.OPG.deploy(treasury.address, sender=deployer)


@pytest.fixture(scope="module")
def seasons(project, deployer, opg, treasury):
    return project.SeasonDistributor.deploy(opg, treasury.address, DELAY, EXPIRY, SEASON, GOVERNANCE, sender=deployer)


def new_actor(accounts):
    account = accounts.generate_test_account()
    accounts[0].transfer(account, 10**19)
    return Actor(account)


@pytest.fixture(scope="module")
def alice(accounts):
    return new_actor(accounts)


@pytest.fixture(scope="module")
def bob(accounts):
    return new_actor(accounts)


@pytest.fixture(scope="module")
def carol(accounts):
    return new_actor(accounts)


def fund(opg, seasons, treasury, amount):
    opg.transfer(seasons, amount, sender=treasury)


def proof(tree, account):
    return [p for p in tree.proof(account.address)]


def publish(chain, seasons, deployer, amounts, season, accept=True):
    tree = MerkleTree.build({a.address: v for a, v in amounts.items()})
    seasons.propose_root(tree.root, sum(amounts.values()), season, TABLE, sender=deployer)
    if accept:
        chain.pending_timestamp += SEASON  # past the root delay and the previous season's minimum length
        chain.mine()
        seasons.accept_root(sender=deployer)
    return tree


# ---------------------------------------------------------------- leaves


def test_leaf_hash_matches_contract(seasons, alice):
    assert seasons.leaf(alice.address, 123 * OPG) == leaf_hash(alice.address, 123 * OPG)


# ---------------------------------------------------------------- root lifecycle


def test_claim_against_pending_root_reverts(chain, seasons, opg, deployer, treasury, alice):
    fund(opg, seasons, treasury, 10 * OPG)
    tree = publish(chain, seasons, deployer, {alice: 10 * OPG}, 1, accept=False)
    assert seasons.pending_root() == tree.root
    with ape.reverts("SeasonDistributor: no claimable root"):
        seasons.claim(alice.address, 10 * OPG, proof(tree, alice), sender=alice.account)
    with ape.reverts("SeasonDistributor: delay not over"):
        seasons.accept_root(sender=alice.account)


def test_revoke_inside_window(chain, seasons, opg, deployer, treasury, alice):
    fund(opg, seasons, treasury, 10 * OPG)
    tree = publish(chain, seasons, deployer, {alice: 10 * OPG}, 1, accept=False)
    with ape.reverts("ownable: caller is not the owner"):
        seasons.revoke_root(sender=alice.account)
    tx = seasons.revoke_root(sender=deployer)
    assert tx.events[0].root == tree.root
    assert seasons.pending_root() == b"\x00" * 32
    chain.pending_timestamp += DELAY
    chain.mine()
    with ape.reverts("SeasonDistributor: no pending root"):
        seasons.accept_root(sender=alice.account)
    with ape.reverts("SeasonDistributor: no claimable root"):
        seasons.claim(alice.address, 10 * OPG, proof(tree, alice), sender=alice.account)


def test_revoke_after_window_reverts_and_anyone_accepts(chain, seasons, opg, deployer, treasury, alice, bob):
    fund(opg, seasons, treasury, 10 * OPG)
    tree = publish(chain, seasons, deployer, {alice: 10 * OPG}, 1, accept=False)
    chain.pending_timestamp += DELAY
    chain.mine()
    with ape.reverts("SeasonDistributor: delay over"):
        seasons.revoke_root(sender=deployer)
    seasons.accept_root(sender=bob.account)
    assert seasons.root() == tree.root and seasons.season() == 1 and seasons.root_total() == 10 * OPG


def test_attack_non_owner_proposes_root(seasons, opg, treasury, alice):
    fund(opg, seasons, treasury, 10 * OPG)
    tree = MerkleTree.build({alice.address: 10 * OPG})
    with ape.reverts("ownable: caller is not the owner"):
        seasons.propose_root(tree.root, 10 * OPG, 1, TABLE, sender=alice.account)


def test_season_must_be_the_next_one(chain, seasons, opg, deployer, treasury, alice):
    fund(opg, seasons, treasury, 10 * OPG)
    publish(chain, seasons, deployer, {alice: 10 * OPG}, 1)
    tree = MerkleTree.build({alice.address: 10 * OPG})
    with ape.reverts("SeasonDistributor: not the next season"):
        seasons.propose_root(tree.root, 10 * OPG, 1, TABLE, sender=deployer)
    seasons.propose_root(tree.root, 10 * OPG, 2, TABLE, sender=deployer)


def test_attack_owner_skips_seasons_to_expire_unclaimed_earnings(chain, seasons, opg, deployer, treasury, alice):
    # K = 2: jumping from season 1 to season 3 would make alice's season-1 earnings expirable at once
    fund(opg, seasons, treasury, 10 * OPG)
    publish(chain, seasons, deployer, {alice: 10 * OPG}, 1)
    tree = MerkleTree.build({alice.address: 10 * OPG})
    with ape.reverts("SeasonDistributor: not the next season"):
        seasons.propose_root(tree.root, 10 * OPG, 1 + EXPIRY, TABLE, sender=deployer)


# ---------------------------------------------------------------- claims


def test_anyone_claims_for_an_account_paid_to_it(chain, seasons, opg, deployer, treasury, alice, bob, carol):
    fund(opg, seasons, treasury, 30 * OPG)
    tree = publish(chain, seasons, deployer, {alice: 10 * OPG, bob: 20 * OPG}, 1)
    tx = seasons.claim(alice.address, 10 * OPG, proof(tree, alice), sender=carol.account)
    assert tx.return_value == 10 * OPG
    assert opg.balanceOf(alice.address) == 10 * OPG and opg.balanceOf(carol.address) == 0
    assert seasons.claimed(alice.address) == 10 * OPG


def test_double_claim_pays_zero(chain, seasons, opg, deployer, treasury, alice, bob):
    fund(opg, seasons, treasury, 30 * OPG)
    tree = publish(chain, seasons, deployer, {alice: 10 * OPG, bob: 20 * OPG}, 1)
    seasons.claim(alice.address, 10 * OPG, proof(tree, alice), sender=alice.account)
    tx = seasons.claim(alice.address, 10 * OPG, proof(tree, alice), sender=alice.account)
    assert tx.return_value == 0
    assert opg.balanceOf(alice.address) == 10 * OPG


def test_attack_claim_more_than_the_leaf(chain, seasons, opg, deployer, treasury, alice, bob):
    fund(opg, seasons, treasury, 30 * OPG)
    tree = publish(chain, seasons, deployer, {alice: 10 * OPG, bob: 20 * OPG}, 1)
    with ape.reverts("SeasonDistributor: invalid proof"):
        seasons.claim(alice.address, 20 * OPG, proof(tree, alice), sender=alice.account)
    with ape.reverts("SeasonDistributor: invalid proof"):  # bob's leaf for alice
        seasons.claim(alice.address, 20 * OPG, proof(tree, bob), sender=alice.account)


def test_multi_season_cumulative_claims_pay_exact_total(chain, seasons, opg, deployer, treasury, alice, bob):
    fund(opg, seasons, treasury, 13 * OPG)
    t1 = publish(chain, seasons, deployer, {alice: 3 * OPG, bob: 10 * OPG}, 1)
    seasons.claim(alice.address, 3 * OPG, proof(t1, alice), sender=alice.account)
    fund(opg, seasons, treasury, 10 * OPG)  # 23 owed in all, 3 paid, 10 held
    t2 = publish(chain, seasons, deployer, {alice: 8 * OPG, bob: 15 * OPG}, 2)
    fund(opg, seasons, treasury, 4 * OPG + 1)
    t3 = publish(chain, seasons, deployer, {alice: 12 * OPG + 1, bob: 15 * OPG}, 3)
    # alice claims season 2's leaf late (pays the difference to season 1), then season 3's
    assert seasons.claimable(alice.address, 12 * OPG + 1, proof(t3, alice)) == 9 * OPG + 1
    assert seasons.claim(bob.address, 15 * OPG, proof(t3, bob), sender=alice.account).return_value == 15 * OPG
    assert seasons.claim(alice.address, 12 * OPG + 1, proof(t3, alice), sender=alice.account).return_value == 9 * OPG + 1
    assert opg.balanceOf(alice.address) == 12 * OPG + 1 and opg.balanceOf(bob.address) == 15 * OPG
    assert opg.balanceOf(seasons) == 0 and seasons.outstanding() == 0
    # an old root's leaf pays nothing more
    with ape.reverts("SeasonDistributor: invalid proof"):
        seasons.claim(alice.address, 8 * OPG, proof(t2, alice), sender=alice.account)


# ---------------------------------------------------------------- funding


def test_underfunded_root_refused(chain, seasons, opg, deployer, treasury, alice, bob):
    fund(opg, seasons, treasury, 29 * OPG)
    tree = MerkleTree.build({alice.address: 10 * OPG, bob.address: 20 * OPG})
    with ape.reverts("SeasonDistributor: root not funded"):
        seasons.propose_root(tree.root, 30 * OPG, 1, TABLE, sender=deployer)
    fund(opg, seasons, treasury, OPG)
    seasons.propose_root(tree.root, 30 * OPG, 1, TABLE, sender=deployer)


def test_underfunded_root_refused_counts_what_was_paid(chain, seasons, opg, deployer, treasury, alice, bob):
    fund(opg, seasons, treasury, 30 * OPG)
    t1 = publish(chain, seasons, deployer, {alice: 10 * OPG, bob: 20 * OPG}, 1)
    seasons.claim(bob.address, 20 * OPG, proof(t1, bob), sender=bob.account)
    # season 2 adds 5 to alice: 35 total, 20 paid, 15 owed, 10 held
    t2 = MerkleTree.build({alice.address: 15 * OPG, bob.address: 20 * OPG})
    with ape.reverts("SeasonDistributor: root not funded"):
        seasons.propose_root(t2.root, 35 * OPG, 2, TABLE, sender=deployer)
    with ape.reverts("SeasonDistributor: total below what was paid"):
        seasons.propose_root(t2.root, 19 * OPG, 2, TABLE, sender=deployer)
    fund(opg, seasons, treasury, 5 * OPG)
    seasons.propose_root(t2.root, 35 * OPG, 2, TABLE, sender=deployer)


def test_attack_treasury_drains_funding_of_pending_root(chain, seasons, opg, deployer, treasury, alice):
    fund(opg, seasons, treasury, 10 * OPG)
    publish(chain, seasons, deployer, {alice: 10 * OPG}, 1, accept=False)
    assert seasons.surplus() == 0
    with ape.reverts("SeasonDistributor: amount exceeds surplus"):
        seasons.withdraw_surplus(OPG, sender=treasury)
    chain.pending_timestamp += DELAY
    chain.mine()
    seasons.accept_root(sender=alice.account)


# ---------------------------------------------------------------- expiry and surplus


def test_surplus_withdrawal_never_touches_unexpired_entitlements(chain, seasons, opg, deployer, treasury, alice, bob,
                                                                carol):
    # season 1: alice 10, bob 6; season 2: + alice 4, + carol 5; season 3: + bob 1 (K = 2: season 1 expires at 3)
    fund(opg, seasons, treasury, 16 * OPG + 7 * OPG)  # 7 OPG of excess funding
    t1 = publish(chain, seasons, deployer, {alice: 10 * OPG, bob: 6 * OPG}, 1)
    assert seasons.surplus() == 7 * OPG
    seasons.claim(bob.address, 6 * OPG, proof(t1, bob), sender=bob.account)
    fund(opg, seasons, treasury, 9 * OPG)  # season 2 owes 19 more than what was paid; 7 excess kept
    t2 = publish(chain, seasons, deployer, {alice: 14 * OPG, bob: 6 * OPG, carol: 5 * OPG}, 2)
    with ape.reverts("SeasonDistributor: season not expired"):
        seasons.expire(alice.address, 1, 10 * OPG, proof(t1, alice), sender=carol.account)
    fund(opg, seasons, treasury, OPG)
    t3 = publish(chain, seasons, deployer, {alice: 14 * OPG, bob: 7 * OPG, carol: 5 * OPG}, 3)
    owed = 14 * OPG + 1 * OPG + 5 * OPG
    assert seasons.outstanding() == owed and opg.balanceOf(seasons) == owed + 7 * OPG
    # the treasury takes the excess, not a wei more
    with ape.reverts("SeasonDistributor: amount exceeds surplus"):
        seasons.withdraw_surplus(7 * OPG + 1, sender=treasury)
    with ape.reverts("SeasonDistributor: caller is not the treasury"):
        seasons.withdraw_surplus(OPG, sender=alice.account)
    # alice's season-1 earnings (10) expire; her season-2 earnings (4) do not; carol's (season 2) do not
    assert seasons.expire(alice.address, 1, 10 * OPG, proof(t1, alice), sender=carol.account).return_value == 10 * OPG
    assert seasons.expire(bob.address, 1, 6 * OPG, proof(t1, bob), sender=carol.account).return_value == 0
    with ape.reverts("SeasonDistributor: season not expired"):
        seasons.expire(carol.address, 2, 5 * OPG, proof(t2, carol), sender=alice.account)
    assert seasons.surplus() == 17 * OPG
    seasons.withdraw_surplus(17 * OPG, sender=treasury)
    assert seasons.surplus() == 0
    # every unexpired entitlement is still paid in full
    assert seasons.claim(alice.address, 14 * OPG, proof(t3, alice), sender=bob.account).return_value == 4 * OPG
    assert seasons.claim(bob.address, 7 * OPG, proof(t3, bob), sender=bob.account).return_value == OPG
    assert seasons.claim(carol.address, 5 * OPG, proof(t3, carol), sender=bob.account).return_value == 5 * OPG
    assert opg.balanceOf(seasons) == 0 and seasons.outstanding() == 0


def test_attack_expire_with_a_forged_leaf(chain, seasons, opg, deployer, treasury, alice, bob):
    fund(opg, seasons, treasury, 16 * OPG)
    t1 = publish(chain, seasons, deployer, {alice: 10 * OPG, bob: 6 * OPG}, 1)
    publish(chain, seasons, deployer, {alice: 10 * OPG, bob: 6 * OPG}, 2)
    t3 = publish(chain, seasons, deployer, {alice: 10 * OPG, bob: 6 * OPG}, 3)
    with ape.reverts("SeasonDistributor: invalid proof"):
        seasons.expire(alice.address, 1, 16 * OPG, proof(t1, alice), sender=bob.account)
    with ape.reverts("SeasonDistributor: unknown season"):
        seasons.expire(alice.address, 0, 10 * OPG, proof(t1, alice), sender=bob.account)
    # a claim before anyone expires it still pays (expiry is what is left unclaimed)
    assert seasons.claim(alice.address, 10 * OPG, proof(t3, alice), sender=alice.account).return_value == 10 * OPG
    assert seasons.expire(alice.address, 1, 10 * OPG, proof(t1, alice), sender=bob.account).return_value == 0


def test_constructor_bounds(project, deployer, opg, treasury):
    def deploy(delay=DELAY, expiry=EXPIRY, season=SEASON, governance=GOVERNANCE):
        return project.SeasonDistributor.deploy(opg, treasury.address, delay, expiry, season, governance,
                                                sender=deployer)

    with ape.reverts("SeasonDistributor: root delay out of bounds"):
        deploy(delay=59)
    with ape.reverts("SeasonDistributor: expiry out of bounds"):
        deploy(expiry=0)
    with ape.reverts("SeasonDistributor: season length out of bounds"):
        deploy(season=DELAY - 1)  # seasons shorter than the root delay
    with ape.reverts("SeasonDistributor: season length out of bounds"):
        deploy(season=365 * 86_400 + 1)
    with ape.reverts("timelock: delay below the floor"):
        deploy(governance=DELAY + 86_399)  # the treasury change must wait longer than a root
    with ape.reverts("timelock: delay above 90 days"):
        deploy(governance=90 * 86_400 + 1)
    distributor = deploy(season=DELAY)  # the devnet (31337) floor: the root delay
    assert distributor.min_season_length() == DELAY and distributor.expiry_period() == EXPIRY * DELAY
    assert distributor.MIN_SEASON_LENGTH() == 7 * 86_400 and distributor.MIN_EXPIRY_PERIOD() == 30 * 86_400
