"""The relayer's composition root: ``Relayer(settings)`` connects, loads the key, opens the store and creates every
component with what it uses; ``Relayer.start()``/``stop()`` run and stop the chain worker and
the validation processes. Several relayer processes may share one store: the sending lease (``lease.py``) lets one
of them send transactions at a time (its batcher, slasher and exact reconciler run gated on it; the others idle and
keep answering HTTP). No component receives the root: each gets the chain facts, the store, the ledger, the
transaction sender, the event hub ... it needs, and components learn of each other's findings through the hub
(``events.py``)."""

from __future__ import annotations

import logging

from web3 import Web3

from ..chain import Chain
from ..daemon.disk import DiskReserve
from ..daemon.plugins import install_plugins
from ..daemon.worker import Backoff, Gated, Supervisor
from ..deployments import load_deployment
from ..sdk.clock import ProtocolClock
from ..sdk.reads import RawReader
from ..sdk.tx import NotSender, TxManager, TxPolicy
from .batcher import Batcher, BatcherConfig, SettlementBlocked
from .config import ConfigError, RelayerSettings
from .credit import CreditConfig, CreditScheme
from .deposits import Deposits, DepositSender
from .events import Events
from .exact import ExactReconciler, ExactScheme
from .facilitators import Facilitators
from .handover import Handover
from .intake import Intake
from .lease import Lease, LeaseKeeper
from .ledger import Ledger
from .metrics import Metrics
from .models import Health, LeaseHealth
from .policy import BatchPolicy
from .proposals import Reservations
from .receipts import ValidationPool
from .rpc import ChainFacts, Rpc
from .signer import load_account
from .slasher import Slasher
from .store import Store
from .watch import ChainWatch

log = logging.getLogger("opg.relayer")


class Relayer:
    """The composition root: every component, created once with what it uses; the HTTP layer takes the ones each
    router needs. Construction connects, loads the key and opens the store (and raises ConfigError / StoreMismatch /
    connection errors, which the CLI turns into one line)."""

    def __init__(self, settings: RelayerSettings):
        self.settings = settings
        w3 = Web3(Web3.HTTPProvider(settings.rpc_url, request_kwargs={"timeout": 15}))
        chain_id = int(w3.eth.chain_id)
        account = load_account(settings, chain_id)  # before anything else: refuse a dev key early
        deployment = load_deployment(chain_id=chain_id, path=settings.deployment)
        sender_chain = Chain(w3=w3, deployment=deployment)
        escrow = deployment.address("CreditEscrow")
        if len(w3.eth.get_code(escrow)) == 0:
            raise ConfigError(f"no CreditEscrow code at {escrow} on chain {chain_id}: wrong deployment file for this RPC?")
        domain = sender_chain.opg.functions.eip712Domain().call()
        facts = ChainFacts(
            chain_id=chain_id, relayer=account.address, opg=deployment.address("OPG"), escrow=escrow,
            staking=deployment.address("NodeStaking"), escrow_domain=sender_chain.escrow_domain,
            staking_domain=sender_chain.staking_domain, opg_domain=(domain[1], domain[2]),
            dispute_window=int(sender_chain.staking.functions.dispute_window().call()),
            start_block=deployment.start_block)
        is_facilitator = bool(sender_chain.escrow.functions.is_facilitator(account.address).call())
        metrics, events, ledger, reservations = Metrics(), Events(), Ledger(), Reservations()
        store = Store(settings.store, ledger, reservations=reservations, shared=settings.shared_store or None)
        store.on_commit = lambda work, sync, jobs: (metrics.commit_work.observe(work), metrics.commit_sync.observe(sync),
                                                    metrics.commit_jobs.observe(jobs))
        store.open(chain_id, facts.escrow, facts.staking)
        if not is_facilitator:  # warned once the store is known to be this deployment's
            log.warning("relayer account %s is not a facilitator of the escrow %s: its batches revert ('batch not "
                        "proposed'); deploy with it in Params.facilitators or add it through the timelock "
                        "(set_facilitator)", facts.relayer, facts.escrow)
        rpc = Rpc(settings.rpc_url, deployment, settings.rpc_retries, metrics)
        policy = TxPolicy(gas_multiplier=settings.gas_multiplier, gas_margin=10_000, rpc_retries=settings.rpc_retries,
                          priority_fee_gwei=settings.priority_fee_gwei, max_fee_gwei=settings.max_fee_gwei)
        # One sender among the processes sharing the store: the lease gates the senders and fences each record.
        lease = Lease(store.db, settings.instance, settings.lease_ttl)
        journal = store.tx_journal()
        journal.fence = lease.fence
        sender = TxManager(w3, account, chain_id, journal, policy, rpc.count_error,
                           after_record=events.tx_recorded.publish, may_send=lease.permit)
        keeper = LeaseKeeper(lease, sender.takeover)
        reads = RawReader(settings.rpc_url, facts.escrow, facts.staking)
        # Protocol time: max(wall clock, the chain's clock from a block read at most 2 s ago), read through the raw reader.
        clock = ProtocolClock(lambda: int(rpc.retry(lambda: reads.one(reads.latest_timestamp()))), refresh=2.0)
        ctx = CreditConfig.of(settings).context(facts)
        pool = ValidationPool(settings.validation_workers, ctx)
        credit = CreditScheme(facts, ctx, ledger, reservations, store, metrics, reads, clock, rpc.retry, pool, events)
        # A follower hands exact payments to the leader through the store; the listener wakes both sides.
        handover = Handover(store.db)
        exact = ExactScheme(facts, rpc, sender, sender_chain, store, metrics, settings.exact_timeout, handover)
        deposits = Deposits(sender=sender, chain=rpc.chain, transactions=store.transactions, retry=rpc.retry,
                            timeout=settings.exact_timeout, handover=handover, run=store.call)
        # Every process follows withdrawal requests and proposals (its /verify counts them); the leader's batcher
        # settles the payers they make urgent.
        watch = ChainWatch(facts, sender_chain, rpc.retry, ledger, reservations, clock, events)
        batcher = Batcher(BatcherConfig.of(settings), BatchPolicy.of(settings), facts, store, ledger, reservations,
                          sender, sender_chain, metrics, clock, events, watch, fence=lease.fence,
                          permit=lease.permit)
        slasher = Slasher(facts, store, sender, sender_chain, metrics, events)
        facilitators = Facilitators([credit, exact])  # the x402 schemes this relayer verifies and settles
        intake = Intake(facts, credit, facilitators, settings.max_bulk,
                        DiskReserve.of(settings.store, settings.store_reserve_mb))
        # The chain workers: the batcher and the slasher tick every poll_interval, exact payments left in flight are
        # reconciled every EXACT_RECONCILE_EVERY s; a failing tick backs off 0.5 s doubling up to 10 s.
        # The senders run only while this process holds the lease (a follower's idle); the keeper renews it every
        # lease_ttl / 3 s (retrying a failed renewal well within the TTL).
        worker = Supervisor(idle=settings.poll_interval, backoff=Backoff(0.5, 10.0))
        worker.add(keeper, backoff=Backoff(0.1, settings.lease_ttl / 4))
        worker.add(watch)
        worker.add(Gated(batcher, lease.may_send, (NotSender,), lease.tick),
                   quiet=(SettlementBlocked,))  # blocked: reported
        worker.add(Gated(slasher, lease.may_send, (NotSender,), lease.tick))
        wake_exact = worker.add(Gated(ExactReconciler(exact, older_than=settings.exact_timeout + 5), lease.may_send,
                                      (NotSender,), lease.tick))
        wake_deposits = worker.add(Gated(DepositSender(deposits), lease.may_send, (NotSender,), lease.tick))
        handover.wake_sender = lambda: (wake_exact.set(), wake_deposits.set())
        worker.add(handover.listener())
        metrics.gauge("opg_relayer_pending_receipts", "Receipts accepted and not yet settled or rejected.",
                      lambda: {(): ledger.pending})
        metrics.gauge("opg_relayer_batches", "Batches by status.",
                      lambda: {(k,): v for k, v in store.batch_counts().items()}, ("status",))
        metrics.gauge("opg_relayer_store_commits", "SQLite group commits so far.", lambda: {(): store.commits})
        metrics.gauge("opg_relayer_lease_leader", "1 while this process holds the sending lease (it sends the "
                      "transactions), 0 as a follower.", lambda: {(): float(lease.may_send())})
        metrics.gauge("opg_relayer_lease_epoch", "The sending lease's fencing epoch (this process's while it leads, "
                      "else the holder's as last read).", lambda: {(): lease.state().epoch})
        metrics.gauge("opg_relayer_lease_fenced", "Transaction records the lease's fence refused (a lost lease).",
                      lambda: {(): lease.fenced})
        metrics.gauge("opg_relayer_tx_broadcast", "Transactions this process broadcast since it started.",
                      lambda: {(): len(sender.broadcast_this_run)})
        install_plugins(events, "relayer")
        self.facts, self.rpc, self.metrics, self.events, self.ledger = facts, rpc, metrics, events, ledger
        self.reservations, self.store, self.sender, self.clock, self.pool = reservations, store, sender, clock, pool
        self.credit, self.exact, self.batcher, self.slasher, self.worker = credit, exact, batcher, slasher, worker
        self.facilitators, self.intake, self.lease, self.keeper = facilitators, intake, lease, keeper
        self.deposits = deposits

    @property
    def address(self) -> str:
        return self.facts.relayer

    @property
    def chain_id(self) -> int:
        return self.facts.chain_id

    def start(self) -> None:
        self.pool.start()
        try:  # a single relayer (or the first of several) leads before it serves its first request
            self.keeper.tick()
        except Exception as exc:
            log.warning("lease: not taken at start (%s); the keeper retries", exc)
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        self.pool.stop()
        self.store.close()

    def health(self) -> Health:
        chain_ok, last_block = True, None
        try:
            last_block = self.rpc.chain().w3.eth.block_number
        except Exception:
            chain_ok = False
        try:
            store_ok = self.store.ping()
        except Exception:
            store_ok = False
        inflight = self.store.inflight_batch() if store_ok else None
        alive = self.worker.alive
        last_error = self.batcher.blocked or next((h.last_error for h in self.worker.health() if h.last_error), None)
        return Health(ok=chain_ok and store_ok and alive and self.batcher.blocked is None, chain_ok=chain_ok, store_ok=store_ok,
                      chain_id=self.facts.chain_id, last_block=last_block, pending_receipts=self.ledger.pending,
                      inflight_batch=inflight["id"] if inflight else None, relayer=self.facts.relayer,
                      worker_alive=alive, last_error=last_error,
                      lease=LeaseHealth(**self.lease.state().as_json()))
