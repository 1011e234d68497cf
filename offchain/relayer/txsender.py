"""Sending the relayer's transactions: one nonce sequence, EIP-1559 fees, retries, write-ahead records.

Every transaction is signed, then recorded in the store (kind, reference, hash, nonce, raw bytes) and only then
broadcast, so a crash at any point leaves a record the next run reconciles with the chain.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    ContractPanicError,
    TimeExhausted,
    TransactionNotFound,
)

from .events import Signal, TxRecorded
from .metrics import Metrics
from .store import Store

log = logging.getLogger("opg.relayer.tx")
T = TypeVar("T")

GWEI = 10**9


class BroadcastError(Exception):
    """The node did not take a signed transaction (it stays recorded; reconciliation handles it)."""


def is_revert(exc: BaseException) -> bool:
    return isinstance(exc, (ContractLogicError, ContractCustomError, ContractPanicError))


def is_transient(exc: BaseException) -> bool:
    """Connection trouble worth retrying (not a revert, not a refusal by the node)."""
    if is_revert(exc):
        return False
    return isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                            TimeoutError, TimeExhausted))


def revert_message(exc: BaseException) -> str:
    msg = getattr(exc, "message", None) or str(exc)
    return str(msg).replace("execution reverted: ", "").strip() or exc.__class__.__name__


def with_retries(fn: Callable[[], T], retries: int, metrics: Metrics | None = None, base: float = 0.1,
                 cap: float = 5.0) -> T:
    """Call ``fn``, retrying connection failures with exponential backoff (base, 2 base, 4 base ... <= cap)."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc) or attempt >= retries:
                raise
            if metrics:
                metrics.rpc_errors.inc()
            delay = min(cap, base * 2**attempt)
            log.warning("RPC failed (%s); retry %d/%d in %.1fs", exc.__class__.__name__, attempt + 1, retries, delay)
            time.sleep(delay)
            attempt += 1


class PreparedCall:
    """Calldata for one contract, with the interface TxSender expects of a web3 contract function."""

    def __init__(self, w3: Any, to: str, data: bytes):
        self.w3, self.to, self.data = w3, to, data

    def estimate_gas(self, tx: dict) -> int:
        return self.w3.eth.estimate_gas({**tx, "to": self.to, "data": self.data})

    def call(self, tx: dict) -> bytes:
        return self.w3.eth.call({**tx, "to": self.to, "data": self.data})

    def build_transaction(self, tx: dict) -> dict:
        return {**tx, "to": self.to, "data": self.data, "value": 0}


@dataclass(frozen=True)
class TxConfig:
    """Fees, gas and retries of the relayer's transactions."""

    gas_multiplier: float  # gas limit = estimate x this
    max_fee_gwei: float | None  # cap on maxFeePerGas
    priority_fee_gwei: float | None  # maxPriorityFeePerGas (None: the node's)
    rpc_retries: int  # retries of an RPC call that failed to connect

    @classmethod
    def of(cls, settings: Any) -> TxConfig:
        return cls(gas_multiplier=float(settings.gas_multiplier), max_fee_gwei=settings.max_fee_gwei,
                   priority_fee_gwei=settings.priority_fee_gwei, rpc_retries=int(settings.rpc_retries))


class TxSender:
    """The relayer account's transactions, from any thread (one lock orders nonces). ``recorded`` is published
    once a transaction is signed and recorded, before its broadcast."""

    def __init__(self, w3: Web3, account: LocalAccount, store: Store, settings: TxConfig, metrics: Metrics,
                 chain_id: int, recorded: Signal[TxRecorded]):
        self.recorded = recorded
        self.w3 = w3
        self.account = account
        self.address = account.address
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.chain_id = chain_id
        self.lock = threading.RLock()
        self._next_nonce: int | None = None
        self.broadcast_this_run: set[str] = set()

    def retry(self, fn: Callable[[], T]) -> T:
        return with_retries(fn, self.settings.rpc_retries, self.metrics)

    # Fees and nonces -------------------------------------------------------------------------------------------
    def fees(self, bump: int = 0) -> tuple[int, int]:
        """(maxFeePerGas, maxPriorityFeePerGas): 2 x base fee + tip, raised 25 % per ``bump``, capped if asked."""
        block = self.retry(lambda: self.w3.eth.get_block("latest"))
        base = int(block.get("baseFeePerGas") or 0)
        if self.settings.priority_fee_gwei is not None:
            tip = int(self.settings.priority_fee_gwei * GWEI)
        else:
            try:
                tip = int(self.retry(lambda: self.w3.eth.max_priority_fee))
            except Exception:
                tip = GWEI
        max_fee = 2 * base + tip
        for _ in range(bump):
            tip, max_fee = tip * 5 // 4 + 1, max_fee * 5 // 4 + 1
        if self.settings.max_fee_gwei is not None:
            max_fee = min(max_fee, int(self.settings.max_fee_gwei * GWEI))
            tip = min(tip, max_fee)
        return max_fee, tip

    def _nonce(self) -> int:
        pending = self.retry(lambda: self.w3.eth.get_transaction_count(self.address, "pending"))
        return pending if self._next_nonce is None else max(self._next_nonce, pending)

    # Sending ---------------------------------------------------------------------------------------------------
    def estimate(self, fn: Any) -> int:
        gas = self.retry(lambda: fn.estimate_gas({"from": self.address}))
        return int(gas * self.settings.gas_multiplier) + 10_000

    def send(self, fn: Any, kind: str, ref: str, gas: int | None = None, nonce: int | None = None,
             bump: int = 0) -> tuple[str, int]:
        """Sign ``fn``'s transaction, record it (write-ahead), broadcast it; returns (tx hash, nonce).

        ``nonce`` given = a replacement of an earlier transaction (with fees raised by ``bump``)."""
        with self.lock:
            gas = gas or self.estimate(fn)
            use_nonce = self._nonce() if nonce is None else nonce
            max_fee, tip = self.fees(bump)
            tx = fn.build_transaction({
                "from": self.address, "nonce": use_nonce, "gas": gas, "chainId": self.chain_id,
                "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip,
            })
            signed = self.account.sign_transaction(tx)
            tx_hash = "0x" + bytes(signed.hash).hex()
            raw = "0x" + bytes(signed.raw_transaction).hex()
            self.store.call(Store.job_tx_recorded, kind, ref, tx_hash, use_nonce, raw, time.time())
            self.recorded.publish(TxRecorded(kind, ref, tx_hash))
            if nonce is None:
                self._next_nonce = use_nonce + 1
            try:
                self.retry(lambda: self.w3.eth.send_raw_transaction(signed.raw_transaction))
            except Exception as exc:
                if "already known" in str(exc).lower():
                    pass
                else:
                    self._next_nonce = None
                    raise BroadcastError(f"{kind} {ref}: node refused {tx_hash}: {exc}") from exc
            self.broadcast_this_run.add(tx_hash)
            log.info("sent %s %s: %s (nonce %d, gas %d, maxFee %d)", kind, ref, tx_hash, use_nonce, gas, max_fee)
            return tx_hash, use_nonce

    # Reading back ----------------------------------------------------------------------------------------------
    def receipt(self, tx_hash: str) -> Any | None:
        try:
            return self.retry(lambda: self.w3.eth.get_transaction_receipt(tx_hash))
        except TransactionNotFound:
            return None

    def raw_receipt(self, tx_hash: str) -> dict | None:
        """The transaction receipt without web3's result formatting (costly for a batch's hundreds of logs):
        status, blockNumber, gasUsed, effectiveGasPrice as ints; logs with address, topics and data as bytes."""
        answer = self.retry(lambda: self.w3.provider.make_request("eth_getTransactionReceipt", [tx_hash]))
        if "error" in answer:
            raise RuntimeError(f"eth_getTransactionReceipt {tx_hash}: {answer['error']}")
        raw = answer.get("result")
        if raw is None:
            return None
        return {
            "transactionHash": tx_hash,
            "status": int(raw["status"], 16),
            "blockNumber": int(raw["blockNumber"], 16),
            "gasUsed": int(raw["gasUsed"], 16),
            "effectiveGasPrice": int(raw.get("effectiveGasPrice") or "0x0", 16),
            "logs": [{"address": log_["address"], "topics": [bytes.fromhex(t[2:]) for t in log_["topics"]],
                      "data": bytes.fromhex(log_["data"][2:])} for log_ in raw.get("logs", [])],
        }

    def known(self, tx_hash: str) -> bool:
        """Whether the node knows the transaction (pending or mined)."""
        try:
            return self.retry(lambda: self.w3.eth.get_transaction(tx_hash)) is not None
        except TransactionNotFound:
            return False

    def block_number(self) -> int:
        return self.retry(lambda: self.w3.eth.block_number)

    def wait(self, tx_hash: str, timeout: float, poll: float = 0.05) -> Any | None:
        deadline = time.monotonic() + timeout
        while True:
            found = self.receipt(tx_hash)
            if found is not None or time.monotonic() > deadline:
                return found
            time.sleep(poll)
