"""Season usage from chain events alone.

``season_table(logs, config)`` is a pure function: the same logs and season parameters give the same table, byte for
byte, whoever runs it. ``fetch_logs`` reads the logs it needs from any node (``eth_getLogs`` on the escrow, the
staking and the reward distributor); nothing else about the chain is read.

What counts, per payer and season (``docs/seasons.md``):
- **settled**: every ``BatchSettled`` claim of the payer in the season's blocks (packed ``payer << 96 | amount``),
  with the node of its run and, from the ``FeesCredited`` the same batch logs for that run, the protocol fee and the
  epoch; the payer's part of the run's protocol fee is ``fee * amount // gross``;
- **excluded** (counts zero): the usage of a node ``Slashed`` for fraud, equivocation or an invalid receipt at any
  block from the season's start to its evidence block, all its payers' usage of the season; the usage of a channel
  with ``ChargesVoided`` in that range; and what ``Slashed.refund`` (or a ``Refunded`` event) paid back on a
  channel;
- **weight**: the protocol fee of the counted usage, the one fee no party of the payer-node pair gets back (the
  verifier fee is never counted: verifier stake can sit under any address, so "the payer holds no verifier stake"
  cannot be checked);
- **emission**: what node emissions already pay on that usage, ``ceil(amount * emission / fees)`` of its epoch's
  ``EpochFinalized``; usage in an epoch not finalised by the evidence block is charged its whole protocol fee (its
  emission could still reach it), so it earns nothing;
- **reward**: ``min(C * weight - emission, budget share, cap)`` (floors), where the budget share is
  ``budget * eligible // total eligible`` and the cap is ``cap_bps`` of the budget; ``cumulative`` adds every earlier
  season's reward (the leaf of the season distributor's root).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi import decode
from eth_utils import event_abi_to_log_topic, keccak, to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..abi import abi
from ..sdk.constants import BPS, NODE_OFFENCE_KINDS, slash_kind
from ..sdk.contracts import BatchSettled
from .merkle import MerkleTree

# NodeStaking slash kinds that prove a node's work dishonest (the others punish verifiers).
NODE_OFFENCES = {kind: slash_kind(kind) for kind in NODE_OFFENCE_KINDS}
# Contracts of a deployment whose events the table never reads.
IGNORED = {"OPG", "SeasonDistributor"}
TABLE_VERSION = 1


# ----------------------------------------------------------------------------------------------- parameters


class Season(BaseModel):
    """One season: the settlements of blocks ``from_block..to_block`` count, judged by the evidence up to
    ``evidence_block`` (a fraud proof may come a dispute window after the work)."""

    model_config = ConfigDict(extra="forbid")

    season: int = Field(ge=1)
    from_block: int = Field(ge=0)
    to_block: int = Field(ge=0)
    evidence_block: int = Field(ge=0)
    budget: int = Field(ge=0, description="OPG (wei) the season may pay in total")
    reward_bps: int = Field(8_000, ge=0, lt=BPS, description="C: reward + emission <= C x protocol fee, C < 1")
    cap_bps: int = Field(500, ge=1, le=BPS, description="per-address cap, share of the budget")

    @model_validator(mode="after")
    def _blocks(self) -> Season:
        if not self.from_block <= self.to_block <= self.evidence_block:
            raise ValueError("need from_block <= to_block <= evidence_block")
        return self


class SeasonsConfig(BaseModel):
    """Every season so far, in order, without overlaps: what the cumulative root adds up. ``contracts`` names the
    protocol contracts whose logs count (escrow, staking and its modules, reward distributor), by ABI name."""

    model_config = ConfigDict(extra="forbid")

    chain_id: int
    contracts: dict[str, str]
    seasons: list[Season] = Field(min_length=1)

    @model_validator(mode="after")
    def _ordered(self) -> SeasonsConfig:
        for i, s in enumerate(self.seasons):
            if s.season != i + 1:
                raise ValueError("seasons must be numbered 1, 2, ... in order")
            if i and s.from_block <= self.seasons[i - 1].to_block:
                raise ValueError(f"season {s.season} overlaps season {s.season - 1}")
        self.contracts = {name: to_checksum_address(a) for name, a in sorted(self.contracts.items())}
        return self

    @property
    def addresses(self) -> dict[str, str]:
        return {address: name for name, address in self.contracts.items()}

    @property
    def last_block(self) -> int:
        return max(s.evidence_block for s in self.seasons)


# ----------------------------------------------------------------------------------------------- logs


def normalize_log(log: Any) -> dict:
    """A raw log as plain JSON data (what ``season_table`` reads)."""

    def hexstr(v: Any) -> str:
        if isinstance(v, (bytes, bytearray)):
            return "0x" + bytes(v).hex()
        v = str(v)
        return v if v.startswith("0x") else "0x" + v

    return {
        "address": to_checksum_address(log["address"]),
        "topics": [hexstr(t).lower() for t in log["topics"]],
        "data": hexstr(log["data"]).lower(),
        "blockNumber": int(log["blockNumber"]),
        "transactionHash": hexstr(log["transactionHash"]).lower(),
        "logIndex": int(log["logIndex"]),
    }


def fetch_logs(w3: Any, config: SeasonsConfig, chunk: int = 10_000, from_block: int | None = None,
               to_block: int | None = None) -> list[dict]:
    """Every log of the protocol contracts from the first season's start to the last evidence block (or the
    blocks given)."""
    addresses = list(config.addresses)
    start = config.seasons[0].from_block if from_block is None else from_block
    end = min(config.last_block if to_block is None else to_block, w3.eth.block_number)
    logs: list[dict] = []
    for lo in range(start, end + 1, chunk):
        hi = min(end, lo + chunk - 1)
        logs.extend(normalize_log(x) for x in w3.eth.get_logs({"address": addresses, "fromBlock": lo, "toBlock": hi}))
    return sorted(logs, key=lambda x: (x["blockNumber"], x["logIndex"]))


@cache
def _events(name: str) -> dict[bytes, dict]:
    return {event_abi_to_log_topic(e): e for e in abi(name) if e["type"] == "event"}


def decode_log(log: dict, contract: str) -> tuple[str, dict] | None:
    """``(event name, args)`` through the committed ABI of ``contract``; None for an event it does not know."""
    topics = [bytes.fromhex(t[2:]) for t in log["topics"]]
    if not topics:
        return None
    event = _events(contract).get(topics[0])
    if event is None:
        return None
    indexed = [i for i in event["inputs"] if i["indexed"]]
    plain = [i for i in event["inputs"] if not i["indexed"]]
    args: dict[str, Any] = {}
    for inp, topic in zip(indexed, topics[1:], strict=True):
        (args[inp["name"]],) = decode([inp["type"]], topic) if _static(inp["type"]) else (topic,)
    values = decode([i["type"] for i in plain], bytes.fromhex(log["data"][2:]))
    args.update({i["name"]: v for i, v in zip(plain, values, strict=True)})
    return event["name"], {k: _plain(v) for k, v in args.items()}


def _static(typ: str) -> bool:
    return not (typ in ("string", "bytes") or typ.endswith("]"))


def _plain(v: Any) -> Any:
    if isinstance(v, str) and v.startswith("0x") and len(v) == 42:
        return to_checksum_address(v)
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


# ----------------------------------------------------------------------------------------------- the table


@dataclass
class _Charge:
    block: int
    payer: str
    node: str
    amount: int
    fee: int
    epoch: int | None


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _decoded(logs: list[dict], config: SeasonsConfig) -> list[tuple[dict, str, dict]]:
    names = config.addresses
    out = []
    for log in sorted(logs, key=lambda x: (x["blockNumber"], x["logIndex"])):
        contract = names.get(to_checksum_address(log["address"]))
        if contract is None:
            continue
        decoded = decode_log(log, contract)
        if decoded is not None:
            out.append((log, *decoded))
    return out


def _charges(events: list[tuple[dict, str, dict]]) -> list[_Charge]:
    """Every settled claim with its run's protocol fee share and epoch.

    ``settle_batch`` logs ``BatchSettled`` and then one ``FeesCredited`` per run, in run order, in the same
    transaction: the i-th ``FeesCredited`` after a ``BatchSettled`` of a transaction belongs to its i-th run."""
    pending: dict[str, list[tuple[int, str, list[tuple[str, int]]]]] = {}
    charges: list[_Charge] = []
    for log, name, args in events:
        tx = log["transactionHash"]
        if name == "BatchSettled":
            try:
                batch = BatchSettled.from_args(args)
            except ValueError as exc:
                raise ValueError(f"{exc} in {tx}") from None
            pending.setdefault(tx, []).extend((log["blockNumber"], node, [(c.payer, c.amount) for c in claims])
                                              for node, claims in batch.by_run())
        elif name == "FeesCredited" and pending.get(tx):
            block, node, claims = pending[tx].pop(0)
            if node != args["node"] or sum(a for _, a in claims) != args["gross"]:
                raise ValueError(f"FeesCredited in {tx} does not match its BatchSettled run")
            gross, fee = args["gross"], args["protocol_fee"]
            for payer, amount in claims:
                charges.append(_Charge(block, payer, node, amount, fee * amount // gross if gross else 0,
                                       args["epoch"]))
    for runs in pending.values():
        for block, node, claims in runs:  # a run without FeesCredited (older distributor): no fee known, no weight
            charges.extend(_Charge(block, p, node, a, 0, None) for p, a in claims)
    return charges


def _season_rows(season: Season, events: list[tuple[dict, str, dict]], charges: list[_Charge]) -> dict[str, dict]:
    evidence = [(log, n, a) for log, n, a in events if season.from_block <= log["blockNumber"] <= season.evidence_block]
    offenders = {a["node"] for _, n, a in evidence if n == "Slashed" and a["kind"] in NODE_OFFENCES}
    voided = {(a["payer"], a["node"]) for _, n, a in evidence if n == "ChargesVoided"}
    refunded: dict[tuple[str, str], int] = defaultdict(int)
    for _, n, a in evidence:
        if n == "Slashed" and a.get("refund") and a.get("payer") and int(a["payer"], 16):
            refunded[(a["payer"], a["node"])] += a["refund"]
        elif n == "Refunded":
            refunded[(a["payer"], a["node"])] += a["amount"]
    finalized = {a["epoch"]: (a["fees"], a["emission"]) for _, n, a in evidence if n == "EpochFinalized"}

    per_channel: dict[tuple[str, str], list[_Charge]] = defaultdict(list)
    for c in charges:
        if season.from_block <= c.block <= season.to_block:
            per_channel[(c.payer, c.node)].append(c)

    rows: dict[str, dict] = {}
    for (payer, node), items in sorted(per_channel.items()):
        row = rows.setdefault(payer, {"settled": 0, "excluded": 0, "usage": 0, "fees": 0, "emission": 0})
        settled = sum(c.amount for c in items)
        row["settled"] += settled
        if node in offenders or (payer, node) in voided:
            row["excluded"] += settled
            continue
        # A refund takes back the latest charges of the channel first (refunds answer for the newest receipts).
        left = refunded.get((payer, node), 0)
        for c in reversed(items):
            take = min(left, c.amount)
            left -= take
            amount = c.amount - take
            row["excluded"] += take
            if amount == 0:
                continue
            fee = c.fee * amount // c.amount
            row["usage"] += amount
            row["fees"] += fee
            if c.epoch in finalized and finalized[c.epoch][0]:
                fees_e, emission_e = finalized[c.epoch]
                row["emission"] += _ceil_div(amount * emission_e, fees_e)  # >= what the node collects on it
            else:
                row["emission"] += fee
    for row in rows.values():
        row["eligible"] = max(0, row["fees"] * season.reward_bps // BPS - row["emission"])
    total_eligible = sum(r["eligible"] for r in rows.values())
    cap = season.budget * season.cap_bps // BPS
    for row in rows.values():
        share = season.budget * row["eligible"] // total_eligible if total_eligible else 0
        row["reward"] = min(row["eligible"], share, cap)
    return rows


def season_rows(logs: list[dict], config: SeasonsConfig, season: Season) -> dict[str, dict]:
    """One season's rows without the cumulative column: needs only that season's logs (the client's signal)."""
    events = _decoded(logs, config)
    return _season_rows(season, events, _charges(events))


def season_table(logs: list[dict], config: SeasonsConfig) -> dict:
    """The table of the last season of ``config`` (with the cumulative amounts of all its seasons), as JSON data."""
    events = _decoded(logs, config)
    charges = _charges(events)
    cumulative: dict[str, int] = defaultdict(int)
    rows: dict[str, dict] = {}
    for season in config.seasons:
        rows = _season_rows(season, events, charges)
        for payer, row in rows.items():
            cumulative[payer] += row["reward"]
    last = config.seasons[-1]
    accounts = []
    for payer in sorted(cumulative, key=lambda a: a.lower()):
        row = rows.get(payer, {"settled": 0, "excluded": 0, "usage": 0, "fees": 0, "emission": 0, "eligible": 0,
                               "reward": 0})
        accounts.append({"account": payer, **{k: str(v) for k, v in row.items()}, "cumulative": str(cumulative[payer])})
    leaves = {a["account"]: int(a["cumulative"]) for a in accounts if int(a["cumulative"]) > 0}
    tree = MerkleTree.build(leaves)
    return {
        "version": TABLE_VERSION,
        "config": json.loads(config.model_dump_json()),
        "season": last.season,
        "total_reward": str(sum(int(a["reward"]) for a in accounts)),
        "total_cumulative": str(sum(leaves.values())),
        "root": "0x" + tree.root.hex(),
        "accounts": accounts,
    }


def table_bytes(table: dict) -> bytes:
    """The canonical encoding: sorted keys, no spaces, one trailing newline."""
    return (json.dumps(table, sort_keys=True, separators=(",", ":")) + "\n").encode()


def table_hash(table: dict) -> str:
    return "0x" + keccak(table_bytes(table)).hex()


def proof_of(table: dict, account: str) -> tuple[int, list[str]]:
    """An account's cumulative amount and its proof in the table's root (``(0, [])`` if it has no leaf)."""
    leaves = {a["account"]: int(a["cumulative"]) for a in table["accounts"] if int(a["cumulative"]) > 0}
    account = to_checksum_address(account)
    if account not in leaves:
        return 0, []
    tree = MerkleTree.build(leaves)
    return leaves[account], ["0x" + p.hex() for p in tree.proof(account)]
