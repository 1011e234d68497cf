"""A relayer plug-in (``OPG_RELAYER_PLUGINS=lease_faults``, see offchain/daemon/plugins.py) for the lease tests: once
the file named by ``OPG_LEASE_PAUSE_FILE`` exists, the process stops itself (SIGSTOP) right after a batch transaction
is recorded in the journal and before it is broadcast, and removes the file: a leader frozen between its write-ahead
record and its broadcast, resumed by the test (SIGCONT) after another relayer took the lease over."""

from __future__ import annotations

import logging
import os
import signal
import threading

from offchain.relayer.events import Events
from offchain.sdk.tx import SentTx

PAUSE_FILE = "OPG_LEASE_PAUSE_FILE"
log = logging.getLogger("opg.relayer.faults")


def _pause_after_batch_recorded(tx: SentTx) -> None:
    path = os.environ.get(PAUSE_FILE)
    if tx.kind == "batch" and path and os.path.exists(path):
        os.unlink(path)
        log.warning("lease_faults: stopping (SIGSTOP) after recording batch %s (%s), before its broadcast", tx.ref,
                    tx.tx_hash)
        # Directed at this thread, not the process: a process-directed SIGSTOP may be taken by another thread, and
        # this one could run on past its syscall and broadcast before the group stop reaches it. A signal pending
        # on the calling thread is handled on its return from the syscall, so it stops before another instruction.
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)


def install(events: Events) -> None:
    events.tx_recorded.subscribe(_pause_after_batch_recorded)
