"""The x402 ``exact`` scheme on OPG: EIP-3009 ``transferWithAuthorization``, one on-chain payment per request.

Verification follows x402's EVM exact facilitator (its payload types, EIP-712 hashing and reason codes are reused)
with the relayer's own chain access, so that the relayer's one nonce sequence and write-ahead records cover these
transfers too. An authorisation is settled at most once: ``(payer, nonce)`` keys its record, and a repeated
``/settle`` answers with the transaction already sent. Of several relayer processes on one store only the lease
holder sends (``relayer.lease``): a follower claims a new authorisation ``queued`` and hands it to the leader
(``relayer.handover``), whose exact worker sends it (``send_queued``); the follower waits for that transaction and
answers as the leader would have (the same transaction), or, after ``timeout``, ``settlement_pending`` with the row
left queued or sent, so the same payment posted again answers its final outcome.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from eth_abi import encode as abi_encode
from eth_utils import keccak
from pydantic import ValidationError
from web3.logs import DISCARD
from x402.mechanisms.evm import constants as x402c
from x402.mechanisms.evm.eip712 import hash_eip3009_authorization
from x402.mechanisms.evm.exact.eip3009_utils import parse_eip3009_transfer_error
from x402.mechanisms.evm.types import ExactEIP3009Authorization
from x402.schemas import PaymentPayload, PaymentRequirements, SettleResponse, VerifyResponse

from ..chain import Chain
from ..daemon.errors import ApiError, from_validation_error
from ..messages import InvalidSignature, recover_signer
from ..schemes import SCHEME_EXACT, registry
from ..schemes.exact import ExactPayload
from ..sdk.tx import BroadcastError, PreparedCall, TxManager, is_revert, revert_message
from .handover import QUEUED, SENT, Handover
from .metrics import Metrics
from .rpc import ChainFacts, Rpc
from .store import ExactPayment, Store

log = logging.getLogger("opg.relayer.exact")

ASSET_MISMATCH = "asset_mismatch"
ERC1271_MAGIC = bytes.fromhex("1626ba7e")
IS_VALID_SIGNATURE_ABI = [{
    "type": "function", "name": "isValidSignature", "stateMutability": "view",
    "inputs": [{"name": "hash", "type": "bytes32"}, {"name": "signature", "type": "bytes"}],
    "outputs": [{"name": "", "type": "bytes4"}],
}]
HANDED_OVER = ("handed to the sending relayer, not sent within the settle timeout; post the same payment again for "
               "its outcome")
EXACT_RECONCILE_EVERY = 5.0  # s between reconciliations of exact payments left in flight
EXPIRY_MARGIN = 6  # s an authorisation must outlive the chain's next block by (model run, mining)
TRANSFER_BYTES_SELECTOR = keccak(
    text="transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)")[:4]


@registry.facilitator
class ExactScheme:
    """The exact facilitator (an x402 ``SchemeNetworkFacilitator``): EIP-3009 transfers, one per request."""

    scheme = SCHEME_EXACT
    caip_family = "eip155:*"

    def __init__(self, facts: ChainFacts, rpc: Rpc, sender: TxManager, sender_chain: Chain, store: Store,
                 metrics: Metrics, timeout: float, handover: Handover):
        """``rpc``: reads from request threads; ``sender``/``sender_chain``: the relayer's transactions;
        ``timeout``: how long POST /settle waits for a transfer (s); ``handover``: a follower's work to the leader."""
        self.facts, self.rpc, self.sender, self.sender_chain = facts, rpc, sender, sender_chain
        self.store, self.metrics, self.timeout, self.handover = store, metrics, timeout, handover
        self.network = facts.network
        self.token = facts.opg
        self.token_name, self.token_version = facts.opg_domain

    # Parsing ---------------------------------------------------------------------------------------------------
    def get_extra(self, network: str) -> dict[str, Any] | None:
        return None

    def get_signers(self, network: str) -> list[str]:
        return [self.facts.relayer]

    def _payload(self, paid: PaymentPayload) -> ExactPayload:
        try:
            return registry.parse(SCHEME_EXACT, paid.payload)
        except ValidationError as exc:
            raise from_validation_error(exc, "paymentPayload.payload") from None

    def _call(self, payload: ExactPayload, w3: Any, contract: Any) -> Any:
        a = payload.authorization
        sig = bytes.fromhex(payload.signature[2:])
        nonce = bytes.fromhex(a.nonce[2:])
        if len(sig) == 65:
            v = sig[64] + 27 if sig[64] < 27 else sig[64]
            return contract.functions.transferWithAuthorization(
                a.from_, a.to, a.value, a.valid_after, a.valid_before, nonce, v, sig[:32], sig[32:64])
        data = TRANSFER_BYTES_SELECTOR + abi_encode(
            ["address", "address", "uint256", "uint256", "uint256", "bytes32", "bytes"],
            [a.from_, a.to, a.value, a.valid_after, a.valid_before, nonce, sig])
        return PreparedCall(w3, contract.address, data)

    # POST /verify ----------------------------------------------------------------------------------------------
    def _invalid(self, payer: str) -> Any:
        def invalid(reason: str, message: str) -> VerifyResponse:
            self.metrics.verify.inc(1, SCHEME_EXACT, reason)
            return VerifyResponse(is_valid=False, invalid_reason=reason, invalid_message=message, payer=payer)
        return invalid

    def _check_signed(self, paid: PaymentPayload, reqs: PaymentRequirements,
                      payload: ExactPayload) -> VerifyResponse | None:
        """What needs no chain state but the payer's code: the requirements match this relayer and the
        authorisation, and the payer signed exactly this authorisation. ``None`` when all hold."""
        a = payload.authorization
        invalid = self._invalid(a.from_)
        if reqs.scheme != SCHEME_EXACT or paid.accepted.scheme != SCHEME_EXACT:
            return invalid(x402c.ERR_UNSUPPORTED_SCHEME, "scheme must be exact")
        if reqs.network != self.network or paid.accepted.network != reqs.network:
            return invalid(x402c.ERR_NETWORK_MISMATCH, f"this relayer settles on {self.network}")
        if reqs.asset.lower() != self.token.lower():
            return invalid(ASSET_MISMATCH, f"asset must be OPG {self.token}")
        extra = reqs.extra or {}
        if "name" not in extra or "version" not in extra:
            return invalid(x402c.ERR_MISSING_EIP712_DOMAIN, "paymentRequirements.extra needs the token's name and version")
        if extra["name"] != self.token_name:
            return invalid(x402c.ERR_TOKEN_NAME_MISMATCH, f"OPG's EIP-712 name is {self.token_name!r}")
        if str(extra["version"]) != self.token_version:
            return invalid(x402c.ERR_TOKEN_VERSION_MISMATCH, f"OPG's EIP-712 version is {self.token_version!r}")
        if a.to.lower() != str(reqs.pay_to).lower():
            return invalid(x402c.ERR_RECIPIENT_MISMATCH, "authorization.to must be paymentRequirements.payTo")
        amount = str(reqs.amount)
        if not (amount.isascii() and amount.isdigit()) or len(amount) > 78:
            raise ApiError(400, "invalid_field", "paymentRequirements.amount", "must be a decimal integer (ASCII digits)")
        if a.value != int(amount):
            return invalid(x402c.ERR_AUTHORIZATION_VALUE_MISMATCH, "authorization.value must equal amount")
        chain = self.rpc.chain()
        digest = hash_eip3009_authorization(
            ExactEIP3009Authorization(from_address=a.from_, to=a.to, value=str(a.value), valid_after=str(a.valid_after),
                                      valid_before=str(a.valid_before), nonce=a.nonce),
            self.facts.chain_id, self.token, self.token_name, self.token_version)
        sig = bytes.fromhex(payload.signature[2:])
        code = self.rpc.retry(lambda: chain.w3.eth.get_code(a.from_))
        if len(code) > 0:
            wallet = chain.w3.eth.contract(address=a.from_, abi=IS_VALID_SIGNATURE_ABI)
            try:
                magic = self.rpc.retry(lambda: wallet.functions.isValidSignature(digest, sig).call())
            except Exception:
                magic = b""
            if bytes(magic)[:4] != ERC1271_MAGIC:
                return invalid(x402c.ERR_INVALID_SIGNATURE, "the payer wallet's isValidSignature refuses it")
        else:
            try:
                signer = recover_signer(digest, sig)
            except InvalidSignature as exc:
                return invalid(x402c.ERR_INVALID_SIGNATURE, str(exc))
            if signer != a.from_:
                return invalid(x402c.ERR_INVALID_SIGNATURE,
                               "not signed by authorization.from over OPG's EIP-712 domain on this chain")
        return None

    def chain_now(self) -> int:
        """The earliest time the chain can judge a transaction sent now: the next block's timestamp, which is at least
        the latest block's + 1 and at least the wall clock, and on a node that knows it (anvil after
        ``evm_increaseTime``: wall clock + offset) the pending block's. max(wall, chain), as everywhere else."""
        w3 = self.rpc.chain().w3
        latest = self.rpc.retry(lambda: w3.eth.get_block("latest"))
        now = max(int(time.time()), int(latest["timestamp"]) + 1)
        try:
            pending = self.rpc.retry(lambda: w3.eth.get_block("pending"))
            now = max(now, int(pending["timestamp"]))
        except Exception as exc:  # a node without a pending block: the latest block and the wall clock bound it
            log.debug("no pending block: %r", exc)
        return now

    def verify(self, paid: PaymentPayload, reqs: PaymentRequirements) -> VerifyResponse:
        """x402 verify of an EIP-3009 authorisation. Blocking: run in a worker thread."""
        payload = self._payload(paid)
        refused = self._check_signed(paid, reqs, payload)
        if refused is not None:
            return refused
        return self._check_payable(payload)

    def _check_payable(self, payload: ExactPayload) -> VerifyResponse:
        """What the chain will judge: the validity window at the time the chain will judge it (with a margin for
        the model to run and the transaction to be mined), the nonce, the balance, and a simulation of the transfer
        against the pending state. Refusing here costs the payer nothing; a revert on chain costs gas."""
        a = payload.authorization
        payer = a.from_
        invalid = self._invalid(payer)
        now = self.chain_now()
        margin = EXPIRY_MARGIN
        if a.valid_before < now + margin:
            return invalid(x402c.ERR_VALID_BEFORE_EXPIRED,
                           f"authorization expires (validBefore {a.valid_before}) before the chain can settle it: "
                           f"the chain's next block is at {now} or later, settling needs {margin} s more")
        if a.valid_after >= now:
            return invalid(x402c.ERR_VALID_AFTER_FUTURE,
                           f"authorization is not valid yet (validAfter {a.valid_after}, the chain's next block is at "
                           f"{now})")
        chain = self.rpc.chain()
        nonce = bytes.fromhex(a.nonce[2:])
        if self.rpc.retry(lambda: chain.opg.functions.authorizationState(payer, nonce).call(block_identifier="pending")):
            return invalid(x402c.ERR_NONCE_ALREADY_USED, "the authorization nonce is already used or canceled")
        balance = self.rpc.retry(lambda: chain.opg.functions.balanceOf(payer).call(block_identifier="pending"))
        if balance < a.value:
            return invalid(x402c.ERR_INSUFFICIENT_BALANCE, f"OPG balance {balance} < value {a.value}")
        try:
            self.rpc.retry(lambda: self._simulate(payload, chain))
        except Exception as exc:
            if not is_revert(exc):
                raise
            reason = parse_eip3009_transfer_error(exc)
            if reason == x402c.ERR_TRANSACTION_FAILED:
                reason = x402c.ERR_TRANSACTION_SIMULATION_FAILED
            log.info("exact %s:%s refused by simulation: %s", payer, a.nonce, revert_message(exc))
            return invalid(reason, revert_message(exc))
        self.metrics.verify.inc(1, SCHEME_EXACT, "valid")
        return VerifyResponse(is_valid=True, payer=payer)

    def _simulate(self, payload: ExactPayload, chain: Any, block: Any = "pending") -> Any:
        call = self._call(payload, chain.w3, chain.opg)
        if isinstance(call, PreparedCall):
            return chain.w3.eth.call({"from": self.facts.relayer, "to": call.to, "data": call.data}, block)
        return call.call({"from": self.facts.relayer}, block_identifier=block)

    # POST /settle ----------------------------------------------------------------------------------------------
    def settle(self, paid: PaymentPayload, reqs: PaymentRequirements) -> SettleResponse:
        """Blocking: run in a worker thread. Sends transferWithAuthorization and waits for it (exact_timeout).

        The requirements and the payer's signature are checked before the stored record of ``(from, nonce)`` is
        looked at, and a repeat is answered from the record only when it carries the very authorisation the record
        holds; the record's own payer and value judge the transaction. A refused request changes nothing stored."""
        payload = self._payload(paid)
        a = payload.authorization
        key = f"{a.from_}:{a.nonce}"

        def refused(reason: str | None, message: str | None) -> SettleResponse:
            self.metrics.exact.inc(1, "invalid")
            return SettleResponse(success=False, error_reason=reason, error_message=message, payer=a.from_,
                                  transaction="", network=self.network)

        verdict = self._check_signed(paid, reqs, payload)
        if verdict is not None:
            return refused(verdict.invalid_reason, verdict.invalid_message)
        existing = self.store.exact.get(key)
        if existing is not None and existing.status != "failed":
            if not self._same_authorization(existing, payload):
                return refused(x402c.ERR_NONCE_ALREADY_USED,
                               "another authorisation with this nonce is already being settled or settled")
            if existing.status in ("sent", "confirmed") and existing.tx_hash:
                return self._await(key, existing.tx_hash, existing.payer, existing.value)
            if existing.status == QUEUED:  # handed over (by this relayer or another): follow it
                return self._follow(key, a.from_, self.timeout)
        verdict = self._check_payable(payload)
        if not verdict.is_valid:
            return refused(verdict.invalid_reason, verdict.invalid_message)
        # Several relayers: only the lease holder sends (relayer.lease); a follower hands the payment over.
        leader = self.sender.sending()
        claimed = self.store.call(self._claim, key, a.from_, a.to, a.value,
                                  json.loads(payload.model_dump_json(by_alias=True)), time.time(),
                                  "new" if leader else QUEUED)
        if claimed is not None:  # another request is settling the same authorisation
            if not self._same_authorization(claimed, payload):
                return refused(x402c.ERR_NONCE_ALREADY_USED,
                               "another authorisation with this nonce is already being settled or settled")
            if claimed.tx_hash:
                return self._await(key, claimed.tx_hash, claimed.payer, claimed.value)
            if claimed.status == QUEUED:
                return self._follow(key, a.from_, self.timeout)
            return SettleResponse(success=False, error_reason=x402c.ERR_SETTLEMENT_PENDING, payer=a.from_,
                                  transaction="", network=self.network)
        if not leader:
            return self._follow(key, a.from_, self.timeout)
        sent = self._send(key, payload)
        return self._await(key, sent, a.from_, a.value) if isinstance(sent, str) else sent

    def _claim(self, conn: Any, key: str, payer: str, payee: str, value: int, authorization: dict, now: float,
               status: str) -> ExactPayment | None:
        """``Store.job_exact_new``; a ``queued`` claim also tells the leader (once it commits)."""
        claimed = Store.job_exact_new(conn, key, payer, payee, value, authorization, now, status)
        if claimed is None and status == QUEUED:
            self.handover.tell(conn, QUEUED, key)
        return claimed

    def _follow(self, key: str, payer: str, timeout: float) -> SettleResponse:
        """A follower's answer for a handed-over authorisation: wait (at most ``timeout`` s) until the leader sent
        it, then for its transaction as the leader would; ``settlement_pending`` if it is still queued then (the
        row stays: posted again, the payment answers its outcome, never a second transfer)."""
        deadline = time.monotonic() + timeout
        row = self.handover.wait_for(  # queued, then new (taken by the leader), then sent or failed
            lambda: r if (r := self.store.exact.get(key)) is not None and r.status not in (QUEUED, "new") else None,
            timeout)
        if row is None:
            return SettleResponse(success=False, error_reason=x402c.ERR_SETTLEMENT_PENDING, payer=payer,
                                  error_message=HANDED_OVER, transaction="", network=self.network)
        if row.tx_hash:
            return self._await(key, row.tx_hash, row.payer, row.value, max(0.0, deadline - time.monotonic()))
        if row.status == "failed":
            return SettleResponse(success=False, error_reason=x402c.ERR_TRANSACTION_FAILED, error_message=row.error,
                                  payer=payer, transaction="", network=self.network)
        return SettleResponse(success=False, error_reason=x402c.ERR_SETTLEMENT_PENDING, payer=payer,
                              error_message=HANDED_OVER, transaction="", network=self.network)

    def send_queued(self) -> int:
        """The leader's worker: take each authorisation a follower handed over (one taker each) and send it under
        this process's fence, then tell the waiting follower. Returns how many were taken."""
        taken = 0
        for row in self.store.exact.queued():
            if not self.sender.sending():
                break
            if not self.store.call(Store.job_exact_take, row.id, time.time()):
                continue  # taken by another run
            taken += 1
            self._send(row.id, registry.parse(SCHEME_EXACT, row.authorization))  # its row: sent, or failed
            self.store.call(self.handover.tell, SENT, row.id)
        return taken

    def _send(self, key: str, payload: ExactPayload) -> str | SettleResponse:
        """Send the claimed (``new``) authorisation: its transaction hash, or the answer to a refusal before
        broadcast (which fails the row: it may be claimed again)."""
        a = payload.authorization
        chain = self.sender_chain
        try:
            tx_hash = self.sender.send(self._call(payload, chain.w3, chain.opg), "exact", key).tx_hash
        except BroadcastError as exc:
            self.store.call(Store.job_exact_update, key, "failed", None, str(exc)[:500], time.time())
            self.metrics.exact.inc(1, "failed")
            log.warning("exact %s not broadcast: %s", key, exc)
            return SettleResponse(success=False, error_reason=x402c.ERR_TRANSACTION_FAILED, error_message=str(exc),
                                  payer=a.from_, transaction="", network=self.network)
        except Exception as exc:
            self.store.call(Store.job_exact_update, key, "failed", None, str(exc)[:500], time.time())
            self.metrics.exact.inc(1, "failed")
            reason = parse_eip3009_transfer_error(exc) if is_revert(exc) else x402c.ERR_TRANSACTION_FAILED
            log.warning("exact %s refused before broadcast: %s", key, revert_message(exc))
            return SettleResponse(success=False, error_reason=reason, error_message=revert_message(exc),
                                  payer=a.from_, transaction="", network=self.network)
        return tx_hash

    @staticmethod
    def _same_authorization(row: ExactPayment, payload: ExactPayload) -> bool:
        """Whether a stored record holds this very authorisation (every signed field; the signature may differ only
        if it is another valid signature of the same payer over the same fields, already checked)."""
        try:
            stored = row.authorization["authorization"]
        except (KeyError, TypeError, ValueError):
            return False
        mine = json.loads(payload.model_dump_json(by_alias=True))["authorization"]
        fields = ("from", "to", "value", "validAfter", "validBefore", "nonce")
        return all(str(stored.get(f)).lower() == str(mine.get(f)).lower() for f in fields)

    def _await(self, key: str, tx_hash: str, payer: str, value: int, timeout: float | None = None) -> SettleResponse:
        receipt = self.sender.wait(tx_hash, self.timeout if timeout is None else timeout)
        if receipt is None:
            return SettleResponse(success=False, error_reason=x402c.ERR_SETTLEMENT_PENDING, payer=payer,
                                  transaction=tx_hash, network=self.network)
        return self._finish(key, tx_hash, receipt, payer, value)

    def _finish(self, key: str, tx_hash: str, receipt: Any, payer: str, value: int) -> SettleResponse:
        ok = receipt["status"] == 1 and self._transfer_logged(receipt, payer, value)
        status = "confirmed" if ok else "failed"
        existing = self.store.exact.get(key)
        reason = None
        if not ok:
            reason = (self._revert_reason(existing, receipt["blockNumber"]) if receipt["status"] != 1
                      else "the transaction did not transfer the authorised value")
        if existing is None or existing.status != status:
            if self.sender.journal is not None:  # mined: the journal record (and the others of its nonce) are done
                self.sender.journal.done(tx_hash)
            self.store.call(Store.job_exact_update, key, status, receipt["blockNumber"], reason, time.time())
            self.metrics.exact.inc(1, status)
            self.metrics.gas_used.inc(receipt["gasUsed"], "exact")
            self.metrics.fees_wei.inc(receipt["gasUsed"] * receipt.get("effectiveGasPrice", 0), "exact")
            if not ok:
                log.warning("exact %s failed on chain in %s (block %s): %s", key, tx_hash, receipt["blockNumber"],
                            reason)
        if not ok:
            return SettleResponse(success=False, error_reason=x402c.ERR_TRANSACTION_FAILED, error_message=reason,
                                  payer=payer, transaction=tx_hash, network=self.network)
        return SettleResponse(success=True, payer=payer, transaction=tx_hash, network=self.network, amount=str(value))

    def _revert_reason(self, row: ExactPayment | None, block: int) -> str:
        """Why a mined transferWithAuthorization reverted: the same call replayed on the state and clock of its
        block (a reverted transaction changed nothing), e.g. ``eip3009: authorization is expired``."""
        if row is None:
            return "transaction reverted"
        try:
            payload = registry.parse(SCHEME_EXACT, row.authorization)
            self._simulate(payload, self.sender_chain, block)
        except Exception as exc:
            if is_revert(exc):
                return f"transaction reverted: {revert_message(exc)}"
            log.debug("replaying %s failed: %r", row.id, exc)
        return "transaction reverted"

    def _transfer_logged(self, receipt: Any, payer: str, value: int) -> bool:
        events = self.sender_chain.opg.events.AuthorizationUsed().process_receipt(receipt, errors=DISCARD)
        transfers = self.sender_chain.opg.events.Transfer().process_receipt(receipt, errors=DISCARD)
        return bool(events) and any(t["args"]["value"] == value for t in transfers)

    # Restart ---------------------------------------------------------------------------------------------------
    def reconcile(self, older_than: float = 0.0) -> None:
        """Settle the fate of exact payments left in flight (by a crash, or a client that stopped waiting)."""
        now = time.time()
        for row in self.store.exact.in_flight():
            if row.updated_at > now - older_than:
                continue
            key, tx_hash = row.id, row.tx_hash
            if row.status == "new" or not tx_hash:
                self.store.call(Store.job_exact_update, key, "failed", None, "not sent before a restart", now)
                continue
            receipt = self.sender.receipt(tx_hash)
            if receipt is not None:
                self._finish(key, tx_hash, receipt, row.payer, row.value)
            elif not self.sender.known(tx_hash) and tx_hash not in self.sender.broadcast_this_run:
                self.store.call(Store.job_exact_update, key, "failed", None, "transaction lost before a restart", now)


class ExactReconciler:
    """The worker (``offchain.daemon.worker``) settling the fate of exact payments left in flight: all of them at
    start, then those untouched for ``older_than`` seconds every EXACT_RECONCILE_EVERY s."""

    name = "exact"

    def __init__(self, exact: ExactScheme, older_than: float):
        self.exact, self.older_than = exact, older_than
        self._next_reconcile = 0.0

    def startup(self) -> None:
        self.exact.reconcile()
        self._next_reconcile = time.monotonic() + EXACT_RECONCILE_EVERY

    def tick(self) -> float:
        """Send what followers handed over (woken at once by ``relayer.handover``), and reconcile every
        EXACT_RECONCILE_EVERY s."""
        self.exact.send_queued()
        if time.monotonic() >= self._next_reconcile:
            self.exact.reconcile(older_than=self.older_than)
            self._next_reconcile = time.monotonic() + EXACT_RECONCILE_EVERY
        return EXACT_RECONCILE_EVERY
