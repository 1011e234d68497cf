"""ERC-1271 smart-wallet payers (TestWallet) in the CreditEscrow: funding, vouchers, session signers, withdrawals."""

from __future__ import annotations

import os

import ape
import pytest
from eth_account import Account
from eth_utils import keccak

from offchain.messages import Claim, Domain, ReceiveWithAuthorization, Voucher, merkle_root

OPG = 10**18
DEPOSIT = 500 * OPG
SETTLED, SKIP_STALE, SKIP_NODE_NOT_ACTIVE, SKIP_BAD_SIGNATURE, SKIP_INSUFFICIENT_BALANCE = range(5)
ROOT = merkle_root([keccak(text="wallet-receipt")])


def wallet_claim(key, domain, wallet, node, max_cumulative, total=None) -> tuple:
    sig = Voucher(payer=wallet, node=node, max_cumulative=max_cumulative).sign_with(key, domain)
    total = max_cumulative if total is None else total
    return Claim(payer=wallet, node=node, max_cumulative=max_cumulative, signature=sig, total=total).as_tuple()


def outcomes(escrow, tx) -> list[int]:
    out = []
    for log in tx.events:
        if log.contract_address == escrow.address and log.event_name == "ClaimSettled":
            out.append(SETTLED)
        elif log.contract_address == escrow.address and log.event_name == "ClaimSkipped":
            out.append(log.reason)
    return out


@pytest.fixture(scope="module", autouse=True)
def _session_fixtures_first(system, opg, escrow, params, deployer, make_actor, node, escrow_domain, chain_id):
    """Instantiate the session fixtures before this module's own (ape's snapshots need that order)."""


@pytest.fixture(scope="module")
def owner(make_actor):
    """The EOA owning the wallet (its key signs for the wallet)."""
    return make_actor()


@pytest.fixture(scope="module")
def relayer(make_actor):
    return make_actor(0)


@pytest.fixture(scope="module")
def wallet(project, deployer, owner):
    return project.TestWallet.deploy(owner.address, sender=deployer)


@pytest.fixture
def funded_wallet(wallet, owner, opg, escrow):
    """The wallet holds OPG and has DEPOSIT credits, deposited by its owner through deposit_for."""
    opg.transfer(wallet, 100 * OPG, sender=owner.account)
    opg.approve(escrow, DEPOSIT, sender=owner.account)
    escrow.deposit_for(wallet, DEPOSIT, sender=owner.account)
    return wallet


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


def test_wallet_voucher_settles(funded_wallet, escrow, escrow_domain, node, owner, relayer):
    voucher = wallet_claim(owner.key, escrow_domain, funded_wallet.address, node.address, 30 * OPG)
    assert escrow.is_valid_voucher(funded_wallet.address, node.address, 30 * OPG, voucher[3]) is True
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED]
    assert escrow.balance_of(funded_wallet.address) == DEPOSIT - 30 * OPG
    assert escrow.spent(funded_wallet.address, node.address) == 30 * OPG


def test_wallet_voucher_signed_by_stranger_is_skipped(funded_wallet, escrow, escrow_domain, node, relayer):
    voucher = wallet_claim(Account.create().key, escrow_domain, funded_wallet.address, node.address, 30 * OPG)
    assert escrow.is_valid_voucher(funded_wallet.address, node.address, 30 * OPG, voucher[3]) is False
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded_wallet.address) == DEPOSIT


def test_wallet_refusing_signatures_is_skipped(funded_wallet, escrow, escrow_domain, node, owner, relayer):
    voucher = wallet_claim(owner.key, escrow_domain, funded_wallet.address, node.address, 30 * OPG)
    funded_wallet.set_refuse_all(True, sender=owner.account)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded_wallet.address) == DEPOSIT


def test_wallet_owner_voucher_does_not_charge_the_owner_eoa(
    funded_wallet, escrow, escrow_domain, opg, node, owner, relayer
):
    # A voucher naming the wallet only charges the wallet; the owner's own credits are a separate channel.
    opg.approve(escrow, DEPOSIT, sender=owner.account)
    escrow.deposit(DEPOSIT, sender=owner.account)
    voucher = wallet_claim(owner.key, escrow_domain, funded_wallet.address, node.address, 30 * OPG)
    escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert escrow.balance_of(owner.address) == DEPOSIT
    assert escrow.spent(owner.address, node.address) == 0


def test_broke_wallet_is_skipped(funded_wallet, escrow, escrow_domain, node, owner, relayer):
    voucher = wallet_claim(owner.key, escrow_domain, funded_wallet.address, node.address, DEPOSIT + 1)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_INSUFFICIENT_BALANCE]


def test_wallet_session_signer_settles(funded_wallet, escrow, escrow_domain, node, owner, relayer, chain):
    session = Account.create()
    expiry = chain.pending_timestamp + 86_400
    funded_wallet.execute(escrow, escrow.authorize_signer.encode_input(session.address, expiry), sender=owner.account)
    assert escrow.signer_expiry(funded_wallet.address, session.address) == expiry
    voucher = wallet_claim(session.key, escrow_domain, funded_wallet.address, node.address, 20 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED]


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


def test_wallet_gasless_deposit_with_authorization(wallet, escrow, opg, owner, relayer, chain_id, chain):
    opg.transfer(wallet, 50 * OPG, sender=owner.account)
    nonce = os.urandom(32)
    valid_before = chain.pending_timestamp + 600
    auth = ReceiveWithAuthorization(
        owner=wallet.address, to=escrow.address, value=50 * OPG, valid_after=0, valid_before=valid_before, nonce=nonce
    )
    # The wallet's owner signs; the token asks the wallet (ERC-1271) whether that signature is its own.
    v, r, s = auth.sign_vrs(owner.key, Domain.token(chain_id, opg.address))
    escrow.deposit_with_authorization(
        wallet.address, 50 * OPG, 0, valid_before, nonce, v, r, s, sender=relayer.account
    )
    assert escrow.balance_of(wallet.address) == 50 * OPG
    assert opg.balanceOf(wallet.address) == 0
