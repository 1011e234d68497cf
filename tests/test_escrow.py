"""CreditEscrow v2: deposits, thawed and expiring withdrawals, session keys with allowances, voucher settlement,
the packed batch log, charge voiding, and timelocked governance.

Vouchers are signed with ``offchain.messages`` (eth-account) and submitted as EIP-2098 compact claims; EIP-3009
deposit authorisations are built as EIP-712 typed data and signed with eth-account too. Tests named
``test_attack_*`` perform an attack on the escrow and show it fails; the honest path sits next to each.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import ape
import pytest
from eth_abi import encode
from eth_account import Account
from eth_utils import keccak

from offchain.devkit.traces import called_addresses
from offchain.messages import (
    SECP256K1_HALF_N,
    Claim,
    Domain,
    InvalidSignature,
    ReceiveWithAuthorization,
    Voucher,
    compact_signature,
    merkle_root,
)

OPG = 10**18
DEPOSIT = 1_000 * OPG
DAY = 86_400
ZERO = "0x0000000000000000000000000000000000000000"
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
BPS = 10_000
LOW_96 = 2**96 - 1

(
    SETTLED,
    SKIP_STALE,
    SKIP_NODE_NOT_PAYABLE,
    SKIP_BAD_SIGNATURE,
    SKIP_INSUFFICIENT_BALANCE,
    SKIP_ALLOWANCE_EXCEEDED,
) = range(6)
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
    """Each claim's outcome, as `settle_batch` returned it."""
    return list(tx.return_value)


def batch_log(escrow, tx):
    """The batch's one BatchSettled log, decoded: (amount, [(payer, delta)], [(node, settled claims)])."""
    [event] = escrow.BatchSettled.from_receipt(tx)
    settled = [(address_of(word >> 96), word & LOW_96) for word in event.settled]
    runs = [(address_of(word >> 96), word & LOW_96) for word in event.runs]
    return event.amount, settled, runs


def address_of(value: int) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(value.to_bytes(20, "big"))


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


def setter_call(name: str, value: int) -> bytes:
    """Calldata of a one-uint256 setter (what `queue_change` takes and the setter call must repeat)."""
    return keccak(text=f"{name}(uint256)")[:4] + encode(["uint256"], [value])


def queue(escrow, owner, name: str, value: int) -> int:
    """Queue `name(value)`; returns the time it becomes due."""
    tx = escrow.queue_change(setter_call(name, value), sender=owner)
    return escrow.ChangeQueued.from_receipt(tx)[0].eta


def govern(escrow, owner, chain, name: str, value: int, executor=None):
    """Queue `name(value)`, wait out the delay, and execute it (by `executor`, default the owner)."""
    eta = queue(escrow, owner, name, value)
    chain.pending_timestamp = eta
    return getattr(escrow, name)(value, sender=executor or owner)


def send_in_one_block(chain, calls) -> list:
    """Send `(contract method, args, actor)` calls in one block (automine off); returns their receipts, in order."""
    web3 = chain.provider.web3
    chain.provider.make_request("evm_setAutomine", [False])
    hashes = []
    try:
        for method, args, actor in calls:
            txn = method.as_transaction(*args, sender=actor.account, gas=1_000_000)  # both must fit in one block
            signed = actor.account.sign_transaction(txn)
            hashes.append(web3.eth.send_raw_transaction(signed.serialize_transaction()))
        chain.provider.make_request("evm_mine", [])
    finally:
        chain.provider.make_request("evm_setAutomine", [True])
    receipts = [web3.eth.get_transaction_receipt(h) for h in hashes]
    assert len({r.blockNumber for r in receipts}) == 1
    assert [r.transactionIndex for r in receipts] == list(range(len(receipts)))
    return receipts


# ---------------------------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _session_fixtures_first(
    system, opg, escrow, staking, distributor, params, deployer, treasury, make_actor, payer, node, escrow_domain
):
    """Instantiate the session fixtures before this module's own (ape's snapshots need that order)."""


@pytest.fixture(scope="module", autouse=True)
def _node_stake_backs_the_pay(_session_fixtures_first, opg, staking, node, treasury):
    """R10: settlement pays a node at most its active stake / fraud_multiplier per dispute window (pay_capacity):
    the node stakes enough more for this module's amounts (up to 1,000 OPG a channel)."""
    opg.transfer(node.address, 90_000 * OPG, sender=treasury)
    opg.approve(staking, 90_000 * OPG, sender=node.account)
    staking.add_stake(90_000 * OPG, sender=node.account)


@pytest.fixture(scope="module")
def relayer(facilitator):
    """The escrow's facilitator (TEST_PARAMS.facilitators): gas only; submits batches and gasless deposits."""
    return SimpleNamespace(account=facilitator, address=facilitator.address, key=facilitator.private_key)


@pytest.fixture(scope="module")
def payer_b(make_actor):
    return make_actor()


@pytest.fixture(scope="module")
def node_b(make_actor, register, params):
    """A second registered inference node, at exactly the minimum stake."""
    actor = make_actor()
    register(actor, 1, params.min_inference_stake, "http://node-b.invalid")
    return actor


@pytest.fixture(scope="module")
def verifier(make_actor, register, params):
    """A registered verifier (not an inference node)."""
    actor = make_actor()
    register(actor, 2, params.min_verifier_stake, "http://verifier.invalid")
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
    """The next block's time, pinned: the first transaction after this fixture is mined exactly at it."""
    at = chain.pending_timestamp + 5
    chain.pending_timestamp = at
    return at


@pytest.fixture
def authorized(escrow, funded, session_key, now):
    """`session_key` signs for `funded` for 30 days, with a 100 OPG allowance."""
    escrow.authorize_signer(session_key.address, now + 30 * DAY, 100 * OPG, sender=funded.account)
    return session_key


# ---------------------------------------------------------------------------------------------------------------
# Construction and views
# ---------------------------------------------------------------------------------------------------------------


def test_constructor_wires_contracts_thaw_period_and_delay(escrow, opg, staking, distributor, params, deployer):
    assert escrow.token() == opg.address
    assert escrow.staking() == staking.address
    assert escrow.distributor() == distributor.address
    assert escrow.thaw_period() == params.thaw_period
    assert escrow.delay() == params.delay
    assert escrow.owner() == deployer.address


def test_constructor_zero_token_reverts(project, deployer, staking, distributor, params):
    with ape.reverts("CreditEscrow: token is the zero address"):
        project.CreditEscrow.deploy(ZERO, staking, distributor, 3_600, params.delay, [deployer.address], sender=deployer)


def test_constructor_zero_staking_reverts(project, deployer, opg, distributor, params):
    with ape.reverts("CreditEscrow: staking is the zero address"):
        project.CreditEscrow.deploy(opg, ZERO, distributor, 3_600, params.delay, [deployer.address], sender=deployer)


def test_constructor_zero_distributor_reverts(project, deployer, opg, staking, params):
    with ape.reverts("CreditEscrow: distributor is the zero address"):
        project.CreditEscrow.deploy(opg, staking, ZERO, 3_600, params.delay, [deployer.address], sender=deployer)


@pytest.mark.parametrize("thaw", [59, 30 * DAY + 1])
def test_constructor_thaw_period_out_of_bounds_reverts(project, deployer, opg, staking, distributor, thaw):
    with ape.reverts("CreditEscrow: thaw period out of bounds"):
        project.CreditEscrow.deploy(opg, staking, distributor, thaw, 90 * DAY, [deployer.address], sender=deployer)


def test_constructor_delay_below_thaw_plus_one_day_reverts(project, deployer, opg, staking, distributor):
    with ape.reverts("timelock: delay below the floor"):
        project.CreditEscrow.deploy(opg, staking, distributor, 3_600, 3_600 + DAY - 1, [deployer.address], sender=deployer)


def test_constructor_accepts_delay_of_exactly_thaw_plus_one_day(project, deployer, opg, staking, distributor):
    other = project.CreditEscrow.deploy(opg, staking, distributor, 3_600, 3_600 + DAY, [deployer.address], sender=deployer)
    assert other.delay() == 3_600 + DAY


def test_eip712_domain_is_opg_credit_escrow_v1(escrow, chain_id):
    fields, name, version, cid, verifying_contract, salt, extensions = escrow.eip712Domain()
    assert bytes(fields) == b"\x0f"
    assert (name, version, cid, verifying_contract) == ("OPG Credit Escrow", "1", chain_id, escrow.address)
    assert bytes(salt) == b"\x00" * 32
    assert list(extensions) == []


def test_voucher_typehash_matches_offchain_type(escrow):
    assert bytes(escrow.VOUCHER_TYPEHASH()) == keccak(text="Voucher(address payer,address node,uint256 maxCumulative)")


def test_skip_reason_constants(escrow):
    assert (
        escrow.SETTLED(),
        escrow.SKIP_STALE(),
        escrow.SKIP_NODE_NOT_PAYABLE(),
        escrow.SKIP_BAD_SIGNATURE(),
        escrow.SKIP_INSUFFICIENT_BALANCE(),
        escrow.SKIP_ALLOWANCE_EXCEEDED(),
    ) == (0, 1, 2, 3, 4, 5)


@pytest.mark.parametrize("max_cumulative", [0, 1, 123 * OPG, 2**256 - 1])
def test_voucher_digest_agrees_with_offchain(escrow, escrow_domain, payer, node, max_cumulative):
    voucher = Voucher(payer=payer.address, node=node.address, max_cumulative=max_cumulative)
    assert bytes(escrow.voucher_digest(payer.address, node.address, max_cumulative)) == voucher.digest(escrow_domain)


def test_voucher_signer_agrees_with_offchain_signature(escrow, escrow_domain, payer, node, node_b):
    voucher = Voucher(payer=payer.address, node=node.address, max_cumulative=50 * OPG)
    sig = voucher.sign_with(payer.key, escrow_domain)
    assert voucher.signer_of(sig, escrow_domain) == payer.address
    r, vs = compact_signature(sig)
    assert escrow.voucher_signer(payer.address, node.address, 50 * OPG, r, vs) == payer.address
    assert escrow.voucher_signer(payer.address, node.address, 51 * OPG, r, vs) == ZERO
    assert escrow.voucher_signer(payer.address, node_b.address, 50 * OPG, r, vs) == ZERO
    assert escrow.voucher_signer(node.address, node.address, 50 * OPG, r, vs) == ZERO


def test_compact_signature_packs_v_into_the_top_bit(escrow_domain, payer, node):
    sig = bytes.fromhex(sign_voucher(payer.key, escrow_domain, payer.address, node.address, OPG)[2:])
    r, vs = compact_signature(sig)
    word = int.from_bytes(vs, "big")
    assert r == sig[:32]
    assert word & (2**255 - 1) == int.from_bytes(sig[32:64], "big")
    assert word >> 255 == sig[64] - 27


def test_voucher_signer_refuses_malformed_signatures(escrow, escrow_domain, payer, node):
    sig = sign_voucher(payer.key, escrow_domain, payer.address, node.address, OPG)
    r, vs = compact_signature(sig)
    flipped_v = (int.from_bytes(vs, "big") ^ (1 << 255)).to_bytes(32, "big")
    high_s = (SECP256K1_HALF_N + 1).to_bytes(32, "big")
    assert escrow.voucher_signer(payer.address, node.address, OPG, r, flipped_v) != payer.address
    assert escrow.voucher_signer(payer.address, node.address, OPG, r, high_s) == ZERO
    assert escrow.voucher_signer(payer.address, node.address, OPG, b"\x00" * 32, b"\x00" * 32) == ZERO


def test_zero_payer_voucher_is_never_valid(escrow, node):
    assert escrow.voucher_signer(ZERO, node.address, OPG, b"\x00" * 32, b"\x00" * 32) == ZERO


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
    ready_at = now + 5 + params.thaw_period
    assert (request.amount, request.ready_at) == (400 * OPG, ready_at)
    [event] = escrow.WithdrawalRequested.from_receipt(tx)
    assert (event.payer, event.amount, event.ready_at, event.expires_at) == (
        funded.address,
        400 * OPG,
        ready_at,
        ready_at + params.thaw_period,
    )
    # Thawing credits are still credits (settlement may draw on them), but not available for new service.
    assert escrow.balance_of(funded.address) == DEPOSIT
    assert escrow.available_of(funded.address) == DEPOSIT - 400 * OPG


def test_available_of_is_the_balance_without_a_request(escrow, funded):
    assert escrow.available_of(funded.address) == DEPOSIT


def test_available_of_never_underflows_when_settlement_took_the_thawing_credits(
    escrow, escrow_domain, funded, node, relayer
):
    escrow.request_withdrawal(800 * OPG, sender=funded.account)
    escrow.settle_batch(
        [signed_claim(funded.key, escrow_domain, funded.address, node.address, 500 * OPG)], ROOT, sender=relayer.account
    )
    assert escrow.balance_of(funded.address) == 500 * OPG
    assert escrow.available_of(funded.address) == 0


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
    assert escrow.available_of(funded.address) == 600 * OPG
    [event] = escrow.Withdrawn.from_receipt(tx)
    assert (event.payer, event.amount) == (funded.address, 400 * OPG)


def test_withdraw_in_the_last_second_of_the_ready_window(escrow, funded, params, chain, now):
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(400 * OPG, sender=funded.account)
    chain.pending_timestamp = now + 1 + 2 * params.thaw_period - 1
    assert escrow.Withdrawn.from_receipt(escrow.withdraw(sender=funded.account))[0].amount == 400 * OPG


def test_attack_standing_withdrawal_request_expires_one_thaw_after_ready(escrow, opg, funded, params, chain, now):
    # Attack: arm a withdrawal, let it thaw, and keep it ready as a standing instant exit to race settlement with.
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(DEPOSIT, sender=funded.account)
    ready_at = now + 1 + params.thaw_period
    chain.pending_timestamp = ready_at
    chain.mine()
    assert escrow.available_of(funded.address) == 0  # ready, unexpired: nodes serve nothing against it
    chain.pending_timestamp = ready_at + params.thaw_period  # one thaw period after ready: expired
    chain.mine()
    assert escrow.available_of(funded.address) == DEPOSIT  # an expired request no longer holds credits back
    tokens = opg.balanceOf(funded.address)
    with ape.reverts("CreditEscrow: withdrawal request expired"):
        escrow.withdraw(sender=funded.account)
    assert opg.balanceOf(funded.address) == tokens
    assert escrow.balance_of(funded.address) == DEPOSIT
    # Leaving again means a fresh request and a full new thaw.
    escrow.request_withdrawal(DEPOSIT, sender=funded.account)
    with ape.reverts("CreditEscrow: still thawing"):
        escrow.withdraw(sender=funded.account)


def test_attack_withdraw_in_the_same_block_as_a_batch_cannot_short_a_node_serving_available_credits(
    escrow, escrow_domain, opg, funded, node, relayer, params, chain, now
):
    # Attack: arm a withdrawal of most credits, get served, and withdraw in the very block the node's batch lands.
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(600 * OPG, sender=funded.account)
    chain.pending_timestamp = now + 1 + params.thaw_period
    chain.mine()
    available = escrow.available_of(funded.address)
    assert available == 400 * OPG
    # The honest node serves only against available credits: its voucher is capped at `available`.
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, available)
    tokens = opg.balanceOf(funded.address)
    first, second = send_in_one_block(
        chain,
        [(escrow.withdraw, (), funded), (escrow.settle_batch, ([voucher], ROOT), relayer)],
    )
    assert first.status == second.status == 1
    assert first.blockNumber == second.blockNumber
    assert escrow.spent(funded.address, node.address) == available  # paid in full
    assert opg.balanceOf(funded.address) == tokens + 600 * OPG
    assert escrow.balance_of(funded.address) == 0


def test_batch_before_withdraw_in_the_same_block_also_pays_the_node_in_full(
    escrow, escrow_domain, opg, funded, node, relayer, params, chain, now
):
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(600 * OPG, sender=funded.account)
    chain.pending_timestamp = now + 1 + params.thaw_period
    chain.mine()
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, escrow.available_of(funded.address))
    tokens = opg.balanceOf(funded.address)
    first, second = send_in_one_block(
        chain,
        [(escrow.settle_batch, ([voucher], ROOT), relayer), (escrow.withdraw, (), funded)],
    )
    assert first.status == second.status == 1 and first.blockNumber == second.blockNumber
    assert escrow.spent(funded.address, node.address) == 400 * OPG
    assert opg.balanceOf(funded.address) == tokens + 600 * OPG
    assert escrow.balance_of(funded.address) == 0


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
    assert escrow.available_of(funded.address) == DEPOSIT
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
    assert escrow.settled_at(funded.address, node.address) == tx.timestamp
    assert escrow.node_settled_at(node.address) == tx.timestamp
    assert batch_log(escrow, tx) == (100 * OPG, [(funded.address, 100 * OPG)], [(node.address, 1)])


def test_settle_batch_returns_outcomes(escrow, escrow_domain, funded, node, stranger, relayer):
    good = signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    unsigned = signed_claim(stranger.key, escrow_domain, funded.address, node.address, 20 * OPG)
    inactive = signed_claim(funded.key, escrow_domain, funded.address, stranger.address, 10 * OPG)
    result = escrow.settle_batch.call([good, unsigned, inactive], ROOT, sender=relayer.account)
    assert list(result) == [SETTLED, SKIP_BAD_SIGNATURE, SKIP_NODE_NOT_PAYABLE]


def test_batch_settled_event_carries_receipts_root(escrow, escrow_domain, funded, node, stranger, relayer):
    good = signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    bad = signed_claim(stranger.key, escrow_domain, funded.address, node.address, 20 * OPG)
    tx = escrow.settle_batch([good, bad], ROOT, sender=relayer.account)
    [batch] = escrow.BatchSettled.from_receipt(tx)
    assert bytes(batch.receipts_root) == ROOT
    assert batch.submitter == relayer.address
    assert batch.amount == 10 * OPG
    assert batch_log(escrow, tx) == (10 * OPG, [(funded.address, 10 * OPG)], [(node.address, 1)])


def test_fees_reach_the_reward_distributor(
    escrow, escrow_domain, distributor, staking, treasury, funded, node, relayer, params
):
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
    if staking.total_weight_in(epoch) == 0:
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
    assert batch_log(escrow, tx)[1] == [(funded.address, 30 * OPG)]
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
    assert escrow.BatchSettled.from_receipt(tx) == []  # nothing settled: no batch log
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
    assert outcomes(escrow, tx) == [SKIP_NODE_NOT_PAYABLE]
    assert escrow.ClaimSkipped.from_receipt(tx)[0].reason == SKIP_NODE_NOT_PAYABLE
    assert escrow.balance_of(funded.address) == DEPOSIT
    assert escrow.spent(funded.address, stranger.address) == 0


def test_verifier_is_not_an_inference_node(escrow, escrow_domain, staking, funded, verifier, relayer):
    assert staking.is_active_as(verifier.address, 2) is True
    voucher = signed_claim(funded.key, escrow_domain, funded.address, verifier.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_NODE_NOT_PAYABLE]
    assert escrow.balance_of(funded.address) == DEPOSIT


def test_node_unbonded_below_minimum_is_still_paid_for_work_done(
    escrow, escrow_domain, staking, funded, node_b, relayer
):
    # The minimum stake gates new work (is_active), not pay for work already served (is_payable).
    staking.request_unbond(1, sender=node_b.account)
    assert staking.is_active_as(node_b.address, 1) is False
    assert staking.is_payable(node_b.address) is True
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node_b.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED]


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


def test_high_s_twin_voucher_is_refused(escrow, escrow_domain, funded, node, relayer):
    sig = sign_voucher(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    twin = bytes.fromhex(high_s_twin(sig)[2:])
    with pytest.raises(InvalidSignature):
        compact_signature(twin)  # the off-chain encoder refuses it
    # Forced into the compact form anyway (s above half the order does not fit below the v bit): refused on-chain.
    r, high_s, v = twin[:32], int.from_bytes(twin[32:64], "big"), twin[64]
    vs = ((high_s & (2**255 - 1)) | (v - 27) << 255).to_bytes(32, "big")
    assert escrow.voucher_signer(funded.address, node.address, 10 * OPG, r, vs) == ZERO
    tx = escrow.settle_batch([(funded.address, node.address, 10 * OPG, r, vs, 10 * OPG)], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded.address) == DEPOSIT


def test_s_above_half_order_is_refused_even_if_it_recovers(escrow, escrow_domain, funded, node, relayer):
    sig = bytes.fromhex(sign_voucher(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)[2:])
    vs = (SECP256K1_HALF_N + 1).to_bytes(32, "big")
    tx = escrow.settle_batch(
        [(funded.address, node.address, 10 * OPG, sig[:32], vs, 10 * OPG)], ROOT, sender=relayer.account
    )
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]


def test_garbage_signature_is_skipped(escrow, funded, node, relayer):
    garbage = (funded.address, node.address, OPG, b"\x00" * 32, b"\x00" * 32, OPG)
    tx = escrow.settle_batch([garbage], ROOT, sender=relayer.account)
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
    other = project.CreditEscrow.deploy(opg, staking, distributor, params.thaw_period, params.delay, [deployer.address], sender=deployer)
    foreign = Domain.escrow(chain_id, other.address)
    voucher = signed_claim(funded.key, foreign, funded.address, node.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded.address) == DEPOSIT
    assert other.voucher_signer(funded.address, node.address, 10 * OPG, voucher[3], voucher[4]) == funded.address
    assert escrow.voucher_signer(funded.address, node.address, 10 * OPG, voucher[3], voucher[4]) == ZERO


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
    first = signed_claim(funded.key, escrow_domain, funded.address, node.address, 950 * OPG)
    second = signed_claim(funded.key, escrow_domain, funded.address, node_b.address, 60 * OPG)  # within its R10 cap
    tx = escrow.settle_batch([first, second], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED, SKIP_INSUFFICIENT_BALANCE]
    assert escrow.balance_of(funded.address) == 50 * OPG


def test_total_above_max_cumulative_reverts(escrow, escrow_domain, funded, node, relayer):
    sig = sign_voucher(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    with ape.reverts("CreditEscrow: total exceeds voucher"):
        escrow.settle_batch(
            [claim(funded.address, node.address, 10 * OPG, sig, 10 * OPG + 1)], ROOT, sender=relayer.account
        )


def test_empty_batch_reverts(escrow, relayer):
    with ape.reverts("CreditEscrow: empty batch"):
        escrow.settle_batch([], ROOT, sender=relayer.account)


def propose_and_wait(escrow, chain, claims, sender) -> None:
    """A node's own settlement: propose the batch and wait the claim delay (the facilitator settles at once)."""
    due, _ = escrow.proposal_of(escrow.propose_batch(claims, ROOT, sender=sender.account).return_value)
    chain.pending_timestamp = due


def test_node_can_settle_its_own_vouchers(chain, escrow, escrow_domain, distributor, funded, node):
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)
    propose_and_wait(escrow, chain, [voucher], node)
    tx = escrow.settle_batch([voucher], ROOT, sender=node.account)
    assert outcomes(escrow, tx) == [SETTLED]
    assert escrow.BatchSettled.from_receipt(tx)[0].submitter == node.address
    assert escrow.spent(funded.address, node.address) == 10 * OPG


def test_node_can_settle_what_a_relayer_under_claimed(chain, escrow, escrow_domain, funded, node, relayer):
    sig = sign_voucher(funded.key, escrow_domain, funded.address, node.address, 80 * OPG)
    escrow.settle_batch([claim(funded.address, node.address, 80 * OPG, sig, 20 * OPG)], ROOT, sender=relayer.account)
    propose_and_wait(escrow, chain, [claim(funded.address, node.address, 80 * OPG, sig, 80 * OPG)], node)
    tx = escrow.settle_batch([claim(funded.address, node.address, 80 * OPG, sig, 80 * OPG)], ROOT, sender=node.account)
    assert batch_log(escrow, tx)[1] == [(funded.address, 60 * OPG)]
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
    assert outcomes(escrow, tx) == [SETTLED, SKIP_NODE_NOT_PAYABLE, SETTLED]
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
# The packed batch log (attack 9a: junk batches, log decoding)
# ---------------------------------------------------------------------------------------------------------------


def test_attack_junk_batch_emits_no_batch_settled_log(
    escrow, escrow_domain, opg, distributor, funded, node, stranger, relayer
):
    # Attack: spam the settlement log (and indexers) with batches in which nothing settles.
    escrow.settle_batch(
        [signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)], ROOT, sender=relayer.account
    )
    junk = [
        signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG),  # stale
        signed_claim(funded.key, escrow_domain, funded.address, stranger.address, 10 * OPG),  # node not payable
        signed_claim(stranger.key, escrow_domain, funded.address, node.address, 20 * OPG),  # bad signature
        signed_claim(funded.key, escrow_domain, funded.address, node.address, DEPOSIT + 1),  # insufficient balance
    ]
    distributor_tokens = opg.balanceOf(distributor.address)
    tx = escrow.settle_batch(junk, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_STALE, SKIP_NODE_NOT_PAYABLE, SKIP_BAD_SIGNATURE, SKIP_INSUFFICIENT_BALANCE]
    assert escrow.BatchSettled.from_receipt(tx) == []
    assert [s.reason for s in escrow.ClaimSkipped.from_receipt(tx)] == [1, 2, 3, 4]
    assert distributor.FeesCredited.from_receipt(tx) == []
    assert opg.balanceOf(distributor.address) == distributor_tokens
    assert escrow.node_settled_at(stranger.address) == 0


def test_batch_settled_packs_payer_delta_and_node_runs(
    escrow, escrow_domain, opg, funded, payer_b, node, node_b, stranger, relayer
):
    opg.approve(escrow, DEPOSIT, sender=payer_b.account)
    escrow.deposit(DEPOSIT, sender=payer_b.account)
    escrow.settle_batch(
        [signed_claim(funded.key, escrow_domain, funded.address, node.address, 5 * OPG)], ROOT, sender=relayer.account
    )
    claims = [
        signed_claim(funded.key, escrow_domain, funded.address, node.address, 12 * OPG),  # delta 7
        signed_claim(stranger.key, escrow_domain, payer_b.address, node.address, 3 * OPG),  # skipped: not in the log
        signed_claim(payer_b.key, escrow_domain, payer_b.address, node.address, 20 * OPG),
        signed_claim(funded.key, escrow_domain, funded.address, stranger.address, OPG),  # unpayable run: no run word
        signed_claim(payer_b.key, escrow_domain, payer_b.address, node_b.address, 40 * OPG + 1),
    ]
    tx = escrow.settle_batch(claims, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED, SKIP_BAD_SIGNATURE, SETTLED, SKIP_NODE_NOT_PAYABLE, SETTLED]
    [event] = escrow.BatchSettled.from_receipt(tx)
    assert event.settled == [
        int(funded.address, 16) << 96 | 7 * OPG,
        int(payer_b.address, 16) << 96 | 20 * OPG,
        int(payer_b.address, 16) << 96 | 40 * OPG + 1,
    ]
    assert event.runs == [int(node.address, 16) << 96 | 2, int(node_b.address, 16) << 96 | 1]
    amount, settled, runs = batch_log(escrow, tx)
    assert amount == 67 * OPG + 1 == sum(delta for _, delta in settled)
    assert settled == [(funded.address, 7 * OPG), (payer_b.address, 20 * OPG), (payer_b.address, 40 * OPG + 1)]
    assert runs == [(node.address, 2), (node_b.address, 1)]
    assert sum(count for _, count in runs) == len(settled)
    assert bytes(event.receipts_root) == ROOT and event.submitter == relayer.address


def test_node_split_into_two_runs_gets_two_run_words(escrow, escrow_domain, funded, node, node_b, relayer):
    claims = [
        signed_claim(funded.key, escrow_domain, funded.address, node.address, OPG),
        signed_claim(funded.key, escrow_domain, funded.address, node_b.address, OPG),
        signed_claim(funded.key, escrow_domain, funded.address, node.address, 3 * OPG),
    ]
    tx = escrow.settle_batch(claims, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED] * 3
    assert batch_log(escrow, tx)[2] == [(node.address, 1), (node_b.address, 1), (node.address, 1)]
    assert batch_log(escrow, tx)[1] == [(funded.address, OPG), (funded.address, OPG), (funded.address, 2 * OPG)]


# ---------------------------------------------------------------------------------------------------------------
# Session keys: expiry and allowance
# ---------------------------------------------------------------------------------------------------------------


def test_session_signer_voucher_settles_and_draws_down_its_allowance(
    escrow, escrow_domain, funded, node, session_key, relayer, now
):
    tx = escrow.authorize_signer(session_key.address, now + DAY, 100 * OPG, sender=funded.account)
    [event] = escrow.SignerAuthorized.from_receipt(tx)
    assert (event.payer, event.signer, event.expiry, event.allowance) == (
        funded.address,
        session_key.address,
        now + DAY,
        100 * OPG,
    )
    assert escrow.signer_of(funded.address, session_key.address) == (now + DAY, 100 * OPG)
    voucher = signed_claim(session_key.key, escrow_domain, funded.address, node.address, 10 * OPG)
    assert escrow.voucher_signer(funded.address, node.address, 10 * OPG, voucher[3], voucher[4]) == session_key.address
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED]
    assert escrow.balance_of(funded.address) == DEPOSIT - 10 * OPG
    assert escrow.signer_of(funded.address, session_key.address) == (now + DAY, 90 * OPG)


def test_payer_signed_voucher_does_not_touch_session_allowances(
    escrow, escrow_domain, funded, node, authorized, relayer
):
    expiry, allowance = escrow.signer_of(funded.address, authorized.address)
    voucher = signed_claim(funded.key, escrow_domain, funded.address, node.address, 500 * OPG)
    assert outcomes(escrow, escrow.settle_batch([voucher], ROOT, sender=relayer.account)) == [SETTLED]
    assert escrow.signer_of(funded.address, authorized.address) == (expiry, allowance)


def test_session_key_can_spend_exactly_its_allowance(escrow, escrow_domain, funded, node, authorized, relayer):
    voucher = signed_claim(authorized.key, escrow_domain, funded.address, node.address, 100 * OPG)
    assert outcomes(escrow, escrow.settle_batch([voucher], ROOT, sender=relayer.account)) == [SETTLED]
    assert escrow.signer_of(funded.address, authorized.address)[1] == 0


def test_attack_leaked_session_key_cannot_drain_more_than_its_allowance(
    escrow, escrow_domain, funded, node, authorized, relayer
):
    # Attack: the holder of a leaked session key (colluding with a node) signs a voucher for the whole deposit.
    drain = signed_claim(authorized.key, escrow_domain, funded.address, node.address, DEPOSIT)
    tx = escrow.settle_batch([drain], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_ALLOWANCE_EXCEEDED]
    [skipped] = escrow.ClaimSkipped.from_receipt(tx)
    assert (skipped.payer, skipped.node, skipped.total, skipped.reason) == (
        funded.address,
        node.address,
        DEPOSIT,
        SKIP_ALLOWANCE_EXCEEDED,
    )
    assert escrow.balance_of(funded.address) == DEPOSIT
    # The most the key can take is its allowance, in one claim or many.
    capped = signed_claim(authorized.key, escrow_domain, funded.address, node.address, DEPOSIT, 100 * OPG)
    more = signed_claim(authorized.key, escrow_domain, funded.address, node.address, DEPOSIT, 100 * OPG + 1)
    tx = escrow.settle_batch([capped, more], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED, SKIP_ALLOWANCE_EXCEEDED]
    assert escrow.balance_of(funded.address) == DEPOSIT - 100 * OPG
    assert escrow.signer_of(funded.address, authorized.address)[1] == 0


def test_attack_leaked_session_key_after_revocation_is_still_capped_by_its_allowance(
    escrow, escrow_domain, funded, node, authorized, relayer, params, chain, now
):
    # The payer revokes the leaked key; revocation bites only after a thaw period, but the allowance caps the loss.
    chain.pending_timestamp = now + 10
    tx = escrow.revoke_signer(authorized.address, sender=funded.account)
    revoked_at = now + 10 + params.thaw_period
    assert escrow.SignerAuthorized.from_receipt(tx)[0].expiry == revoked_at
    assert escrow.signer_of(funded.address, authorized.address) == (revoked_at, 100 * OPG)
    chain.pending_timestamp = revoked_at - 1
    drain = signed_claim(authorized.key, escrow_domain, funded.address, node.address, DEPOSIT)
    capped = signed_claim(authorized.key, escrow_domain, funded.address, node.address, DEPOSIT, 100 * OPG)
    tx = escrow.settle_batch([drain, capped], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_ALLOWANCE_EXCEEDED, SETTLED]
    chain.pending_timestamp = revoked_at
    # From the revocation time on the key signs nothing (and only the payer can grant allowance).
    tx = escrow.settle_batch([drain], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded.address) == DEPOSIT - 100 * OPG


def test_session_signer_expiry_is_respected(
    escrow, escrow_domain, funded, node, session_key, relayer, params, chain, now
):
    expiry = now + params.thaw_period
    escrow.authorize_signer(session_key.address, expiry, 100 * OPG, sender=funded.account)
    voucher = signed_claim(session_key.key, escrow_domain, funded.address, node.address, 10 * OPG)
    chain.pending_timestamp = expiry  # expiry is exclusive
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(funded.address) == DEPOSIT
    assert escrow.voucher_signer(funded.address, node.address, 10 * OPG, voucher[3], voucher[4]) == ZERO


def test_session_signer_valid_until_the_second_before_expiry(
    escrow, escrow_domain, funded, node, session_key, relayer, params, chain, now
):
    expiry = now + params.thaw_period
    escrow.authorize_signer(session_key.address, expiry, 100 * OPG, sender=funded.account)
    voucher = signed_claim(session_key.key, escrow_domain, funded.address, node.address, 10 * OPG)
    chain.pending_timestamp = expiry - 1
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED]


def test_short_session_key_expiry_reverts_so_no_voucher_is_stranded(escrow, funded, session_key, params, now):
    # A key expiring sooner than a thaw period could leave its vouchers unsettleable (the payer would repudiate).
    with ape.reverts("CreditEscrow: expiry sooner than the thaw period"):
        escrow.authorize_signer(session_key.address, now + params.thaw_period - 1, 100 * OPG, sender=funded.account)


def test_session_key_expiry_of_exactly_one_thaw_period_is_accepted(chain, escrow, funded, session_key, params):
    at = chain.pending_timestamp + 10
    chain.pending_timestamp = at  # the transaction's block time, pinned
    escrow.authorize_signer(session_key.address, at + params.thaw_period, 100 * OPG, sender=funded.account)
    assert escrow.signer_of(funded.address, session_key.address)[0] == at + params.thaw_period


def test_unauthorized_session_key_is_skipped(escrow, escrow_domain, funded, node, session_key, relayer):
    voucher = signed_claim(session_key.key, escrow_domain, funded.address, node.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]


def test_session_signer_cannot_sign_for_another_payer(
    escrow, escrow_domain, opg, funded, payer_b, node, authorized, relayer
):
    opg.approve(escrow, DEPOSIT, sender=payer_b.account)
    escrow.deposit(DEPOSIT, sender=payer_b.account)
    voucher = signed_claim(authorized.key, escrow_domain, payer_b.address, node.address, 10 * OPG)
    tx = escrow.settle_batch([voucher], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.balance_of(payer_b.address) == DEPOSIT


def test_revoke_signer_takes_effect_only_after_thaw(
    escrow, escrow_domain, funded, node, authorized, relayer, params, chain, now
):
    chain.pending_timestamp = now + 10
    escrow.revoke_signer(authorized.address, sender=funded.account)
    revoked_at = now + 10 + params.thaw_period
    early = signed_claim(authorized.key, escrow_domain, funded.address, node.address, 10 * OPG)
    chain.pending_timestamp = revoked_at - 1
    assert outcomes(escrow, escrow.settle_batch([early], ROOT, sender=relayer.account)) == [SETTLED]
    late = signed_claim(authorized.key, escrow_domain, funded.address, node.address, 20 * OPG)
    chain.pending_timestamp = revoked_at
    assert outcomes(escrow, escrow.settle_batch([late], ROOT, sender=relayer.account)) == [SKIP_BAD_SIGNATURE]
    assert escrow.spent(funded.address, node.address) == 10 * OPG


def test_revoke_signer_never_extends_expiry(escrow, funded, session_key, params, now):
    escrow.authorize_signer(session_key.address, now + params.thaw_period, OPG, sender=funded.account)
    escrow.revoke_signer(session_key.address, sender=funded.account)  # one second later: now + thaw + 1 > expiry
    assert escrow.signer_of(funded.address, session_key.address)[0] == now + params.thaw_period


def test_revoke_unauthorized_signer_reverts(escrow, funded, session_key):
    with ape.reverts("CreditEscrow: signer not authorized"):
        escrow.revoke_signer(session_key.address, sender=funded.account)


def test_revoke_expired_signer_reverts(escrow, funded, session_key, params, chain, now):
    escrow.authorize_signer(session_key.address, now + params.thaw_period, OPG, sender=funded.account)
    chain.pending_timestamp = now + params.thaw_period
    with ape.reverts("CreditEscrow: signer not authorized"):
        escrow.revoke_signer(session_key.address, sender=funded.account)


def test_attack_authorize_signer_cannot_lower_allowance_of_a_key_in_force(
    escrow, funded, authorized, params, chain, now
):
    # Attack: after being served against a key's allowance, the payer lowers it to 0 so the voucher cannot settle.
    with ape.reverts("CreditEscrow: allowance decrease needs revocation"):
        escrow.authorize_signer(authorized.address, now + 30 * DAY, 0, sender=funded.account)
    with ape.reverts("CreditEscrow: expiry decrease needs revocation"):
        escrow.authorize_signer(authorized.address, now + 30 * DAY - 1, 100 * OPG, sender=funded.account)
    assert escrow.signer_of(funded.address, authorized.address) == (now + 30 * DAY, 100 * OPG)
    # The only way down is revocation, effective one thaw period later; afterwards any new grant applies.
    escrow.revoke_signer(authorized.address, sender=funded.account)
    chain.pending_timestamp = now + 1 + params.thaw_period
    escrow.authorize_signer(authorized.address, now + 2 * DAY, 5 * OPG, sender=funded.account)
    assert escrow.signer_of(funded.address, authorized.address) == (now + 2 * DAY, 5 * OPG)


def test_authorize_signer_raises_allowance_and_extends_expiry_at_once(escrow, funded, authorized, now):
    escrow.authorize_signer(authorized.address, now + 60 * DAY, 300 * OPG, sender=funded.account)
    assert escrow.signer_of(funded.address, authorized.address) == (now + 60 * DAY, 300 * OPG)


def test_attack_one_session_key_on_several_channels_cannot_exceed_its_allowance(
    escrow, escrow_domain, funded, node, node_b, authorized, relayer
):
    # Attack: one key signs 60 OPG vouchers on two channels (100 OPG allowance), hoping each is checked alone.
    claims = [
        signed_claim(authorized.key, escrow_domain, funded.address, node.address, 60 * OPG),
        signed_claim(authorized.key, escrow_domain, funded.address, node_b.address, 60 * OPG),
    ]
    tx = escrow.settle_batch(claims, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED, SKIP_ALLOWANCE_EXCEEDED]
    assert escrow.ClaimSkipped.from_receipt(tx)[0].reason == SKIP_ALLOWANCE_EXCEEDED
    assert escrow.spent(funded.address, node_b.address) == 0
    assert escrow.balance_of(funded.address) == DEPOSIT - 60 * OPG
    assert escrow.signer_of(funded.address, authorized.address)[1] == 40 * OPG
    # Within what is left it still settles (the honest path).
    tx = escrow.settle_batch(
        [signed_claim(authorized.key, escrow_domain, funded.address, node_b.address, 60 * OPG, 40 * OPG)],
        ROOT,
        sender=relayer.account,
    )
    assert outcomes(escrow, tx) == [SETTLED]
    assert escrow.signer_of(funded.address, authorized.address)[1] == 0


def test_attack_payer_signed_voucher_settled_first_limits_the_session_charge_to_its_delta(
    escrow, escrow_domain, funded, node, authorized, relayer, chain
):
    # The payer signed a 40 OPG voucher itself (unsettled); its session key later signed the newest, 100 OPG.
    # Settled payer-first in one batch the key is charged only its own 60 OPG delta; the newest alone costs it 100.
    payer_signed = signed_claim(funded.key, escrow_domain, funded.address, node.address, 40 * OPG)
    session_signed = signed_claim(authorized.key, escrow_domain, funded.address, node.address, 100 * OPG)
    snapshot = chain.snapshot()
    tx = escrow.settle_batch([payer_signed, session_signed], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED, SETTLED]
    assert batch_log(escrow, tx)[1] == [(funded.address, 40 * OPG), (funded.address, 60 * OPG)]
    payer_first = escrow.signer_of(funded.address, authorized.address)[1]
    assert payer_first == 40 * OPG
    assert escrow.spent(funded.address, node.address) == 100 * OPG
    chain.restore(snapshot)
    tx = escrow.settle_batch([session_signed, payer_signed], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED, SKIP_STALE]
    session_first = escrow.signer_of(funded.address, authorized.address)[1]
    assert session_first == 0
    assert escrow.spent(funded.address, node.address) == 100 * OPG
    # Same payment to the node either way; the difference is only whose allowance paid the first 40.
    assert payer_first - session_first == 40 * OPG
    assert escrow.balance_of(funded.address) == DEPOSIT - 100 * OPG


def test_reauthorizing_an_expired_signer_is_immediate(escrow, funded, session_key, params, chain, now):
    escrow.authorize_signer(session_key.address, now + params.thaw_period, 100 * OPG, sender=funded.account)
    chain.pending_timestamp = now + params.thaw_period
    escrow.authorize_signer(session_key.address, now + 2 * params.thaw_period, OPG, sender=funded.account)
    assert escrow.signer_of(funded.address, session_key.address) == (now + 2 * params.thaw_period, OPG)


def test_authorize_zero_signer_reverts(escrow, funded, now):
    with ape.reverts("CreditEscrow: signer is the zero address"):
        escrow.authorize_signer(ZERO, now + DAY, OPG, sender=funded.account)


def test_authorize_payer_itself_reverts(escrow, funded, now):
    with ape.reverts("CreditEscrow: signer is the payer"):
        escrow.authorize_signer(funded.address, now + DAY, OPG, sender=funded.account)


def test_authorize_signer_expiry_or_allowance_too_large_reverts(escrow, funded, session_key, now):
    with ape.reverts("CreditEscrow: expiry or allowance too large"):
        escrow.authorize_signer(session_key.address, 2**64, OPG, sender=funded.account)
    with ape.reverts("CreditEscrow: expiry or allowance too large"):
        escrow.authorize_signer(session_key.address, now + DAY, 2**192, sender=funded.account)


# ---------------------------------------------------------------------------------------------------------------
# Voiding charges (NodeStaking only)
# ---------------------------------------------------------------------------------------------------------------


def test_void_charges_by_anyone_but_the_staking_reverts(escrow, funded, node, deployer):
    for caller in (funded.account, node.account, deployer):
        with ape.reverts("CreditEscrow: caller is not the staking"):
            escrow.void_charges(funded.address, node.address, 10 * OPG, sender=caller)


def test_void_charges_by_the_staking_raises_spent_and_blocks_the_voided_work(
    escrow, escrow_domain, staking, funded, node, relayer, accounts, chain
):
    escrow.settle_batch(
        [signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG)], ROOT, sender=relayer.account
    )
    chain.provider.set_balance(staking.address, 10**18)
    as_staking = accounts[staking.address]  # impersonated on the local chain
    tx = escrow.void_charges(funded.address, node.address, 30 * OPG, sender=as_staking)
    [event] = escrow.ChargesVoided.from_receipt(tx)
    assert (event.payer, event.node, event.amount, event.spent) == (funded.address, node.address, 20 * OPG, 30 * OPG)
    assert escrow.spent(funded.address, node.address) == 30 * OPG
    assert escrow.voided(funded.address, node.address) == 20 * OPG
    assert escrow.balance_of(funded.address) == DEPOSIT - 10 * OPG  # voiding moves no credits
    # A voucher covering only the voided work pays nothing; beyond it, only the increase.
    stale = signed_claim(funded.key, escrow_domain, funded.address, node.address, 30 * OPG)
    newer = signed_claim(funded.key, escrow_domain, funded.address, node.address, 35 * OPG)
    tx = escrow.settle_batch([stale, newer], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_STALE, SETTLED]
    assert batch_log(escrow, tx)[1] == [(funded.address, 5 * OPG)]
    # Voiding below spent changes nothing.
    tx = escrow.void_charges(funded.address, node.address, 20 * OPG, sender=as_staking)
    assert escrow.ChargesVoided.from_receipt(tx) == []
    assert (escrow.spent(funded.address, node.address), escrow.voided(funded.address, node.address)) == (
        35 * OPG,
        20 * OPG,
    )


# ---------------------------------------------------------------------------------------------------------------
# Governance (attacks 8 and 17: no instant parameter changes)
# ---------------------------------------------------------------------------------------------------------------


def test_attack_non_owner_cannot_queue_a_change(escrow, stranger):
    with ape.reverts("ownable: caller is not the owner"):
        escrow.queue_change(setter_call("set_thaw_period", 60), sender=stranger.account)


def test_non_owner_cannot_cancel_a_change(escrow, deployer, stranger):
    queue(escrow, deployer, "set_thaw_period", 600)
    with ape.reverts("ownable: caller is not the owner"):
        escrow.cancel_change(keccak(setter_call("set_thaw_period", 600)), sender=stranger.account)


def test_queue_change_records_eta_after_the_delay(escrow, deployer, params, chain):
    call = setter_call("set_thaw_period", 600)
    tx = escrow.queue_change(call, sender=deployer)
    [event] = escrow.ChangeQueued.from_receipt(tx)
    assert bytes(event.id) == keccak(call) and bytes(event.call) == call
    assert event.eta == tx.timestamp + params.delay
    assert escrow.queued_eta(keccak(call)) == event.eta


def test_queue_the_same_change_twice_reverts(escrow, deployer):
    queue(escrow, deployer, "set_thaw_period", 600)
    with ape.reverts("timelock: change already queued"):
        escrow.queue_change(setter_call("set_thaw_period", 600), sender=deployer)


def test_attack_owner_cannot_change_thaw_period_without_queueing(escrow, deployer):
    with ape.reverts("timelock: change not queued"):
        escrow.set_thaw_period(60, sender=deployer)


def test_attack_queued_change_cannot_execute_before_the_delay(escrow, deployer, chain):
    eta = queue(escrow, deployer, "set_thaw_period", 600)
    chain.pending_timestamp = eta - 1
    with ape.reverts("timelock: change not due"):
        escrow.set_thaw_period(600, sender=deployer)


def test_due_change_executes_by_anyone(escrow, deployer, stranger, chain):
    eta = queue(escrow, deployer, "set_thaw_period", 600)
    chain.pending_timestamp = eta
    tx = escrow.set_thaw_period(600, sender=stranger.account)
    assert escrow.thaw_period() == 600
    assert escrow.ThawPeriodUpdated.from_receipt(tx)[0].thaw_period == 600
    assert bytes(escrow.ChangeExecuted.from_receipt(tx)[0].id) == keccak(setter_call("set_thaw_period", 600))
    assert escrow.queued_eta(keccak(setter_call("set_thaw_period", 600))) == 0
    with ape.reverts("timelock: change not queued"):  # consumed: one queue entry, one execution
        escrow.set_thaw_period(600, sender=stranger.account)


def test_due_change_executes_only_with_the_queued_arguments(escrow, deployer, chain):
    eta = queue(escrow, deployer, "set_thaw_period", 600)
    chain.pending_timestamp = eta
    with ape.reverts("timelock: change not queued"):
        escrow.set_thaw_period(601, sender=deployer)


def test_attack_due_change_lapses_after_the_grace_day(escrow, deployer, chain):
    eta = queue(escrow, deployer, "set_thaw_period", 600)
    assert escrow.GRACE_PERIOD() == DAY
    chain.pending_timestamp = eta + DAY
    with ape.reverts("timelock: change lapsed"):
        escrow.set_thaw_period(600, sender=deployer)


def test_due_change_executes_in_the_last_second_of_the_grace_day(escrow, deployer, chain):
    eta = queue(escrow, deployer, "set_thaw_period", 600)
    chain.pending_timestamp = eta + DAY - 1
    escrow.set_thaw_period(600, sender=deployer)
    assert escrow.thaw_period() == 600


def test_cancelled_change_cannot_execute(escrow, deployer, chain):
    eta = queue(escrow, deployer, "set_thaw_period", 600)
    id_ = keccak(setter_call("set_thaw_period", 600))
    tx = escrow.cancel_change(id_, sender=deployer)
    assert bytes(escrow.ChangeCanceled.from_receipt(tx)[0].id) == id_
    chain.pending_timestamp = eta
    with ape.reverts("timelock: change not queued"):
        escrow.set_thaw_period(600, sender=deployer)


def test_cancel_unqueued_change_reverts(escrow, deployer):
    with ape.reverts("timelock: change not queued"):
        escrow.cancel_change(keccak(setter_call("set_thaw_period", 600)), sender=deployer)


@pytest.mark.parametrize("thaw", [60, DAY, 2 * DAY])
def test_thaw_period_set_through_the_queue_applies_to_new_requests(escrow, deployer, funded, chain, thaw):
    govern(escrow, deployer, chain, "set_thaw_period", thaw)
    assert escrow.thaw_period() == thaw
    tx = escrow.request_withdrawal(OPG, sender=funded.account)
    assert escrow.withdrawal_of(funded.address).ready_at == tx.timestamp + thaw


@pytest.mark.parametrize("thaw", [0, 59])
def test_thaw_period_below_bounds_reverts(escrow, deployer, chain, thaw):
    with ape.reverts("CreditEscrow: thaw period out of bounds"):
        govern(escrow, deployer, chain, "set_thaw_period", thaw)


def test_attack_thaw_period_above_delay_minus_one_day_reverts(escrow, deployer, params, chain):
    # A thaw period longer than the delay allows would let a change land before participants can exit.
    with ape.reverts("CreditEscrow: thaw period above the delay"):
        govern(escrow, deployer, chain, "set_thaw_period", params.delay - DAY + 1)


def test_thaw_period_of_exactly_delay_minus_one_day_is_accepted(escrow, deployer, params, chain):
    govern(escrow, deployer, chain, "set_thaw_period", params.delay - DAY)
    assert escrow.thaw_period() == params.delay - DAY


def test_attack_delay_cannot_be_set_below_thaw_period_plus_one_day(escrow, deployer, params, chain):
    with ape.reverts("timelock: delay below the floor"):
        govern(escrow, deployer, chain, "set_delay", params.thaw_period + DAY - 1)


def test_delay_set_through_the_queue(escrow, deployer, params, chain):
    tx = govern(escrow, deployer, chain, "set_delay", params.thaw_period + DAY)
    assert escrow.delay() == params.thaw_period + DAY
    assert escrow.DelayUpdated.from_receipt(tx)[0].delay == params.thaw_period + DAY


def test_delay_above_90_days_reverts(escrow, deployer, chain):
    with ape.reverts("timelock: delay above 90 days"):
        govern(escrow, deployer, chain, "set_delay", 90 * DAY + 1)


def test_thaw_period_change_does_not_move_a_pending_request(escrow, deployer, funded, params, chain):
    eta = queue(escrow, deployer, "set_thaw_period", 2 * DAY)
    chain.pending_timestamp = eta
    tx = escrow.request_withdrawal(OPG, sender=funded.account)
    escrow.set_thaw_period(2 * DAY, sender=deployer)
    chain.pending_timestamp = tx.timestamp + params.thaw_period
    assert escrow.Withdrawn.from_receipt(escrow.withdraw(sender=funded.account))[0].amount == OPG


def test_ownership_transfer_is_two_step(escrow, deployer, stranger):
    escrow.transfer_ownership(stranger.address, sender=deployer)
    assert escrow.pending_owner() == stranger.address
    assert escrow.owner() == deployer.address
    queue(escrow, deployer, "set_thaw_period", 600)  # still the owner until accepted
    escrow.accept_ownership(sender=stranger.account)
    assert escrow.owner() == stranger.address
    assert escrow.pending_owner() == ZERO
    queue(escrow, stranger.account, "set_thaw_period", 700)
    with ape.reverts("ownable: caller is not the owner"):
        escrow.queue_change(setter_call("set_thaw_period", 800), sender=deployer)


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
        escrow.queue_change(setter_call("set_thaw_period", 600), sender=deployer)


def test_withdrawals_never_need_the_owner(escrow, opg, funded, deployer, params, chain, now):
    escrow.renounce_ownership(sender=deployer)
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(DEPOSIT, sender=funded.account)
    chain.pending_timestamp = now + 1 + params.thaw_period
    assert escrow.Withdrawn.from_receipt(escrow.withdraw(sender=funded.account))[0].amount == DEPOSIT


# ---------------------------------------------------------------------------------------------------------------
# Reentrancy surface: the escrow calls only its immutable token, staking and distributor
# ---------------------------------------------------------------------------------------------------------------


def test_settlement_calls_only_the_token_staking_and_distributor(
    escrow, escrow_domain, opg, staking, distributor, funded, payer_b, node, node_b, authorized, relayer, chain
):
    opg.approve(escrow, DEPOSIT, sender=payer_b.account)
    escrow.deposit(DEPOSIT, sender=payer_b.account)
    claims = [
        signed_claim(funded.key, escrow_domain, funded.address, node.address, 10 * OPG),
        signed_claim(authorized.key, escrow_domain, funded.address, node_b.address, 10 * OPG),
        signed_claim(payer_b.key, escrow_domain, payer_b.address, node_b.address, 10 * OPG),
    ]
    tx = escrow.settle_batch(claims, ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SETTLED] * 3
    called = called_addresses(chain, tx) - {escrow.address.lower()}
    allowed = {a.address.lower() for a in (opg, staking, distributor)}
    # ecrecover is the precompile at 0x01; no payer, signer or node address is ever called.
    assert called - allowed <= {"0x0000000000000000000000000000000000000001"}
    assert allowed <= called


def test_withdraw_calls_only_the_token(escrow, opg, funded, params, chain, now):
    chain.pending_timestamp = now + 1
    escrow.request_withdrawal(OPG, sender=funded.account)
    chain.pending_timestamp = now + 1 + params.thaw_period
    tx = escrow.withdraw(sender=funded.account)
    assert called_addresses(chain, tx) == {escrow.address.lower(), opg.address.lower()}


def test_claim_for_the_zero_payer_never_pays(escrow, node, relayer):
    garbage = (ZERO, node.address, OPG, b"\x00" * 32, b"\x00" * 32, OPG)
    tx = escrow.settle_batch([garbage], ROOT, sender=relayer.account)
    assert outcomes(escrow, tx) == [SKIP_BAD_SIGNATURE]
    assert escrow.spent(ZERO, node.address) == 0
    assert escrow.BatchSettled.from_receipt(tx) == []
