"""The one transaction manager: every role's transactions go through :class:`TxManager`.

- **Nonces**: one lock orders the account's nonces within the process; the next nonce is ``max(the last used + 1,
  the node's pending count)``, so a failed broadcast (reset to the node's count) leaves no gap; a nonce whose
  transaction left the node's mempool (dropped) is used again, or every later transaction would wait forever: at
  once by the same subject (kind, ref) sent again, by another only after ``TxPolicy.unknown_grace`` s unknown (one node's
  answer may come from a lagging backend of a load-balanced provider, and the transaction still be pending).
- **Fees**: EIP-1559, ``maxFeePerGas = 2 x base fee + tip``; a replacement raises both by 25 % per ``bump``
  (nodes require >= 10 %), optionally capped (``TxPolicy.max_fee_gwei``).
- **Write-ahead record**: each transaction is signed, handed to the caller's :class:`TxJournal` (kind, reference,
  hash, nonce, raw bytes) and only then broadcast; after a crash ``resume()`` rebroadcasts what the journal holds
  unconfirmed, so a signed transaction is never lost nor signed twice under another nonce.
- **Replacement**: ``transact(..., replace_after=s)`` re-signs a transaction not mined after ``s`` seconds with the
  same nonce and higher fees (a stuck transaction).
- **Retries**: RPC connection failures are retried with exponential backoff; reverts are not.
- **One sender among several processes** (the relayer's lease, ``relayer.lease``): ``may_send()`` false refuses to
  sign (``NotSender``); else it is the lease epoch granted, which the journal's record gets: its fence refuses the
  record unless the lease still holds exactly that epoch (a send stalled across changes of leadership), and then
  nothing is broadcast. A process that
  becomes the sender calls ``takeover()``: the journal's unconfirmed transactions are re-broadcast first (same signed
  bytes; a mined one is marked done), then nonces continue from ``max(the node's pending count, the highest nonce
  still waiting + 1)``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import requests
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import (
    ContractCustomError,
    ContractLogicError,
    ContractPanicError,
    TimeExhausted,
    TransactionNotFound,
    Web3RPCError,
)

log = logging.getLogger("opg.tx")
T = TypeVar("T")
GWEI = 10**9
# What nodes answer to a transaction they already hold (geth "already known", anvil/reth "transaction already
# imported"): the broadcast of the same signed bytes again (a resume, a takeover) is harmless.
ALREADY_KNOWN = ("already known", "already imported")


class BroadcastError(Exception):
    """The node did not take a signed transaction (it stays in the journal; ``resume`` retries it)."""


class NotSender(Exception):
    """This process may not send transactions now (another holds the sending lease): nothing was signed, recorded
    or broadcast."""


class TxFailed(Exception):
    """A transaction was mined and reverted, or was not mined in time."""

    def __init__(self, message: str, tx_hash: str, receipt: Any = None):
        super().__init__(message)
        self.tx_hash = tx_hash
        self.receipt = receipt


def is_revert(exc: BaseException) -> bool:
    return isinstance(exc, (ContractLogicError, ContractCustomError, ContractPanicError))


# JSON-RPC errors of a node too busy to run the call, not refusing it: EIP-1474's "limit exceeded" (a provider's rate
# limit) and "resource unavailable". Not -32603 "internal error": anvil answers an eth_call out of gas with it.
RPC_BUSY_CODES = frozenset({-32005, -32002})


def is_transient(exc: BaseException) -> bool:
    """Connection trouble, or the node too busy to answer, worth retrying (not a revert, not a refusal)."""
    if is_revert(exc):
        return False
    if isinstance(exc, Web3RPCError):
        error = (exc.rpc_response or {}).get("error")
        return isinstance(error, dict) and error.get("code") in RPC_BUSY_CODES
    return isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                            TimeoutError, TimeExhausted))


def revert_message(exc: BaseException) -> str:
    """``NodeStaking: already registered`` from a web3 revert (or the exception's first line)."""
    message = str(getattr(exc, "message", None) or (exc.args[0] if exc.args else "") or exc).strip()
    for prefix in ("execution reverted:", "VM Exception while processing transaction: revert", "revert"):
        if message.lower().startswith(prefix.lower()):
            message = message[len(prefix):].strip()
            break
    return message.splitlines()[0] if message else "the transaction reverted (no reason given)"


def with_retries(fn: Callable[[], T], retries: int, on_error: Callable[[BaseException], None] | None = None,
                 base: float = 0.1, cap: float = 5.0) -> T:
    """Call ``fn``, retrying connection failures with exponential backoff (base, 2 base, 4 base ... <= cap)."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc) or attempt >= retries:
                raise
            if on_error is not None:
                on_error(exc)
            delay = min(cap, base * 2**attempt)
            log.warning("RPC failed (%s); retry %d/%d in %.1fs", exc.__class__.__name__, attempt + 1, retries, delay)
            time.sleep(delay)
            attempt += 1


def hex_hash(value: Any) -> str:
    """A transaction hash as 0x-hex, from HexBytes/bytes or a string."""
    return "0x" + bytes(value).hex() if isinstance(value, (bytes, bytearray)) else str(value)


@dataclass(frozen=True)
class SentTx:
    """A signed transaction as the journal records it (before it is broadcast)."""

    kind: str
    ref: str
    tx_hash: str
    nonce: int
    raw: str
    max_fee: int
    tip: int
    gas: int
    sent_at: float


class TxJournal(Protocol):
    """Where the caller keeps its write-ahead record (the relayer's store, a file, ...)."""

    def record(self, tx: SentTx, epoch: int | None = None) -> None:
        """Durably keep ``tx`` before it is broadcast; ``epoch``: the sending lease's epoch the send was granted
        under (``may_send()``), for a journal that fences its records (None: the epoch held now)."""

    def unconfirmed(self) -> list[SentTx]:
        """The recorded transactions not yet marked done (for ``TxManager.resume`` after a restart)."""

    def done(self, tx_hash: str) -> None:
        """``tx_hash`` (or a transaction replacing it) was mined: forget it."""


class FileJournal:
    """A journal in one JSON-lines file (append + fsync per record): for one-process roles (the CLIs)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _append(self, entry: dict) -> None:
        with self._lock, open(self.path, "a") as f:
            f.write(json.dumps(entry, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def record(self, tx: SentTx, epoch: int | None = None) -> None:  # one process: no lease, no fence
        self._append({"sent": asdict(tx)})

    def done(self, tx_hash: str) -> None:
        self._append({"done": tx_hash})

    def unconfirmed(self) -> list[SentTx]:
        if not self.path.exists():
            return []
        sent: dict[str, SentTx] = {}
        for line in self.path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:  # a torn last line after a crash: the record it held was never broadcast
                continue
            if "sent" in entry:
                tx = SentTx(**entry["sent"])
                sent[tx.tx_hash] = tx
            elif "done" in entry:
                done = sent.pop(entry["done"], None)
                if done is not None:  # a mined nonce retires its replacements too
                    sent = {h: t for h, t in sent.items() if t.nonce != done.nonce}
        return sorted(sent.values(), key=lambda t: (t.nonce, t.sent_at))


@dataclass(frozen=True)
class TxPolicy:
    gas_multiplier: float = 1.2
    gas_margin: int = 10_000
    priority_fee_gwei: float | None = None  # None: the node's eth_maxPriorityFeePerGas (1 gwei if unavailable)
    max_fee_gwei: float | None = None  # cap on maxFeePerGas (None: none)
    rpc_retries: int = 3
    # How long a transaction of ours must stay unknown to the node before its nonce goes to another subject: behind
    # a load-balanced provider a lagging backend may not know a transaction another backend took a moment ago.
    unknown_grace: float = 30.0


class TxManager:
    """One account's transactions on one chain, from any thread."""

    def __init__(self, w3: Web3, account: LocalAccount, chain_id: int, journal: TxJournal | None = None,
                 policy: TxPolicy | None = None, on_rpc_error: Callable[[BaseException], None] | None = None,
                 after_record: Callable[[SentTx], None] | None = None,
                 may_send: Callable[[], int] | None = None):
        self.w3 = w3
        self.account = account
        self.address = account.address
        self.chain_id = chain_id
        self.journal = journal
        self.policy = policy or TxPolicy()
        self.on_rpc_error = on_rpc_error
        self.after_record = after_record  # a test's crash point: runs between the record and the broadcast
        # None: always (one process); else 0/False while another process is the sender, or the epoch of the lease
        # the send is granted under (handed to the journal's record: its fence requires exactly that epoch)
        self.may_send = may_send
        self.lock = threading.RLock()
        self._next_nonce: int | None = None
        # the last transaction broadcast with each recent nonce, and its subject (kind, ref)
        self._sent_at_nonce: dict[int, tuple[str, tuple[str, str]]] = {}
        self._unknown_since: dict[str, float] = {}  # our transactions the node said it does not know, since when
        self.broadcast_this_run: set[str] = set()

    def sending(self) -> bool:
        """Whether this process may send now (it holds the sending lease, or no lease is kept)."""
        return bool(self.may_send is None or self.may_send())

    def retry(self, fn: Callable[[], T]) -> T:
        return with_retries(fn, self.policy.rpc_retries, self.on_rpc_error)

    # Fees and nonces ---------------------------------------------------------------------------------------------
    def fees(self, bump: int = 0) -> tuple[int, int]:
        """(maxFeePerGas, maxPriorityFeePerGas): 2 x base fee + tip, raised 25 % per ``bump``, capped if asked."""
        block = self.retry(lambda: self.w3.eth.get_block("latest"))
        base = int(block.get("baseFeePerGas") or 0)
        if self.policy.priority_fee_gwei is not None:
            tip = int(self.policy.priority_fee_gwei * GWEI)
        else:
            try:
                tip = int(self.retry(lambda: self.w3.eth.max_priority_fee))
            except Exception:
                tip = GWEI
        max_fee = 2 * base + tip
        for _ in range(bump):
            tip, max_fee = tip * 5 // 4 + 1, max_fee * 5 // 4 + 1
        if self.policy.max_fee_gwei is not None:
            max_fee = min(max_fee, int(self.policy.max_fee_gwei * GWEI))
            tip = min(tip, max_fee)
        return max_fee, tip

    def next_nonce(self, subject: tuple[str, str] = ("tx", "")) -> int:
        """The nonce for a new transaction of ``subject`` (kind, ref)."""
        pending = self.retry(lambda: self.w3.eth.get_transaction_count(self.address, "pending"))
        if self._next_nonce is None or pending >= self._next_nonce:
            return pending
        # The node counts fewer than this process used: it lags behind our broadcasts, or the transaction it would
        # count next left its mempool (dropped, evicted): that nonce is free again, or every later one waits forever.
        # One answer may come from a lagging backend (a load-balanced provider): the nonce goes at once only to the
        # same subject (with a reference) sent again: whichever of the two is mined, the subject is settled once; to
        # another subject only once our transaction has stayed unknown for ``policy.unknown_grace`` s.
        ours = self._sent_at_nonce.get(pending)
        if ours is None:
            return self._next_nonce
        tx_hash, sent_for = ours
        if self.known(tx_hash):
            self._unknown_since.pop(tx_hash, None)
            return self._next_nonce
        since = self._unknown_since.setdefault(tx_hash, time.monotonic())
        if (sent_for == subject and subject[1]) or time.monotonic() - since >= self.policy.unknown_grace:
            log.warning("nonce %d is free again (%s %s left the node's mempool); reusing it for %s %s", pending,
                        tx_hash, sent_for, *subject)
            return pending
        return self._next_nonce

    # Sending -----------------------------------------------------------------------------------------------------
    def estimate(self, fn: Any) -> int:
        """Gas for ``fn`` with the policy's margin (a revert raises here, with the contract's reason)."""
        gas = self.retry(lambda: fn.estimate_gas({"from": self.address}))
        return int(gas * self.policy.gas_multiplier) + self.policy.gas_margin

    def send(self, fn: Any, kind: str = "tx", ref: str = "", gas: int | None = None, nonce: int | None = None,
             bump: int = 0, value: int = 0) -> SentTx:
        """Sign ``fn``'s transaction (a web3 contract function or :class:`PreparedCall`), record it in the journal,
        broadcast it. ``nonce`` given = a replacement of an earlier transaction (fees raised by ``bump``)."""
        with self.lock:
            epoch = None if self.may_send is None else int(self.may_send())  # the decision, and its epoch
            if epoch == 0:
                raise NotSender(f"{kind} {ref}: not sent: another process holds the sending lease")
            gas = gas or self.estimate(fn)
            use_nonce = self.next_nonce((kind, ref)) if nonce is None else nonce
            max_fee, tip = self.fees(bump)
            fields = {"from": self.address, "nonce": use_nonce, "gas": gas, "chainId": self.chain_id,
                      "maxFeePerGas": max_fee, "maxPriorityFeePerGas": tip}
            if value:
                fields["value"] = value
            signed = self.account.sign_transaction(fn.build_transaction(fields))
            sent = SentTx(kind=kind, ref=ref, tx_hash="0x" + bytes(signed.hash).hex(), nonce=use_nonce,
                          raw="0x" + bytes(signed.raw_transaction).hex(), max_fee=max_fee, tip=tip, gas=gas,
                          sent_at=time.time())
            if self.journal is not None:
                self.journal.record(sent, epoch)
            if self.after_record is not None:
                self.after_record(sent)
            if nonce is None:
                self._next_nonce = use_nonce + 1
            self._broadcast(sent)
            log.info("sent %s %s: %s (nonce %d, gas %d, maxFee %d)", kind, ref, sent.tx_hash, use_nonce, gas, max_fee)
            return sent

    def _broadcast(self, sent: SentTx) -> None:
        try:
            self.retry(lambda: self.w3.eth.send_raw_transaction(sent.raw))
        except Exception as exc:
            if not any(said in str(exc).lower() for said in ALREADY_KNOWN):
                self._next_nonce = None
                raise BroadcastError(f"{sent.kind} {sent.ref}: node refused {sent.tx_hash}: {exc}") from exc
        self.broadcast_this_run.add(sent.tx_hash)
        self._sent_at_nonce[sent.nonce] = (sent.tx_hash, (sent.kind, sent.ref))
        if len(self._sent_at_nonce) > 1024:
            del self._sent_at_nonce[min(self._sent_at_nonce)]
        if len(self._unknown_since) > 1024:
            self._unknown_since.clear()

    def transact(self, fn: Any, kind: str = "tx", ref: str = "", timeout: float = 120,
                 replace_after: float | None = None, max_bumps: int = 5, value: int = 0,
                 gas: int | None = None) -> Any:
        """Send, wait for the receipt (replacing the transaction with higher fees each ``replace_after`` s not
        mined), mark it done in the journal; returns the receipt. ``TxFailed`` if it reverted or timed out."""
        sent = self.send(fn, kind, ref, gas=gas, value=value)
        hashes = [sent.tx_hash]
        deadline = time.monotonic() + timeout
        bumps = 0
        while True:
            wait_for = deadline - time.monotonic()
            if replace_after is not None and bumps < max_bumps:
                wait_for = min(wait_for, replace_after)
            receipt = self.wait_any(hashes, max(wait_for, 0))
            if receipt is not None:
                break
            if time.monotonic() >= deadline:
                raise TxFailed(f"{kind} {ref}: {sent.tx_hash} not mined within {timeout:g} s", hashes[-1])
            bumps += 1
            log.warning("%s %s: %s not mined after %.0f s; replacing it (bump %d)", kind, ref, hashes[-1],
                        replace_after, bumps)
            try:
                hashes.append(self.send(fn, kind, ref, gas=sent.gas, nonce=sent.nonce, bump=bumps, value=value)
                              .tx_hash)
            except BroadcastError as exc:  # the original was mined meanwhile ("nonce too low"): its receipt follows
                log.info("replacement refused (%s); waiting for the original", exc)
        mined = hex_hash(receipt["transactionHash"])
        if self.journal is not None:
            self.journal.done(mined)
        if receipt["status"] != 1:
            raise TxFailed(f"{kind} {ref}: {mined} reverted", mined, receipt)
        return receipt

    def resume(self) -> list[SentTx]:
        """After a restart: mark the journal's mined transactions done and rebroadcast the others (their nonces
        are taken); returns the ones still pending."""
        if self.journal is None:
            return []
        waiting = []
        for sent in self.journal.unconfirmed():
            receipt = self.receipt(sent.tx_hash)
            if receipt is not None:
                self.journal.done(sent.tx_hash)
                continue
            if self.confirmed_nonce() > sent.nonce:  # another transaction (a replacement) took the nonce
                self.journal.done(sent.tx_hash)
                continue
            if not self.known(sent.tx_hash):
                try:
                    self._broadcast(sent)
                except BroadcastError as exc:
                    log.warning("resume: %s", exc)
                    continue
            waiting.append(sent)
        return waiting

    def takeover(self) -> list[SentTx]:
        """This process becomes the account's sender (another may have sent until now): re-broadcast the journal's
        unconfirmed transactions (``resume``), then continue nonces from ``max(the node's pending count, the highest
        nonce still waiting + 1)``. Returns the transactions still waiting."""
        with self.lock:
            waiting = self.resume()
            pending = self.retry(lambda: self.w3.eth.get_transaction_count(self.address, "pending"))
            self._next_nonce = max([pending] + [t.nonce + 1 for t in waiting])
            if waiting:
                log.warning("takeover: %d journaled transaction(s) re-broadcast and waiting (nonces %s); next nonce "
                            "%d", len(waiting), sorted({t.nonce for t in waiting}), self._next_nonce)
            return waiting

    # Reading back ------------------------------------------------------------------------------------------------
    def confirmed_nonce(self) -> int:
        return self.retry(lambda: self.w3.eth.get_transaction_count(self.address, "latest"))

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
            "logs": [{"address": lg["address"], "topics": [bytes.fromhex(t[2:]) for t in lg["topics"]],
                      "data": bytes.fromhex(lg["data"][2:])} for lg in raw.get("logs", [])],
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
        return self.wait_any([tx_hash], timeout, poll)

    def wait_any(self, hashes: list[str], timeout: float, poll: float = 0.05) -> Any | None:
        """The receipt of whichever of ``hashes`` (one nonce's replacements) is mined first, or None."""
        deadline = time.monotonic() + timeout
        while True:
            for tx_hash in hashes:
                found = self.receipt(tx_hash)
                if found is not None:
                    return found
            if time.monotonic() > deadline:
                return None
            time.sleep(poll)


class PreparedCall:
    """Calldata for one contract, with the interface TxManager expects of a web3 contract function."""

    def __init__(self, w3: Any, to: str, data: bytes):
        self.w3, self.to, self.data = w3, to, data

    def estimate_gas(self, tx: dict) -> int:
        return self.w3.eth.estimate_gas({**tx, "to": self.to, "data": self.data})

    def call(self, tx: dict) -> bytes:
        return self.w3.eth.call({**tx, "to": self.to, "data": self.data})

    def build_transaction(self, tx: dict) -> dict:
        return {"value": 0, **tx, "to": self.to, "data": self.data}
