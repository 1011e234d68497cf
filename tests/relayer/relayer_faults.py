"""A relayer plug-in (``OPG_RELAYER_PLUGINS=relayer_faults``: the daemons' plug-in hook) injecting faults at the
moment a transaction is recorded as sent, before its broadcast. ``OPG_RELAYER_FAULT`` picks the fault:

- ``exit`` (the default): the relayer process exits hard right after a batch's transaction is recorded (crash
  recovery tests);
- ``steal_nonce``: while the file named by ``OPG_RELAYER_FAULT_ARM`` exists (the test creates it, the fault removes
  it), another process takes the batch's nonce first: an ``eth_sendTransaction`` from the relayer's own (anvil
  unlocked) account to ``OPG_RELAYER_FAULT_RPC``, mined before the relayer broadcasts its transaction;
- ``exit_after_build``: the relayer process exits hard once its first batch is built (committed to the store, its
  receipts pointing to it) and before that batch's transaction is signed (the batcher's ``_send``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import httpx
from eth_account import Account

from offchain.relayer.batcher import Batcher
from offchain.relayer.events import Events
from offchain.sdk.tx import SentTx

FAULT_EXIT_CODE = 137
log = logging.getLogger("opg.relayer.faults")


def _exit_after_batch_recorded(tx: SentTx) -> None:
    if tx.kind == "batch":
        log.warning("relayer_faults: exiting hard after recording batch %s as sent (%s)", tx.ref, tx.tx_hash)
        logging.shutdown()
        os._exit(FAULT_EXIT_CODE)


def _steal_nonce(tx: SentTx) -> None:
    arm = Path(os.environ["OPG_RELAYER_FAULT_ARM"])
    if tx.kind != "batch" or not arm.exists():
        return
    arm.unlink()
    sender = Account.recover_transaction(tx.raw)
    answer = httpx.post(os.environ["OPG_RELAYER_FAULT_RPC"], timeout=10, json={
        "jsonrpc": "2.0", "id": 1, "method": "eth_sendTransaction",
        "params": [{"from": sender, "to": sender, "value": "0x0", "nonce": hex(tx.nonce)}]}).json()
    log.warning("relayer_faults: nonce %d of %s taken by another sender before batch %s: %s", tx.nonce, sender,
                tx.ref, answer)


def _exit_after_build(events: Events) -> None:
    def exit_before_signing(self: Batcher, batch_id: int, *args: object, **kwargs: object) -> None:
        log.warning("relayer_faults: exiting hard after building batch %s, before signing it", batch_id)
        logging.shutdown()
        os._exit(FAULT_EXIT_CODE)

    Batcher._send = exit_before_signing  # type: ignore[method-assign]


FAULTS = {"exit": _exit_after_batch_recorded, "steal_nonce": _steal_nonce}
PATCHES = {"exit_after_build": _exit_after_build}


def install(events: Events) -> None:
    fault = os.environ.get("OPG_RELAYER_FAULT", "exit")
    if fault in PATCHES:
        PATCHES[fault](events)
    else:
        events.tx_recorded.subscribe(FAULTS[fault])
