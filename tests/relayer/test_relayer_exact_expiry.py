"""Exact (EIP-3009) authorisations are judged at ``/verify`` as the chain will judge them: by the next block's time
(max(wall clock, chain clock)), against the pending state, so that an authorisation the chain will refuse is refused
before the node runs its model; a transfer that still reverts on chain carries its revert reason back."""

from __future__ import annotations

import threading
import time

import pytest
from test_relayer_verify import authorization, exact_request

from offchain.devkit.devnet import OPG, new_key


def next_block_time(devnet) -> int:
    return max(int(time.time()), int(devnet.w3.eth.get_block("pending")["timestamp"]))


@pytest.fixture(scope="module")
def ahead(devnet):
    """The chain's clock 420 s ahead of the wall clock, as on a devnet that advanced time."""
    devnet.advance(420)
    assert devnet.chain_now() > time.time() + 400
    return devnet


@pytest.fixture
def payer(devnet):
    p = new_key()
    devnet.fund(p, 10 * OPG)
    return p


def test_attack_exact_authorisation_expired_on_the_chains_clock_is_refused_before_the_model_runs(
        relayer, ahead, payer):
    """A stock x402 client signs validBefore = wall clock + 300; the chain's clock is already past it."""
    devnet = ahead
    merchant = new_key().address
    wall = int(time.time())
    payload = authorization(devnet, payer, merchant, OPG, valid_after=wall - 60, valid_before=wall + 300)
    body = exact_request(devnet, payload, merchant, OPG)
    sent_before = devnet.w3.eth.get_transaction_count(relayer.address)
    answer = relayer.post("/verify", body).json()
    assert answer["isValid"] is False, answer
    assert answer["invalidReason"] == "invalid_exact_evm_payload_authorization_valid_before", answer
    assert "chain" in answer["invalidMessage"], answer
    settled = relayer.post("/settle", body).json()
    assert settled["success"] is False and settled["transaction"] == "", settled
    assert settled["errorReason"] == "invalid_exact_evm_payload_authorization_valid_before"
    assert devnet.w3.eth.get_transaction_count(relayer.address) == sent_before  # no gas spent on a doomed transfer
    assert devnet.opg.functions.balanceOf(merchant).call() == 0


def test_attack_exact_authorisation_expiring_before_the_chain_can_settle_it_is_refused(relayer, ahead, payer):
    devnet = ahead
    merchant = new_key().address
    payload = authorization(devnet, payer, merchant, OPG, valid_after=0, valid_before=next_block_time(devnet) + 3)
    answer = relayer.post("/verify", exact_request(devnet, payload, merchant, OPG)).json()
    assert answer["invalidReason"] == "invalid_exact_evm_payload_authorization_valid_before", answer


def test_attack_exact_authorisation_not_yet_valid_on_the_chains_clock_is_refused(relayer, ahead, payer):
    devnet = ahead
    merchant = new_key().address
    nxt = next_block_time(devnet)
    payload = authorization(devnet, payer, merchant, OPG, valid_after=nxt + 30, valid_before=nxt + 600)
    answer = relayer.post("/verify", exact_request(devnet, payload, merchant, OPG)).json()
    assert answer["invalidReason"] == "invalid_exact_evm_payload_authorization_valid_after", answer


def test_exact_authorisation_signed_with_the_chains_clock_verifies_and_settles(relayer, ahead, payer):
    devnet = ahead
    merchant = new_key().address
    nxt = next_block_time(devnet)
    payload = authorization(devnet, payer, merchant, OPG, valid_after=nxt - 60, valid_before=nxt + 300)
    body = exact_request(devnet, payload, merchant, OPG)
    assert relayer.post("/verify", body).json()["isValid"] is True
    settled = relayer.post("/settle", body).json()
    assert settled["success"] is True, settled
    assert devnet.opg.functions.balanceOf(merchant).call() == OPG


def test_exact_transfer_reverting_on_chain_carries_its_revert_reason(relayer, ahead, payer):
    """The payer empties its wallet in the same block as the relayer's transfer (after /settle simulated it): the
    transfer reverts on chain, and the answer and the relayer's log say why."""
    devnet = ahead
    merchant = new_key().address
    nxt = next_block_time(devnet)
    payload = authorization(devnet, payer, merchant, OPG, valid_after=nxt - 60, valid_before=nxt + 600)
    body = exact_request(devnet, payload, merchant, OPG)
    nonce = devnet.w3.eth.get_transaction_count(relayer.address)
    devnet.rpc("evm_setAutomine", False)
    result: dict = {}
    try:
        t = threading.Thread(target=lambda: result.update(relayer.post("/settle", body).json()))
        t.start()
        deadline = time.monotonic() + 20
        while devnet.w3.eth.get_transaction_count(relayer.address, "pending") == nonce:
            assert time.monotonic() < deadline, "the relayer sent nothing"
            time.sleep(0.05)
        sink = new_key().address
        tx = devnet.opg.functions.transfer(sink, 10 * OPG).build_transaction({
            "from": payer.address, "gas": 100_000, "maxFeePerGas": 10**12, "maxPriorityFeePerGas": 10**11,
            "nonce": devnet.w3.eth.get_transaction_count(payer.address, "pending")})
        signed = devnet.w3.eth.account.sign_transaction(tx, payer.key)
        devnet.w3.eth.send_raw_transaction(signed.raw_transaction)
        devnet.rpc("evm_mine")
    finally:
        devnet.rpc("evm_setAutomine", True)
    t.join(30)
    assert result["success"] is False and result["transaction"], result
    assert result["errorReason"] == "transaction_failed", result
    assert "reverted" in result["errorMessage"] and "balance" in result["errorMessage"].lower(), result
    assert devnet.w3.eth.get_transaction_receipt(result["transaction"])["status"] == 0
    assert devnet.opg.functions.balanceOf(merchant).call() == 0
    log = relayer.log.read_text()
    assert result["errorMessage"] in log, log[-2000:]
