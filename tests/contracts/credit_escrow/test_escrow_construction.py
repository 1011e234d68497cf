"""CreditEscrow: Construction and views."""

from __future__ import annotations

import ape
import pytest
from credit_escrow_kit import (
    DAY,
    OPG,
    ZERO,
    sign_voucher,
)
from eth_utils import keccak

from offchain.messages import (
    SECP256K1_HALF_N,
    Voucher,
    compact_signature,
)

pytestmark = pytest.mark.usefixtures("_session_fixtures_first", "_node_stake_backs_the_pay")


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
