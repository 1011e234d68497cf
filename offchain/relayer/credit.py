"""The ``opg-credit`` scheme: verifying a payer's voucher before a request, validating a node's receipts after.

Stateless checks (shapes, signatures, amounts) run locally; what only the chain knows (session signers behind a
voucher, whether a node is active, balances) is read with raw ``eth_call`` JSON-RPC (``offchain.sdk.reads.RawReader``: one
batch request per ``/verify``, no web3.py in the request path) and cached where that is safe (see ``CreditScheme.verify``
and ``_judge`` for what ``/verify`` caches and why; a node's payable status briefly, a voucher signature the escrow
accepted).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import pydantic_core
from pydantic import ValidationError
from x402.schemas import PaymentPayload, PaymentRequirements, SettleResponse, VerifyResponse

from ..amounts import format_opg
from ..daemon.errors import ApiError, from_validation_error
from ..messages import InvalidSignature, SignedReceipt, recover_signer
from ..schemes import SCHEME_CREDIT, registry
from ..sdk.clock import ProtocolClock
from ..sdk.constants import ROLE_INFERENCE
from ..sdk.reads import RawReader
from ..sdk.wire import SignatureChecker
from .events import Events
from .ledger import Ledger
from .metrics import Metrics
from .models import BulkItemResult, BulkSettleAnswer, SettleItem
from .proposals import Reservations, node_reserved, reserved_with
from .receipts import CheckContext, Checked, Slashable, ValidationPool, check_bulk, check_item, unpack
from .rpc import ChainFacts
from .store import AcceptOutcome, Store, ValidReceipt

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
NODE_CAPACITY = "node_capacity_exceeded"
SESSION_CACHE_TTL = 5.0


MAX_FUTURE = 300
SESSION_SETTLE_MARGIN = 60  # a session key's receipts are accepted while it has this long left (s)

POOL_MIN_ITEMS = 16  # bulk submissions this large are checked in the worker processes
NODE_ACTIVE_TTL = 10.0
NODE_INACTIVE_TTL = 1.0
# POST /verify: how long an "active" is_active_as(node) and a (spent, available_of) pair may be reused. Only answers
# that *accept* a voucher use cached values: a refusal reached with any cached value is checked again with fresh
# reads. Why this is safe: see CreditScheme._judge.
VERIFY_CACHE_TTL = 2.0
# /verify's verdict when the ledger recorded a settlement of the payer after its balance was read (``_judge`` then
# reads again, fresh, up to STALE_RETRIES times, and answers 503 if the payer's channels keep settling meanwhile).
STALE_FUNDS = ("stale_funds", "a settlement was recorded after the payer's balance was read")
STALE_RETRIES = 3


class CreditSettled(SettleResponse):
    """x402 settle answer of opg-credit: the stored receipt's id, status and batch besides x402's fields."""

    always_present: ClassVar[tuple[str, ...]] = ("errorReason", "batchId")
    id: str
    status: str
    batch_id: int | None = None


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)


@dataclass(frozen=True)
class CreditConfig:
    """What the opg-credit scheme is told: how far ahead (``clock_skew``) and how old (``max_receipt_age``) a
    receipt's timestamp may be when handed over."""

    clock_skew: int
    max_receipt_age: int

    @classmethod
    def of(cls, settings: Any) -> CreditConfig:
        return cls(clock_skew=int(settings.clock_skew), max_receipt_age=int(settings.max_receipt_age))

    def context(self, facts: ChainFacts) -> CheckContext:
        """The receipt checks' context: a receipt more than MAX_FUTURE (300 s, NodeStaking.MAX_FUTURE) ahead is
        slashable as invalid, so never accepted; none older than the dispute window."""
        return CheckContext(facts.network, facts.escrow_domain, facts.staking_domain,
                            min(self.clock_skew, MAX_FUTURE), min(self.max_receipt_age, facts.dispute_window))


@registry.facilitator
class CreditScheme:
    """The opg-credit facilitator (an x402 ``SchemeNetworkFacilitator``): ``verify`` answers POST /verify, ``settle``
    and ``accept``/``accept_bulk`` take a node's receipts at POST /settle."""

    scheme = SCHEME_CREDIT
    caip_family = "eip155:*"

    def __init__(self, facts: ChainFacts, ctx: CheckContext, ledger: Ledger, reservations: Reservations,
                 store: Store, metrics: Metrics, reads: RawReader, clock: ProtocolClock,
                 retry: Callable[[Callable[[], Any]], Any], pool: ValidationPool, events: Events):
        self.facts, self.ctx, self.ledger, self.reservations = facts, ctx, ledger, reservations
        self.store, self.metrics, self.reads, self.clock, self.retry, self.pool = (store, metrics, reads, clock,
                                                                                    retry, pool)
        self.network = facts.network
        self.escrow_domain = facts.escrow_domain
        self.staking_domain = facts.staking_domain
        self.vouchers = SignatureChecker(facts.escrow_domain)  # domain separator precomputed (/verify)
        self._vouchers_ok: _LRU = _LRU(50_000)  # (digest, signature) of vouchers signed by their payer
        self._session_ok: _LRU = _LRU(50_000)  # (digest, signature) -> accepted until (monotonic), session keys
        self._thaw: tuple[int, float] | None = None
        self._nodes: dict[str, tuple[bool, float]] = {}  # is_active_as(node, INFERENCE)
        self._payable: dict[str, tuple[bool, float]] = {}  # is_payable(node)
        self._verify_nodes: dict[str, tuple[bool, float]] = {}  # is_active_as(node, INFERENCE) true, for /verify
        # (payer, node) -> (valid until (monotonic), ledger token, spent, available_of): see _judge
        self._funds: dict[tuple[str, str], tuple[float, int, int, int]] = {}
        # node -> (valid until (monotonic), ledger settled sum over its channels, pay_capacity): see _judge
        self._capacity: dict[str, tuple[float, int, int]] = {}
        self._judged = {"cache": 0, "chain": 0}  # opg-credit /verify judgements: answered from the cache alone or not
        metrics.gauge("opg_relayer_verify_credit_reads", "opg-credit /verify judgements (a refusal's fresh "
                      "re-check counts once more) by where the chain values came from: cache (no RPC "
                      "request) or chain (one JSON-RPC batch).",
                      lambda: {(k,): v for k, v in self._judged.items()}, ("source",))
        events.payer_funds_changed.subscribe(self.forget_payer)
        events.node_slashed.subscribe(self.forget_node)

    # Chain reads (blocking; called from worker threads) -------------------------------------------------------
    def node_active(self, node: str, fresh: bool = False) -> bool:
        """staking.is_active_as(node, INFERENCE) (eligible for new service: registered, not jailed, minimum stake),
        cached briefly unless ``fresh``."""
        return self._node_flag(self._nodes, node, fresh, self.reads.is_active_as(node, ROLE_INFERENCE))

    def node_payable(self, node: str, fresh: bool = False) -> bool:
        """staking.is_payable(node) (settlement pays it: registered inference node, not jailed; the minimum stake
        does not gate pay for work done), cached briefly unless ``fresh``."""
        return self._node_flag(self._payable, node, fresh, self.reads.is_payable(node))

    def _node_flag(self, cache: dict, node: str, fresh: bool, call: Any) -> bool:
        cached = cache.get(node)
        now = time.monotonic()
        if not fresh and cached is not None and cached[1] > now:
            return cached[0]
        value = bool(self.retry(lambda: self.reads.one(call)))
        cache[node] = (value, now + (NODE_ACTIVE_TTL if value else NODE_INACTIVE_TTL))
        return value

    def forget_node(self, node: str) -> None:
        self._nodes.pop(node, None)
        self._payable.pop(node, None)
        self._verify_nodes.pop(node, None)

    def forget_payer(self, payer: str) -> None:
        """Drop the cached (spent, available_of) of the payer's channels (a withdrawal request was seen)."""
        for key in [k for k in list(self._funds) if k[0] == payer]:
            self._funds.pop(key, None)

    def _thaw_stale(self) -> bool:
        return self._thaw is None or self._thaw[1] <= time.monotonic()

    def thaw_period(self) -> int:
        if self._thaw_stale():
            self._thaw = (int(self.retry(lambda: self.reads.one(self.reads.thaw_period()))), time.monotonic() + 30)
        return self._thaw[0]

    def chain_now(self) -> int:
        """Read the latest block now: max(its timestamp, wall clock)."""
        return self.clock.read_now()

    def clock_now(self) -> float:
        """max(wall clock, the chain's clock estimated from a block read at most 2 s ago): what receipt timestamps
        are judged against (a devnet's chain clock may run ahead after ``evm_increaseTime``)."""
        return self.clock.now_float()

    def session_key(self, payer: str, key: str) -> tuple[int, int]:
        """escrow.signer_of(payer, key): (expiry, remaining allowance)."""
        expiry, allowance = self.retry(lambda: self.reads.one(self.reads.signer_of(payer, key)))
        return int(expiry), int(allowance)

    def session_refusal(self, payer: str, key: str, margin: int) -> str | None:
        """Why a voucher signed by ``key`` (not the payer) is refused, or None: the key must be a session key of the
        payer whose expiry is at least ``margin`` seconds away (so the relayer can settle its vouchers in time)."""
        (expiry, _allowance), stamp = self.retry(lambda: self.reads.many(
            [self.reads.signer_of(payer, key), self.reads.latest_timestamp()]))
        now = self.clock.observe(stamp)
        if expiry <= now:
            return (f"signed by {key}, which is neither the payer nor one of its session keys in force "
                    "(or signed for another chain or escrow)")
        if expiry < now + margin:
            return f"session key {key} expires in {expiry - now} s, sooner than the {margin} s this relayer requires"
        return None

    # POST /verify ----------------------------------------------------------------------------------------------
    def get_extra(self, network: str) -> dict[str, Any]:
        """``/supported``'s extra of this kind: the deployment's escrow, staking and asset."""
        return {"escrow": self.facts.escrow, "staking": self.facts.staking, "asset": self.facts.opg}

    def get_signers(self, network: str) -> list[str]:
        return [self.facts.relayer]

    def verify(self, paid: PaymentPayload, reqs: PaymentRequirements) -> VerifyResponse:
        """x402 verify of a voucher. Blocking: run in a worker thread."""
        try:
            payload = registry.parse(SCHEME_CREDIT, paid.payload)
        except ValidationError as exc:
            raise from_validation_error(exc, "paymentPayload.payload") from None
        voucher = payload.voucher
        payer = voucher.payer

        def invalid(reason: str, message: str) -> VerifyResponse:
            self.metrics.verify.inc(1, SCHEME_CREDIT, reason)
            return VerifyResponse(is_valid=False, invalid_reason=reason, invalid_message=message, payer=payer)

        if paid.x402_version != 2:
            return invalid(UNSUPPORTED_VERSION, "only x402Version 2 is supported")
        if reqs.scheme != SCHEME_CREDIT or paid.accepted.scheme != SCHEME_CREDIT:
            return invalid(UNSUPPORTED_SCHEME, f"scheme must be {SCHEME_CREDIT}")
        if reqs.network != self.network or paid.accepted.network != reqs.network:
            return invalid(NETWORK_MISMATCH, f"this relayer settles on {self.network}")
        if reqs.asset.lower() != self.facts.opg.lower():
            return invalid(ASSET_MISMATCH, f"asset must be OPG {self.facts.opg}")
        extra = reqs.extra or {}
        for key, expected in (("escrow", self.facts.escrow), ("staking", self.facts.staking)):
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
        try:
            signer = self.vouchers.signer(voucher, payload.signature)
        except InvalidSignature as exc:
            return invalid(INVALID_SIGNATURE, str(exc))
        node = voucher.node
        refusal, extra, used_cache = self._judge(payer, node, signer, voucher.max_cumulative, price, fresh=False)
        if refusal is not None and used_cache:
            # Cached values only ever accept: a refusal is confirmed with fresh reads (a deposit, an expired
            # withdrawal request or a newly registered node shows at once).
            refusal, extra, _ = self._judge(payer, node, signer, voucher.max_cumulative, price, fresh=True)
        if refusal is not None:
            return invalid(*refusal)
        self.metrics.verify.inc(1, SCHEME_CREDIT, "valid")
        return VerifyResponse(is_valid=True, payer=payer, extra=extra)

    def _settled_token(self, payer: str) -> int:
        """Sum of what the ledger knows the payer's channels were paid. Only the relayer's own settlement results
        raise it (``ch.settled`` never falls), so an unchanged token means no settlement was recorded since."""
        channels = self.ledger.channels
        return sum(channels[(payer, n)].settled for n in list(self.ledger.by_payer.get(payer, ())))

    def _judge(self, payer: str, node: str, signer: str, max_cumulative: int, price: int,
               fresh: bool, attempt: int = 0) -> tuple[tuple[str, str] | None, dict, bool]:
        """The chain-dependent checks of POST /verify, in the documented order: (refusal (invalidReason, message)
        or None, the valid answer's extra, whether a cached value was used).

        All the reads this needs go out as one JSON-RPC batch. Unless ``fresh``, two of them may come from a cache
        (VERIFY_CACHE_TTL, 2 s), and only to accept:

        - ``is_active_as(node, INFERENCE)`` when true. A node jailed, deregistered or unbonded below the minimum
          stake within the TTL may still be accepted for new service for that long; the payer is not exposed by it:
          settlement never pays a jailed or unregistered node (the escrow skips it, the relayer rejects its
          receipts), and unbonding stake stays slashable until withdrawn, after an unbonding period (so receipts
          paid are still backed by stake). This relayer's own slashes drop the entry (``forget_node``).
        - ``(spent(payer, node), available_of(payer))``, read together in one batch (one consistent snapshot) and
          reused only while the ledger records no settlement of any channel of the payer (``_settled_token``; the
          token is checked again where the verdict is made, after a shared store's catch-up, ``decide``) and
          no ``WithdrawalRequested`` of the payer was seen (``forget_payer``, from every process's log scan, ``watch.py``,
          every 1 s; otherwise the TTL alone bounds it). The
          check is ``available >= reserved (sum over the other channels of cap - ledger settled) + max(voucher,
          cap) - spent``. What moves these values on-chain, and what a snapshot up to 2 s old does:
            * settlement by this relayer (balance and spent fall/rise by the same delta): until the ledger records
              it the snapshot is the pre-settlement state, which gives the same answer as the truth (the delta
              cancels: on this channel in ``available`` and ``spent``, on another in ``available`` and that
              channel's paid amount); once recorded, the token changes and the values are read again. (Using the
              new ledger with the old ``available`` would overstate the credits by the delta: hence the token.)
            * a node's own settlement (``settle_batch`` sent by the node), which the ledger does not see: the same
              cancellation holds for ``available``; a lower ``spent`` only makes ``charged = max(ledger charged,
              spent)`` lower for the cap check, which can only let that node accept a request its voucher can no
              longer pay (its own loss, not the payer's: the payer never pays beyond a voucher's cap).
            * ``void_charges`` after a fraud proof (spent rises, balance does not): a lower ``spent`` overstates
              this channel's need (conservative); the node is jailed and never paid again.
            * a withdrawal request (``available_of`` falls at once): for up to the TTL the relayer may accept
              requests against thawing credits. Those credits stay in the balance for the thaw period (at least
              60 s, the escrow's floor) and settlement may still draw on them; the relayer settles a payer's
              pending receipts at once when it sees ``WithdrawalRequested`` (and within ``--batch-age`` anyway),
              long before the thaw ends.
            * deposits, an expired withdrawal request (``available_of`` rises): a stale value is conservative, and
              a refusal is re-read fresh anyway.
        - Never cached here: ``signer_of(payer, key)`` (a session key's expiry and allowance; the allowance falls
          with every settlement under the key) and the latest block's timestamp it is compared with.
        """
        reads = self.reads
        token = self._settled_token(payer)  # before the reads: a settlement recorded meanwhile invalidates them
        started = time.monotonic()
        used_cache = False
        active: bool | None = None
        cached_node = None if fresh else self._verify_nodes.get(node)
        if cached_node is not None and cached_node[0] and cached_node[1] > started:
            active, used_cache = True, True
        funds = None if fresh else self._funds.get((payer, node))
        if funds is not None and funds[0] > started and funds[1] == token:
            spent, available = funds[2], funds[3]
            used_cache = True
        else:
            funds = None
        session = signer != payer
        thaw_stale = session and self._thaw_stale()
        node_token = node_reserved(self.ledger, self.reservations, node, payer, int(self.clock_now()))[2]
        capacity: int | None = None
        cached_cap = None if fresh else self._capacity.get(node)
        if cached_cap is not None and cached_cap[0] > started and cached_cap[1] == node_token:
            capacity, used_cache = cached_cap[2], True
        calls = []
        if active is None:
            calls.append(reads.is_active_as(node, ROLE_INFERENCE))
        if funds is None:
            calls += [reads.spent(payer, node), reads.available_of(payer)]
        if capacity is None:
            calls.append(reads.pay_capacity(node))
        if session:
            calls += [reads.signer_of(payer, signer), reads.latest_timestamp()]
            if thaw_stale:
                calls.append(reads.thaw_period())
        self._judged["chain" if calls else "cache"] += 1
        results = iter(self.retry(lambda: reads.many(calls)) if calls else ())
        if active is None:
            active = bool(next(results))
            if active:
                self._verify_nodes[node] = (True, started + VERIFY_CACHE_TTL)
            else:
                self._verify_nodes.pop(node, None)
        if funds is None:
            spent, available = int(next(results)), int(next(results))
            self._funds[(payer, node)] = (started + VERIFY_CACHE_TTL, token, spent, available)
            if len(self._funds) > 100_000:
                self._prune_funds(started)
        if capacity is None:
            capacity = int(next(results))
            self._capacity[node] = (started + VERIFY_CACHE_TTL, node_token, capacity)
        allowance = None
        if session:
            expiry, allowance = next(results)
            now = self.clock.observe(int(next(results)))
            if thaw_stale:
                self._thaw = (int(next(results)), started + 30)
        if not active:
            return (NODE_NOT_ACTIVE, f"node {node} is not an active inference node"), {}, used_cache
        if session:
            # A session key: in force for at least a thaw period more (its vouchers must be settled before it
            # expires, and a revocation takes a thaw period), and with allowance for every channel it signed.
            if expiry <= now:
                return (INVALID_SIGNATURE, f"signed by {signer}: neither the payer nor a session key of it "
                        "in force (or signed for another chain or escrow)"), {}, used_cache
            thaw = self._thaw[0]
            if expiry < now + thaw:
                return (SESSION_EXPIRING, f"session key {signer} expires in {expiry - now} s, sooner than "
                        f"the thaw period ({thaw} s)"), {}, used_cache

        def decide() -> tuple[tuple[str, str] | None, dict, tuple[str, str, int, str] | None]:
            if self._settled_token(payer) != token:  # see below
                return STALE_FUNDS, {}, None
            return self._decide(payer, node, signer, max_cumulative, price, spent, available, capacity, allowance)

        if self.store.shared:  # other relayers promise and accept too: decide on what they committed, under a lock
            refusal, extra = self.store.submit_job(self.store.job_promise, decide, durable=False).result()
        else:
            refusal, extra, promise = decide()
            if promise is not None:
                self.reservations.promise(*promise)
        if refusal is STALE_FUNDS:
            # The ledger recorded a settlement of the payer after ``available`` was read (on a shared store the
            # catch-up in job_promise applies another relayer's): the new ledger with the old balance would overstate
            # the credits by the amount settled. Read again, fresh.
            if attempt >= STALE_RETRIES:
                raise ApiError(503, "settling", "paymentPayload.payload.voucher.payer",
                               "the payer's channels are being settled; retry shortly")
            return self._judge(payer, node, signer, max_cumulative, price, True, attempt + 1)
        return refusal, extra, used_cache

    def _decide(self, payer: str, node: str, signer: str, max_cumulative: int, price: int, spent: int,
                available: int, capacity: int, allowance: int | None
                ) -> tuple[tuple[str, str] | None, dict, tuple[str, str, int, str] | None]:
        """/verify's verdict on the ledger and the reservations (after the chain reads of ``_judge``): (refusal or
        None, the valid answer's extra, the promise to make ``(payer, node, cap, signer)`` or None). On a shared
        store it runs inside ``Store.job_promise``, which holds the intake lock and has caught up with every
        relayer first."""
        channel = self.ledger.get(payer, node)
        charged = max(channel.charged if channel else 0, spent)
        if max_cumulative < charged + price:
            return (CAP_EXCEEDED, f"maxCumulative {max_cumulative} < charged {charged} + price {price}"), {}, None
        # Credits for a new request: what the payer can still use (withdrawal requests excluded) less what its other
        # accepted vouchers still let nodes charge; this channel needs its new cap less what it has paid.
        # Reserved: the ledger's accepted caps, raised to what /verify promised and what live proposals claim
        # (offchain/relayer/proposals.py: R1, R2).
        reserved, this_cap, key_reserved, this_key_cap = reserved_with(
            self.ledger, self.reservations, payer, node, signer if allowance is not None else None,
            int(self.clock_now()))
        need = max(max_cumulative, channel.cap if channel else 0, this_cap) - spent
        if available < reserved + need:
            return (INSUFFICIENT_BALANCE, f"available credits {format_opg(available)} OPG < {format_opg(reserved)} OPG reserved "
                    f"by other channels + {format_opg(need)} OPG this voucher allows (maxCumulative - spent)"), {}, None
        if allowance is not None:
            key_need = max(max_cumulative, this_key_cap) - max(spent, channel.payer_cap if channel else 0)
            if allowance < key_reserved + key_need:
                return (ALLOWANCE_EXCEEDED, f"session key allowance {allowance} < reserved {key_reserved} by "
                        f"its other channels + {key_need} this voucher allows"), {}, None
        # The node's pay capacity (R10): settlement pays it at most pay_capacity(node) more, so what this voucher
        # lets it charge, plus what its other channels may still be paid (accepted receipts, live promises, live
        # proposals: proposals.node_reserved), must fit, or a 1-wei proposal settled first leaves a promised claim
        # short and skipped (reason 2) while its payer withdraws (security.md v3, capacity grief).
        node_others, node_this, _settled = node_reserved(self.ledger, self.reservations, node, payer,
                                                         int(self.clock_now()))
        node_need = max(max_cumulative, charged, node_this) - spent
        if capacity < node_others + node_need:
            return (NODE_CAPACITY, f"node {node} pay capacity {format_opg(capacity)} OPG < {format_opg(node_others)} OPG its "
                    f"other channels may still be paid + {format_opg(node_need)} OPG this voucher allows (maxCumulative - "
                    "spent)"), {}, None
        outstanding = self.ledger.outstanding(payer)
        return None, {"charged": str(charged), "outstanding": str(outstanding), "balance": str(available),
                      "maxCumulative": str(max_cumulative)}, (payer, node, max_cumulative,
                                                               signer if allowance is not None else "")

    def _prune_funds(self, now: float) -> None:
        for key, entry in list(self._funds.items()):
            if entry[0] <= now:
                self._funds.pop(key, None)

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

    @staticmethod
    def _future_dated(answers: list) -> bool:
        return any(getattr(a, "slashable", None) is Slashable.FUTURE_DATED for a in answers)

    async def _clock_moved(self, stale: bool, before: float) -> float | None:
        """After a receipt looked future-dated against a chain clock estimate read up to 2 s ago (``not stale``):
        read the chain clock again and return the new time if it moved ahead (the chain's clock can jump, e.g. a
        devnet's ``evm_increaseTime``), else None. Refusals are confirmed with a fresh read, as in /verify."""
        if stale:
            return None
        try:
            await asyncio.to_thread(self.chain_now)
        except Exception:  # the chain unreachable: keep the refusal
            return None
        after = self.clock_now()  # just read: no chain access here
        return after if after > before + 1 else None

    async def validate(self, raws: list[tuple[int, str, Any]]) -> list[ValidReceipt | ApiError]:
        """Validate items ``(index, field prefix, raw json)`` here; one answer per item, in order."""
        stale = self.clock.stale()
        now = await asyncio.to_thread(self.clock_now) if stale else self.clock_now()
        answers = [self.check_local(raw, index, prefix, now) for index, prefix, raw in raws]
        if self._future_dated(answers) and (moved := await self._clock_moved(stale, now)) is not None:
            answers = [self.check_local(raw, index, prefix, moved) if self._future_dated([a]) else a
                       for a, (index, prefix, raw) in zip(answers, raws, strict=True)]
        suspects = [raw for a, (_i, _p, raw) in zip(answers, raws, strict=True) if self._slashable_refusal(a)]
        if suspects:
            await asyncio.to_thread(self.report_invalid, suspects)
        return await self._finish(answers, [a for a in answers if isinstance(a, Checked)])

    # POST /settle: storing receipts ------------------------------------------------------------------------------
    async def settle(self, paid: PaymentPayload, reqs: PaymentRequirements) -> CreditSettled:
        """x402 settle of opg-credit: the node hands over its signed receipt (``paymentPayload.payload.receipt``),
        stored for batch settlement like a ``{receipt, voucher}`` body; refusals raise ApiError (4xx)."""
        if reqs.network != self.network:
            raise ApiError(400, "wrong_network", "paymentRequirements.network",
                           f"this relayer settles on {self.network}")
        extra = reqs.extra or {}
        for key, expected in (("escrow", self.facts.escrow), ("staking", self.facts.staking)):
            if extra.get(key) is not None and str(extra[key]).lower() != expected.lower():
                raise ApiError(400, "wrong_domain", f"paymentRequirements.extra.{key}",
                               f"not this deployment's {expected}")
        payload = paid.payload
        if not isinstance(payload, dict) or "receipt" not in payload:
            raise ApiError(400, "missing_field", "paymentPayload.payload.receipt",
                           "opg-credit settlement needs the node's signed receipt")
        voucher = payload.get("voucher")
        item = {"receipt": payload["receipt"],
                "voucher": {**voucher, "signature": payload.get("signature")} if isinstance(voucher, dict) else voucher}
        answer, outcome = await self.accept("paymentPayload.payload.", item, time.perf_counter())
        return CreditSettled(success=True, transaction="", network=self.network, payer=answer.receipt.payer,
                             id=outcome.id, status=outcome.status, batch_id=outcome.batch_id)

    async def _store(self, valid: list[ValidReceipt]) -> list[AcceptOutcome]:
        outcomes = await self.store.accept(valid) if valid else []
        for o in outcomes:
            if o.duplicate:
                self.metrics.receipts_duplicate.inc()
            elif o.conflicts_with:
                self.metrics.receipts_refused.inc(1, "equivocation")
            else:
                self.metrics.receipts_accepted.inc()
        return outcomes

    def _stored_resend(self, item: Any, answer: Any) -> AcceptOutcome | None:
        """A receipt refused only for its age that this relayer already stores, signed the same (the same EIP-712
        digest and signature): a byte-identical resend of a receipt accepted earlier, answered as the duplicate it
        is rather than ``invalid_timestamp`` (the client's retry after a lost acknowledgement, any time later)."""
        if not (isinstance(answer, ApiError) and answer.error == "invalid_timestamp"
                and getattr(answer, "slashable", None) is not Slashable.FUTURE_DATED):
            return None
        try:
            r = SettleItem.model_validate(item).receipt
        except (ValidationError, TypeError, ValueError):
            return None
        rid = "0x" + r.fast_digest(self.staking_domain).hex()
        row = self.store.receipts.get(rid)
        if row is None or row.signature.lower() != r.signature.lower():
            return None
        self.metrics.receipts_duplicate.inc()
        return AcceptOutcome(id=rid, status=row.status, reason=row.reason, batch_id=row.batch_id, duplicate=True)

    async def accept(self, prefix: str, item: Any, started: float) -> tuple[Any, AcceptOutcome]:
        """Validate and durably store one receipt item; an equivocating one is stored as evidence, answered 409."""
        [answer] = await self.validate([(0, prefix, item)])
        resend = self._stored_resend(item, answer)
        if resend is not None:
            return SettleItem.model_validate(item), resend
        if isinstance(answer, ApiError):
            self.metrics.receipts_refused.inc(1, answer.error)
            raise answer
        [outcome] = await self._store([answer])
        self.metrics.ack_latency.observe(time.perf_counter() - started)
        if outcome.conflicts_with:
            raise ApiError(409, "equivocation", f"{prefix}receipt.requestId", outcome.reason or "equivocation")
        return answer, outcome

    async def accept_bulk(self, items: list, raw_body: bytes, started: float) -> BulkSettleAnswer:
        """Validate the items of a bulk body one by one and store the valid ones: one result per item."""
        answers = await self.validate_bulk(raw_body, len(items))
        resends = {i: o for i, a in enumerate(answers) if (o := self._stored_resend(items[i], a)) is not None}
        valid = [a for a in answers if isinstance(a, ValidReceipt)]
        outcomes = iter(await self._store(valid))
        results, accepted = [], 0
        for i, answer in enumerate(answers):
            if i in resends:
                o = resends[i]
                accepted += 1
                results.append(BulkItemResult(index=i, id=o.id, status=o.status, batch_id=o.batch_id, reason=o.reason,
                                              duplicate=True))
                continue
            if isinstance(answer, ApiError):
                self.metrics.receipts_refused.inc(1, answer.error)
                results.append(BulkItemResult(index=i, error=answer.error, field=answer.field, reason=answer.reason))
                continue
            o = next(outcomes)
            if o.conflicts_with:
                results.append(BulkItemResult(index=i, id=o.id, status=o.status, error="equivocation",
                                              field=f"receipts[{i}].receipt.requestId", reason=o.reason))
                continue
            accepted += 1
            results.append(BulkItemResult(index=i, id=o.id, status=o.status, batch_id=o.batch_id, reason=o.reason,
                                          duplicate=o.duplicate))
        self.metrics.ack_latency.observe(time.perf_counter() - started)
        return BulkSettleAnswer(accepted=accepted, refused=len(items) - accepted, results=results)

    # Receipts invalid on their face: slashable -----------------------------------------------------------------
    @staticmethod
    def _slashable_refusal(answer: Any) -> bool:
        """A refusal of a receipt no honest node signs (receipts.Slashable): its signer is reported."""
        return getattr(answer, "slashable", None) is not None

    def report_invalid(self, raws: list[Any]) -> int:
        """Blocking. Queue ``NodeStaking.slash_invalid_receipt`` for refused receipts that no honest node signs
        (``amount > cumulative``, or dated more than ``MAX_FUTURE`` after the chain's clock) and that carry the
        node's own signature over this deployment; returns how many were queued (evidence already queued counts
        once). The slasher simulates the call before sending it, so a receipt the contract does not find invalid
        ends ``failed``, never costs gas."""
        queued = 0
        for raw in raws:
            try:
                receipt = SignedReceipt(**SettleItem.model_validate(raw).receipt.model_dump(by_alias=False))
            except (ValidationError, KeyError, TypeError):
                continue
            if not (receipt.amount > receipt.cumulative or receipt.timestamp > self.chain_now() + MAX_FUTURE):
                continue
            try:
                if recover_signer(receipt.fast_digest(self.staking_domain), receipt.signature) != receipt.node:
                    continue
            except InvalidSignature:
                continue
            if self.store.call(Store.job_queue_slash, "invalid_receipt",
                                 f"invalid_receipt:{receipt.node}:{receipt.request_id}", receipt.node,
                                 {"receipt": receipt.model_dump(mode="json")}, time.time()):
                queued += 1
        return queued

    async def validate_bulk(self, body: bytes, count: int) -> list[ValidReceipt | ApiError]:
        """Validate the items of a bulk body, in the worker processes when there are enough of them."""
        pool = self.pool.executor
        if pool is None or count < POOL_MIN_ITEMS:
            items = pydantic_core.from_json(body)["receipts"]
            return await self.validate([(i, f"receipts[{i}].", item) for i, item in enumerate(items)])
        loop = asyncio.get_running_loop()
        stale = self.clock.stale()
        now = await asyncio.to_thread(self.clock_now) if stale else self.clock_now()
        packed = await loop.run_in_executor(pool, check_bulk, body, now)
        answers = [unpack(i, a) for i, a in enumerate(packed)]
        if self._future_dated(answers) and (moved := await self._clock_moved(stale, now)) is not None:
            packed = await loop.run_in_executor(pool, check_bulk, body, moved)
            answers = [unpack(i, a) for i, a in enumerate(packed)]
        if any(self._slashable_refusal(a) for a in answers):
            items = pydantic_core.from_json(body)["receipts"]
            await asyncio.to_thread(self.report_invalid,
                                    [items[i] for i, a in enumerate(answers) if self._slashable_refusal(a)])
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
