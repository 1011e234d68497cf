"""The paying side of one payer: which requirement to pay, the voucher (or exact authorisation) to sign for it, and the
check of the node's receipt afterwards. Used by the paying httpx transports (``offchain.client.transport``), the x402
scheme client (``offchain.schemes.credit.client``) and the CLI.

Per (payer, node) channel (state under the state directory, shared by processes through a file lock):

- **Signing.** ``maxCumulative = max(extra.charged, local charged) + caps of this payer's requests in flight + this
  cap``. A node's ``extra.charged`` above what this client can explain (what it verified, plus caps in flight, plus
  caps of requests that ended without a receipt) is checked against the relayer's view of the channel first, and
  refused (``ChannelConflict``) if still unexplained: a node cannot make the client sign a cap on its word alone.
- **Receipt check.** The node's signature over the NodeStaking domain, payer and node, ``amount <= the quote``
  and ``<=`` the cost of the answer's ``usage`` at the quote's ``pricing`` (when both are given),
  ``cumulative <= the highest cap signed``, and the channel's total before this request never above what this
  client was charged plus caps in flight (and unreceipted caps); no timestamp more than 300 s ahead. A receipt that
  fails marks the node as over-charging (persisted): no further voucher is signed for it (``Overcharged``).
- Each answered request (request as sent, answer text, signed receipt, payment response, checks) is stored, so
  ``opg dispute RECEIPT_ID`` can use it (``ClientState.load_request``).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_utils import to_checksum_address

from ..deployments import Deployment, load_deployment
from ..messages import Domain, InvalidSignature, SignedReceipt
from ..schemes import registry
from ..sdk.clock import ProtocolClock
from ..sdk.constants import MAX_FUTURE
from ..sdk.wire import SignatureChecker, parse_receipt, receipt_json
from .state import ChannelState, ClientState, InFlight

log = logging.getLogger("opg.client")

PAYER_HEADER = "X-OPG-Payer"
DEFAULT_TIMEOUT = 300  # s: a request in flight longer than this (or the requirement's maxTimeoutSeconds) has ended


class PaymentRefused(Exception):
    """This client will not pay (``code`` is machine-readable, the message says why and what to do)."""

    code = "payment_refused"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        if code:
            self.code = code


class Overcharged(PaymentRefused):
    """The node over-charged (or returned an invalid receipt) before: no more vouchers for it."""

    code = "node_overcharged"


class ChannelConflict(PaymentRefused):
    """The node claims the channel was charged more than this client (and the relayer) can account for."""

    code = "channel_conflict"


def _b64_json(data: dict) -> str:
    return base64.b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def decode_b64_json(value: str) -> dict:
    """A base64 JSON header (``PAYMENT-REQUIRED``, ``PAYMENT-RESPONSE``); ValueError if it is not one."""
    pad = "=" * (-len(value) % 4)
    try:
        raw = base64.b64decode(value + pad)
    except Exception:
        raw = base64.urlsafe_b64decode(value + pad)
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


@dataclass
class Reservation:
    """A payment prepared for one request: the signed payload and, for opg-credit, its cap held in flight."""

    token: str
    scheme: str
    node: str
    cap: int  # the quote (requirement amount)
    max_cumulative: int  # opg-credit: the voucher's cap; exact: the amount
    requirement: dict
    payload: dict  # x402 PaymentPayload (JSON)
    reserved_at: float
    effective_max_tokens: int | None = None

    def header(self) -> str:
        """``PAYMENT-SIGNATURE`` header value."""
        return _b64_json(self.payload)


@dataclass
class PaymentOutcome:
    """What a paid request cost and what the client made of its receipt."""

    scheme: str
    node: str
    ok: bool  # the receipt passed every check (exact: the transfer was reported)
    receipt_id: str | None = None
    receipt: dict | None = None  # camelCase, signed
    cost: int | None = None
    cumulative: int | None = None
    credits_left: int | None = None
    status: str | None = None  # settlement status as reported ("pending" at first)
    transaction: str | None = None
    problem: str | None = None  # why the receipt is refused (over-charge, invalid receipt)
    checks: dict[str, Any] = field(default_factory=dict)
    quote: int | None = None
    payment: dict | None = None  # the node's payment response as received

    def as_dict(self) -> dict:
        return {
            "scheme": self.scheme, "node": self.node, "ok": self.ok, "receiptId": self.receipt_id,
            "cost": None if self.cost is None else str(self.cost),
            "cumulative": None if self.cumulative is None else str(self.cumulative),
            "creditsLeft": None if self.credits_left is None else str(self.credits_left),
            "quote": None if self.quote is None else str(self.quote),
            "status": self.status, "transaction": self.transaction, "problem": self.problem, "checks": self.checks,
            "receipt": self.receipt,
        }


class RpcBlockTime:
    """The latest block's timestamp from ``rpc_url`` (one raw ``eth_getBlockByNumber``): what the SDK's
    :class:`~offchain.sdk.clock.ProtocolClock` reads for a payer. ``client``: the (thread-safe) ``httpx.Client`` to
    read with, or a callable returning it (a Payer passes its own); by default one is made on first use and kept."""

    def __init__(self, rpc_url: str | None, client: Any = None):
        self.rpc_url = rpc_url
        self._client = client
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(timeout=5)
                client = self._client
        return client() if callable(client) and not isinstance(client, httpx.Client) else client

    def __call__(self) -> int:
        if not self.rpc_url:
            raise LookupError("no RPC URL: the wall clock")
        answer = self._http().post(self.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber",
                                                       "params": ["latest", False]}, timeout=5).json()
        return int(answer["result"]["timestamp"], 16)


class Payer:
    """One payer on one deployment: its signer (its own key or a session key), local state, and policy.

    ``signer_key`` signs vouchers (the payer's key, or a session key authorised with ``CreditEscrow.authorize_signer``);
    ``owner_key`` (the payer's own key; optional) is needed only for ``exact`` payments (EIP-3009 from the payer's
    OPG). ``max_amount`` refuses quotes above it (wei). ``relayer_url`` lets the client recover a lost channel view
    and check a node's claims (``GET /channels``) and look up settlement (``GET /receipts``). ``rpc_url`` only
    gives the chain's clock (receipt timestamps).
    """

    def __init__(self, payer: str, signer_key: str | bytes, deployment: Deployment | str | Path, *,
                 state: ClientState | str | Path | None = None, relayer_url: str | None = None,
                 rpc_url: str | None = None, owner_key: str | bytes | None = None, max_amount: int | None = None,
                 timeout: float = DEFAULT_TIMEOUT, http_timeout: float = 10.0, session: dict | None = None):
        if not isinstance(deployment, Deployment):
            deployment = load_deployment(path=deployment)
        self.deployment = deployment
        self.address = to_checksum_address(payer)
        self._signer_key = signer_key
        self.signer = Account.from_key(signer_key).address
        self._owner_key = owner_key
        if owner_key is not None and Account.from_key(owner_key).address != self.address:
            raise ValueError("owner_key is not the payer's key")
        self.session = session
        self.state = state if isinstance(state, ClientState) else ClientState(state)
        self.relayer_url = relayer_url.rstrip("/") if relayer_url else None
        self.max_amount = max_amount
        self.timeout = timeout
        self.http_timeout = http_timeout
        self._http_client: httpx.Client | None = None
        self._http_lock = threading.Lock()
        # chain time as the contracts will see it: max(wall clock, latest block + time since it was read, re-read
        # every 5 s by one thread at a time); the wall clock without an RPC URL
        self.block_time = RpcBlockTime(rpc_url, client=self.http)
        self.clock = ProtocolClock(self.block_time, refresh=5.0)
        self.chain_id = deployment.chainId
        self.network = f"eip155:{self.chain_id}"
        self.token = deployment.address("OPG")
        self.escrow = deployment.address("CreditEscrow")
        self.staking = deployment.address("NodeStaking")
        self.escrow_domain = Domain.escrow(self.chain_id, self.escrow)
        self.staking_domain = Domain.staking(self.chain_id, self.staking)
        self._receipts = SignatureChecker(self.staking_domain)
        self.token_domain = Domain.token(self.chain_id, self.token)
        self._listeners: list[Any] = []
        # every registered scheme's client side (offchain.schemes), in preference order
        self.schemes: dict[str, Any] = {name: cls(self) for name, cls in registry.clients()}

    # Construction ----------------------------------------------------------------------------------------------
    @classmethod
    def from_key(cls, key: str | bytes, deployment: Deployment | str | Path, **kw: Any) -> Payer:
        """The payer signs with its own key (and may pay ``exact``)."""
        return cls(Account.from_key(key).address, key, deployment, owner_key=key, **kw)

    @classmethod
    def from_session(cls, session: dict, deployment: Deployment | str | Path, **kw: Any) -> Payer:
        """The payer's session key (a record written by ``OpgClient.authorize_session``) signs: the main key is
        never loaded. No ``exact`` payments (the session key holds no OPG)."""
        return cls(session["payer"], session["key"], deployment, session=session, **kw)

    @property
    def is_session(self) -> bool:
        return self.signer != self.address

    def http(self) -> httpx.Client:
        """This payer's HTTP client for the relayer and the RPC clock (made on first use, kept: keep-alive
        connections, no new client per look-up; httpx clients are thread-safe)."""
        client = self._http_client
        if client is None:
            with self._http_lock:
                if self._http_client is None:
                    self._http_client = httpx.Client(timeout=self.http_timeout)
                client = self._http_client
        return client

    def close(self) -> None:
        """Close this payer's HTTP client (it is made again if the payer is used after)."""
        with self._http_lock:
            client, self._http_client = self._http_client, None
        if client is not None:
            client.close()

    def on_payment(self, listener: Any) -> None:
        """Call ``listener(outcome: PaymentOutcome)`` after every paid request's receipt is checked."""
        self._listeners.append(listener)

    def now(self) -> int:
        return self.clock.now()

    # Choosing -------------------------------------------------------------------------------------------------
    def choose(self, accepts: list[dict], allow_exact: bool = False,
               schemes: tuple[str, ...] | list[str] | None = None) -> dict | None:
        """The requirement to pay, by ``schemes`` in order of preference (default: every registered scheme client
        that is chosen by default, i.e. ``opg-credit``, then ``exact`` if ``allow_exact``), each scheme's client
        saying which of the node's offers fit (``opg-credit`` on this deployment's escrow, ``exact`` in OPG and only
        with the payer's own key); None if nothing fits."""
        if schemes:
            order = [name for name in schemes if name in self.schemes]
        else:
            order = [name for name, c in self.schemes.items() if c.default or (allow_exact and name == "exact")]
        for name in order:
            found = [a for a in accepts if a.get("scheme") == name and self.schemes[name].fits(a)]
            if found:
                return found[0]
        return None

    def check_requirement(self, req: dict) -> tuple[str, int]:
        """``(payTo, amount)`` of a requirement on this payer's network and asset, within its limit."""
        if req.get("network") != self.network:
            raise PaymentRefused(f"requirement is for {req.get('network')}, this payer pays on {self.network}",
                                 "network_mismatch")
        try:
            node = to_checksum_address(req["payTo"])
            quote = int(req["amount"])
        except (KeyError, ValueError, TypeError):
            raise PaymentRefused("malformed payment requirement (payTo, amount)", "invalid_requirement") from None
        if str(req.get("asset", self.token)).lower() != self.token.lower():
            raise PaymentRefused(f"requirement asks for asset {req.get('asset')}, not OPG {self.token}",
                                 "asset_mismatch")
        if quote <= 0:
            raise PaymentRefused("requirement amount must be positive", "invalid_requirement")
        if self.max_amount is not None and quote > self.max_amount:
            raise PaymentRefused(f"the node quotes {quote} wei for this request, above your limit of "
                                 f"{self.max_amount} wei", "quote_above_limit")
        return node, quote

    # Preparing ------------------------------------------------------------------------------------------------
    def prepare(self, requirement: dict, resource: dict | None = None, *,
                window: tuple[float, float] | None = None, retry_of: Reservation | None = None) -> Reservation:
        """Sign the payment for ``requirement`` (a 402's accepted entry, camelCase JSON).

        ``window``: ``(sent_at, received_at)``, the wall times (``time.time()``) at which the request that drew the
        402 was sent and its 402 arrived. The node's ``extra.charged`` may then also count the caps of this payer's
        requests that were in flight on the node while it quoted and whose receipts this client has checked since
        (for the part of each cap they were not billed). Without it, only what is in flight now counts.
        ``retry_of``: the refused payment this 402 answers (its own cap is not among them)."""
        client = self.schemes.get(str(requirement.get("scheme")))
        if client is None:
            raise PaymentRefused(f"unsupported scheme {requirement.get('scheme')!r}", "unsupported_scheme")
        return client.prepare(requirement, resource, window, retry_of)

    def channel(self, node: str, durable: bool = True):
        return self.state.channel(self.chain_id, self.escrow, self.address, node, durable=durable)

    # After the request ----------------------------------------------------------------------------------------
    def rejected(self, res: Reservation) -> None:
        """The node refused the payment (another 402): nothing was served, the cap is no longer in flight."""
        if not self.schemes[res.scheme].holds_channel:
            return
        with self.channel(res.node, durable=False) as (st, _):  # lost in a crash: the cap stays in flight
            if st.inflight.pop(res.token, None) is not None:
                st.add_recent(res.token, res.cap, res.reserved_at)  # a node may have held it for a moment

    def abandon(self, res: Reservation) -> None:
        """The request ended without a receipt seen (error, cut stream, unseen response): the node may have billed
        up to its cap, which is remembered as unreceipted."""
        if not self.schemes[res.scheme].holds_channel:
            return
        with self.channel(res.node, durable=False) as (st, _):  # lost in a crash: the cap stays in flight,
            if st.inflight.pop(res.token, None) is not None:     # which then ends unreceipted all the same
                st.add_unreceipted(res.cap)

    def reopen(self, res: Reservation) -> None:
        """Undo :meth:`abandon` for ``res`` (its receipt turned up after all) so :meth:`complete` can check it."""
        if not self.schemes[res.scheme].holds_channel:
            return
        with self.channel(res.node) as (st, _):
            for i, (cap, _ended) in enumerate(st.unreceipted):
                if int(cap) == res.cap:
                    del st.unreceipted[i]
                    break
            st.inflight[res.token] = InFlight(cap=res.cap, max_cumulative=res.max_cumulative, pid=os.getpid(),
                                              deadline=time.time() + self.timeout, started=res.reserved_at)

    def complete(self, res: Reservation, payment: dict | None, *, request: dict | None = None,
                 answer: str | None = None, node_url: str | None = None, usage: dict | None = None,
                 finish_reason: str | None = None) -> PaymentOutcome:
        """Check the node's payment response for ``res`` (the ``PAYMENT-RESPONSE`` / ``x_opg_payment`` object),
        update the channel and store the request record. Never raises for a bad receipt: the outcome says why
        (``ok`` False, ``problem``) and the node is blocked."""
        outcome = PaymentOutcome(scheme=res.scheme, node=res.node, ok=False, quote=res.cap, payment=payment)
        if payment is None:
            self.abandon(res)
            outcome.problem = "the node's answer carried no payment response (receipt)"
            self._notify(outcome)
            return outcome
        outcome.status = payment.get("status")
        outcome.transaction = payment.get("transaction") or None
        for key, attr in (("cost", "cost"), ("creditsLeft", "credits_left"), ("cumulative", "cumulative")):
            try:
                if payment.get(key) is not None:
                    setattr(outcome, attr, int(payment[key]))
            except (TypeError, ValueError):
                pass
        wire = payment.get("receipt")
        scheme = self.schemes[res.scheme]
        if not isinstance(wire, dict):
            scheme.without_receipt(res, payment, outcome)
            self._notify(outcome)
            return outcome
        try:
            receipt = parse_receipt(wire)
        except Exception as exc:
            receipt = None
            problem = f"malformed receipt: {str(exc).splitlines()[0]}"
        if receipt is not None:
            outcome.receipt_id = "0x" + self._receipts.digest(receipt).hex()
            outcome.receipt = receipt_json(receipt)
            outcome.cost, outcome.cumulative = receipt.amount, receipt.cumulative
            problem = self._receipt_problem(res, receipt, outcome.checks)
            if problem is None:
                problem = self._usage_problem(res, receipt, usage, outcome.checks)
        outcome.ok, outcome.problem = scheme.conclude(res, receipt, problem, outcome, payment)
        if receipt is not None:
            self._check_hashes(res, receipt, request, answer, outcome.checks,
                               (outcome.payment or {}).get("tokensHash"))
            self._store(res, outcome, request, answer, node_url, usage, finish_reason)
        self._notify(outcome)
        return outcome

    def _receipt_problem(self, res: Reservation, r: SignedReceipt, checks: dict) -> str | None:
        """The first reason ``r`` is unacceptable on its own (signature, parties, amounts, time), or None."""
        try:
            signer = self._receipts.signer(r, r.signature)
        except InvalidSignature as exc:
            signer, why = None, str(exc)
        else:
            why = None
        checks["signature"] = signer == res.node
        if signer != res.node:
            return (f"receipt not signed by node {res.node} over this deployment's NodeStaking domain"
                    + (f" ({why})" if why else f" (signer {signer})"))
        checks["parties"] = r.payer == self.address and r.node == res.node
        if not checks["parties"]:
            return f"receipt is for payer {r.payer} and node {r.node}, not {self.address} and {res.node}"
        checks["amountWithinQuote"] = r.amount <= res.cap
        if r.amount > res.cap:
            return f"over-charged: the receipt bills {r.amount} wei, above the quote of {res.cap} wei"
        checks["amountWithinCumulative"] = r.amount <= r.cumulative
        if r.amount > r.cumulative:
            return f"invalid receipt: amount {r.amount} exceeds cumulative {r.cumulative}"
        now = self.now()
        checks["timestamp"] = r.timestamp <= now + MAX_FUTURE
        if r.timestamp > now + MAX_FUTURE:
            return f"invalid receipt: dated {r.timestamp - now} s in the future"
        return None

    @staticmethod
    def _usage_problem(res: Reservation, r: SignedReceipt, usage: dict | None, checks: dict) -> str | None:
        """The receipt bills more than the node's own usage costs at its own quoted prices (e.g. the whole cap for
        a short answer), or None. Skipped when the answer carried no usage or the quote no pricing."""
        from ..inference import Pricing

        wire = (res.requirement.get("extra") or {}).get("pricing") if res.requirement else None
        if not isinstance(usage, dict) or not isinstance(wire, dict):
            return None
        try:
            pricing = Pricing(base=int(wire["base"]), per_prompt_token=int(wire["perPromptToken"]),
                              per_output_token=int(wire["perOutputToken"]))
            prompt, output = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        except (KeyError, TypeError, ValueError):
            return None
        cost = pricing.cost(prompt, output)
        checks["amountWithinUsage"] = r.amount <= cost
        if r.amount > cost:
            return (f"over-charged: the receipt bills {r.amount} wei, but the node's own usage ({prompt} prompt + "
                    f"{output} output tokens) costs {cost} wei at its quoted prices")
        return None

    def _check_hashes(self, res: Reservation, r: SignedReceipt, request: dict | None, answer: str | None,
                      checks: dict, tokens_hash: str | None = None) -> None:
        """Advisory: whether the receipt commits to this request and answer (what a dispute relies on); with the
        node's ``tokensHash`` when the answer's token ids are committed too (offchain.inference.output_hash)."""
        from ..inference import input_hash, output_hash

        if answer is not None:
            try:
                checks["outputHash"] = output_hash(answer, tokens_hash) == r.output_hash.lower()
            except ValueError:  # a malformed tokensHash from the node
                checks["outputHash"] = False
        canon = _canonical_or_none(request, res.effective_max_tokens)
        if canon is not None:
            checks["inputHash"] = input_hash(canon) == r.input_hash.lower()

    def _store(self, res: Reservation, outcome: PaymentOutcome, request: dict | None, answer: str | None,
               node_url: str | None, usage: dict | None, finish_reason: str | None) -> None:
        record = {
            "receiptId": outcome.receipt_id, "scheme": res.scheme, "chainId": self.chain_id,
            "escrow": self.escrow, "staking": self.staking, "payer": self.address, "signer": self.signer,
            "node": res.node, "nodeUrl": node_url, "model": (request or {}).get("model"), "request": request,
            "canonicalRequest": _canonical_or_none(request, res.effective_max_tokens), "answer": answer,
            "receipt": outcome.receipt, "payment": outcome.payment, "quote": str(res.cap),
            "maxCumulative": str(res.max_cumulative), "quoteRequirement": res.requirement or None,
            "pricing": (res.requirement.get("extra") or {}).get("pricing") if res.requirement else None,
            "checks": outcome.checks, "ok": outcome.ok,
            "problem": outcome.problem, "usage": usage, "finishReason": finish_reason, "createdAt": time.time(),
        }
        try:
            # an accepted receipt's record is written, not fsynced (a killed process keeps it; the node and the
            # relayer keep the receipt too); a refused one is evidence and is fsynced before complete returns
            self.state.save_request(record, durable=not outcome.ok)
        except OSError as exc:  # the answer was delivered; a full disk must not turn it into an error
            log.warning("could not store request record %s: %s", outcome.receipt_id, exc)

    def _notify(self, outcome: PaymentOutcome) -> None:
        for listener in list(self._listeners):
            try:
                listener(outcome)
            except Exception:
                log.exception("payment listener failed")

    # Channel views --------------------------------------------------------------------------------------------
    def channel_state(self, node: str) -> ChannelState | None:
        return self.state.load_channel(self.chain_id, self.escrow, self.address, to_checksum_address(node))

    def blocked_message(self, st: ChannelState) -> str:
        return (f"refusing to pay node {st.node}: {st.blocked} (receipt {st.blocked_receipt}); "
                f"dispute it with `opg dispute {st.blocked_receipt}`; to trust it again, use "
                f"`opg balance --unblock {st.node}`")

    def unblock(self, node: str) -> None:
        """Sign for this node again (after you looked at the evidence)."""
        with self.channel(to_checksum_address(node)) as (st, _):
            st.blocked = st.blocked_receipt = st.blocked_at = None

    def relayer_get(self, path: str) -> dict | None:
        if not self.relayer_url:
            return None
        try:
            res = self.http().get(self.relayer_url + path, timeout=self.http_timeout)
        except httpx.HTTPError as exc:
            log.warning("relayer %s unreachable: %s", self.relayer_url, exc.__class__.__name__)
            return None
        if res.status_code != 200:
            return None
        try:
            return res.json()
        except ValueError:
            return None

    def sync_from_relayer(self, st: ChannelState) -> None:
        """Raise the local view to what the relayer holds receipts (and the chain holds payments) for."""
        view = self.relayer_get(f"/channels/{self.address}/{st.node}")
        if not view:
            return
        try:
            known = max(int(view.get("charged") or 0), int(view.get("settled") or 0))
            cap = int(view.get("voucherCap") or 0)
        except (TypeError, ValueError):
            return
        if known > st.charged:
            st.consume_unreceipted(known - st.charged)
            st.charged = known
            st.recovered_from = "relayer"
        st.max_signed = max(st.max_signed, cap)

    def recover(self, node: str) -> ChannelState:
        """Rebuild (or raise) the local view of the channel with ``node`` from the relayer."""
        with self.channel(to_checksum_address(node)) as (st, _):
            self.sync_from_relayer(st)
            return st

    def audit(self) -> list[dict]:
        """Single-device check of what the relayer holds for this payer (issue 13): every pending receipt must be one
        this client received (a stored request record) or fit the caps of requests it made and never got a receipt
        for. Anything else is a receipt it never asked for (a node billing the rest of a voucher's cap for work it
        did not do): the node is blocked (persisted; ``unblock`` after looking at it, ``opg dispute`` the receipt)
        and the receipt is returned with the problem. Returns [] when everything is accounted for or the relayer
        cannot be asked. Several devices paying from one address would each see the others' receipts as gaps."""
        view = self.relayer_get(f"/payers/{self.address}/pending")
        if not view:
            return []
        by_node: dict[str, list[dict]] = {}
        for r in view.get("receipts") or []:
            by_node.setdefault(to_checksum_address(r["node"]), []).append(r)
        found = []
        for node, receipts in by_node.items():
            unknown = [r for r in receipts if self.state.load_request(r["id"]) is None]
            if not unknown:
                continue
            with self.channel(node) as (st, _):
                slack = st.unreceipted_total
                for r in sorted(unknown, key=lambda r: int(r["cumulative"])):
                    amount = int(r["amount"])
                    if amount <= slack:  # a request this client made whose answer it never got
                        slack -= amount
                        continue
                    problem = (f"receipt {r['id']} for {amount} wei (cumulative {r['cumulative']}, voucher cap "
                               f"{r['voucherCap']}) is one this client never received nor asked for")
                    if st.blocked is None:
                        st.blocked, st.blocked_receipt, st.blocked_at = problem, r["id"], time.time()
                    found.append({**r, "node": node, "problem": problem})
        return found

    def settlement(self, receipt_id: str) -> dict | None:
        """The relayer's view of a receipt: ``{status: pending|settled|rejected, batchId, tx, ...}`` or None."""
        return self.relayer_get(f"/receipts/{receipt_id}")


def canonical_of(request: dict | None, max_tokens: int | None) -> dict | None:
    """``{model, messages, params}`` (arguments of ``offchain.inference.canonical_request``) for an OpenAI chat
    request body as sent, with the node's effective ``max_tokens``; None if it cannot be built."""
    if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
        return None
    mt = max_tokens or request.get("max_completion_tokens") or request.get("max_tokens")
    if not mt:
        return None
    params = {"max_tokens": int(mt)}
    for key in ("temperature", "seed", "stop"):
        if request.get(key) is not None:
            params[key] = request[key]
    try:
        messages = [{"role": m["role"], "content": m["content"]} for m in request["messages"]]
    except (KeyError, TypeError):
        return None
    return {"model": request.get("model"), "messages": messages, "params": params}


def _canonical_or_none(request: dict | None, max_tokens: int | None) -> dict | None:
    from ..inference import canonical_request

    canon = canonical_of(request, max_tokens)
    if canon is None:
        return None
    try:
        return canonical_request(**canon)
    except Exception:
        return None
