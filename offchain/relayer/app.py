"""The Relayer: chain connection, signer, store, schemes, batcher and slasher, and the chain worker thread."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

from web3 import Web3

from ..chain import Chain
from ..deployments import load_deployment
from .batcher import Batcher
from .config import RelayerSettings
from .credit import CreditScheme
from .exact import ExactScheme
from .ledger import Ledger
from .metrics import Metrics
from .models import Health
from .proposals import Reservations
from .receipts import init_worker, warm_up
from .signer import load_account
from .slasher import Slasher
from .store import Store
from .txsender import TxSender, with_retries

log = logging.getLogger("opg.relayer")
T = TypeVar("T")


class Relayer:
    """Everything the API and the worker share. Construction connects, loads the key and opens the store (and
    raises ConfigError / StoreMismatch / connection errors, which the CLI turns into one line)."""

    def __init__(self, settings: RelayerSettings):
        self.settings = settings
        w3 = Web3(Web3.HTTPProvider(settings.rpc_url, request_kwargs={"timeout": 15}))
        self.chain_id = int(w3.eth.chain_id)
        self.account = load_account(settings, self.chain_id)  # before anything else: refuse a dev key early
        self.deployment = load_deployment(chain_id=self.chain_id, path=settings.deployment)
        self.sender_chain = Chain(w3=w3, deployment=self.deployment)
        self.network = f"eip155:{self.chain_id}"
        self.address = self.account.address
        self.opg_address = self.deployment.address("OPG")
        self.escrow_address = self.deployment.address("CreditEscrow")
        self.staking_address = self.deployment.address("NodeStaking")
        self.escrow_domain = self.sender_chain.escrow_domain
        self.staking_domain = self.sender_chain.staking_domain
        if len(self.sender_chain.w3.eth.get_code(self.escrow_address)) == 0:
            from .config import ConfigError

            raise ConfigError(f"no CreditEscrow code at {self.escrow_address} on chain {self.chain_id}: "
                              f"wrong deployment file for this RPC?")
        self.is_facilitator = bool(self.sender_chain.escrow.functions.is_facilitator(self.address).call())
        domain = self.sender_chain.opg.functions.eip712Domain().call()
        self.opg_domain = (domain[1], domain[2])
        self.dispute_window = int(self.sender_chain.staking.functions.dispute_window().call())
        self.metrics = Metrics()
        self.ledger = Ledger()
        self.reservations = Reservations()
        self.store = Store(settings.store, self.ledger)
        self.store.on_commit = self._observe_commit
        self.store.open(self.chain_id, self.escrow_address, self.staking_address)
        if not self.is_facilitator:  # warned once the store is known to be this deployment's
            log.warning("relayer account %s is not a facilitator of the escrow %s: its batches revert ('batch not "
                        "proposed'); deploy with it in Params.facilitators or add it through the timelock "
                        "(set_facilitator)", self.address, self.escrow_address)
        self.sender = TxSender(self.sender_chain.w3, self.account, self.store, settings, self.metrics, self.chain_id)
        self.credit = CreditScheme(self)
        self.exact = ExactScheme(self)
        self.batcher = Batcher(self)
        self.slasher = Slasher(self)
        self.validation_pool: ProcessPoolExecutor | None = None
        self._local = threading.local()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.last_error: str | None = None
        self.metrics.gauge("opg_relayer_pending_receipts", "Receipts accepted and not yet settled or rejected.",
                           lambda: {(): self.ledger.pending})
        self.metrics.gauge("opg_relayer_batches", "Batches by status.",
                           lambda: {(k,): v for k, v in self.store.batch_counts().items()}, ("status",))
        self.metrics.gauge("opg_relayer_store_commits", "SQLite group commits so far.",
                           lambda: {(): self.store.commits})

    def _observe_commit(self, work: float, sync: float, jobs: int) -> None:
        self.metrics.commit_work.observe(work)
        self.metrics.commit_sync.observe(sync)
        self.metrics.commit_jobs.observe(jobs)

    # Shared helpers ----------------------------------------------------------------------------------------------
    def thread_chain(self) -> Chain:
        """A Chain (own HTTP session) for the calling thread."""
        chain = getattr(self._local, "chain", None)
        if chain is None:
            w3 = Web3(Web3.HTTPProvider(self.settings.rpc_url, request_kwargs={"timeout": 15}))
            chain = self._local.chain = Chain(w3=w3, deployment=self.deployment)
        return chain

    def retry(self, fn: Callable[[], T]) -> T:
        return with_retries(fn, self.settings.rpc_retries, self.metrics)

    def health(self) -> Health:
        chain_ok, last_block = True, None
        try:
            last_block = self.thread_chain().w3.eth.block_number
        except Exception:
            chain_ok = False
        try:
            store_ok = self.store.ping()
        except Exception:
            store_ok = False
        inflight = self.store.inflight_batch() if store_ok else None
        alive = self._worker is not None and self._worker.is_alive()
        return Health(ok=chain_ok and store_ok and alive, chain_ok=chain_ok, store_ok=store_ok,
                      chain_id=self.chain_id, last_block=last_block, pending_receipts=self.ledger.pending,
                      inflight_batch=inflight["id"] if inflight else None, relayer=self.address,
                      worker_alive=alive, last_error=self.last_error)

    # Worker ------------------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self.settings.validation_workers and self.validation_pool is None:
            self.validation_pool = ProcessPoolExecutor(
                max_workers=self.settings.validation_workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=init_worker, initargs=(self.credit.ctx, os.getpid()))
            for _ in range(self.settings.validation_workers):  # start them now, without waiting for them
                self.validation_pool.submit(warm_up)
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="chain-worker", daemon=True)
            self._worker.start()

    def stop(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=30)
        if self.validation_pool is not None:
            self.validation_pool.shutdown(wait=True, cancel_futures=True)
        self.store.close()

    def _work(self) -> None:
        log.info("chain worker started (relayer %s, chain %d)", self.address, self.chain_id)
        try:
            self.exact.reconcile()
        except Exception:
            log.exception("reconciling exact payments failed; will retry")
        delay = self.settings.poll_interval
        next_exact = time.monotonic() + 5
        while not self._stop.wait(delay):
            try:
                self.batcher.tick()
                self.slasher.tick()
                if time.monotonic() > next_exact:
                    self.exact.reconcile(older_than=self.settings.exact_timeout + 5)
                    next_exact = time.monotonic() + 5
                delay, self.last_error = self.settings.poll_interval, None
            except Exception as exc:
                self.last_error = f"{exc.__class__.__name__}: {str(exc)[:300]}"
                log.exception("chain worker error; backing off")
                delay = min(10.0, max(delay * 2, 0.5))
        log.info("chain worker stopped")
