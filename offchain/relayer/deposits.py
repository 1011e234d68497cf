"""``POST /deposits``: gasless deposits. A payer with OPG but no ETH signs an EIP-3009 ``ReceiveWithAuthorization``
(OPG's EIP-712 domain, ``to`` = the CreditEscrow); the relayer submits ``CreditEscrow.deposit_with_authorization``
and pays the gas. Because the authorisation names the escrow as the only possible caller of
``receiveWithAuthorization``, nobody can turn it into a plain transfer, and the funds can only become the payer's
credits.

Checks before any gas is spent: shape, ``to`` is this deployment's escrow, the amount is at least ``min_amount``
(the relayer pays gas per deposit), the validity window (valid now, and for at least ``min_validity`` more seconds),
the payer's ECDSA signature over OPG's domain on this chain (EOA only: ``deposit_with_authorization`` takes v, r, s),
the nonce unused, the payer's OPG balance, and a simulation (``eth_call``). The transaction goes through the relayer's
one nonce sequence with a write-ahead record (kind ``deposit``, keyed by ``payer:nonce``), so the same authorisation
posted again answers with the same transaction instead of a second one. Of several relayer processes on one store
only the lease holder sends (``relayer.lease``): a follower that accepts an authorisation queues it for the leader
(``relayer.handover``), whose deposit worker (``DepositSender``) checks and sends it as if it had been posted to
itself; the follower answers from that transaction (or with the leader's refusal), within ``timeout``.

Answer: 200 ``{success: true, status: "confirmed", transaction, payer, amount, balance}`` once mined; 202 with
``status: "pending"`` if the transaction is not mined (or, handed over, not sent: ``transaction`` empty) within
``timeout`` (post the same body again to follow it); 4xx ``{error, field, reason}`` for a refused authorisation.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from ..daemon.errors import ApiError
from ..messages import Domain, InvalidSignature, ReceiveWithAuthorization, recover_signer
from ..sdk.tx import BroadcastError, NotSender, TxManager, is_revert, revert_message
from .handover import Handover
from .models import DepositAnswer, DepositAuthorization, DepositIn

KIND = "deposit"
SEND_EVERY = 5.0  # s: the deposit worker's backstop tick (woken at once by the handover listener)


class Deposits:
    """Submits gasless deposits. ``sender``: the relayer's TxManager; ``chain()``: a Chain for the calling thread;
    ``transactions(kind, ref)``: the store's write-ahead records; ``retry``: RPC retry wrapper; ``timeout``: how
    long to wait for the transaction (s); ``handover``/``run``: a follower's deposits queued for the leader
    (``run``: the store's ``call``, a write job)."""

    def __init__(self, *, sender: TxManager, chain: Callable[[], Any],
                 transactions: Callable[[str, str], list[dict]], retry: Callable[[Callable[[], Any]], Any],
                 timeout: float, handover: Handover, run: Callable[..., Any], min_amount: int = 10**18,
                 min_validity: int = 60):
        self.sender, self.chain, self.transactions, self.retry = sender, chain, transactions, retry
        self.handover, self.run = handover, run
        self.timeout, self.min_amount, self.min_validity = timeout, min_amount, min_validity
        self.locks: dict[str, threading.Lock] = {}
        self.guard = threading.Lock()

    def _mined(self, tx_hash: str, wait: float) -> Any | None:
        return self.sender.wait(tx_hash, wait) if wait > 0 else self.sender.receipt(tx_hash)

    def _answer(self, c: Any, a: DepositAuthorization, tx_hash: str, receipt: Any | None) -> tuple[int, dict]:
        if receipt is None:
            return 202, DepositAnswer(success=False, status="pending", transaction=tx_hash, payer=a.from_,
                                      amount=str(a.value)).model_dump(by_alias=True)
        if self.sender.journal is not None:  # mined: the journal record (and the others of its nonce) are done
            self.sender.journal.done(tx_hash)
        if receipt["status"] != 1:
            raise ApiError(409, "deposit_failed", None, f"transaction {tx_hash} reverted")
        balance = self.retry(lambda: c.escrow.functions.balance_of(a.from_).call())
        return 200, DepositAnswer(success=True, status="confirmed", transaction=tx_hash, payer=a.from_,
                                  amount=str(a.value), balance=str(balance)).model_dump(by_alias=True)

    def _signed(self, body: DepositIn) -> tuple[Any, DepositAuthorization, str]:
        """The checks needing no chain state: this escrow, the amount, the payer's signature. (chain, auth, key)."""
        c = self.chain()
        a = body.authorization
        escrow = c.deployment.address("CreditEscrow")
        if a.to != escrow:
            raise ApiError(400, "invalid_field", "authorization.to", f"must be the CreditEscrow {escrow}")
        if a.value < self.min_amount:
            raise ApiError(400, "amount_too_small", "authorization.value",
                           f"gasless deposits start at {self.min_amount} wei (the relayer pays the gas)")
        auth = ReceiveWithAuthorization(owner=a.from_, to=a.to, value=a.value, valid_after=a.valid_after,
                                        valid_before=a.valid_before, nonce=a.nonce)
        token_domain = Domain.token(c.chain_id, c.deployment.address("OPG"))
        try:
            signer = recover_signer(auth.fast_digest(token_domain), body.signature)
        except InvalidSignature as exc:
            raise ApiError(400, "invalid_signature", "signature", str(exc)) from None
        if signer != a.from_:
            raise ApiError(400, "invalid_signature", "signature",
                           "not signed by authorization.from over OPG's EIP-712 domain on this chain")
        return c, a, f"{a.from_}:{a.nonce}"

    def _lock(self, key: str) -> threading.Lock:
        with self.guard:
            return self.locks.setdefault(key, threading.Lock())

    def _recorded(self, key: str) -> tuple[str, Any | None] | None:
        """The journal's transaction for this deposit that is mined successfully or still pending, if any."""
        for tx in reversed(self.transactions(KIND, key)):
            receipt = self._mined(tx["tx_hash"], 0)
            if receipt is not None and receipt["status"] == 1:
                return tx["tx_hash"], receipt
            if receipt is None and self.sender.known(tx["tx_hash"]):
                return tx["tx_hash"], None
        return None

    def _payable(self, c: Any, a: DepositAuthorization, signature: str) -> Any:
        """What the chain will judge (nonce unused, validity window, balance, a simulation): the transaction."""
        nonce = bytes.fromhex(a.nonce[2:])
        if self.retry(lambda: c.opg.functions.authorizationState(a.from_, nonce).call()):
            raise ApiError(409, "authorization_used", "authorization.nonce",
                           "this authorization was already used or canceled")
        now = max(int(time.time()), int(self.retry(lambda: c.w3.eth.get_block("latest"))["timestamp"]))
        if a.valid_after > now:
            raise ApiError(400, "not_yet_valid", "authorization.validAfter", "the authorization is not valid yet")
        if a.valid_before < now + self.min_validity:
            raise ApiError(400, "expired", "authorization.validBefore",
                           f"the authorization must stay valid for at least {self.min_validity} s")
        balance = self.retry(lambda: c.opg.functions.balanceOf(a.from_).call())
        if balance < a.value:
            raise ApiError(400, "insufficient_balance", "authorization.value",
                           f"the payer holds {balance} wei of OPG, less than {a.value}")
        sig = bytes.fromhex(signature[2:])
        fn = c.escrow.functions.deposit_with_authorization(a.from_, a.value, a.valid_after, a.valid_before,
                                                           nonce, sig[64], sig[:32], sig[32:64])
        try:
            self.retry(lambda: fn.call({"from": self.sender.address}))
        except Exception as exc:
            if not is_revert(exc):
                raise
            raise ApiError(400, "simulation_failed", None, revert_message(exc)) from None
        return fn

    def _send(self, fn: Any, key: str) -> str:
        try:
            return self.sender.send(fn, KIND, key).tx_hash
        except BroadcastError as exc:
            raise ApiError(502, "broadcast_failed", None, str(exc)[:300]) from None
        except NotSender as exc:  # the lease was lost between the check and the record
            raise ApiError(503, "not_sender", None, f"{exc}; post it again") from None

    def handle(self, body: DepositIn) -> tuple[int, dict]:
        c, a, key = self._signed(body)
        with self._lock(key):
            known = self._recorded(key)
            if known is not None:
                tx_hash, receipt = known
                return self._answer(c, a, tx_hash, receipt if receipt is not None else self._mined(tx_hash,
                                                                                                   self.timeout))
            fn = self._payable(c, a, body.signature)
            if self.sender.sending():
                tx_hash = self._send(fn, key)
                return self._answer(c, a, tx_hash, self._mined(tx_hash, self.timeout))
            # A follower: the leader sends it (relayer.handover); answer from its transaction or its refusal.
            self.run(self.handover.job_queue, KIND, key, body.model_dump_json(by_alias=True), time.time())
        return self._follow(c, a, key)

    def _follow(self, c: Any, a: DepositAuthorization, key: str) -> tuple[int, dict]:
        deadline = time.monotonic() + self.timeout

        def outcome() -> tuple[str, Any] | None:
            known = self._recorded(key)
            if known is not None:
                return "sent", known[0]
            row = self.handover.get(KIND, key)
            return ("failed", row.error) if row is not None and row.status == "failed" else None

        found = self.handover.wait_for(outcome, self.timeout)
        if found is None:
            return 202, DepositAnswer(success=False, status="pending", transaction="", payer=a.from_,
                                      amount=str(a.value)).model_dump(by_alias=True)
        what, value = found
        if what == "failed":
            refused = json.loads(value)
            raise ApiError(refused["status"], refused["error"], refused["field"], refused["reason"])
        return self._answer(c, a, value, self._mined(value, max(0.0, deadline - time.monotonic())))

    def send_queued(self) -> int:
        """The leader's worker: take each deposit a follower queued, check and send it as if posted here, and end
        its row (``sent``, or ``failed`` with the refusal the follower answers). Returns how many were taken."""
        taken = 0
        for row in self.handover.queued(KIND):
            if not self.sender.sending():
                break
            if not self.run(Handover.job_take, KIND, row.ref, time.time()):
                continue
            taken += 1
            status, error = "sent", None
            try:
                body = DepositIn.model_validate_json(row.body)
                c, a, key = self._signed(body)
                with self._lock(key):
                    if self._recorded(key) is None:
                        self._send(self._payable(c, a, body.signature), key)
            except ApiError as exc:
                status, error = "failed", json.dumps({"status": exc.status, **exc.body()})
            except Exception as exc:
                status, error = "failed", json.dumps({"status": 502, "error": "broadcast_failed", "field": None,
                                                      "reason": str(exc)[:300]})
            self.run(self.handover.job_end, KIND, row.ref, status, error, time.time())
        return taken


class DepositSender:
    """The leader's worker (``daemon.worker``, gated on the lease) sending the deposits followers queued: at its
    start it queues again what a previous leader took and never ended."""

    name = "deposits"

    def __init__(self, deposits: Deposits):
        self.deposits = deposits

    def startup(self) -> None:
        self.deposits.run(Handover.job_requeue_taken, KIND, time.time())

    def tick(self) -> float:
        self.deposits.send_queued()
        return SEND_EVERY
