"""R1 and R2 (issue 13): credits a node was promised cannot be spent elsewhere first.

Only a facilitator (the relayer whose ``/verify`` promised the credits) settles at once. Anyone else proposes a batch
(``propose_batch``, ``BatchProposed`` carries its claims), waits ``claim_delay`` and settles exactly that batch
before it expires (one more claim delay). During the delay the facilitator settles every claim it accepted for those
payers, so the colluding claims are skipped for the balance (R1) or the session key's allowance (R2) they no longer
have. Tests named ``test_attack_*`` perform an attack and show it fails; the others are the honest paths.
"""

from __future__ import annotations

import ape
import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak

from offchain.messages import Claim, Voucher, merkle_root

OPG = 10**18
ZERO = "0x0000000000000000000000000000000000000000"
ROOT = merkle_root([keccak(text=f"priority-receipt-{i}") for i in range(2)])
SETTLED, SKIP_STALE, SKIP_INSUFFICIENT_BALANCE, SKIP_ALLOWANCE_EXCEEDED = 0, 1, 4, 5


def claim(key: str, domain, payer: str, node: str, total: int, cap: int | None = None) -> tuple:
    cap = total if cap is None else cap
    signature = Voucher(payer=payer, node=node, max_cumulative=cap).sign_with(key, domain)
    return Claim(payer=payer, node=node, max_cumulative=cap, signature=signature, total=total).as_tuple()


def skipped(escrow, tx) -> list[tuple[str, int]]:
    return [(e.node, e.reason) for e in escrow.ClaimSkipped.from_receipt(tx)]


def wait_until(chain, timestamp: int) -> None:
    chain.pending_timestamp = timestamp
    chain.mine()


def queue_call(escrow, owner, signature: str, types: list[str], values: list) -> int:
    tx = escrow.queue_change(keccak(text=signature)[:4] + encode(types, values), sender=owner)
    return escrow.ChangeQueued.from_receipt(tx)[0].eta


# The node's extra stake (R10) comes from conftest.py, run after this module's session fixtures.
pytestmark = pytest.mark.usefixtures("_node_stake_backs_the_pay")


@pytest.fixture(scope="module", autouse=True)
def _session_fixtures_first(system, opg, escrow, staking, params, deployer, make_actor, payer, node, escrow_domain):
    """Instantiate the session fixtures before this module's own (ape's snapshots need that order)."""


@pytest.fixture(scope="module")
def colluder(make_actor, register):
    """An inference node the payer controls, with stake enough to be paid the payer's whole balance (R10)."""
    actor = make_actor(200_000 * OPG)
    register(actor, 1, 100_000 * OPG, "http://colluder.invalid")
    return actor


@pytest.fixture(scope="module")
def node_b(make_actor, register, params):
    actor = make_actor()
    register(actor, 1, params.min_inference_stake, "http://node-b.invalid")
    return actor


@pytest.fixture
def funded(opg, escrow, make_actor):
    """A payer with exactly 1,000 OPG of credits."""
    actor = make_actor()
    opg.approve(escrow, 1_000 * OPG, sender=actor.account)
    escrow.deposit(1_000 * OPG, sender=actor.account)
    return actor


# ---- R1: the double spend of shared credits --------------------------------------------------------------------


def test_attack_payer_settling_its_credits_to_its_own_node_first_cannot_skip_the_promised_claim(
    chain, escrow, escrow_domain, funded, node, colluder, facilitator
):
    """The honest node served 1,000 OPG against credits /verify said were available; the payer then tries to
    settle its whole balance to a node it controls before the relayer's batch."""
    promised = claim(funded.key, escrow_domain, funded.address, node.address, 1_000 * OPG)
    drain = [claim(funded.key, escrow_domain, funded.address, colluder.address, 1_000 * OPG)]
    with ape.reverts("CreditEscrow: batch not proposed"):  # no instant path for anyone but a facilitator
        escrow.settle_batch(drain, ROOT, sender=colluder.account)
    with ape.reverts("CreditEscrow: batch not proposed"):
        escrow.settle_batch(drain, ROOT, sender=funded.account)
    tx = escrow.propose_batch(drain, ROOT, sender=colluder.account)
    [event] = escrow.BatchProposed.from_receipt(tx)
    assert event.proposer == colluder.address and event.receipts_root == ROOT
    assert [(c[0].lower(), c[1].lower(), c[5]) for c in event.claims] == [
        (funded.address.lower(), colluder.address.lower(), 1_000 * OPG)
    ]
    assert event.due_at == tx.timestamp + escrow.claim_delay() and event.expires_at == event.due_at + escrow.claim_delay()
    with ape.reverts("CreditEscrow: proposal not due"):
        escrow.settle_batch(drain, ROOT, sender=colluder.account)
    # The relayer sees BatchProposed and settles what it promised for that payer within the delay.
    escrow.settle_batch([promised], ROOT, sender=facilitator)
    wait_until(chain, event.due_at)
    tx = escrow.settle_batch(drain, ROOT, sender=colluder.account)
    assert list(tx.return_value) == [SKIP_INSUFFICIENT_BALANCE]
    assert escrow.spent(funded.address, node.address) == 1_000 * OPG  # the honest node is paid in full
    assert escrow.spent(funded.address, colluder.address) == 0
    assert escrow.balance_of(funded.address) == 0


def test_facilitator_settles_at_once_without_a_proposal(escrow, escrow_domain, funded, node, facilitator):
    assert escrow.is_facilitator(facilitator.address)
    tx = escrow.settle_batch([claim(funded.key, escrow_domain, funded.address, node.address, 5 * OPG)], ROOT,
                             sender=facilitator)
    assert list(tx.return_value) == [SETTLED]
    assert not escrow.BatchProposed.from_receipt(tx)


def test_node_settles_its_own_vouchers_after_the_claim_delay_without_the_facilitator(
    chain, escrow, escrow_domain, funded, node
):
    """The relayer is down: the node proposes its claims, waits the claim delay and settles them itself."""
    claims = [claim(funded.key, escrow_domain, funded.address, node.address, 40 * OPG)]
    tx = escrow.propose_batch(claims, ROOT, sender=node.account)
    proposal_id = tx.return_value
    assert proposal_id == escrow.proposal_id(claims, ROOT)
    due, expires = escrow.proposal_of(proposal_id)
    assert due == tx.timestamp + escrow.claim_delay() and expires == due + escrow.claim_delay()
    wait_until(chain, due)
    tx = escrow.settle_batch(claims, ROOT, sender=node.account)
    assert list(tx.return_value) == [SETTLED]
    assert escrow.spent(funded.address, node.address) == 40 * OPG
    assert escrow.proposal_of(proposal_id) == (0, 0)  # used up


def test_proposed_batch_settles_in_the_last_second_before_it_expires(chain, escrow, escrow_domain, funded, node):
    claims = [claim(funded.key, escrow_domain, funded.address, node.address, 3 * OPG)]
    due, expires = escrow.proposal_of(escrow.propose_batch(claims, ROOT, sender=node.account).return_value)
    chain.pending_timestamp = expires - 1
    assert list(escrow.settle_batch(claims, ROOT, sender=node.account).return_value) == [SETTLED]


def test_attack_proposal_cannot_be_kept_as_a_standing_instant_exit(chain, escrow, escrow_domain, funded, colluder):
    """A proposal made long in advance would let the payer drain at a moment of its choosing: it expires one claim
    delay after it is due, and a live one cannot be renewed."""
    drain = [claim(funded.key, escrow_domain, funded.address, colluder.address, 1_000 * OPG)]
    due, expires = escrow.proposal_of(escrow.propose_batch(drain, ROOT, sender=colluder.account).return_value)
    with ape.reverts("CreditEscrow: batch already proposed"):
        escrow.propose_batch(drain, ROOT, sender=funded.account)
    wait_until(chain, expires)
    with ape.reverts("CreditEscrow: proposal expired"):
        escrow.settle_batch(drain, ROOT, sender=colluder.account)
    # Proposing again starts a new delay, announced again (the relayer settles its claims for the payer again).
    tx = escrow.propose_batch(drain, ROOT, sender=colluder.account)
    assert escrow.BatchProposed.from_receipt(tx)[0].due_at == tx.timestamp + escrow.claim_delay()
    with ape.reverts("CreditEscrow: proposal not due"):
        escrow.settle_batch(drain, ROOT, sender=colluder.account)


def test_attack_proposal_of_one_batch_cannot_settle_another(chain, escrow, escrow_domain, funded, node, colluder):
    """The proposal covers exactly its claims and root: an announced small claim cannot carry an unannounced one."""
    small = [claim(funded.key, escrow_domain, funded.address, colluder.address, 1 * OPG)]
    due, _ = escrow.proposal_of(escrow.propose_batch(small, ROOT, sender=colluder.account).return_value)
    wait_until(chain, due)
    bigger = [claim(funded.key, escrow_domain, funded.address, colluder.address, 1_000 * OPG)]
    with ape.reverts("CreditEscrow: batch not proposed"):
        escrow.settle_batch(bigger, ROOT, sender=colluder.account)
    with ape.reverts("CreditEscrow: batch not proposed"):
        escrow.settle_batch(small + bigger, ROOT, sender=colluder.account)
    with ape.reverts("CreditEscrow: batch not proposed"):
        escrow.settle_batch(small, b"\x01" * 32, sender=colluder.account)
    assert list(escrow.settle_batch(small, ROOT, sender=colluder.account).return_value) == [SETTLED]
    with ape.reverts("CreditEscrow: batch not proposed"):  # once
        escrow.settle_batch(small, ROOT, sender=colluder.account)


def test_empty_proposal_reverts(escrow, node):
    with ape.reverts("CreditEscrow: empty batch"):
        escrow.propose_batch([], ROOT, sender=node.account)


# ---- R2: settlement order and a session key's allowance ------------------------------------------------------


def test_attack_payer_settling_another_channels_session_voucher_first_cannot_skip_the_promised_one(
    chain, escrow, escrow_domain, funded, node, node_b, facilitator
):
    """A session key with a 100 OPG allowance. The relayer accepted, on channel A, a payer-signed voucher for 50 and
    the key's voucher for 90 (40 reserved on the key) and, on channel B, the key's voucher for 60 (60 reserved):
    100 in all. The payer then settles channel A's session voucher alone (charging the key 90), which would leave
    10 for B (reason 5). With the priority path it must propose; the relayer's batch (A payer-signed first, then
    A and B by the key) settles in the delay and the payer's claim comes too late (stale)."""
    key = Account.create()
    now = chain.pending_timestamp
    escrow.authorize_signer(key.address, now + 30 * 86_400, 100 * OPG, sender=funded.account)
    session_key = "0x" + bytes(key.key).hex()
    a_payer = claim(funded.key, escrow_domain, funded.address, node.address, 50 * OPG)
    a_session = claim(session_key, escrow_domain, funded.address, node.address, 90 * OPG)
    b_session = claim(session_key, escrow_domain, funded.address, node_b.address, 60 * OPG)
    with ape.reverts("CreditEscrow: batch not proposed"):
        escrow.settle_batch([a_session], ROOT, sender=funded.account)
    due, _ = escrow.proposal_of(escrow.propose_batch([a_session], ROOT, sender=funded.account).return_value)
    relayer_batch = sorted([a_payer, a_session, b_session], key=lambda c: (c[1].lower(), c[1] == node.address and
                                                                            c[5] == 90 * OPG))
    tx = escrow.settle_batch(relayer_batch, ROOT, sender=facilitator)
    assert list(tx.return_value) == [SETTLED, SETTLED, SETTLED]
    assert escrow.signer_of(funded.address, key.address)[1] == 0  # 40 + 60
    wait_until(chain, due)
    assert list(escrow.settle_batch([a_session], ROOT, sender=funded.account).return_value) == [SKIP_STALE]
    assert escrow.spent(funded.address, node.address) == 90 * OPG
    assert escrow.spent(funded.address, node_b.address) == 60 * OPG  # B paid in full
    assert escrow.balance_of(funded.address) == 850 * OPG


def test_without_the_relayers_batch_the_session_key_pays_only_its_allowance(
    chain, escrow, escrow_domain, funded, node, node_b
):
    """The allowance stays the cap whoever settles: a proposal settling two channels by the key beyond it skips the
    claim that does not fit (reason 5), never pays past the allowance."""
    key = Account.create()
    escrow.authorize_signer(key.address, chain.pending_timestamp + 30 * 86_400, 100 * OPG, sender=funded.account)
    session_key = "0x" + bytes(key.key).hex()
    claims = sorted([claim(session_key, escrow_domain, funded.address, node.address, 90 * OPG),
                     claim(session_key, escrow_domain, funded.address, node_b.address, 60 * OPG)],
                    key=lambda c: c[1].lower())
    due, _ = escrow.proposal_of(escrow.propose_batch(claims, ROOT, sender=node.account).return_value)
    wait_until(chain, due)
    tx = escrow.settle_batch(claims, ROOT, sender=node.account)
    assert list(tx.return_value) == [SETTLED, SKIP_ALLOWANCE_EXCEEDED]
    assert escrow.signer_of(funded.address, key.address)[1] == 100 * OPG - int(claims[0][5])


# ---- parameters -----------------------------------------------------------------------------------------------


def test_claim_delay_starts_at_an_eighth_of_the_thaw_period(escrow, params):
    assert escrow.claim_delay() == params.thaw_period // 8
    assert 4 * escrow.claim_delay() <= escrow.thaw_period()


def test_attack_owner_cannot_add_a_facilitator_without_the_queue(escrow, deployer, colluder):
    with ape.reverts("timelock: change not queued"):
        escrow.set_facilitator(colluder.address, True, sender=deployer)
    with ape.reverts():  # ownable: only the owner queues
        escrow.queue_change(keccak(text="set_facilitator(address,bool)")[:4]
                            + encode(["address", "bool"], [colluder.address, True]), sender=colluder.account)


def test_facilitator_added_through_the_queue_settles_at_once_and_removed_proposes_again(
    chain, escrow, escrow_domain, deployer, funded, node, node_b
):
    eta = queue_call(escrow, deployer, "set_facilitator(address,bool)", ["address", "bool"], [node_b.address, True])
    with ape.reverts("timelock: change not due"):
        escrow.set_facilitator(node_b.address, True, sender=node_b.account)
    chain.pending_timestamp = eta
    tx = escrow.set_facilitator(node_b.address, True, sender=node_b.account)  # anyone executes a due change
    assert escrow.FacilitatorUpdated.from_receipt(tx)[0].enabled
    claims = [claim(funded.key, escrow_domain, funded.address, node.address, 2 * OPG)]
    assert list(escrow.settle_batch(claims, ROOT, sender=node_b.account).return_value) == [SETTLED]
    eta = queue_call(escrow, deployer, "set_facilitator(address,bool)", ["address", "bool"], [node_b.address, False])
    chain.pending_timestamp = eta
    escrow.set_facilitator(node_b.address, False, sender=deployer)
    with ape.reverts("CreditEscrow: batch not proposed"):
        escrow.settle_batch([claim(funded.key, escrow_domain, funded.address, node.address, 3 * OPG)], ROOT,
                            sender=node_b.account)


@pytest.mark.parametrize("value", [4, 901])
def test_claim_delay_out_of_bounds_reverts(chain, escrow, deployer, value):
    """Bounds: 5 s .. a quarter of the thaw period (3,600 s in the tests)."""
    chain.pending_timestamp = queue_call(escrow, deployer, "set_claim_delay(uint256)", ["uint256"], [value])
    with ape.reverts("CreditEscrow: claim delay out of bounds"):
        escrow.set_claim_delay(value, sender=deployer)


def test_claim_delay_of_a_quarter_of_the_thaw_period_applies_to_later_proposals(
    chain, escrow, escrow_domain, deployer, funded, node
):
    chain.pending_timestamp = queue_call(escrow, deployer, "set_claim_delay(uint256)", ["uint256"], [900])
    assert escrow.ClaimDelayUpdated.from_receipt(escrow.set_claim_delay(900, sender=deployer))[0].claim_delay == 900
    tx = escrow.propose_batch([claim(funded.key, escrow_domain, funded.address, node.address, OPG)], ROOT,
                              sender=node.account)
    assert escrow.BatchProposed.from_receipt(tx)[0].due_at == tx.timestamp + 900


def test_lowering_the_thaw_period_lowers_the_claim_delay_to_a_quarter_of_it(chain, escrow, deployer):
    """A node settling its own vouchers must be done well within a thaw (a payer's withdrawal)."""
    low = 4 * escrow.claim_delay() - 1
    chain.pending_timestamp = queue_call(escrow, deployer, "set_thaw_period(uint256)", ["uint256"], [low])
    tx = escrow.set_thaw_period(low, sender=deployer)
    assert escrow.ClaimDelayUpdated.from_receipt(tx)[0].claim_delay == low // 4 == escrow.claim_delay()


def test_constructor_without_a_facilitator_reverts(project, deployer, opg, staking, distributor, params):
    with ape.reverts("CreditEscrow: no facilitator"):
        project.CreditEscrow.deploy(opg, staking, distributor, 3_600, params.delay, [], sender=deployer)


def test_constructor_zero_facilitator_reverts(project, deployer, opg, staking, distributor, params):
    with ape.reverts("CreditEscrow: facilitator is the zero address"):
        project.CreditEscrow.deploy(opg, staking, distributor, 3_600, params.delay, [ZERO], sender=deployer)
