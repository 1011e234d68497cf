"""OPG token: ERC-20."""

from __future__ import annotations

import ape
import pytest
from opg_kit import OPG, ZERO

pytestmark = pytest.mark.usefixtures("_session_fixtures_first")


MAX_UINT256 = 2**256 - 1


def test_transfer_moves_balance_and_emits_transfer(opg, holder, other):
    tx = opg.transfer(other.address, 10 * OPG, sender=holder.account)
    assert opg.balanceOf(holder.address) == 9_990 * OPG
    assert opg.balanceOf(other.address) == 10 * OPG
    [event] = opg.Transfer.from_receipt(tx)
    assert (event.sender, event.receiver, event.value) == (holder.address, other.address, 10 * OPG)


def test_transfer_above_balance_reverts(opg, holder, other):
    with ape.reverts("erc20: transfer amount exceeds balance"):
        opg.transfer(other.address, 10_001 * OPG, sender=holder.account)


def test_transfer_to_zero_address_reverts(opg, holder):
    with ape.reverts("erc20: transfer to the zero address"):
        opg.transfer(ZERO, OPG, sender=holder.account)


def test_approve_sets_allowance_and_emits_approval(opg, holder, other):
    tx = opg.approve(other.address, 5 * OPG, sender=holder.account)
    assert opg.allowance(holder.address, other.address) == 5 * OPG
    [event] = opg.Approval.from_receipt(tx)
    assert (event.owner, event.spender, event.value) == (holder.address, other.address, 5 * OPG)


def test_transfer_from_spends_allowance(opg, holder, other, relayer):
    opg.approve(other.address, 5 * OPG, sender=holder.account)
    opg.transferFrom(holder.address, relayer.address, 3 * OPG, sender=other.account)
    assert opg.balanceOf(relayer.address) == 3 * OPG
    assert opg.allowance(holder.address, other.address) == 2 * OPG


def test_transfer_from_above_allowance_reverts(opg, holder, other):
    opg.approve(other.address, OPG, sender=holder.account)
    with ape.reverts("erc20: insufficient allowance"):
        opg.transferFrom(holder.address, other.address, OPG + 1, sender=other.account)


def test_infinite_allowance_is_not_decreased(opg, holder, other):
    opg.approve(other.address, MAX_UINT256, sender=holder.account)
    opg.transferFrom(holder.address, other.address, OPG, sender=other.account)
    assert opg.allowance(holder.address, other.address) == MAX_UINT256


def test_burn_reduces_balance_and_total_supply(opg, holder):
    supply = opg.totalSupply()
    tx = opg.burn(7 * OPG, sender=holder.account)
    assert opg.balanceOf(holder.address) == 9_993 * OPG
    assert opg.totalSupply() == supply - 7 * OPG
    [event] = opg.Transfer.from_receipt(tx)
    assert (event.sender, event.receiver, event.value) == (holder.address, ZERO, 7 * OPG)


def test_burn_above_balance_reverts(opg, holder):
    with ape.reverts("erc20: burn amount exceeds balance"):
        opg.burn(10_001 * OPG, sender=holder.account)


def test_burn_from_spends_allowance_and_reduces_supply(opg, holder, other):
    supply = opg.totalSupply()
    opg.approve(other.address, 5 * OPG, sender=holder.account)
    opg.burn_from(holder.address, 2 * OPG, sender=other.account)
    assert opg.balanceOf(holder.address) == 9_998 * OPG
    assert opg.allowance(holder.address, other.address) == 3 * OPG
    assert opg.totalSupply() == supply - 2 * OPG


def test_burn_from_without_allowance_reverts(opg, holder, other):
    with ape.reverts("erc20: insufficient allowance"):
        opg.burn_from(holder.address, OPG, sender=other.account)
