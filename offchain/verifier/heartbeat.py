"""The heartbeat (``NodeStaking.heartbeat()`` once per epoch, again when the warm stake grew: live stake votes and
earns) and the chain worker, the one sender of this verifier's transactions: follow flags, send flags, heartbeat."""

from __future__ import annotations

import logging
import time

from web3.exceptions import ContractLogicError

from ..sdk.clock import ProtocolClock
from ..sdk.constants import ROLE_VERIFIER
from ..sdk.tx import revert_message
from .flags import FlagWatcher
from .metrics import Metrics
from .onchain import ChainAccess
from .store import VerifierStore

log = logging.getLogger("opg.verifier")

HEARTBEAT_CHECK = 3.0


class Heartbeat:
    def __init__(self, access: ChainAccess, clock: ProtocolClock, store: VerifierStore, metrics: Metrics, warmup: int):
        self.access, self.clock, self.store, self.metrics, self.warmup = access, clock, store, metrics, warmup
        self.address = access.address

    def __call__(self) -> int | None:
        """Heartbeat if next epoch's recorded weight is below the warm stake; returns the weight sent, if any."""
        chain = self.access.chain()
        epoch = chain.distributor.epoch_now()
        node = chain.staking.node(self.address)
        if not node.is_verifier or node.jailed or node.stake < chain.staking.min_stake(ROLE_VERIFIER):
            return None
        warm = node.warm_stake(self.clock.block_time(), self.warmup)  # as the contract counts it: by the block
        if warm == 0 or chain.staking.functions.weight_in(epoch + 1, self.address).call() >= warm:
            return None
        try:
            tx = self.access.transact(chain.staking.functions.heartbeat(), "heartbeat", f"epoch {epoch}")
        except ContractLogicError as exc:
            log.warning("heartbeat refused: %s", revert_message(exc))
            return None
        self.metrics.heartbeats.inc()
        self.store.set_state("heartbeat_epoch", epoch)
        log.info("heartbeat in epoch %d: weight %d from epoch %d (%s)", epoch, warm, epoch + 1, tx)
        return warm


class ChainWorker:
    """One tick: follow the ``Flagged`` events, send this verifier's flags, heartbeat (every ``HEARTBEAT_CHECK`` s).
    The only thread that sends, so this key's nonces never race."""

    name = "chain"

    def __init__(self, access: ChainAccess, flags: FlagWatcher, heartbeat: Heartbeat | None, poll_interval: float):
        self.access, self.flags, self.heartbeat, self.poll_interval = access, flags, heartbeat, poll_interval
        self.next_heartbeat = 0.0

    def startup(self) -> None:
        """Transactions sent before a crash (in the store's write-ahead journal): done if mined, else rebroadcast."""
        self.access.tx.resume()

    def tick(self) -> float:
        self.flags.follow()
        self.flags.send()
        if self.heartbeat is not None and time.monotonic() >= self.next_heartbeat:
            self.heartbeat()
            self.next_heartbeat = time.monotonic() + HEARTBEAT_CHECK
        return self.poll_interval
