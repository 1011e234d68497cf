"""The relayer killed (SIGKILL) in the middle of an exact settlement: with the transfer broadcast but not yet mined,
and with it mined but not yet confirmed by the relayer. After a restart on the same store, the payer's retry of the
same authorisation answers the one transaction that moved the money; the payee is paid exactly once."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from test_relayer_verify import authorization, exact_request

from offchain.devkit.devnet import OPG, new_key


def next_block_time(devnet) -> int:
    return max(int(time.time()), int(devnet.w3.eth.get_block("pending")["timestamp"]))


def restart(relayer) -> None:
    relayer.start()
    relayer.client = httpx.Client(base_url=relayer.url, timeout=30)


@pytest.mark.parametrize("mined_before_restart", [False, True], ids=["broadcast_not_mined", "mined_not_confirmed"])
def test_sigkill_during_an_exact_settlement_pays_once_and_the_retry_answers_the_same_transfer(
        relayer, devnet, mined_before_restart):
    payer, merchant = new_key(), new_key().address
    devnet.fund(payer, 5 * OPG)
    nxt = next_block_time(devnet)
    body = exact_request(devnet, authorization(devnet, payer, merchant, 2 * OPG, valid_after=nxt - 60,
                                               valid_before=nxt + 900), merchant, 2 * OPG)
    nonce = devnet.w3.eth.get_transaction_count(relayer.address)
    devnet.rpc("evm_setAutomine", False)
    try:
        t = threading.Thread(target=lambda: _quietly(relayer, body), daemon=True)
        t.start()
        deadline = time.monotonic() + 20
        while devnet.w3.eth.get_transaction_count(relayer.address, "pending") == nonce:
            assert time.monotonic() < deadline, "the relayer sent nothing"
            time.sleep(0.02)
        relayer.kill9()  # the transfer is in the mempool, the relayer's record says "sent"
        if mined_before_restart:
            devnet.rpc("evm_mine")
    finally:
        devnet.rpc("evm_setAutomine", True)
    restart(relayer)
    if not mined_before_restart:
        devnet.rpc("evm_mine")  # the transfer broadcast before the kill is still in the mempool
    answer = relayer.post("/settle", body).json()
    assert answer["success"] is True, answer
    receipt = devnet.w3.eth.get_transaction_receipt(answer["transaction"])
    assert receipt["status"] == 1
    assert devnet.w3.eth.get_transaction(answer["transaction"])["nonce"] == nonce
    assert devnet.opg.functions.balanceOf(merchant).call() == 2 * OPG  # once
    again = relayer.post("/settle", body).json()
    assert again["success"] is True and again["transaction"] == answer["transaction"]
    assert devnet.opg.functions.balanceOf(merchant).call() == 2 * OPG


def _quietly(relayer, body) -> None:
    try:
        relayer.post("/settle", body)
    except httpx.HTTPError:  # the relayer was killed under it
        pass
