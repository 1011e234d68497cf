"""The Verifier: follows the relayer's receipt feed and the chain's ``Flagged`` events, re-executes sampled, flagged
and disputed receipts, signs verdicts, hands them to the relayer, flags fraud on-chain and heartbeats every epoch.

``Verifier`` is the composition root: it connects, builds each component with what it uses and runs four workers
under one ``daemon.worker.Supervisor`` (backoff on errors, per-worker health at ``/healthz``):
- feed (``feed.FeedReader``): long-polls ``GET /feed/receipts`` from the persisted cursor, samples, queues checks;
- chain (``heartbeat.ChainWorker``): follows ``Flagged`` events and sends this verifier's flags
  (``flags.FlagWatcher``), heartbeats once per epoch (``heartbeat.Heartbeat``);
- work (``checks.CheckDispatcher``): runs due checks on a pool of ``workers`` threads (``checks.Checker``: fetch the
  payload from the node, ask the judge, sign);
- outbox (``outbox.VerdictOutbox``): sends decided verdicts and withholding reports to the relayer.
The judge is injected (``judge.Reexecution`` over the configured backends by default; the tests' lazy verifier
brings its own).

A payload the node does not release by the deadline is NOT a verdict: the check ends ``withheld`` with a signed
``PayloadWithheld`` report (not a vote, never slashable), no ``Verdict`` and no flag. Otherwise a node could get an
honest verifier slashed as a false accuser by withholding from it alone while the others prove the answer valid
(attack R4). Withholding is answered by the payer's bonded dispute, whose payload re-opens the check.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..daemon.plugins import install_plugins
from ..daemon.settings import ConfigError
from ..daemon.worker import Backoff, Supervisor
from ..sdk.connect import connect
from ..sdk.constants import ROLE_VERIFIER
from ..sdk.relayer_client import RelayerClient, RelayerUnavailable
from ..sdk.tx import TxManager
from .checks import CheckDispatcher, Checker, CheckPolicy, Signer
from .config import VerifierSettings
from .events import VerifierEvents
from .feed import FeedReader
from .flags import EvidenceSharer, FlagWatcher
from .heartbeat import ChainWorker, Heartbeat
from .intake import Drift, Intake
from .judge import ReceiptJudge, Reexecution
from .metrics import Metrics, Trouble
from .onchain import ChainAccess
from .outbox import VerdictOutbox
from .payloads import PayloadClient
from .sampling import Sampler
from .store import VerifierStore

log = logging.getLogger("opg.verifier")


def load_backends(specs: list[str]) -> list[Any]:
    """The judge's backends: each spec as ``load_backend`` takes it, with options as ``spec?key=value&...`` (e.g.
    ``smollm2?scoring=f32``: teacher forcing on the F32 expansion of the weights)."""
    from ..backends import load_backend, parse_spec

    out = []
    for spec in specs:
        try:
            name, options = parse_spec(spec)
            cheat = sorted(k for k in options if k.startswith("cheat_"))
            if cheat:
                raise ValueError(f"{cheat[0]} is a test node's option, not a verifier's")
            out.append(load_backend(name, **options))
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else repr(exc)
            raise ConfigError(f"cannot load backend {spec!r}: {first}") from None
    return out


class Verifier:
    """The composition root. Construction connects, loads the key, the judge's backends and the store
    (ConfigError / StoreMismatch / connection errors are turned into one line by the CLI); ``start``/``stop`` run
    the workers. ``judge`` replaces the re-execution judge (``backends`` its backends)."""

    def __init__(self, settings: VerifierSettings, backends: list[Any] | None = None,
                 judge: ReceiptJudge | None = None):
        self.settings = settings
        conn = connect(settings, require=("NodeStaking", "RewardDistributor"))
        account = conn.account
        assert account is not None
        self.chain_id, self.address, self.deployment = conn.chain_id, account.address, conn.deployment
        self.domain = conn.staking_domain
        warmup = conn.contracts.staking.warmup()
        self.judge: ReceiptJudge = judge or Reexecution(
            backends if backends is not None else load_backends(settings.backend_specs), settings.proxy_tolerance)
        self.metrics = Metrics()
        self.trouble = Trouble(self.metrics)
        self.store = VerifierStore(settings.store)
        self.store.bind(self.chain_id, conn.contracts.staking.address, self.address)
        self.events = events = VerifierEvents()
        self.access = ChainAccess(conn, TxManager(conn.w3, account, self.chain_id, journal=self.store.tx_journal(),
                                                  after_record=events.tx_recorded.publish))
        key = bytes(account.key)

        self.supervisor = Supervisor(on_error=self.trouble.error)
        stopping = self.supervisor.stopping
        self._check_wake, self._decided = threading.Event(), threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="check")
        self.payloads = PayloadClient(key, self.address, self.domain, settings.payload_timeout)
        self.relayer = RelayerClient(settings.relayer_url, timeout=30, user_agent="opg-verifier")
        drift = Drift(self.store, self.metrics)
        self.intake = Intake(self.domain, Sampler(key, settings.sample_rate), self.judge, drift, self.store,
                             self.access, self._check_wake.set)
        checker = Checker(Signer(self.address, key, self.domain), self.store, self.judge, self.payloads,
                          self.access.endpoint, drift, self.metrics, self.trouble,
                          CheckPolicy(settings.payload_deadline, settings.payload_retry, settings.flag_fraud),
                          self._decided.set, events.verdict_signed.publish)
        evidence = EvidenceSharer(self.access, self.store, self.metrics, self.trouble, stopping)
        start = settings.from_block if settings.from_block is not None else self.deployment.start_block
        flags = FlagWatcher(self.access, self.store, self.intake, self.metrics, stopping, start,
                            lambda rid: self._pool.submit(evidence.share, rid), events.flag_sent.publish)
        heartbeat = Heartbeat(self.access, conn.clock, self.store, self.metrics, warmup) if settings.heartbeat else None
        poll = settings.poll_interval
        self.supervisor.add(FeedReader(self.relayer, self.store, self.intake, self.metrics, self.trouble, poll,
                                       settings.feed_batch),
                            backoff=Backoff(initial=min(10.0, poll * 2), maximum=10.0), quiet=(RelayerUnavailable,))
        self.supervisor.add(ChainWorker(self.access, flags, heartbeat, poll), backoff=Backoff(initial=poll, maximum=10.0))
        self.supervisor.add(CheckDispatcher(checker, self.store, self._pool, settings.workers, self._check_wake.set,
                                            poll), wake=self._check_wake)
        self.supervisor.add(VerdictOutbox(self.relayer, self.store, self.address, self.metrics, self.trouble, poll,
                                          events.verdict_posted.publish, events.report_sent.publish),
                            wake=self._decided)
        self.metrics.gauge("opg_verifier_feed_cursor", "The last feed seq read.",
                           lambda: {(): int(self.store.get_state("feed_cursor", "0"))})
        self.metrics.gauge("opg_verifier_checks", "Checks by status.",
                           lambda: {(k,): v for k, v in self.store.counts().items()}, ("status",))
        install_plugins(events, "verifier")

    # Lifecycle ---------------------------------------------------------------------------------------------------
    def start(self) -> None:
        self.supervisor.start()
        log.info("verifier %s started: chain %d, sampling %.4g, judge %s", self.address, self.chain_id,
                 self.settings.sample_rate, ", ".join(f"{b['name']} ({b['modelId'][:10]})"
                                                      for b in self.judge.describe()))

    def stop(self) -> None:
        self.supervisor.stop(timeout=15)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.payloads.close()
        self.relayer.close()
        self.store.close()

    def health(self) -> dict:
        chain_ok, active, weight, block = True, None, None, None
        try:
            chain = self.access.chain()
            block = chain.w3.eth.block_number
            active = chain.staking.is_active_as(self.address, ROLE_VERIFIER)
            weight = int(chain.staking.functions.vote_weight(self.address).call())
        except Exception:
            chain_ok = False
        try:
            store_ok = self.store.ping()
        except Exception:
            store_ok = False
        alive = self.supervisor.alive
        return {
            "ok": chain_ok and store_ok and alive, "verifier": self.address, "chainId": self.chain_id,
            "chainOk": chain_ok, "storeOk": store_ok, "relayerOk": self.trouble.relayer_ok, "workersAlive": alive,
            "workers": [h.as_json() for h in self.supervisor.health()],
            "lastBlock": block, "active": active, "voteWeight": str(weight) if weight is not None else None,
            "sampleRate": self.settings.sample_rate, "backends": self.judge.describe(),
            "feedCursor": int(self.store.get_state("feed_cursor", "0")) if store_ok else None,
            "checks": self.store.counts() if store_ok else None, "lastError": self.trouble.last_error,
        }
