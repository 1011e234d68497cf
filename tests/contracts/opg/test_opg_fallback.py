"""OPG token: __default__."""

from __future__ import annotations

import ape
import pytest
from eth_utils import to_checksum_address
from opg_kit import Auth

pytestmark = pytest.mark.usefixtures("_session_fixtures_first")


def test_unknown_selector_reverts(opg, holder):
    with ape.reverts("OPG: unknown function"):
        holder.account.transfer(opg, 0, data=bytes.fromhex("deadbeef"))


def test_short_calldata_reverts(opg, holder):
    with ape.reverts("OPG: unknown function"):
        holder.account.transfer(opg, 0, data=b"\xcf\x09\x29")


def test_empty_calldata_reverts(opg, holder):
    with ape.reverts("OPG: unknown function"):
        holder.account.transfer(opg, 0)


def test_ether_sent_to_token_reverts(opg, holder, chain):
    with ape.reverts():
        holder.account.transfer(opg, 1, data=auth_free_bytes_calldata(holder.address))
    assert chain.provider.get_balance(opg.address) == 0


def auth_free_bytes_calldata(owner: str) -> bytes:
    """Bytes-overload call data (the one `__default__` accepts) with a dummy signature."""
    auth = Auth(owner, to_checksum_address("0x" + "11" * 20), 1, 0, 2**64, b"\x00" * 32)
    return auth.bytes_calldata(b"\x00" * 65)
