"""Contract-wallet payers (TestWallet) in the CreditEscrow v2: funding, paying through session keys, withdrawals.

The escrow accepts ECDSA voucher signatures only: a smart wallet pays through a session key it authorises, and
its ERC-1271 ``isValidSignature`` is never consulted, so it cannot repudiate a voucher after being served
(attack 5). The OPG token still accepts the wallet's ERC-1271 signatures for gasless deposits.
"""

from __future__ import annotations

import os

import ape
import pytest
from eth_account import Account
from eth_utils import keccak

from offchain.devkit.traces import called_addresses
from offchain.messages import Claim, Domain, ReceiveWithAuthorization, Voucher, merkle_root

OPG = 10**18
DAY = 86_400
DEPOSIT = 500 * OPG
ALLOWANCE = 200 * OPG
ZERO = "0x0000000000000000000000000000000000000000"
SETTLED, SKIP_STALE, SKIP_NODE_NOT_PAYABLE, SKIP_BAD_SIGNATURE, SKIP_INSUFFICIENT_BALANCE, SKIP_ALLOWANCE_EXCEEDED = (
    range(6)
)
ROOT = merkle_root([keccak(text="wallet-receipt")])


def wallet_claim(key, domain, wallet, node, max_cumulative, total=None) -> tuple:
    sig = Voucher(payer=wallet, node=node, max_cumulative=max_cumulative).sign_with(key, domain)
    total = max_cumulative if total is None else total
    return Claim(payer=wallet, node=node, max_cumulative=max_cumulative, signature=sig, total=total).as_tuple()


def outcomes(tx) -> list[int]:
    """Each claim's outcome, as `settle_batch` returned it."""
    return list(tx.return_value)


# The node's extra stake (R10) comes from conftest.py, run after this module's session fixtures.
pytestmark = pytest.mark.usefixtures("_node_stake_backs_the_pay")


@pytest.fixture(scope="module", autouse=True)
def _session_fixtures_first(system, opg, escrow, params, deployer, make_actor, node, escrow_domain, chain_id):
    """Instantiate the session fixtures before this module's own (ape's snapshots need that order)."""


@pytest.fixture(scope="module")
def owner(make_actor):
    """The EOA owning the wallet."""
    return make_actor()


@pytest.fixture(scope="module")
def wallet(project, deployer, owner):
    return project.TestWallet.deploy(owner.address, sender=deployer)


@pytest.fixture(scope="module")
def session():
    """The wallet's session key."""
    return Account.create()


@pytest.fixture
def funded_wallet(wallet, owner, opg, escrow):
    """The wallet holds OPG and has DEPOSIT credits, deposited by its owner through deposit_for."""
    opg.transfer(wallet, 100 * OPG, sender=owner.account)
    opg.approve(escrow, DEPOSIT, sender=owner.account)
    escrow.deposit_for(wallet, DEPOSIT, sender=owner.account)
    return wallet


def authorize(escrow, wallet, owner, signer: str, expiry: int, allowance: int = ALLOWANCE):
    """The wallet (through its owner's `execute`) authorises `signer`."""
    return wallet.execute(escrow, escrow.authorize_signer.encode_input(signer, expiry, allowance), sender=owner.account)


@pytest.fixture
def with_session(funded_wallet, escrow, owner, session, chain):
    """`funded_wallet` with `session` authorised for a day and ALLOWANCE."""
    authorize(escrow, funded_wallet, owner, session.address, chain.pending_timestamp + DAY)
    return funded_wallet


def test_wallet_accepts_only_its_owner_signature(wallet, owner):
    digest = os.urandom(32)
    good = Account.unsafe_sign_hash(digest, owner.key).signature
    bad = Account.unsafe_sign_hash(digest, Account.create().key).signature
    assert bytes(wallet.isValidSignature(digest, good)) == bytes.fromhex("1626ba7e")
    assert bytes(wallet.isValidSignature(digest, bad)) == bytes.fromhex("ffffffff")


def test_deposit_for_wallet_credits_the_wallet(funded_wallet, escrow, opg, owner):
    assert escrow.balance_of(funded_wallet.address) == DEPOSIT
    assert escrow.balance_of(owner.address) == 0
    assert opg.balanceOf(funded_wallet.address) == 100 * OPG


def test_wallet_deposits_its_own_tokens_through_execute(funded_wallet, escrow, opg, owner):
    funded_wallet.execute(opg, opg.approve.encode_input(escrow.address, 40 * OPG), sender=owner.account)
    funded_wallet.execute(escrow, escrow.deposit.encode_input(40 * OPG), sender=owner.account)
    assert escrow.balance_of(funded_wallet.address) == DEPOSIT + 40 * OPG
    assert opg.balanceOf(funded_wallet.address) == 60 * OPG


def test_wallet_authorizes_a_session_key_through_execute(funded_wallet, escrow, owner, session, chain):
    expiry = chain.pending_timestamp + DAY
    tx = authorize(escrow, funded_wallet, owner, session.address, expiry)
    [event] = escrow.SignerAuthorized.from_receipt(tx)
    assert (event.payer, event.signer, event.expiry, event.allowance) == (
        funded_wallet.address,
        session.address,
        expiry,
        ALLOWANCE,
    )
    assert escrow.signer_of(funded_wallet.address, session.address) == (expiry, ALLOWANCE)


def test_wallet_session_voucher_settles(with_session, escrow, escrow_domain, node, session, relayer):
    voucher = wallet_claim(session.key, escrow_domain, with_session.address, node.address, 30 * OPG)
    assert escrow.voucher_signer(with_session.address, node.address, 30 * OPG, voucher[3], voucher[4]) == (
        session.address
    )
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(tx) == [SETTLED]
    assert escrow.balance_of(with_session.address) == DEPOSIT - 30 * OPG
    assert escrow.spent(with_session.address, node.address) == 30 * OPG
    assert escrow.signer_of(with_session.address, session.address)[1] == ALLOWANCE - 30 * OPG


def test_attack_wallet_payer_cannot_repudiate_by_flipping_is_valid_signature(
    with_session, escrow, escrow_domain, node, owner, session, relayer, chain
):
    # Attack: served against a session voucher, the wallet makes isValidSignature refuse everything before settling.
    voucher = wallet_claim(session.key, escrow_domain, with_session.address, node.address, 30 * OPG)
    with_session.set_refuse_all(True, sender=owner.account)
    assert with_session.refuse_all() is True
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(tx) == [SETTLED]  # the wallet's ERC-1271 answer is never asked
    assert escrow.balance_of(with_session.address) == DEPOSIT - 30 * OPG
    # Settlement never calls the wallet at all: it appears nowhere in the call tree.
    called = called_addresses(chain, tx)
    assert escrow.staking().lower() in called and escrow.distributor().lower() in called  # the tree is real
    assert with_session.address.lower() not in called


def test_attack_owner_key_voucher_for_the_wallet_is_not_the_wallets_signature(
    funded_wallet, escrow, escrow_domain, node, owner, relayer
):
    # Attack (either way round): a voucher signed by the owner key for the wallet, which ERC-1271 would accept,
    # is not the wallet's own signature: settling it would let the wallet later claim it never authorised it.
    voucher = wallet_claim(owner.key, escrow_domain, funded_wallet.address, node.address, 30 * OPG)
    assert escrow.voucher_signer(funded_wallet.address, node.address, 30 * OPG, voucher[3], voucher[4]) == ZERO
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded_wallet.address) == DEPOSIT


def test_owner_key_voucher_settles_once_the_owner_key_is_an_authorised_session_key(
    funded_wallet, escrow, escrow_domain, node, owner, relayer, chain
):
    authorize(escrow, funded_wallet, owner, owner.address, chain.pending_timestamp + DAY)
    voucher = wallet_claim(owner.key, escrow_domain, funded_wallet.address, node.address, 30 * OPG)
    assert escrow.voucher_signer(funded_wallet.address, node.address, 30 * OPG, voucher[3], voucher[4]) == (
        owner.address
    )
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(tx) == [SETTLED]
    assert escrow.signer_of(funded_wallet.address, owner.address)[1] == ALLOWANCE - 30 * OPG


def test_wallet_session_key_is_capped_by_its_allowance(with_session, escrow, escrow_domain, node, session, relayer):
    voucher = wallet_claim(session.key, escrow_domain, with_session.address, node.address, ALLOWANCE + 1)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(tx) == [SKIP_ALLOWANCE_EXCEEDED]
    assert escrow.balance_of(with_session.address) == DEPOSIT


def test_wallet_voucher_signed_by_stranger_is_skipped(with_session, escrow, escrow_domain, node, relayer):
    voucher = wallet_claim(Account.create().key, escrow_domain, with_session.address, node.address, 30 * OPG)
    assert escrow.voucher_signer(with_session.address, node.address, 30 * OPG, voucher[3], voucher[4]) == ZERO
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(with_session.address) == DEPOSIT


def test_wallet_session_voucher_does_not_charge_the_owner_eoa(
    with_session, escrow, escrow_domain, opg, node, owner, session, relayer
):
    # A voucher naming the wallet only charges the wallet; the owner's own credits are a separate channel.
    opg.approve(escrow, DEPOSIT, sender=owner.account)
    escrow.deposit(DEPOSIT, sender=owner.account)
    voucher = wallet_claim(session.key, escrow_domain, with_session.address, node.address, 30 * OPG)
    escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert escrow.balance_of(owner.address) == DEPOSIT
    assert escrow.spent(owner.address, node.address) == 0
    assert escrow.balance_of(with_session.address) == DEPOSIT - 30 * OPG


def test_broke_wallet_is_skipped(with_session, escrow, escrow_domain, node, owner, session, relayer, chain):
    authorize(escrow, with_session, owner, session.address, chain.pending_timestamp + DAY, 10 * DEPOSIT)
    voucher = wallet_claim(session.key, escrow_domain, with_session.address, node.address, DEPOSIT + 1)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(tx) == [SKIP_INSUFFICIENT_BALANCE]


def test_wallet_withdraws_through_execute(funded_wallet, escrow, opg, owner, params, chain):
    start = chain.pending_timestamp + 1
    chain.pending_timestamp = start
    funded_wallet.execute(escrow, escrow.request_withdrawal.encode_input(DEPOSIT), sender=owner.account)
    chain.pending_timestamp = start + params.thaw_period - 1
    with ape.reverts("CreditEscrow: still thawing"):
        funded_wallet.execute(escrow, escrow.withdraw.encode_input(), sender=owner.account)
    chain.pending_timestamp = start + params.thaw_period
    funded_wallet.execute(escrow, escrow.withdraw.encode_input(), sender=owner.account)
    assert escrow.balance_of(funded_wallet.address) == 0
    assert opg.balanceOf(funded_wallet.address) == 100 * OPG + DEPOSIT


def test_wallet_standing_withdrawal_expires(funded_wallet, escrow, owner, params, chain):
    start = chain.pending_timestamp + 1
    chain.pending_timestamp = start
    funded_wallet.execute(escrow, escrow.request_withdrawal.encode_input(DEPOSIT), sender=owner.account)
    chain.pending_timestamp = start + 2 * params.thaw_period
    with ape.reverts("CreditEscrow: withdrawal request expired"):
        funded_wallet.execute(escrow, escrow.withdraw.encode_input(), sender=owner.account)


def test_wallet_execute_by_non_owner_reverts(funded_wallet, escrow, relayer):
    with ape.reverts("TestWallet: caller is not the owner"):
        funded_wallet.execute(escrow, escrow.request_withdrawal.encode_input(DEPOSIT), sender=relayer.account)


def test_wallet_gasless_deposit_with_authorization(wallet, escrow, opg, owner, relayer, chain_id, chain):
    opg.transfer(wallet, 50 * OPG, sender=owner.account)
    nonce = os.urandom(32)
    valid_before = chain.pending_timestamp + 600
    auth = ReceiveWithAuthorization(
        owner=wallet.address, to=escrow.address, value=50 * OPG, valid_after=0, valid_before=valid_before, nonce=nonce
    )
    # The wallet's owner signs; the token (not the escrow) asks the wallet (ERC-1271) whether that is its signature.
    v, r, s = auth.sign_vrs(owner.key, Domain.token(chain_id, opg.address))
    escrow.deposit_with_authorization(wallet.address, 50 * OPG, 0, valid_before, nonce, v, r, s, sender=relayer.account)
    assert escrow.balance_of(wallet.address) == 50 * OPG
    assert opg.balanceOf(wallet.address) == 0
