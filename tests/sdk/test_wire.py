"""The wire form round-trips, and SignatureChecker recovers exactly what eth-account recovers."""

from __future__ import annotations

import secrets

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import given, settings
from hypothesis import strategies as st

from offchain.messages import Domain, InvalidSignature, Receipt, SignedReceipt, SignedVoucher, Voucher
from offchain.sdk.wire import (
    SignatureChecker,
    parse_receipt,
    parse_voucher,
    receipt_json,
    voucher_fields_json,
    voucher_json,
)

DOMAIN = Domain.staking(31337, "0x" + "ab" * 20)
ESCROW = Domain.escrow(1, "0x" + "cd" * 20)
NODE = Account.create()
PAYER = Account.create()


def _receipt(amount: int, cumulative: int, timestamp: int) -> Receipt:
    return Receipt(request_id="0x" + secrets.token_hex(32), payer=PAYER.address, node=NODE.address,
                   model_id="0x" + "11" * 32, input_hash="0x" + "22" * 32, output_hash="0x" + "33" * 32,
                   amount=amount, cumulative=cumulative, timestamp=timestamp)


uint = st.integers(min_value=0, max_value=2**256 - 1)


@settings(max_examples=25, deadline=None)
@given(amount=uint, cumulative=uint, timestamp=st.integers(min_value=0, max_value=2**64 - 1))
def test_receipt_round_trip_and_recovery(amount, cumulative, timestamp):
    receipt = _receipt(amount, cumulative, timestamp)
    signature = receipt.sign_with(NODE.key, DOMAIN)
    data = receipt_json(receipt, signature)
    assert isinstance(data["amount"], str) and isinstance(data["timestamp"], int)
    assert data["amount"] == str(amount) and data["requestId"] == receipt.request_id
    parsed = parse_receipt(data)
    assert parsed == SignedReceipt(**receipt.model_dump(), signature=signature)
    assert receipt_json(parsed) == data
    # snake_case names and numbers are read too
    assert parse_receipt({**parsed.model_dump(), "amount": amount}) == parsed
    checker = SignatureChecker(DOMAIN)
    assert checker.digest(receipt) == receipt.digest(DOMAIN)
    expected = Account.recover_message(encode_typed_data(full_message=receipt.typed_data(DOMAIN)),
                                       signature=bytes.fromhex(signature[2:]))
    assert checker.signer(receipt, signature) == expected == NODE.address


@settings(max_examples=25, deadline=None)
@given(cap=uint)
def test_voucher_round_trip_and_recovery(cap):
    voucher = Voucher(payer=PAYER.address, node=NODE.address, max_cumulative=cap)
    signature = voucher.sign_with(PAYER.key, ESCROW)
    data = voucher_json(voucher, signature)
    assert data == {**voucher_fields_json(voucher), "signature": signature}
    assert data["maxCumulative"] == str(cap)
    parsed = parse_voucher(data)
    assert parsed == SignedVoucher(**voucher.model_dump(), signature=signature)
    assert voucher_json(parsed) == data
    expected = Account.recover_message(encode_typed_data(full_message=voucher.typed_data(ESCROW)),
                                       signature=bytes.fromhex(signature[2:]))
    assert SignatureChecker(ESCROW).signer(voucher, signature) == expected == PAYER.address


def test_checker_refuses_bad_and_malleable_signatures():
    receipt = _receipt(1, 1, 1)
    signature = receipt.sign_with(NODE.key, DOMAIN)
    checker = SignatureChecker(DOMAIN)
    sig = bytes.fromhex(signature[2:])
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    high_s = sig[:32] + (n - int.from_bytes(sig[32:64], "big")).to_bytes(32, "big") + bytes([55 - sig[64]])
    with pytest.raises(InvalidSignature, match="malleable"):
        checker.signer(receipt, high_s)
    with pytest.raises(InvalidSignature, match="65 bytes"):
        checker.signer(receipt, sig[:64])
    assert not checker.signed_by(receipt, "0x" + "00" * 65, NODE.address)
    # another domain recovers another address
    assert SignatureChecker(ESCROW).signer(receipt, signature) != NODE.address
    assert checker.signed_by(receipt, signature, NODE.address.lower())


def test_wire_needs_a_signature():
    with pytest.raises(ValueError, match="signature"):
        receipt_json(_receipt(1, 1, 1))
    with pytest.raises(ValueError):
        parse_voucher({"payer": PAYER.address, "node": NODE.address, "maxCumulative": "-1", "signature": "0x00"})
