"""CreditEscrow: deposits, thawed withdrawals, session signers, voucher settlement, governance.

Vouchers are signed with ``offchain.messages`` (eth-account); EIP-3009 deposit authorisations are built here as
EIP-712 typed data and signed with eth-account too.
"""

from __future__ import annotations

import os

import ape
import pytest
from eth_account import Account
from eth_utils import keccak

from offchain.messages import Claim, Domain, ReceiveWithAuthorization, Voucher, merkle_root

OPG = 10**18
DEPOSIT = 1_000 * OPG
ZERO = "0x0000000000000000000000000000000000000000"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
BPS = 10_000

SETTLED, SKIP_STALE, SKIP_NODE_NOT_ACTIVE, SKIP_BAD_SIGNATURE, SKIP_INSUFFICIENT_BALANCE = range(5)
ROOT = merkle_root([keccak(text=f"receipt-{i}") for i in range(3)])

# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------


def sign_voucher(key, domain: Domain, payer: str, node: str, max_cumulative: int) -> str:
    return Voucher(payer=payer, node=node, max_cumulative=max_cumulative).sign_with(key, domain)


def claim(payer: str, node: str, max_cumulative: int, signature: str, total: int) -> tuple:
    return Claim(payer=payer, node=node, max_cumulative=max_cumulative, signature=signature, total=total).as_tuple()


def signed_claim(key, domain: Domain, payer: str, node: str, max_cumulative: int, total: int | None = None) -> tuple:
    sig = sign_voucher(key, domain, payer, node, max_cumulative)
    return claim(payer, node, max_cumulative, sig, max_cumulative if total is None else total)


def outcomes(escrow, tx) -> list[int]:
    """Each claim's outcome, read from the ClaimSettled / ClaimSkipped events in order."""
    out = []
    for log in tx.events:
        if log.contract_address != escrow.address:
            continue
        if log.event_name == "ClaimSettled":
            out.append(SETTLED)
        elif log.event_name == "ClaimSkipped":
            out.append(log.reason)
    return out


def high_s_twin(signature: str) -> str:
    raw = bytes.fromhex(signature[2:])
    s = SECP256K1_N - int.from_bytes(raw[32:64], "big")
    return "0x" + (raw[:32] + s.to_bytes(32, "big") + bytes([55 - raw[64]])).hex()


def sign_receive_authorization(key, chain_id, token, owner, to, value, valid_after, valid_before, nonce):
    auth = ReceiveWithAuthorization(
        owner=owner, to=to, value=value, valid_after=valid_after, valid_before=valid_before, nonce=nonce
    )
    return auth.sign_vrs(key, Domain.token(chain_id, token))


def fee_split(gross: int, params) -> tuple[int, int, int]:
    """(node share, protocol fee, verifier fee) as the RewardDistributor splits one node's gross."""
    protocol = (gross * params.protocol_fee_bps + BPS - 1) // BPS
    verifier = min(gross * params.verifier_fee_bps // BPS, gross - protocol)
    return gross - protocol - verifier, protocol, verifier


# ---------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _session_fixtures_first(
    system, opg, escrow, staking, distributor, params, deployer, treasury, make_actor, payer, node, escrow_domain
):
    """Instantiate the session fixtures before this module's own (ape's snapshots need that order)."""


@pytest.fixture(scope="module")
def relayer(make_actor):
    """Gas only; submits batches and gasless deposits."""
    return make_actor(0)


@pytest.fixture(scope="module")
def payer_b(make_actor):
    return make_actor()


@pytest.fixture(scope="module")
def node_b(make_actor, opg, staking, params):
    """A second registered inference node."""
    actor = make_actor()
    opg.approve(staking, params.min_inference_stake, sender=actor.account)
    staking.register(1, params.min_inference_stake, "http://node-b.invalid", sender=actor.account)
    return actor


@pytest.fixture(scope="module")
def verifier(make_actor, opg, staking, params):
    """A registered verifier (not an inference node)."""
    actor = make_actor()
    opg.approve(staking, params.min_verifier_stake, sender=actor.account)
    staking.register(2, params.min_verifier_stake, "http://verifier.invalid", sender=actor.account)
    return actor


@pytest.fixture(scope="module")
def stranger(make_actor):
    """Registered nowhere, holds OPG."""
    return make_actor()


@pytest.fixture(scope="module")
def session_key():
    return Account.create()


@pytest.fixture
def funded(payer, opg, escrow):
    """`payer` with DEPOSIT credits."""
    opg.approve(escrow, DEPOSIT, sender=payer.account)
    escrow.deposit(DEPOSIT, sender=payer.account)
    return payer


@pytest.fixture
def now(chain) -> int:
    return chain.pending_timestamp


# ---------------------------------------------------------------------------------------------------------------
# Construction and views
# ---------------------------------------------------------------------------------------------------------------


def test_constructor_wires_contracts_and_thaw_period(escrow, opg, staking, distributor, params, deployer):
    assert escrow.token() == opg.address
    assert escrow.staking() == staking.address
    assert escrow.distributor() == distributor.address
    assert escrow.thaw_period() == params.thaw_period
    assert escrow.owner() == deployer.address


def test_constructor_zero_token_reverts(project, deployer, staking, distributor):
    with ape.reverts("CreditEscrow: token is the zero address"):
        project.CreditEscrow.deploy(ZERO, staking, distributor, 3_600, sender=deployer)


def test_constructor_zero_staking_reverts(project, deployer, opg, distributor):
    with ape.reverts("CreditEscrow: staking is the zero address"):
        project.CreditEscrow.deploy(opg, ZERO, distributor, 3_600, sender=deployer)


def test_constructor_zero_distributor_reverts(project, deployer, opg, staking):
    with ape.reverts("CreditEscrow: distributor is the zero address"):
        project.CreditEscrow.deploy(opg, staking, ZERO, 3_600, sender=deployer)


def test_constructor_thaw_period_out_of_bounds_reverts(project, deployer, opg, staking, distributor):
    with ape.reverts("CreditEscrow: thaw period out of bounds"):
        project.CreditEscrow.deploy(opg, staking, distributor, 59, sender=deployer)


def test_eip712_domain_is_opg_credit_escrow_v1(escrow, chain_id):
    fields, name, version, cid, verifying_contract, salt, extensions = escrow.eip712Domain()
    assert bytes(fields) == b"\x0f"
    assert (name, version, cid, verifying_contract) == ("OPG Credit Escrow", "1", chain_id, escrow.address)
    assert bytes(salt) == b"\x00" * 32
    assert list(extensions) == []


def test_voucher_typehash_matches_offchain_type(escrow):
    assert bytes(escrow.VOUCHER_TYPEHASH()) == keccak(text="Voucher(address payer,address node,uint256 maxCumulative)")


@pytest.mark.parametrize("max_cumulative", [0, 1, 123 * OPG, 2**256 - 1])
def test_voucher_digest_agrees_with_offchain(escrow, escrow_domain, payer, node, max_cumulative):
    voucher = Voucher(payer=payer.address, node=node.address, max_cumulative=max_cumulative)
    assert bytes(escrow.voucher_digest(payer.address, node.address, max_cumulative)) == voucher.digest(escrow_domain)


def test_is_valid_voucher_agrees_with_offchain_signature(escrow, escrow_domain, payer, node, node_b):
    voucher = Voucher(payer=payer.address, node=node.address, max_cumulative=50 * OPG)
    sig = voucher.sign_with(payer.key, escrow_domain)
    assert voucher.signer_of(sig, escrow_domain) == payer.address
    raw = bytes.fromhex(sig[2:])
    assert escrow.is_valid_voucher(payer.address, node.address, 50 * OPG, raw) is True
    assert escrow.is_valid_voucher(payer.address, node.address, 51 * OPG, raw) is False
    assert escrow.is_valid_voucher(payer.address, node_b.address, 50 * OPG, raw) is False
    assert escrow.is_valid_voucher(node.address, node.address, 50 * OPG, raw) is False


def test_is_valid_voucher_refuses_malformed_signatures(escrow, escrow_domain, payer, node):
    sig = sign_voucher(payer.key, escrow_domain, payer.address, node.address, OPG)
    raw = bytes.fromhex(sig[2:])
    assert escrow.is_valid_voucher(payer.address, node.address, OPG, bytes.fromhex(high_s_twin(sig)[2:])) is False
    assert escrow.is_valid_voucher(payer.address, node.address, OPG, raw[:64] + bytes([raw[64] - 27])) is False
    assert escrow.is_valid_voucher(payer.address, node.address, OPG, raw[:64]) is False
    assert escrow.is_valid_voucher(payer.address, node.address, OPG, b"\x00" * 65) is False


def test_zero_payer_voucher_is_never_valid(escrow, node):
    assert escrow.is_valid_voucher(ZERO, node.address, OPG, b"\x00" * 65) is False


# ---------------------------------------------------------------------------------------------------------------
# Deposits
# ---------------------------------------------------------------------------------------------------------------


def test_deposit_credits_caller_and_pulls_tokens(escrow, opg, payer):
    before = opg.balanceOf(payer.address)
    opg.approve(escrow, 10 * OPG, sender=payer.account)
    tx = escrow.deposit(10 * OPG, sender=payer.account)
    assert escrow.balance_of(payer.address) == 10 * OPG
    assert opg.balanceOf(payer.address) == before - 10 * OPG
    assert opg.balanceOf(escrow.address) == 10 * OPG
    [event] = escrow.Deposited.from_receipt(tx)
    assert (event.payer, event.funder, event.amount, event.balance) == (
        payer.address,
        payer.address,
        10 * OPG,
        10 * OPG,
    )


def test_deposits_accumulate(escrow, opg, payer):
    opg.approve(escrow, 30 * OPG, sender=payer.account)
    escrow.deposit(10 * OPG, sender=payer.account)
    tx = escrow.deposit(20 * OPG, sender=payer.account)
    assert escrow.balance_of(payer.address) == 30 * OPG
    assert escrow.Deposited.from_receipt(tx)[0].balance == 30 * OPG


def test_deposit_without_allowance_reverts(escrow, payer):
    with ape.reverts("erc20: insufficient allowance"):
        escrow.deposit(OPG, sender=payer.account)


def test_deposit_zero_amount_reverts(escrow, payer):
    with ape.reverts("CreditEscrow: zero amount"):
        escrow.deposit(0, sender=payer.account)


def test_deposit_for_credits_payer_funded_by_caller(escrow, opg, payer, stranger):
    payer_tokens = opg.balanceOf(payer.address)
    opg.approve(escrow, 10 * OPG, sender=stranger.account)
    tx = escrow.deposit_for(payer.address, 10 * OPG, sender=stranger.account)
    assert escrow.balance_of(payer.address) == 10 * OPG
    assert escrow.balance_of(stranger.address) == 0
    assert opg.balanceOf(payer.address) == payer_tokens
    [event] = escrow.Deposited.from_receipt(tx)
    assert (event.payer, event.funder) == (payer.address, stranger.address)


def test_deposit_for_zero_payer_reverts(escrow, opg, stranger):
    opg.approve(escrow, OPG, sender=stranger.account)
    with ape.reverts("CreditEscrow: payer is the zero address"):
        escrow.deposit_for(ZERO, OPG, sender=stranger.account)


def test_deposit_for_zero_amount_reverts(escrow, payer, stranger):
    with ape.reverts("CreditEscrow: zero amount"):
        escrow.deposit_for(payer.address, 0, sender=stranger.account)


def test_deposit_with_authorization_submitted_by_relayer(escrow, opg, chain_id, payer, relayer, now):
    nonce = os.urandom(32)
    vrs = sign_receive_authorization(
        payer.key, chain_id, opg.address, payer.address, escrow.address, 25 * OPG, 0, now + 600, nonce
    )
    tokens = opg.balanceOf(payer.address)
    tx = escrow.deposit_with_authorization(payer.address, 25 * OPG, 0, now + 600, nonce, *vrs, sender=relayer.account)
    assert escrow.balance_of(payer.address) == 25 * OPG
    assert escrow.balance_of(relayer.address) == 0
    assert opg.balanceOf(payer.address) == tokens - 25 * OPG
    assert opg.balanceOf(escrow.address) == 25 * OPG
    assert opg.authorizationState(payer.address, nonce) is True
    [deposited] = escrow.Deposited.from_receipt(tx)
    assert (deposited.payer, deposited.funder, deposited.amount) == (payer.address, relayer.address, 25 * OPG)
    [used] = opg.AuthorizationUsed.from_receipt(tx)
    assert used.authorizer == payer.address


def test_deposit_with_authorization_replay_reverts(escrow, opg, chain_id, payer, relayer, now):
    nonce = os.urandom(32)
    vrs = sign_receive_authorization(
        payer.key, chain_id, opg.address, payer.address, escrow.address, 25 * OPG, 0, now + 600, nonce
    )
    escrow.deposit_with_authorization(payer.address, 25 * OPG, 0, now + 600, nonce, *vrs, sender=relayer.account)
    with ape.reverts("eip3009: authorization is used or canceled"):
        escrow.deposit_with_authorization(payer.address, 25 * OPG, 0, now + 600, nonce, *vrs, sender=relayer.account)
    assert escrow.balance_of(payer.address) == 25 * OPG


def test_deposit_with_authorization_tampered_amount_reverts(escrow, opg, chain_id, payer, relayer, now):
    nonce = os.urandom(32)
    vrs = sign_receive_authorization(
        payer.key, chain_id, opg.address, payer.address, escrow.address, 25 * OPG, 0, now + 600, nonce
    )
    with ape.reverts("eip3009: invalid signature"):
        escrow.deposit_with_authorization(payer.address, 26 * OPG, 0, now + 600, nonce, *vrs, sender=relayer.account)


def test_deposit_with_authorization_cannot_credit_someone_else(escrow, opg, chain_id, payer, relayer, now):
    nonce = os.urandom(32)
    vrs = sign_receive_authorization(
        payer.key, chain_id, opg.address, payer.address, escrow.address, 25 * OPG, 0, now + 600, nonce
    )
    with ape.reverts("eip3009: invalid signature"):
        escrow.deposit_with_authorization(relayer.address, 25 * OPG, 0, now + 600, nonce, *vrs, sender=relayer.account)


def test_deposit_with_authorization_for_other_payee_reverts(escrow, opg, chain_id, payer, relayer, now):
    # An authorisation paying the relayer cannot be turned into a deposit (and vice versa).
    nonce = os.urandom(32)
    vrs = sign_receive_authorization(
        payer.key, chain_id, opg.address, payer.address, relayer.address, 25 * OPG, 0, now + 600, nonce
    )
    with ape.reverts("eip3009: invalid signature"):
        escrow.deposit_with_authorization(payer.address, 25 * OPG, 0, now + 600, nonce, *vrs, sender=relayer.account)


def test_deposit_with_authorization_expired_reverts(escrow, opg, chain_id, payer, relayer, chain, now):
    nonce = os.urandom(32)
    vrs = sign_receive_authorization(
        payer.key, chain_id, opg.address, payer.address, escrow.address, OPG, 0, now + 10, nonce
    )
    chain.pending_timestamp = now + 10
    with ape.reverts("eip3009: authorization is expired"):
        escrow.deposit_with_authorization(payer.address, OPG, 0, now + 10, nonce, *vrs, sender=relayer.account)


def test_deposit_with_authorization_zero_amount_reverts(escrow, opg, chain_id, payer, relayer, now):
    nonce = os.urandom(32)
    vrs = sign_receive_authorization(
        payer.key, chain_id, opg.address, payer.address, escrow.address, 0, 0, now + 600, nonce
    )
    with ape.reverts("CreditEscrow: zero amount"):
        escrow.deposit_with_authorization(payer.address, 0, 0, now + 600, nonce, *vrs, sender=relayer.account)


def test_deposit_with_authorization_zero_payer_reverts(escrow, relayer, now):
    with ape.reverts("CreditEscrow: payer is the zero address"):
        escrow.deposit_with_authorization(
            ZERO, OPG, 0, now + 600, os.urandom(32), 27, b"\x01" * 32, b"\x01" * 32, sender=relayer.account
        )


# ---------------------------------------------------------------------------------------------------------------
# Withdrawals
# ---------------------------------------------------------------------------------------------------------------


def test_request_withdrawal_starts_thaw(escrow, funded, params, chain, now):
    chain.pending_timestamp = now + 5
    tx = escrow.request_withdrawal(400 * OPG, sender=funded.account)
    request = escrow.withdrawal_of(funded.address)
    assert request.amount == 400 * OPG
    assert request.ready_at == now + 5 + params.thaw_period
    [event] = escrow.WithdrawalRequested.from_receipt(tx)
    assert (event.payer, event.amount, event.ready_at) == (
        funded.address,
        400 * OPG,
        now + 5 + params.thaw_period,
    )
    # Thawing credits are still credits.
    assert escrow.balance_of(funded.address) == DEPOSIT


def test_request_withdrawal_zero_reverts(escrow, funded):
    with ape.reverts("CreditEscrow: zero amount"):
        escrow.request_withdrawal(0, sender=funded.account)


def test_request_withdrawal_above_balance_reverts(escrow, funded):
    with ape.reverts("CreditEscrow: amount exceeds balance"):
        escrow.request_withdrawal(DEPOSIT + 1, sender=funded.account)


def test_withdraw_before_thaw_reverts(escrow, funded, params, chain, now):
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(DEPOSIT, sender=funded.account)
    chain.pending_timestamp = now + 1 + params.thaw_period - 1
    with ape.reverts("CreditEscrow: still thawing"):
        escrow.withdraw(sender=funded.account)


def test_withdraw_after_thaw_pays_requested_amount(escrow, opg, funded, params, chain, now):
    tokens = opg.balanceOf(funded.address)
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(400 * OPG, sender=funded.account)
    chain.pending_timestamp = now + 1 + params.thaw_period
    tx = escrow.withdraw(sender=funded.account)
    assert opg.balanceOf(funded.address) == tokens + 400 * OPG
    assert escrow.balance_of(funded.address) == 600 * OPG
    assert opg.balanceOf(escrow.address) == 600 * OPG
    assert escrow.withdrawal_of(funded.address).amount == 0
    [event] = escrow.Withdrawn.from_receipt(tx)
    assert (event.payer, event.amount) == (funded.address, 400 * OPG)


def test_withdraw_twice_reverts(escrow, funded, params, chain, now):
    escrow.request_withdrawal(OPG, sender=funded.account)
    chain.pending_timestamp = now + params.thaw_period + 1
    escrow.withdraw(sender=funded.account)
    with ape.reverts("CreditEscrow: no pending withdrawal"):
        escrow.withdraw(sender=funded.account)


def test_withdraw_without_request_reverts(escrow, funded):
    with ape.reverts("CreditEscrow: no pending withdrawal"):
        escrow.withdraw(sender=funded.account)


def test_cancel_withdrawal_clears_request(escrow, funded, params, chain, now):
    escrow.request_withdrawal(OPG, sender=funded.account)
    tx = escrow.cancel_withdrawal(sender=funded.account)
    assert escrow.withdrawal_of(funded.address).amount == 0
    assert escrow.WithdrawalCanceled.from_receipt(tx)[0].payer == funded.address
    chain.pending_timestamp = now + params.thaw_period + 1
    with ape.reverts("CreditEscrow: no pending withdrawal"):
        escrow.withdraw(sender=funded.account)


def test_cancel_withdrawal_without_request_reverts(escrow, funded):
    with ape.reverts("CreditEscrow: no pending withdrawal"):
        escrow.cancel_withdrawal(sender=funded.account)


def test_new_request_replaces_and_restarts_thaw(escrow, funded, params, chain, now):
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(100 * OPG, sender=funded.account)
    chain.pending_timestamp = now + 1_000
    escrow.request_withdrawal(200 * OPG, sender=funded.account)
    request = escrow.withdrawal_of(funded.address)
    assert (request.amount, request.ready_at) == (200 * OPG, now + 1_000 + params.thaw_period)
    chain.pending_timestamp = now + 1 + params.thaw_period
    with ape.reverts("CreditEscrow: still thawing"):
        escrow.withdraw(sender=funded.account)


def test_thaw_period_change_does_not_move_pending_request(escrow, funded, deployer, params, chain, now):
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(OPG, sender=funded.account)
    escrow.set_thaw_period(30 * 86_400, sender=deployer)
    chain.pending_timestamp = now + 1 + params.thaw_period
    escrow.withdraw(sender=funded.account)


def test_withdraw_pays_only_what_settlement_left(escrow, escrow_domain, opg, funded, node, relayer, params, chain, now):
    # The payer signs a voucher, then tries to thaw everything away before the node settles.
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, 300 * OPG)
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(DEPOSIT, sender=funded.account)
    chain.pending_timestamp = now + params.thaw_period  # still thawing
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED]
    tokens = opg.balanceOf(funded.address)
    chain.pending_timestamp = now + 1 + params.thaw_period
    tx = escrow.withdraw(sender=funded.account)
    assert escrow.Withdrawn.from_receipt(tx)[0].amount == 700 * OPG
    assert opg.balanceOf(funded.address) == tokens + 700 * OPG
    assert escrow.balance_of(funded.address) == 0


def test_withdraw_pays_nothing_when_settlement_took_everything(
    escrow, escrow_domain, opg, funded, node, relayer, params, chain, now
):
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(DEPOSIT, sender=funded.account)
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, DEPOSIT)
    escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    tokens = opg.balanceOf(funded.address)
    chain.pending_timestamp = now + 1 + params.thaw_period
    tx = escrow.withdraw(sender=funded.account)
    assert escrow.Withdrawn.from_receipt(tx)[0].amount == 0
    assert opg.balanceOf(funded.address) == tokens
    assert escrow.withdrawal_of(funded.address).amount == 0


def test_withdrawn_credits_cannot_be_settled(escrow, escrow_domain, funded, node, relayer, params, chain, now):
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(DEPOSIT, sender=funded.account)
    chain.pending_timestamp = now + 1 + params.thaw_period
    escrow.withdraw(sender=funded.account)
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_INSUFFICIENT_BALANCE]


# ---------------------------------------------------------------------------------------------------------------
# Settlement
# ---------------------------------------------------------------------------------------------------------------


def test_settle_voucher_signed_by_payer(escrow, escrow_domain, opg, distributor, funded, node, relayer, params):
    escrow_tokens = opg.balanceOf(escrow.address)
    distributor_tokens = opg.balanceOf(distributor.address)
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, 120 * OPG, 100 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED]
    assert escrow.balance_of(funded.address) == DEPOSIT - 100 * OPG
    assert escrow.spent(funded.address, node.address) == 100 * OPG
    assert opg.balanceOf(escrow.address) == escrow_tokens - 100 * OPG
    assert opg.balanceOf(distributor.address) == distributor_tokens + 100 * OPG
    [settled] = escrow.ClaimSettled.from_receipt(tx)
    assert (settled.payer, settled.node, settled.amount, settled.total) == (
        funded.address,
        node.address,
        100 * OPG,
        100 * OPG,
    )


def test_settle_batch_returns_outcomes(escrow, escrow_domain, funded, node, stranger, relayer):
    good = signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    unsigned = signed_claim(stranger.key, escrow_domain, funded.address, node.address, 20 * OPG)
    inactive = signed_claim(funded.key, escrow_domain, funded.address, stranger.address, 10 * OPG)
    result = escrow.settle_batch.call([good, unsigned, inactive], ROOT, sender=relayer.account)
    assert list(result) == [SETTLED, SKIP_BAD_SIGNATURE, SKIP_NODE_NOT_ACTIVE]


def test_batch_settled_event_carries_receipts_root(escrow, escrow_domain, funded, node, stranger, relayer):
    good = signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    bad = signed_claim(stranger.key, escrow_domain, funded.address, node.address, 20 * OPG)
    tx = escrow.settle_batch([good, bad], ROOT, sender=relayer.account)
    [batch] = escrow.BatchSettled.from_receipt(tx)
    assert bytes(batch.receipts_root) == ROOT
    assert batch.submitter == relayer.address
    assert (batch.claims, batch.settled, batch.amount) == (2, 1, 10 * OPG)


def test_fees_reach_the_reward_distributor(escrow, escrow_domain, distributor, treasury, funded, node, relayer, params):
    gross = 100 * OPG
    node_share, protocol_fee, verifier_fee = fee_split(gross, params)
    node_before = distributor.claimable(node.address)
    treasury_before = distributor.claimable(treasury.address)
    epoch = distributor.epoch_now()
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, gross)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert distributor.claimable(node.address) == node_before + node_share == node_before + 85 * OPG
    # The protocol fee always reaches the treasury; the verifier fee too while no verifier is staked.
    treasury_gain = distributor.claimable(treasury.address) - treasury_before
    if distributor.total_verifier_stake() == 0:
        assert treasury_gain == protocol_fee + verifier_fee
    else:
        assert protocol_fee <= treasury_gain < protocol_fee + verifier_fee
    [credited] = distributor.FeesCredited.from_receipt(tx)
    assert (credited.node, credited.gross, credited.node_share) == (node.address, gross, node_share)
    assert distributor.node_epoch_fees(epoch, node.address) == gross


def test_node_can_claim_settled_fees(escrow, escrow_domain, opg, distributor, funded, node, relayer, params):
    node_share, _, _ = fee_split(50 * OPG, params)
    escrow.settle_batch(
        [signed_claim(funded.key, escrow_domain, funded.address, node.address, 50 * OPG)],
        ROOT,
        sender=relayer.account,
    )
    tokens = opg.balanceOf(node.address)
    before = distributor.claimable(node.address)
    distributor.claim(sender=node.account)
    assert opg.balanceOf(node.address) == tokens + before
    assert before >= node_share


def test_settlement_pays_only_the_increase_over_spent(escrow, escrow_domain, funded, node, relayer):
    first = signed_claim(funded.key, escrow_domain, funded.address, node.address, 40 * OPG)
    escrow.settle_batch([first], ROOT, sender=relayer.account)
    second = signed_claim(funded.key, escrow_domain, funded.address, node.address, 100 * OPG, 70 * OPG)
    tx = escrow.settle_batch([second], ROOT, sender=relayer.account)
    [settled] = escrow.ClaimSettled.from_receipt(tx)
    assert (settled.amount, settled.total) == (30 * OPG, 70 * OPG)
    assert escrow.spent(funded.address, node.address) == 70 * OPG
    assert escrow.balance_of(funded.address) == DEPOSIT - 70 * OPG


def test_retrying_a_settled_batch_is_harmless(escrow, escrow_domain, opg, distributor, funded, node, relayer):
    batch = [signed_claim(funded.key, escrow_domain, funded.address, node.address, 40 * OPG)]
    escrow.settle_batch(batch, ROOT, sender=relayer.account)
    balance = escrow.balance_of(funded.address)
    claimable = distributor.claimable(node.address)
    distributor_tokens = opg.balanceOf(distributor.address)
    tx = escrow.settle_batch(batch, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_STALE]
    [skipped] = escrow.ClaimSkipped.from_receipt(tx)
    assert (skipped.payer, skipped.node, skipped.total, skipped.reason) == (
        funded.address,
        node.address,
        40 * OPG,
        SKIP_STALE,
    )
    [batch_event] = escrow.BatchSettled.from_receipt(tx)
    assert (batch_event.settled, batch_event.amount) == (0, 0)
    assert escrow.balance_of(funded.address) == balance
    assert escrow.spent(funded.address, node.address) == 40 * OPG
    assert distributor.claimable(node.address) == claimable
    assert opg.balanceOf(distributor.address) == distributor_tokens


def test_spent_never_decreases(escrow, escrow_domain, funded, node, relayer):
    escrow.settle_batch(
        [signed_claim(funded.key, escrow_domain, funded.address, node.address, 50 * OPG)],
        ROOT,
        sender=relayer.account,
    )
    # An older (lower) voucher the payer really signed is stale, not a refund.
    older = signed_claim(funded.key, escrow_domain, funded.address, node.address, 30 * OPG)
    tx = escrow.settle_batch([older], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_STALE]
    assert escrow.spent(funded.address, node.address) == 50 * OPG
    assert escrow.balance_of(funded.address) == DEPOSIT - 50 * OPG


def test_claim_with_zero_total_is_stale(escrow, escrow_domain, funded, node, relayer):
    tx = escrow.settle_batch(
        [signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG, 0)],
        ROOT,
        sender=relayer.account,
    )
    assert outcomes(escrow, tx) == [SKIP_STALE]


def test_unregistered_node_is_skipped(escrow, escrow_domain, funded, stranger, relayer):
    voucher = signed_claim(funded.key, escrow_domain, funded.address, stranger.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_NODE_NOT_ACTIVE]
    assert escrow.ClaimSkipped.from_receipt(tx)[0].reason == SKIP_NODE_NOT_ACTIVE
    assert escrow.balance_of(funded.address) == DEPOSIT
    assert escrow.spent(funded.address, stranger.address) == 0


def test_verifier_is_not_an_inference_node(escrow, escrow_domain, staking, funded, verifier, relayer):
    assert staking.is_active_as(verifier.address, 2) is True
    voucher = signed_claim(funded.key, escrow_domain, funded.address, verifier.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_NODE_NOT_ACTIVE]
    assert escrow.balance_of(funded.address) == DEPOSIT


def test_node_unbonded_below_minimum_is_skipped(escrow, escrow_domain, staking, funded, node_b, relayer, params):
    staking.request_unbond(1, sender=node_b.account)
    assert staking.is_active_as(node_b.address, 1) is False
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node_b.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_NODE_NOT_ACTIVE]


def test_wrong_signer_is_skipped_without_moving_funds(escrow, escrow_domain, opg, funded, node, stranger, relayer):
    voucher = signed_claim(stranger.key, escrow_domain, funded.address, node.address, 10 * OPG)
    escrow_tokens = opg.balanceOf(escrow.address)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.ClaimSkipped.from_receipt(tx)[0].reason == SKIP_BAD_SIGNATURE
    assert escrow.balance_of(funded.address) == DEPOSIT
    assert escrow.spent(funded.address, node.address) == 0
    assert opg.balanceOf(escrow.address) == escrow_tokens


def test_claim_above_what_payer_signed_is_skipped(escrow, escrow_domain, funded, node, relayer):
    # The payer signed maxCumulative = 10; the relayer claims 500 with that signature.
    sig = sign_voucher(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    tx = escrow.settle_batch(
        [claim(funded.address, node.address, 500 * OPG, sig, 500 * OPG)], ROOT, sender=relayer.account
    )
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded.address) == DEPOSIT


def test_voucher_of_one_payer_cannot_charge_another(escrow, escrow_domain, funded, payer_b, opg, node, relayer):
    opg.approve(escrow, DEPOSIT, sender=payer_b.account)
    escrow.deposit(DEPOSIT, sender=payer_b.account)
    sig = sign_voucher(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    tx = escrow.settle_batch(
        [claim(payer_b.address, node.address, 10 * OPG, sig, 10 * OPG)], ROOT, sender=relayer.account
    )
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(payer_b.address) == DEPOSIT


def test_high_s_twin_voucher_is_skipped(escrow, escrow_domain, funded, node, relayer):
    sig = sign_voucher(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    tx = escrow.settle_batch(
        [claim(funded.address, node.address, 10 * OPG, high_s_twin(sig), 10 * OPG)],
        ROOT,
        sender=relayer.account,
    )
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]


def test_garbage_signature_is_skipped(escrow, funded, node, relayer):
    garbage = "0x" + "00" * 65
    tx = escrow.settle_batch([claim(funded.address, node.address, OPG, garbage, OPG)], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]


def test_relayer_cannot_redirect_a_voucher_to_another_node(
    escrow, escrow_domain, distributor, funded, node, node_b, relayer
):
    sig = sign_voucher(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    before = distributor.claimable(node_b.address)
    tx = escrow.settle_batch(
        [claim(funded.address, node_b.address, 10 * OPG, sig, 10 * OPG)], ROOT, sender=relayer.account
    )
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded.address) == DEPOSIT
    assert escrow.spent(funded.address, node_b.address) == 0
    assert distributor.claimable(node_b.address) == before


def test_voucher_for_another_escrow_deployment_is_skipped(
    project, escrow, opg, staking, distributor, deployer, chain_id, funded, node, relayer, params
):
    other = project.CreditEscrow.deploy(opg, staking, distributor, params.thaw_period, sender=deployer)
    foreign = Domain.escrow(chain_id, other.address)
    voucher = signed_claim(funded.key, foreign, funded.address, node.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded.address) == DEPOSIT
    assert other.is_valid_voucher(funded.address, node.address, 10 * OPG, voucher[3]) is True


def test_voucher_for_another_chain_is_skipped(escrow, chain_id, funded, node, relayer):
    voucher = signed_claim(funded.key, Domain.escrow(chain_id + 1, escrow.address), funded.address, node.address, OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded.address) == DEPOSIT


def test_broke_payer_is_skipped_never_partially_paid(escrow, escrow_domain, funded, node, relayer):
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, DEPOSIT + 1)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_INSUFFICIENT_BALANCE]
    [skipped] = escrow.ClaimSkipped.from_receipt(tx)
    assert (skipped.payer, skipped.node, skipped.total, skipped.reason) == (
        funded.address,
        node.address,
        DEPOSIT + 1,
        SKIP_INSUFFICIENT_BALANCE,
    )
    assert escrow.balance_of(funded.address) == DEPOSIT
    assert escrow.spent(funded.address, node.address) == 0


def test_broke_payer_does_not_block_the_batch(escrow, escrow_domain, opg, funded, payer_b, node, relayer):
    opg.approve(escrow, 5 * OPG, sender=payer_b.account)
    escrow.deposit(5 * OPG, sender=payer_b.account)
    broke = signed_claim(payer_b.key, escrow_domain, payer_b.address, node.address, 6 * OPG)
    good = signed_claim(funded.key, escrow_domain, funded.address, node.address, 6 * OPG)
    tx = escrow.settle_batch([broke, good], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_INSUFFICIENT_BALANCE, SETTLED]
    assert escrow.balance_of(payer_b.address) == 5 * OPG
    assert escrow.balance_of(funded.address) == DEPOSIT - 6 * OPG


def test_payer_can_be_charged_its_exact_balance(escrow, escrow_domain, funded, node, relayer):
    tx = escrow.settle_batch(
        [signed_claim(funded.key, escrow_domain, funded.address, node.address, DEPOSIT)],
        ROOT,
        sender=relayer.account,
    )
    assert outcomes(escrow, tx) == [SETTLED]
    assert escrow.balance_of(funded.address) == 0


def test_same_payer_drained_within_one_batch(escrow, escrow_domain, funded, node, node_b, relayer):
    first = signed_claim(funded.key, escrow_domain, funded.address, node.address, 600 * OPG)
    second = signed_claim(funded.key, escrow_domain, funded.address, node_b.address, 600 * OPG)
    tx = escrow.settle_batch([first, second], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED, SKIP_INSUFFICIENT_BALANCE]
    assert escrow.balance_of(funded.address) == 400 * OPG


def test_total_above_max_cumulative_reverts(escrow, escrow_domain, funded, node, relayer):
    sig = sign_voucher(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    with ape.reverts("CreditEscrow: total exceeds voucher"):
        escrow.settle_batch(
            [claim(funded.address, node.address, 10 * OPG, sig, 10 * OPG + 1)], ROOT, sender=relayer.account
        )


def test_empty_batch_reverts(escrow, relayer):
    with ape.reverts("CreditEscrow: empty batch"):
        escrow.settle_batch([], ROOT, sender=relayer.account)


def test_node_can_settle_its_own_vouchers(escrow, escrow_domain, distributor, funded, node):
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=node.account)
    assert outcomes(escrow, tx) == [SETTLED]
    assert escrow.BatchSettled.from_receipt(tx)[0].submitter == node.address
    assert escrow.spent(funded.address, node.address) == 10 * OPG


def test_node_can_settle_what_a_relayer_under_claimed(escrow, escrow_domain, funded, node, relayer):
    sig = sign_voucher(funded.key, escrow_domain, funded.address, node.address, 80 * OPG)
    escrow.settle_batch([claim(funded.address, node.address, 80 * OPG, sig, 20 * OPG)], ROOT, sender=relayer.account)
    tx = escrow.settle_batch([claim(funded.address, node.address, 80 * OPG, sig, 80 * OPG)], ROOT, sender=node.account)
    assert escrow.ClaimSettled.from_receipt(tx)[0].amount == 60 * OPG
    assert escrow.spent(funded.address, node.address) == 80 * OPG


def test_fees_are_forwarded_once_per_node_run(
    escrow, escrow_domain, opg, distributor, funded, payer_b, node, node_b, relayer, params
):
    opg.approve(escrow, DEPOSIT, sender=payer_b.account)
    escrow.deposit(DEPOSIT, sender=payer_b.account)
    claims = [
        signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG),
        signed_claim(payer_b.key, escrow_domain, payer_b.address, node.address, 20 * OPG),
        signed_claim(funded.key, escrow_domain, funded.address, node_b.address, 30 * OPG),
        signed_claim(payer_b.key, escrow_domain, payer_b.address, node_b.address, 40 * OPG),
    ]
    distributor_tokens = opg.balanceOf(distributor.address)
    tx = escrow.settle_batch(claims, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED] * 4
    credited = distributor.FeesCredited.from_receipt(tx)
    assert [(c.node, c.gross) for c in credited] == [(node.address, 30 * OPG), (node_b.address, 70 * OPG)]
    transfers = [t for t in opg.Transfer.from_receipt(tx) if t.receiver == distributor.address]
    assert len(transfers) == 1 and transfers[0].value == 100 * OPG
    assert opg.balanceOf(distributor.address) == distributor_tokens + 100 * OPG
    assert escrow.BatchSettled.from_receipt(tx)[0].amount == 100 * OPG


def test_unordered_claims_still_credit_each_node(
    escrow, escrow_domain, distributor, funded, payer_b, opg, node, node_b, relayer, params
):
    opg.approve(escrow, DEPOSIT, sender=payer_b.account)
    escrow.deposit(DEPOSIT, sender=payer_b.account)
    before_a = distributor.claimable(node.address)
    before_b = distributor.claimable(node_b.address)
    claims = [
        signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG),
        signed_claim(funded.key, escrow_domain, funded.address, node_b.address, 20 * OPG),
        signed_claim(payer_b.key, escrow_domain, payer_b.address, node.address, 30 * OPG),
    ]
    tx = escrow.settle_batch(claims, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED] * 3
    assert [c.gross for c in distributor.FeesCredited.from_receipt(tx)] == [10 * OPG, 20 * OPG, 30 * OPG]
    assert (
        distributor.claimable(node.address) - before_a
        == fee_split(10 * OPG, params)[0] + fee_split(30 * OPG, params)[0]
    )
    assert distributor.claimable(node_b.address) - before_b == fee_split(20 * OPG, params)[0]


def test_inactive_node_run_between_active_ones(escrow, escrow_domain, funded, node, stranger, node_b, relayer):
    claims = [
        signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG),
        signed_claim(funded.key, escrow_domain, funded.address, stranger.address, 10 * OPG),
        signed_claim(funded.key, escrow_domain, funded.address, node_b.address, 10 * OPG),
    ]
    tx = escrow.settle_batch(claims, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED, SKIP_NODE_NOT_ACTIVE, SETTLED]
    assert escrow.balance_of(funded.address) == DEPOSIT - 20 * OPG


def test_batch_without_settlement_moves_no_tokens(escrow, escrow_domain, opg, distributor, funded, stranger, relayer):
    distributor_tokens = opg.balanceOf(distributor.address)
    voucher = signed_claim(funded.key, escrow_domain, funded.address, stranger.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert distributor.FeesCredited.from_receipt(tx) == []
    assert opg.balanceOf(distributor.address) == distributor_tokens


def test_escrow_holds_exactly_the_payer_balances(escrow, escrow_domain, opg, funded, payer_b, node, relayer):
    opg.approve(escrow, 300 * OPG, sender=payer_b.account)
    escrow.deposit(300 * OPG, sender=payer_b.account)
    escrow.settle_batch(
        [
            signed_claim(funded.key, escrow_domain, funded.address, node.address, 123 * OPG),
            signed_claim(payer_b.key, escrow_domain, payer_b.address, node.address, 45 * OPG),
        ],
        ROOT,
        sender=relayer.account,
    )
    total = escrow.balance_of(funded.address) + escrow.balance_of(payer_b.address)
    assert opg.balanceOf(escrow.address) == total == DEPOSIT + 300 * OPG - 168 * OPG


# ---------------------------------------------------------------------------------------------------------------
# Session signers
# ---------------------------------------------------------------------------------------------------------------


def test_session_signer_voucher_settles(escrow, escrow_domain, funded, node, session_key, relayer, now):
    tx = escrow.authorize_signer(session_key.address, now + 86_400, sender=funded.account)
    [event] = escrow.SignerAuthorized.from_receipt(tx)
    assert (event.payer, event.signer, event.expiry) == (funded.address, session_key.address, now + 86_400)
    assert escrow.signer_expiry(funded.address, session_key.address) == now + 86_400
    voucher = signed_claim(session_key.key, escrow_domain, funded.address, node.address, 10 * OPG)
    assert escrow.is_valid_voucher(funded.address, node.address, 10 * OPG, voucher[3]) is True
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED]
    assert escrow.balance_of(funded.address) == DEPOSIT - 10 * OPG


def test_session_signer_expiry_is_respected(escrow, escrow_domain, funded, node, session_key, relayer, chain, now):
    chain.pending_timestamp = now + 1
    escrow.authorize_signer(session_key.address, now + 100, sender=funded.account)
    voucher = signed_claim(session_key.key, escrow_domain, funded.address, node.address, 10 * OPG)
    chain.pending_timestamp = now + 100  # expiry is exclusive
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded.address) == DEPOSIT


def test_session_signer_valid_until_the_second_before_expiry(
    escrow, escrow_domain, funded, node, session_key, relayer, chain, now
):
    chain.pending_timestamp = now + 1
    escrow.authorize_signer(session_key.address, now + 100, sender=funded.account)
    voucher = signed_claim(session_key.key, escrow_domain, funded.address, node.address, 10 * OPG)
    chain.pending_timestamp = now + 99
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED]


def test_unauthorized_session_key_is_skipped(escrow, escrow_domain, funded, node, session_key, relayer):
    voucher = signed_claim(session_key.key, escrow_domain, funded.address, node.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]


def test_session_signer_cannot_sign_for_another_payer(
    escrow, escrow_domain, opg, funded, payer_b, node, session_key, relayer, now
):
    opg.approve(escrow, DEPOSIT, sender=payer_b.account)
    escrow.deposit(DEPOSIT, sender=payer_b.account)
    escrow.authorize_signer(session_key.address, now + 86_400, sender=funded.account)
    voucher = signed_claim(session_key.key, escrow_domain, payer_b.address, node.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(payer_b.address) == DEPOSIT


def test_revoke_signer_takes_effect_only_after_thaw(
    escrow, escrow_domain, funded, node, session_key, relayer, params, chain, now
):
    escrow.authorize_signer(session_key.address, now + 30 * 86_400, sender=funded.account)
    chain.pending_timestamp = now + 10
    tx = escrow.revoke_signer(session_key.address, sender=funded.account)
    revoked_at = now + 10 + params.thaw_period
    assert escrow.SignerAuthorized.from_receipt(tx)[0].expiry == revoked_at
    assert escrow.signer_expiry(funded.address, session_key.address) == revoked_at
    early = signed_claim(session_key.key, escrow_domain, funded.address, node.address, 10 * OPG)
    chain.pending_timestamp = revoked_at - 1
    assert outcomes(escrow, escrow.settle_batch([early], ROOT, sender=relayer.account)) == [SETTLED]
    late = signed_claim(session_key.key, escrow_domain, funded.address, node.address, 20 * OPG)
    chain.pending_timestamp = revoked_at
    assert outcomes(escrow, escrow.settle_batch([late], ROOT, sender=relayer.account)) == [SKIP_BAD_SIGNATURE]
    assert escrow.spent(funded.address, node.address) == 10 * OPG


def test_revoke_signer_never_extends_expiry(escrow, funded, session_key, params, now):
    escrow.authorize_signer(session_key.address, now + 60, sender=funded.account)
    assert params.thaw_period > 60
    escrow.revoke_signer(session_key.address, sender=funded.account)
    assert escrow.signer_expiry(funded.address, session_key.address) == now + 60


def test_revoke_unauthorized_signer_reverts(escrow, funded, session_key):
    with ape.reverts("CreditEscrow: signer not authorized"):
        escrow.revoke_signer(session_key.address, sender=funded.account)


def test_revoke_expired_signer_reverts(escrow, funded, session_key, chain, now):
    chain.pending_timestamp = now + 1
    escrow.authorize_signer(session_key.address, now + 100, sender=funded.account)
    chain.pending_timestamp = now + 100
    with ape.reverts("CreditEscrow: signer not authorized"):
        escrow.revoke_signer(session_key.address, sender=funded.account)


def test_shortening_expiry_through_authorize_is_delayed(
    escrow, escrow_domain, funded, node, session_key, relayer, params, chain, now
):
    escrow.authorize_signer(session_key.address, now + 30 * 86_400, sender=funded.account)
    chain.pending_timestamp = now + 10
    tx = escrow.authorize_signer(session_key.address, now + 20, sender=funded.account)
    effective = now + 10 + params.thaw_period
    assert escrow.SignerAuthorized.from_receipt(tx)[0].expiry == effective
    assert escrow.signer_expiry(funded.address, session_key.address) == effective
    voucher = signed_claim(session_key.key, escrow_domain, funded.address, node.address, 10 * OPG)
    chain.pending_timestamp = now + 21  # past the requested expiry, before the effective one
    assert outcomes(escrow, escrow.settle_batch([voucher], ROOT, sender=relayer.account)) == [SETTLED]


def test_shortening_expiry_beyond_thaw_applies_as_asked(escrow, funded, session_key, params, chain, now):
    escrow.authorize_signer(session_key.address, now + 30 * 86_400, sender=funded.account)
    chain.pending_timestamp = now + 10
    escrow.authorize_signer(session_key.address, now + 10 * 86_400, sender=funded.account)
    assert escrow.signer_expiry(funded.address, session_key.address) == now + 10 * 86_400


def test_extending_expiry_takes_effect_at_once(escrow, funded, session_key, chain, now):
    escrow.authorize_signer(session_key.address, now + 100, sender=funded.account)
    chain.pending_timestamp = now + 10
    escrow.authorize_signer(session_key.address, now + 10 * 86_400, sender=funded.account)
    assert escrow.signer_expiry(funded.address, session_key.address) == now + 10 * 86_400


def test_reauthorizing_an_expired_signer_is_immediate(escrow, funded, session_key, chain, now):
    chain.pending_timestamp = now + 1
    escrow.authorize_signer(session_key.address, now + 100, sender=funded.account)
    chain.pending_timestamp = now + 200
    escrow.authorize_signer(session_key.address, now + 300, sender=funded.account)
    assert escrow.signer_expiry(funded.address, session_key.address) == now + 300


def test_authorize_zero_signer_reverts(escrow, funded, now):
    with ape.reverts("CreditEscrow: signer is the zero address"):
        escrow.authorize_signer(ZERO, now + 100, sender=funded.account)


def test_authorize_payer_itself_reverts(escrow, funded, now):
    with ape.reverts("CreditEscrow: signer is the payer"):
        escrow.authorize_signer(funded.address, now + 100, sender=funded.account)


def test_authorize_signer_expiry_in_the_past_reverts(escrow, funded, session_key, chain, now):
    chain.pending_timestamp = now + 5
    with ape.reverts("CreditEscrow: expiry in the past"):
        escrow.authorize_signer(session_key.address, now + 5, sender=funded.account)


# ---------------------------------------------------------------------------------------------------------------
# Governance
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("thaw", [60, 86_400, 30 * 86_400])
def test_owner_sets_thaw_period_within_bounds(escrow, deployer, funded, chain, now, thaw):
    tx = escrow.set_thaw_period(thaw, sender=deployer)
    assert escrow.thaw_period() == thaw
    assert escrow.ThawPeriodUpdated.from_receipt(tx)[0].thaw_period == thaw
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(OPG, sender=funded.account)
    assert escrow.withdrawal_of(funded.address).ready_at == now + 1 + thaw


@pytest.mark.parametrize("thaw", [0, 59, 30 * 86_400 + 1])
def test_thaw_period_out_of_bounds_reverts(escrow, deployer, thaw):
    with ape.reverts("CreditEscrow: thaw period out of bounds"):
        escrow.set_thaw_period(thaw, sender=deployer)


def test_set_thaw_period_by_non_owner_reverts(escrow, payer):
    with ape.reverts("ownable: caller is not the owner"):
        escrow.set_thaw_period(600, sender=payer.account)


def test_ownership_transfer_is_two_step(escrow, deployer, stranger):
    escrow.transfer_ownership(stranger.address, sender=deployer)
    assert escrow.pending_owner() == stranger.address
    assert escrow.owner() == deployer.address
    escrow.set_thaw_period(600, sender=deployer)  # still the owner until accepted
    escrow.accept_ownership(sender=stranger.account)
    assert escrow.owner() == stranger.address
    assert escrow.pending_owner() == ZERO
    escrow.set_thaw_period(700, sender=stranger.account)
    with ape.reverts("ownable: caller is not the owner"):
        escrow.set_thaw_period(800, sender=deployer)


def test_accept_ownership_by_other_reverts(escrow, deployer, stranger, payer):
    escrow.transfer_ownership(stranger.address, sender=deployer)
    with ape.reverts("ownable_2step: caller is not the new owner"):
        escrow.accept_ownership(sender=payer.account)


def test_transfer_ownership_by_non_owner_reverts(escrow, payer):
    with ape.reverts("ownable: caller is not the owner"):
        escrow.transfer_ownership(payer.address, sender=payer.account)


def test_renounce_ownership_freezes_parameters(escrow, deployer):
    escrow.renounce_ownership(sender=deployer)
    assert escrow.owner() == ZERO
    with ape.reverts("ownable: caller is not the owner"):
        escrow.set_thaw_period(600, sender=deployer)


def test_withdrawals_never_need_the_owner(escrow, opg, funded, deployer, params, chain, now):
    escrow.renounce_ownership(sender=deployer)
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(DEPOSIT, sender=funded.account)
    chain.pending_timestamp = now + 1 + params.thaw_period
    assert escrow.Withdrawn.from_receipt(escrow.withdraw(sender=funded.account))[0].amount == DEPOSIT
