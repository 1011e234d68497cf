"""Typed wrappers of the six protocol contracts on web3; reads return frozen dataclasses.

``Contracts.of(w3, deployment)`` gives the system of one deployment; each wrapper keeps the web3 contract
(``.contract``; ``.functions``, ``.events`` and any other attribute are the web3 contract's) for the calls that have
no typed read. Struct and log decoding lives
here and only here: :class:`NodeRecord` (``NodeStaking.nodes``), :class:`Withdrawal`, :class:`Channel`,
:class:`SessionKey`, :class:`Dispute`, :class:`BatchSettled` (the packed ``payer << 96 | amount`` claims and
``node << 96 | count`` runs, from a web3-decoded event or a raw log).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

from eth_utils import event_abi_to_log_topic, to_checksum_address
from web3 import Web3

from ..abi import abi
from ..deployments import Deployment
from ..messages import Domain
from .constants import AMOUNT_BITS, AMOUNT_MASK, ROLE_INFERENCE, ROLE_VERIFIER


def event_topic(contract: str, event: str) -> bytes:
    """topic0 of ``contract``'s ``event``."""
    item = next(i for i in abi(contract) if i["type"] == "event" and i["name"] == event)
    return bytes(event_abi_to_log_topic(item))


def packed_address(word: int) -> str:
    """The address in the high bits of a ``address << 96 | amount`` word."""
    return to_checksum_address((int(word) >> AMOUNT_BITS).to_bytes(20, "big"))


# Reads ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeRecord:
    """``NodeStaking.nodes(account)``."""

    role: int
    jailed: bool
    stake: int
    unbonding: int
    unbond_ready_at: int
    fresh: int
    fresh_since: int
    jailed_at: int
    restore_stake: int
    released_at: int

    @classmethod
    def of(cls, raw: Any) -> NodeRecord:
        role, jailed, *amounts = raw
        return cls(int(role), bool(jailed), *(int(a) for a in amounts))

    @property
    def is_inference(self) -> bool:
        return self.role == ROLE_INFERENCE

    @property
    def is_verifier(self) -> bool:
        return self.role == ROLE_VERIFIER

    def warm_stake(self, now: int, warmup: int) -> int:
        """The stake past its warm-up at ``now`` (fresh stake counts after ``fresh_since + warmup``)."""
        return self.stake if now >= self.fresh_since + warmup else self.stake - self.fresh


@dataclass(frozen=True)
class Withdrawal:
    """``CreditEscrow.withdrawal_of(payer)``: a requested withdrawal (amount 0: none)."""

    amount: int
    ready_at: int


@dataclass(frozen=True)
class Channel:
    """One payer -> node channel on the escrow: what it has paid and when it last settled."""

    payer: str
    node: str
    spent: int
    last_settled_at: int  # 0: never
    spent_before_last: int  # spent before that settlement: charges at or below it were paid earlier


@dataclass(frozen=True)
class SessionKey:
    """``CreditEscrow.signer_of(payer, key)`` (expiry 0: not a session key of the payer)."""

    expiry: int
    allowance: int


@dataclass(frozen=True)
class Dispute:
    """``NodeStaking.disputes(receipt struct hash)``: a payer's bonded dispute (bond 0: none)."""

    payer: str
    bond: int
    opened_at: int


@dataclass(frozen=True)
class SettledClaim:
    payer: str
    node: str
    amount: int


@dataclass(frozen=True)
class BatchSettled:
    """A decoded ``CreditEscrow.BatchSettled`` log: its settled claims in claim order and its node runs
    ``(node, number of settled claims)`` (``settle_batch`` credits fees once per run: one ``FeesCredited`` each)."""

    receipts_root: bytes
    submitter: str
    amount: int
    claims: tuple[SettledClaim, ...]
    runs: tuple[tuple[str, int], ...]
    tx_hash: str | None = None
    block_number: int | None = None
    log_index: int | None = None

    TOPIC: ClassVar[bytes]

    @classmethod
    def from_args(cls, args: Any, tx_hash: Any = None, block_number: int | None = None,
                  log_index: int | None = None) -> BatchSettled:
        """From the event's arguments: ``settled`` = ``payer << 96 | amount`` in claim order, ``runs`` =
        ``node << 96 | number of settled claims`` giving each claim its node."""
        settled, packed_runs = [int(w) for w in args["settled"]], [int(w) for w in args["runs"]]
        runs = tuple((packed_address(w), w & AMOUNT_MASK) for w in packed_runs)
        claims, i = [], 0
        for node, count in runs:
            for word in settled[i:i + count]:
                claims.append(SettledClaim(packed_address(word), node, word & AMOUNT_MASK))
            i += count
        if i != len(settled):
            raise ValueError(f"BatchSettled: runs cover {i} of {len(settled)} claims")
        tx = ("0x" + bytes(tx_hash).hex()) if isinstance(tx_hash, (bytes, bytearray)) else tx_hash
        return cls(bytes(args["receipts_root"]), to_checksum_address(args["submitter"]), int(args["amount"]),
                   tuple(claims), runs, tx, block_number, log_index)

    @classmethod
    def from_event(cls, event: Any) -> BatchSettled:
        """From a web3-decoded event (``contract.events.BatchSettled().get_logs()`` / ``process_receipt``)."""
        return cls.from_args(event["args"], event.get("transactionHash"), event.get("blockNumber"),
                             event.get("logIndex"))

    @classmethod
    def from_raw(cls, log: dict) -> BatchSettled:
        """From a raw log (topics and data as bytes or 0x-hex), without web3's ABI decoding."""
        topics = [t if isinstance(t, (bytes, bytearray)) else bytes.fromhex(t[2:]) for t in log["topics"]]
        data = log["data"] if isinstance(log["data"], (bytes, bytearray)) else bytes.fromhex(log["data"][2:])
        word = lambda i: int.from_bytes(data[32 * i:32 * i + 32], "big")  # noqa: E731

        def array(head: int) -> list[int]:
            start = word(head) // 32
            return [word(start + 1 + k) for k in range(word(start))]

        args = {"receipts_root": topics[1], "submitter": bytes(topics[2])[12:], "amount": word(0),
                "settled": array(1), "runs": array(2)}
        return cls.from_args(args, log.get("transactionHash"), log.get("blockNumber"), log.get("logIndex"))

    def by_run(self) -> list[tuple[str, tuple[SettledClaim, ...]]]:
        """Each run's node and its settled claims, in run order."""
        out, i = [], 0
        for node, count in self.runs:
            out.append((node, self.claims[i:i + count]))
            i += count
        return out

    def per_channel(self) -> dict[tuple[str, str], int]:
        """{(payer, node): amount}: a channel settled by two claims of the batch sums them."""
        out: dict[tuple[str, str], int] = {}
        for c in self.claims:
            out[(c.payer, c.node)] = out.get((c.payer, c.node), 0) + c.amount
        return out


BatchSettled.TOPIC = event_topic("CreditEscrow", "BatchSettled")


# Wrappers -------------------------------------------------------------------------------------------------------
class Contract:
    """A deployed protocol contract: its web3 contract plus typed reads."""

    NAME: ClassVar[str]

    def __init__(self, w3: Web3, address: str):
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.contract = w3.eth.contract(address=self.address, abi=abi(self.NAME))

    @property
    def functions(self):
        return self.contract.functions

    @property
    def events(self):
        return self.contract.events

    def __getattr__(self, name: str) -> Any:
        """Everything else of the web3 contract (``abi``, ``decode_function_input``, ``encode_abi``, ...)."""
        if name == "contract":
            raise AttributeError(name)
        return getattr(self.contract, name)

    def has_code(self) -> bool:
        return len(self.w3.eth.get_code(self.address)) > 0


class OPG(Contract):
    NAME = "OPG"

    def balance_of(self, account: str) -> int:
        return int(self.functions.balanceOf(account).call())

    def allowance(self, owner: str, spender: str) -> int:
        return int(self.functions.allowance(owner, spender).call())

    def domain(self, chain_id: int) -> Domain:
        return Domain.token(chain_id, self.address)


class CreditEscrow(Contract):
    NAME = "CreditEscrow"

    def balance_of(self, payer: str) -> int:
        return int(self.functions.balance_of(payer).call())

    def available_of(self, payer: str) -> int:
        return int(self.functions.available_of(payer).call())

    def spent(self, payer: str, node: str) -> int:
        return int(self.functions.spent(payer, node).call())

    def channel(self, payer: str, node: str) -> Channel:
        at, before = self.functions.last_settlement(payer, node).call()
        return Channel(to_checksum_address(payer), to_checksum_address(node), self.spent(payer, node), int(at),
                       int(before))

    def withdrawal(self, payer: str) -> Withdrawal:
        amount, ready_at = self.functions.withdrawal_of(payer).call()
        return Withdrawal(int(amount), int(ready_at))

    def session_key(self, payer: str, key: str) -> SessionKey:
        expiry, allowance = self.functions.signer_of(payer, key).call()
        return SessionKey(int(expiry), int(allowance))

    def is_facilitator(self, account: str) -> bool:
        return bool(self.functions.is_facilitator(account).call())

    def thaw_period(self) -> int:
        return int(self.functions.thaw_period().call())

    def batches(self, from_block: int, to_block: int | str = "latest") -> list[BatchSettled]:
        """Every ``BatchSettled`` log in the block range, decoded."""
        logs = self.events.BatchSettled().get_logs(from_block=from_block, to_block=to_block)
        return [BatchSettled.from_event(lg) for lg in logs]

    def domain(self, chain_id: int) -> Domain:
        return Domain.escrow(chain_id, self.address)


class NodeStaking(Contract):
    NAME = "NodeStaking"

    def node(self, account: str) -> NodeRecord:
        return NodeRecord.of(self.functions.nodes(account).call())

    def dispute(self, receipt_hash: bytes) -> Dispute:
        payer, bond, opened_at = self.functions.disputes(receipt_hash).call()
        return Dispute(to_checksum_address(payer), int(bond), int(opened_at))

    def endpoint(self, account: str) -> str:
        return str(self.functions.endpoint(account).call())

    def is_active_as(self, account: str, role: int) -> bool:
        return bool(self.functions.is_active_as(account, role).call())

    def is_payable(self, node: str) -> bool:
        return bool(self.functions.is_payable(node).call())

    def pay_capacity(self, node: str) -> int:
        """What settlement may still pay ``node`` now; a claim above it is skipped (reason 2)."""
        return int(self.functions.pay_capacity(node).call())

    def min_stake(self, role: int) -> int:
        return int(self.functions.min_stake(role).call())

    def dispute_window(self) -> int:
        return int(self.functions.dispute_window().call())

    def warmup(self) -> int:
        return int(self.functions.warmup().call())

    def domain(self, chain_id: int) -> Domain:
        return Domain.staking(chain_id, self.address)


class Evidence(Contract):
    NAME = "Evidence"


class RewardDistributor(Contract):
    NAME = "RewardDistributor"

    def epoch_now(self) -> int:
        return int(self.functions.epoch_now().call())

    def claimable(self, account: str) -> int:
        return int(self.functions.claimable(account).call())

    def epoch_end(self, epoch: int) -> int:
        """When ``epoch`` ends (the distributor rolls lazily; later epochs follow at the current length)."""
        f = self.functions
        current, end, length = f.current_epoch().call(), f.current_epoch_end().call(), f.epoch_length().call()
        return int(end) + max(0, epoch - int(current)) * int(length)


class SeasonDistributor(Contract):
    NAME = "SeasonDistributor"

    def season(self) -> int:
        return int(self.functions.season().call())


@dataclass
class Contracts:
    """The contracts of one deployment on one web3 connection (SeasonDistributor when deployed)."""

    w3: Web3
    deployment: Deployment

    @classmethod
    def of(cls, w3: Web3, deployment: Deployment) -> Contracts:
        return cls(w3=w3, deployment=deployment)

    @property
    def chain_id(self) -> int:
        return self.deployment.chainId

    @cached_property
    def opg(self) -> OPG:
        return OPG(self.w3, self.deployment.address("OPG"))

    @cached_property
    def escrow(self) -> CreditEscrow:
        return CreditEscrow(self.w3, self.deployment.address("CreditEscrow"))

    @cached_property
    def staking(self) -> NodeStaking:
        return NodeStaking(self.w3, self.deployment.address("NodeStaking"))

    @cached_property
    def evidence(self) -> Evidence:
        return Evidence(self.w3, self.deployment.address("Evidence"))

    @cached_property
    def distributor(self) -> RewardDistributor:
        return RewardDistributor(self.w3, self.deployment.address("RewardDistributor"))

    @cached_property
    def seasons(self) -> SeasonDistributor | None:
        entry = self.deployment.contracts.get("SeasonDistributor")
        return SeasonDistributor(self.w3, entry.address) if entry else None

    @cached_property
    def escrow_domain(self) -> Domain:
        return self.escrow.domain(self.chain_id)

    @cached_property
    def staking_domain(self) -> Domain:
        return self.staking.domain(self.chain_id)

    @cached_property
    def token_domain(self) -> Domain:
        return self.opg.domain(self.chain_id)
