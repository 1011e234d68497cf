"""A relayer plug-in (``OPG_RELAYER_PLUGINS=relayer_faults``, see offchain/relayer/plugins.py) for crash-recovery
tests: the relayer process exits hard right after a batch's transaction is recorded as sent, before its broadcast."""

from __future__ import annotations

import logging
import os

from offchain.relayer.events import Events
from offchain.sdk.tx import SentTx

FAULT_EXIT_CODE = 137
log = logging.getLogger("opg.relayer.faults")


def _exit_after_batch_recorded(tx: SentTx) -> None:
    if tx.kind == "batch":
        log.warning("relayer_faults: exiting hard after recording batch %s as sent (%s)", tx.ref, tx.tx_hash)
        logging.shutdown()
        os._exit(FAULT_EXIT_CODE)


def install(events: Events) -> None:
    events.tx_recorded.subscribe(_exit_after_batch_recorded)
