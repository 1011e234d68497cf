"""The ``opg-credit`` scheme: verifying a payer's voucher before a request, validating a node's receipts after.

Stateless checks (shapes, signatures, amounts) run locally; what only the chain knows (session signers and ERC-1271
wallets behind a voucher, whether a node is active, balances) is read with ``eth_call`` and cached where that is
safe (a node's active status briefly, a voucher signature the escrow accepted).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import pydantic_core
from pydantic import ValidationError
from x402.schemas import VerifyRequest, VerifyResponse

from ..chain import ROLE_INFERENCE
from ..daemon.errors import ApiError, from_validation_error
from ..messages import InvalidSignature, recover_signer
from .models import SCHEME_CREDIT, CreditPayload
from .receipts import CheckContext, Checked, check_bulk, check_item, unpack
from .store import ValidReceipt

if TYPE_CHECKING:
    from .service import Relayer

# invalidReason values of POST /verify for opg-credit
UNSUPPORTED_SCHEME = "unsupported_scheme"
UNSUPPORTED_VERSION = "unsupported_x402_version"
NETWORK_MISMATCH = "network_mismatch"
ASSET_MISMATCH = "asset_mismatch"
ESCROW_MISMATCH = "escrow_mismatch"
RECIPIENT_MISMATCH = "recipient_mismatch"
INVALID_SIGNATURE = "invalid_signature"
NODE_NOT_ACTIVE = "node_not_active"
CAP_EXCEEDED = "cap_exceeded"
INSUFFICIENT_BALANCE = "insufficient_balance"
INVALID_AMOUNT = "invalid_amount"
SESSION_EXPIRING = "session_key_expiring"
ALLOWANCE_EXCEEDED = "allowance_exceeded"
SESSION_CACHE_TTL = 5.0
MAX_FUTURE = 300
SESSION_SETTLE_MARGIN = 60  # a session key's receipts are accepted while it has this long left (s)

POOL_MIN_ITEMS = 16  # bulk submissions this large are checked in the worker processes
NODE_ACTIVE_TTL = 10.0
NODE_INACTIVE_TTL = 1.0


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)


class CreditScheme:
    def __init__(self, relayer: Relayer):
        self.r = relayer
        self.network = relayer.network
        self.escrow_domain = relayer.escrow_domain
        self.staking_domain = relayer.staking_domain
        # A receipt more than MAX_FUTURE (300 s, NodeStaking.MAX_FUTURE) ahead is slashable as invalid: never accepted.
        self.ctx = CheckContext(self.network, self.escrow_domain, self.staking_domain,
                                min(relayer.settings.clock_skew, MAX_FUTURE),
                                min(relayer.settings.max_receipt_age, relayer.dispute_window))
        self._vouchers_ok: _LRU = _LRU(50_000)  # (digest, signature) of vouchers signed by their payer
        self._session_ok: _LRU = _LRU(50_000)  # (digest, signature) -> accepted until (monotonic), session keys
        self._thaw: tuple[int, float] | None = None
        self._nodes: dict[str, tuple[bool, float]] = {}  # is_active_as(node, INFERENCE)
        self._payable: dict[str, tuple[bool, float]] = {}  # is_payable(node)

    # Chain reads (blocking; called from worker threads) -------------------------------------------------------
    def node_active(self, node: str, fresh: bool = False) -> bool:
        """staking.is_active_as(node, INFERENCE) (eligible for new service: registered, not jailed, minimum stake),
        cached briefly unless ``fresh``."""
        return self._node_flag(self._nodes, node, fresh,
                               lambda chain: chain.staking.functions.is_active_as(node, ROLE_INFERENCE).call())

    def node_payable(self, node: str, fresh: bool = False) -> bool:
        """staking.is_payable(node) (settlement pays it: registered inference node, not jailed; the minimum stake
        does not gate pay for work done), cached briefly unless ``fresh``."""
        return self._node_flag(self._payable, node, fresh, lambda chain: chain.staking.functions.is_payable(node).call())

    def _node_flag(self, cache: dict, node: str, fresh: bool, read: Any) -> bool:
        cached = cache.get(node)
        now = time.monotonic()
        if not fresh and cached is not None and cached[1] > now:
            return cached[0]
        chain = self.r.thread_chain()
        value = bool(self.r.retry(lambda: read(chain)))
        cache[node] = (value, now + (NODE_ACTIVE_TTL if value else NODE_INACTIVE_TTL))
        return value

    def forget_node(self, node: str) -> None:
        self._nodes.pop(node, None)
        self._payable.pop(node, None)

    def thaw_period(self) -> int:
        now = time.monotonic()
        if self._thaw is None or self._thaw[1] <= now:
            chain = self.r.thread_chain()
            self._thaw = (int(self.r.retry(lambda: chain.escrow.functions.thaw_period().call())), now + 30)
        return self._thaw[0]

    def chain_now(self) -> int:
        """The latest block's timestamp (what the escrow compares a session key's expiry with), or the clock's."""
        chain = self.r.thread_chain()
        block = self.r.retry(lambda: chain.w3.eth.get_block("latest"))
        stamp = int(block["timestamp"])
        self._clock = (stamp, time.monotonic())
        return max(stamp, int(time.time()))

    def _clock_stale(self) -> bool:
        clock = getattr(self, "_clock", None)
        return clock is None or time.monotonic() - clock[1] > 2

    def clock_now(self) -> float:
        """max(wall clock, the chain's clock estimated from a block read at most 2 s ago): what receipt timestamps
        are judged against. A chain whose clock runs ahead of the wall clock (a devnet after ``evm_increaseTime``)
        moves it forward, so a node that dates its receipts by the chain is not refused as future-dated."""
        clock = getattr(self, "_clock", None)
        if clock is None or time.monotonic() - clock[1] > 2:
            try:
                self.chain_now()
            except Exception:  # the chain unreachable: the wall clock alone
                return time.time()
            clock = self._clock
        return max(time.time(), clock[0] + (time.monotonic() - clock[1]))

    def session_key(self, payer: str, key: str) -> tuple[int, int]:
        """escrow.signer_of(payer, key): (expiry, remaining allowance)."""
        chain = self.r.thread_chain()
        expiry, allowance = self.r.retry(lambda: chain.escrow.functions.signer_of(payer, key).call())
        return int(expiry), int(allowance)

    def session_refusal(self, payer: str, key: str, margin: int) -> str | None:
        """Why a voucher signed by ``key`` (not the payer) is refused, or None: the key must be a session key of the
        payer whose expiry is at least ``margin`` seconds away (so the relayer can settle its vouchers in time)."""
        expiry, _allowance = self.session_key(payer, key)
        now = self.chain_now()
        if expiry <= now:
            return (f"signed by {key}, which is neither the payer nor one of its session keys in force "
                    "(or signed for another chain or escrow)")
        if expiry < now + margin:
            return f"session key {key} expires in {expiry - now} s, sooner than the {margin} s this relayer requires"
        return None

    # POST /verify ----------------------------------------------------------------------------------------------
    def verify(self, req: VerifyRequest) -> VerifyResponse:
        """Blocking: run in a worker thread."""
        try:
            payload = CreditPayload.model_validate(req.payment_payload.payload)
        except ValidationError as exc:
            raise from_validation_error(exc, "paymentPayload.payload") from None
        voucher = payload.voucher
        reqs = req.payment_requirements
        payer = voucher.payer

        def invalid(reason: str, message: str) -> VerifyResponse:
            self.r.metrics.verify.inc(1, SCHEME_CREDIT, reason)
            return VerifyResponse(is_valid=False, invalid_reason=reason, invalid_message=message, payer=payer)

        if req.x402_version != 2 or req.payment_payload.x402_version != 2:
            return invalid(UNSUPPORTED_VERSION, "only x402Version 2 is supported")
        if reqs.scheme != SCHEME_CREDIT or req.payment_payload.accepted.scheme != SCHEME_CREDIT:
            return invalid(UNSUPPORTED_SCHEME, f"scheme must be {SCHEME_CREDIT}")
        if reqs.network != self.network or req.payment_payload.accepted.network != reqs.network:
            return invalid(NETWORK_MISMATCH, f"this relayer settles on {self.network}")
        if reqs.asset.lower() != self.r.opg_address.lower():
            return invalid(ASSET_MISMATCH, f"asset must be OPG {self.r.opg_address}")
        extra = reqs.extra or {}
        for key, expected in (("escrow", self.r.escrow_address), ("staking", self.r.staking_address)):
            if extra.get(key) is not None and str(extra[key]).lower() != expected.lower():
                return invalid(ESCROW_MISMATCH, f"extra.{key} is not this deployment's {expected}")
        if str(reqs.pay_to).lower() != voucher.node.lower():
            return invalid(RECIPIENT_MISMATCH, "voucher.node must be paymentRequirements.payTo")
        try:
            price = int(reqs.amount)
            if price < 0:
                raise ValueError
        except ValueError:
            raise ApiError(400, "invalid_field", "paymentRequirements.amount",
                           "must be a non-negative integer (decimal string)") from None
        digest = voucher.fast_digest(self.escrow_domain)
        try:
            signer = recover_signer(digest, payload.signature)
        except InvalidSignature as exc:
            return invalid(INVALID_SIGNATURE, str(exc))
        if not self.node_active(voucher.node, fresh=True):
            return invalid(NODE_NOT_ACTIVE, f"node {voucher.node} is not an active inference node")
        node = voucher.node
        allowance = None
        if signer != payer:
            # A session key: in force for at least a thaw period more (its vouchers must be settled before it
            # expires, and a revocation takes a thaw period), and with allowance for every channel it signed.
            expiry, allowance = self.session_key(payer, signer)
            now = self.chain_now()
            if expiry <= now:
                return invalid(INVALID_SIGNATURE, f"signed by {signer}: neither the payer nor a session key of it "
                               "in force (or signed for another chain or escrow)")
            thaw = self.thaw_period()
            if expiry < now + thaw:
                return invalid(SESSION_EXPIRING, f"session key {signer} expires in {expiry - now} s, sooner than "
                               f"the thaw period ({thaw} s)")
        chain = self.r.thread_chain()
        spent = self.r.retry(lambda: chain.escrow.functions.spent(payer, node).call())
        channel = self.r.ledger.get(payer, node)
        charged = max(channel.charged if channel else 0, spent)
        if voucher.max_cumulative < charged + price:
            return invalid(CAP_EXCEEDED, f"maxCumulative {voucher.max_cumulative} < charged {charged} + price {price}")
        # Credits for a new request: what the payer can still use (withdrawal requests excluded) less what its other
        # accepted vouchers still let nodes charge; this channel needs its new cap less what it has paid.
        available = int(self.r.retry(lambda: chain.escrow.functions.available_of(payer).call()))
        reserved = self.r.ledger.reserved(payer, exclude_node=node)
        need = max(voucher.max_cumulative, channel.cap if channel else 0) - spent
        if available < reserved + need:
            return invalid(INSUFFICIENT_BALANCE, f"available credits {available} < reserved {reserved} by other "
                           f"channels + {need} this voucher allows (maxCumulative - spent)")
        if allowance is not None:
            key_reserved = self.r.ledger.key_reserved(payer, signer, exclude_node=node)
            key_need = voucher.max_cumulative - max(spent, channel.payer_cap if channel else 0)
            if allowance < key_reserved + key_need:
                return invalid(ALLOWANCE_EXCEEDED, f"session key allowance {allowance} < reserved {key_reserved} by "
                               f"its other channels + {key_need} this voucher allows")
        outstanding = self.r.ledger.outstanding(payer)
        balance = available
        self.r.metrics.verify.inc(1, SCHEME_CREDIT, "valid")
        return VerifyResponse(is_valid=True, payer=payer, extra={
            "charged": str(charged), "outstanding": str(outstanding), "balance": str(balance),
            "maxCumulative": str(voucher.max_cumulative),
        })

    # POST /settle: receipts ------------------------------------------------------------------------------------
    def check_local(self, raw: Any, index: int, prefix: str, now: float) -> Checked | ApiError:
        """Every check that needs no chain read (see receipts.check_item)."""
        res = check_item(raw, index, prefix, self.ctx, now, self._vouchers_ok)
        if isinstance(res, Checked) and res.voucher_ok:
            self._vouchers_ok.put((res.voucher_digest, res.valid.voucher.signature), True)
        return res

    def check_chain(self, checked: list[Checked]) -> dict[int, ApiError]:
        """Blocking: can settlement pay the node, and is a session key in force, for the items that need it."""
        errors: dict[int, ApiError] = {}
        for c in checked:
            r, v = c.valid.receipt, c.valid.voucher
            if not self.node_payable(r.node):
                errors[c.index] = ApiError(400, "node_not_active", f"{c.prefix}receipt.node",
                                           f"{r.node} is not an active inference node settlement can pay "
                                           "(unregistered or jailed)")
                continue
            if not c.voucher_ok:
                key = (c.voucher_digest, v.signature)
                until = self._session_ok.get(key)
                if until is not None and until > time.monotonic():
                    continue
                refusal = self.session_refusal(v.payer, c.voucher_signer, SESSION_SETTLE_MARGIN)
                if refusal is None:
                    self._session_ok.put(key, time.monotonic() + SESSION_CACHE_TTL)
                else:
                    errors[c.index] = ApiError(400, "invalid_signature", f"{c.prefix}voucher.signature", refusal)
        return errors

    def needs_chain(self, checked: list[Checked]) -> bool:
        now = time.monotonic()
        for c in checked:
            if not c.voucher_ok:
                until = self._session_ok.get((c.voucher_digest, c.valid.voucher.signature))
                if until is None or until <= now:
                    return True
            cached = self._payable.get(c.valid.receipt.node)
            if cached is None or cached[1] <= now or not cached[0]:
                return True
        return False

    async def _finish(self, answers: list, checked: list[Checked]) -> list[ValidReceipt | ApiError]:
        """Replace each Checked by its ValidReceipt, or by the error the chain checks found."""
        errors: dict[int, ApiError] = {}
        if checked and self.needs_chain(checked):
            errors = await asyncio.to_thread(self.check_chain, checked)
        return [errors.get(a.index, a.valid) if isinstance(a, Checked) else a for a in answers]

    async def validate(self, raws: list[tuple[int, str, Any]]) -> list[ValidReceipt | ApiError]:
        """Validate items ``(index, field prefix, raw json)`` here; one answer per item, in order."""
        now = await asyncio.to_thread(self.clock_now) if self._clock_stale() else self.clock_now()
        answers = [self.check_local(raw, index, prefix, now) for index, prefix, raw in raws]
        return await self._finish(answers, [a for a in answers if isinstance(a, Checked)])

    async def validate_bulk(self, body: bytes, count: int) -> list[ValidReceipt | ApiError]:
        """Validate the items of a bulk body, in the worker processes when there are enough of them."""
        pool = self.r.validation_pool
        if pool is None or count < POOL_MIN_ITEMS:
            items = pydantic_core.from_json(body)["receipts"]
            return await self.validate([(i, f"receipts[{i}].", item) for i, item in enumerate(items)])
        loop = asyncio.get_running_loop()
        now = await asyncio.to_thread(self.clock_now) if self._clock_stale() else self.clock_now()
        packed = await loop.run_in_executor(pool, check_bulk, body, now)
        answers = [unpack(i, a) for i, a in enumerate(packed)]
        checked = []
        for a in answers:
            if isinstance(a, Checked):
                key = (a.voucher_digest, a.valid.voucher.signature)
                if not a.voucher_ok and key in self._vouchers_ok:
                    a.voucher_ok = True
                elif a.voucher_ok:
                    self._vouchers_ok.put(key, True)
                checked.append(a)
        return await self._finish(answers, checked)
