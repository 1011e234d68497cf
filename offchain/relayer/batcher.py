"""Turning pending receipts into ``CreditEscrow.settle_batch`` transactions, and following them to confirmation.

States of a batch: ``built`` (recorded with its claims) -> ``sent`` (transaction hash and nonce recorded before the
broadcast) -> ``confirmed`` (mined ``confirmations`` deep; receipts settled or rejected per claim outcome) or
``failed`` (the transaction reverted: its receipts go back to the queue and are batched again). A batch whose every
claim the simulation skips ends ``skipped``. One batch is in flight at a time; it carries every pending receipt of
up to ``max_claims`` channels, so the claims (one per channel) grow with the number of channels, not of receipts.

After a restart, a ``built`` batch is simulated again and sent; a ``sent`` batch is looked up by each transaction
hash it was sent with: mined -> confirmed as usual; still pending -> waited for (fees raised after
``resend_after``); unknown -> simulated again and sent again. ``settle_batch`` pays each channel up to an absolute
total and skips claims already paid, so sending a batch twice never pays twice.
"""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from eth_abi import decode as abi_decode
from eth_utils import event_abi_to_log_topic, function_abi_to_4byte_selector

from ..artifacts import abi
from ..messages import _address_of as address_of
from ..messages import merkle_root
from .store import ClaimResult, Store
from .txsender import BroadcastError, PreparedCall, is_revert, is_transient, revert_message

if TYPE_CHECKING:
    from .service import Relayer

log = logging.getLogger("opg.relayer.batcher")

SETTLED, STALE = 0, 1
# Static gas bound of settle_batch (EOA payers): measured ~19k per claim on average; these leave room for first
# settlements (cold, zero-to-nonzero slots) and the per-node fee forwarding. Larger needs fall back to estimation.
GAS_BASE, GAS_PER_CLAIM, GAS_PER_NODE = 150_000, 45_000, 60_000
UNKNOWN_GRACE = 3.0  # seconds a transaction this process broadcast may stay unknown to the node


def _abi_item(kind: str, name: str) -> dict:
    return next(x for x in abi("CreditEscrow") if x["type"] == kind and x["name"] == name)


# settle_batch is encoded with eth-abi directly: web3's generic argument normalisation costs ~10x more CPU for a
# 256-claim batch, CPU taken from the HTTP thread under the GIL.
SETTLE_SELECTOR = function_abi_to_4byte_selector(_abi_item("function", "settle_batch"))
SETTLE_TYPES = ["(address,address,uint256,bytes,uint256)[]", "bytes32"]
TOPIC_SETTLED = event_abi_to_log_topic(_abi_item("event", "ClaimSettled"))
TOPIC_SKIPPED = event_abi_to_log_topic(_abi_item("event", "ClaimSkipped"))
TOPIC_BATCH = event_abi_to_log_topic(_abi_item("event", "BatchSettled"))


def settle_calldata(claims: list[dict], root: bytes) -> bytes:
    """ABI encoding of ``settle_batch(claims, root)``, laid out by hand (the tests check it against eth-abi).

    Each Claim ``(address, address, uint256, bytes, uint256)`` is a dynamic tuple: five head words (the bytes field
    as an offset, 160), then the signature's length and its bytes padded to a word boundary."""
    out = [SETTLE_SELECTOR, (64).to_bytes(32, "big"), root, len(claims).to_bytes(32, "big")]
    tails, offset = [], 32 * len(claims)
    for c in claims:
        sig = bytes.fromhex(c["signature"][2:])
        padded = sig + bytes(-len(sig) % 32)
        tail = b"".join((
            bytes(12), bytes.fromhex(c["payer"][2:]), bytes(12), bytes.fromhex(c["node"][2:]),
            int(c["maxCumulative"]).to_bytes(32, "big"), (160).to_bytes(32, "big"), int(c["total"]).to_bytes(32, "big"),
            len(sig).to_bytes(32, "big"), padded,
        ))
        out.append(offset.to_bytes(32, "big"))
        tails.append(tail)
        offset += len(tail)
    return b"".join(out + tails)


def settle_call(w3: object, escrow: str, claims: list[dict], root: bytes) -> PreparedCall:
    return PreparedCall(w3, escrow, settle_calldata(claims, root))


def _topic_address(topic: bytes) -> str:
    return address_of(bytes(topic)[12:])


def _word(data: bytes, index: int) -> int:
    return int.from_bytes(data[32 * index:32 * index + 32], "big")


def decode_batch_logs(receipt: dict, escrow: str) -> tuple[dict, dict, int]:
    """(settled {(payer, node): (amount, total)}, skipped {(payer, node): (total, reason)}, batch amount).

    The events' layouts are fixed (indexed payer and node; uint words in data), so they are read directly."""
    settled, skipped, amount = {}, {}, 0
    escrow = escrow.lower()
    for log_ in receipt["logs"]:
        if log_["address"].lower() != escrow or not log_["topics"]:
            continue
        topics, data = log_["topics"], bytes(log_["data"])
        topic = bytes(topics[0])
        if topic == TOPIC_SETTLED:
            settled[(_topic_address(topics[1]), _topic_address(topics[2]))] = (_word(data, 0), _word(data, 1))
        elif topic == TOPIC_SKIPPED:
            skipped[(_topic_address(topics[1]), _topic_address(topics[2]))] = (_word(data, 0), _word(data, 1))
        elif topic == TOPIC_BATCH:
            amount += _word(data, 2)
    return settled, skipped, amount


def claim_tuple(c: dict) -> tuple:
    return (c["payer"], c["node"], int(c["maxCumulative"]), bytes.fromhex(c["signature"][2:]), int(c["total"]))


def root_of(ids: list[str]) -> bytes:
    return merkle_root([bytes.fromhex(i[2:]) for i in ids])


class SimulationReverted(Exception):
    pass


class Batcher:
    def __init__(self, relayer: Relayer):
        self.r = relayer
        self.store = relayer.store
        self.settings = relayer.settings
        self.sender = relayer.sender
        self.chain = relayer.sender_chain
        self.escrow = self.chain.escrow
        self._block_gas: tuple[int, float] | None = None

    # The worker's entry point ----------------------------------------------------------------------------------
    def tick(self) -> None:
        batch = self.store.inflight_batch()
        if batch is not None:
            self._advance(batch)
            return
        count, oldest = self.store.unbatched_summary()
        if count and (count >= self.settings.batch_size or time.time() - oldest >= self.settings.batch_age):
            self._build()

    # Building --------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        rows = self.store.unbatched(self.settings.max_batch_receipts)
        by_channel: dict[tuple[str, str], list] = {}
        for row in rows:
            key = (row["payer"], row["node"])
            if key not in by_channel:
                if len(by_channel) >= self.settings.max_claims:
                    continue
                by_channel[key] = []
            by_channel[key].append(row)
        claims = []
        for (payer, node), channel_rows in by_channel.items():
            ch = self.r.ledger.get(payer, node)
            claims.append({
                "payer": payer, "node": node, "maxCumulative": str(ch.cap), "signature": ch.voucher_signature,
                "total": str(max(int(r["cumulative"]) for r in channel_rows)), "receipts": len(channel_rows),
            })
        claims.sort(key=lambda c: (c["node"].lower(), c["payer"].lower()))
        ids = {k: [r["id"] for r in v] for k, v in by_channel.items()}
        root = root_of([i for v in ids.values() for i in v])
        go, skipped, gas = self._simulate(claims, root)  # a revert (never expected) is retried by the worker
        go_ids = {(c["payer"], c["node"]): ids[(c["payer"], c["node"])] for c in go}
        skipped_ids = {(s.payer, s.node): ids[(s.payer, s.node)] for s in skipped}
        if skipped:
            root = root_of([i for v in go_ids.values() for i in v])
        batch_id = self.store.call(Store.job_build_batch, self.r.ledger, go, "0x" + root.hex(), go_ids, skipped,
                                   skipped_ids, time.time())
        self._count_skipped(skipped, skipped_ids)
        if batch_id is None:
            return
        self.r.metrics.batches.inc(1, "built")
        log.info("built batch %d: %d claims, %d receipts", batch_id, len(go), sum(len(v) for v in go_ids.values()))
        self._send(batch_id, go, root, gas=gas)

    def _count_skipped(self, skipped: list[ClaimResult], ids: dict | None, per_claim: dict | None = None) -> None:
        for s in skipped:
            n = len(ids[(s.payer, s.node)]) if ids else (per_claim or {}).get((s.payer, s.node), 0)
            self.r.metrics.receipts_resolved.inc(n, "settled" if s.outcome == STALE else "rejected")

    def _simulate(self, claims: list[dict], root: bytes) -> tuple[list[dict], list[ClaimResult], int | None]:
        """eth_call settle_batch; split the claims into those that pay and those the contract would skip.

        The call runs under the static gas bound of the claims; when that succeeds and every claim pays, the bound
        is the transaction's gas limit (returned), so no eth_estimateGas is needed (on anvil that is a binary search
        of a dozen executions of the whole batch)."""
        if not claims:
            return [], [], None
        call = settle_call(self.chain.w3, self.escrow.address, claims, root)
        bound = self._gas_bound(claims)
        try:
            raw = self.sender.retry(lambda: call.call({"from": self.sender.address, "gas": bound}))
        except Exception as exc:
            if is_transient(exc):
                raise
            bound = None  # out of gas under the bound (e.g. ERC-1271 payers), or a revert: ask without a cap
            try:
                raw = self.sender.retry(lambda: call.call({"from": self.sender.address}))
            except Exception as exc2:
                if is_revert(exc2):
                    raise SimulationReverted(revert_message(exc2)) from exc2
                raise
        [outcomes] = abi_decode(["uint8[]"], bytes(raw))
        go, skipped = [], []
        for claim, outcome in zip(claims, outcomes, strict=True):
            if outcome == SETTLED:
                go.append(claim)
                continue
            spent = None
            if outcome == STALE:
                spent = self.sender.retry(
                    lambda c=claim: self.escrow.functions.spent(c["payer"], c["node"]).call())
            skipped.append(ClaimResult(claim["payer"], claim["node"], outcome, int(claim["total"]), spent))
            log.info("claim %s -> %s skipped at simulation (outcome %d)", claim["payer"], claim["node"], outcome)
        return go, skipped, bound if len(go) == len(claims) else None

    def _gas_bound(self, claims: list[dict]) -> int:
        """A generous upper bound of settle_batch's gas for EOA payers, within the block gas limit."""
        if self._block_gas is None or time.monotonic() > self._block_gas[1]:
            limit = int(self.sender.retry(lambda: self.chain.w3.eth.get_block("latest"))["gasLimit"])
            self._block_gas = (limit, time.monotonic() + 600)
        nodes = len({c["node"] for c in claims})
        bound = GAS_BASE + GAS_PER_CLAIM * len(claims) + GAS_PER_NODE * nodes
        return min(bound, self._block_gas[0] * 9 // 10)

    def _gas_for(self, claims: list[dict], root: bytes) -> int | None:
        """The static bound, if settle_batch(claims) succeeds under it now; else None (TxSender estimates)."""
        bound = self._gas_bound(claims)
        call = settle_call(self.chain.w3, self.escrow.address, claims, root)
        try:
            self.sender.retry(lambda: call.call({"from": self.sender.address, "gas": bound}))
        except Exception as exc:
            if is_transient(exc):
                raise
            return None
        return bound

    def _send(self, batch_id: int, claims: list[dict], root: bytes, nonce: int | None = None, bump: int = 0,
              gas: int | None = None) -> None:
        call = settle_call(self.chain.w3, self.escrow.address, claims, root)
        try:
            gas = gas or self._gas_for(claims, root)
            self.sender.send(call, "batch", str(batch_id), gas=gas, nonce=nonce, bump=bump)
        except BroadcastError as exc:
            log.warning("batch %d: %s (will reconcile)", batch_id, exc)
            return
        self.r.metrics.batches.inc(1, "sent")

    # Following a batch in flight -------------------------------------------------------------------------------
    def _advance(self, batch: dict) -> None:
        if batch["status"] == "built":
            self._resimulate_and_send(batch)
            return
        txs = self.store.transactions("batch", str(batch["id"]))
        for tx in reversed(txs):
            receipt = self.sender.raw_receipt(tx["tx_hash"])
            if receipt is not None:
                self._mined(batch, tx["tx_hash"], receipt)
                return
        latest = txs[-1] if txs else None
        if latest is not None and self.sender.known(latest["tx_hash"]):
            if time.time() - latest["sent_at"] > self.settings.resend_after:
                log.warning("batch %d: %s pending for %.0fs; replacing it with higher fees", batch["id"],
                            latest["tx_hash"], time.time() - latest["sent_at"])
                claims = json.loads(batch["claims"])
                self._send(batch["id"], claims, bytes.fromhex(batch["receipts_root"][2:]), nonce=latest["nonce"],
                           bump=len(txs))
            return
        if (latest is not None and latest["tx_hash"] in self.sender.broadcast_this_run
                and time.time() - latest["sent_at"] < UNKNOWN_GRACE):
            return
        log.warning("batch %d: transaction %s unknown to the node; simulating again and re-sending", batch["id"],
                    latest["tx_hash"] if latest else None)
        self._resimulate_and_send(batch)

    def _resimulate_and_send(self, batch: dict) -> None:
        batch_id = batch["id"]
        ids: dict[tuple[str, str], list[str]] = {}
        for rid, payer, node in self.store.batch_receipt_ids(batch_id):
            ids.setdefault((payer, node), []).append(rid)
        claims = [c for c in json.loads(batch["claims"]) if (c["payer"], c["node"]) in ids]
        root = root_of([i for v in ids.values() for i in v])
        go, skipped, gas = self._simulate(claims, root)
        go_ids = {(c["payer"], c["node"]): ids[(c["payer"], c["node"])] for c in go}
        if skipped:
            root = root_of([i for v in go_ids.values() for i in v])
        counts = {k: len(v) for k, v in ids.items()}
        self.store.call(Store.job_rebuild_batch, self.r.ledger, batch_id, go, "0x" + root.hex(), skipped, time.time())
        self._count_skipped(skipped, None, counts)
        if not go:
            self.r.metrics.batches.inc(1, "skipped")
            log.info("batch %d: nothing left to settle", batch_id)
            return
        self._send(batch_id, go, root, gas=gas)

    def _mined(self, batch: dict, tx_hash: str, receipt: Any) -> None:
        batch_id = batch["id"]
        if receipt["status"] != 1:
            log.warning("batch %d: %s reverted; its receipts go back to the queue", batch_id, tx_hash)
            self.store.call(Store.job_batch_failed, self.r.ledger, batch_id, f"transaction {tx_hash} reverted",
                            time.time())
            self.r.metrics.batches.inc(1, "failed")
            return
        depth = self.sender.block_number() - receipt["blockNumber"] + 1
        if depth < self.settings.confirmations:
            return
        settled, skipped, amount = decode_batch_logs(receipt, self.escrow.address)
        results: list[ClaimResult] = []
        claims = json.loads(batch["claims"])
        counts = {(c["payer"], c["node"]): int(c.get("receipts", 0)) for c in claims}
        for c in claims:
            key = (c["payer"], c["node"])
            if key in settled:
                results.append(ClaimResult(c["payer"], c["node"], SETTLED, int(settled[key][1])))
            else:
                reason = int(skipped[key][1]) if key in skipped else STALE
                spent = None
                if reason == STALE:
                    spent = self.sender.retry(lambda c=c: self.escrow.functions.spent(c["payer"], c["node"]).call())
                results.append(ClaimResult(c["payer"], c["node"], reason, int(c["total"]), spent))
        gas_price = int(receipt.get("effectiveGasPrice", 0))
        latencies = self.store.call(Store.job_batch_confirmed, self.r.ledger, batch_id, tx_hash,
                                    receipt["blockNumber"], receipt["gasUsed"], gas_price, results, amount,
                                    time.time())
        m = self.r.metrics
        m.batches.inc(1, "confirmed")
        m.gas_used.inc(receipt["gasUsed"], "batch")
        m.fees_wei.inc(receipt["gasUsed"] * gas_price, "batch")
        m.settle_latency.observe_many(latencies)
        for res in results:
            n = counts.get((res.payer, res.node), 0)
            m.receipts_resolved.inc(n, "settled" if res.outcome in (SETTLED, STALE) else "rejected")
        log.info("batch %d confirmed in block %d (%s): %d claims, gas %d", batch_id, receipt["blockNumber"],
                 tx_hash, len(results), receipt["gasUsed"])
