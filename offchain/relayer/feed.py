"""The relayer's feed for verifiers, and what it knows about each node.

- ``GET /feed/receipts?after=<seq>&limit=<n>[&wait=<s>]``: every accepted receipt, in acceptance order, with the
  node's signature (camelCase EIP-712 names), so a verifier can sample it, fetch its payload from the node and sign a
  verdict. Only hashes are in it (prompts and answers stay with the node). ``next`` is the cursor to pass as
  ``after`` next time; ``wait`` long-polls (up to 30 s) while nothing newer than ``after`` exists.
- ``POST /reports/withholding``: an active verifier's report that a node did not release a sampled payload by the
  verifiers' deadline, authenticated by the verifier's ``PayloadWithheld(receiptHash, node)`` signature over this
  deployment's NodeStaking domain. It is NOT a verdict (attack R4: a node withholding from one honest verifier while
  others prove the receipt valid must not get that verifier slashed as a false accuser): it is recorded and counted
  in the node's view, never towards a quorum. Withholding is answered by the payer's bonded dispute.
- ``GET /nodes/{address}``: receipts accepted, withholding reports, slashes (by kind) of one node or verifier.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from eth_utils import to_checksum_address
from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ..daemon.errors import ApiError
from ..messages import Domain, InvalidSignature, PayloadWithheld, Receipt, SignedReceipt, recover_signer
from ..types import Address, Bytes32, Signature
from .store import Store

FEED_MAX = 1000
WAIT_MAX = 30.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel,
                              serialize_by_alias=True)


class FeedReceipt(SignedReceipt):
    """A node's signed Receipt with its EIP-712 (camelCase) field names."""

    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)


class FeedItem(_Model):
    seq: int = Field(description="acceptance order; pass the last one seen as `after`")
    id: str = Field(description="the receipt id: its EIP-712 digest (NodeStaking domain)")
    receipt_hash: str = Field(description="the receipt's EIP-712 struct hash, what verdicts sign")
    receipt: dict[str, Any] = Field(description="the signed receipt: requestId, payer, node, modelId, inputHash, "
                                                "outputHash, amount, cumulative (decimal strings), timestamp, signature")
    accepted_at: float


class FeedPage(_Model):
    receipts: list[FeedItem]
    next: int = Field(description="the cursor for the next page (the last seq returned, or `after`)")


class WithholdingReport(_Model):
    """A verifier's signed report that the receipt's node withheld its payload."""

    receipt_hash: Bytes32 = Field(description="the receipt's struct hash")
    verifier: Address
    signature: Signature = Field(description="the verifier's PayloadWithheld(receiptHash, node) signature (not a "
                                             "verdict: never counted as a vote)")
    receipt: FeedReceipt | None = Field(None, description="the signed receipt, if the relayer may not hold it")
    reason: str | None = Field(None, max_length=200)


class WithholdingAnswer(_Model):
    receipt_hash: str
    node: str
    verifier: str
    stored: bool
    reports: int = Field(description="reports on this node so far")


class NodeView(_Model):
    address: str
    receipts: int = Field(description="receipts of the node accepted by this relayer")
    pending_receipts: int
    withheld: int = Field(description="distinct receipts verifiers reported withheld")
    withholding_reports: int
    slashes: int = Field(description="confirmed slashes of this account")
    slashed: str = Field(description="OPG (wei) taken by confirmed slashes")
    slashes_by_kind: dict[str, int] = Field(description="confirmed slashes per kind")
    slash_submissions: dict[str, int] = Field(description="slash submissions per status")


def feed_receipt(row: dict) -> dict[str, Any]:
    """A stored receipt row as the signed receipt with camelCase names (big integers as decimal strings)."""
    return {
        "requestId": row["request_id"], "payer": row["payer"], "node": row["node"], "modelId": row["model_id"],
        "inputHash": row["input_hash"], "outputHash": row["output_hash"], "amount": str(row["amount"]),
        "cumulative": str(row["cumulative"]), "timestamp": row["timestamp"], "signature": row["signature"],
    }


def feed_router(store: Store, staking_domain: Domain, is_active_verifier: Callable[[str], bool]) -> APIRouter:
    """The feed, withholding reports and node views over the relayer's ``store``; ``is_active_verifier(address)``
    (a blocking chain read) gates reports."""
    router = APIRouter(tags=["verifiers"])

    @router.get("/feed/receipts", response_model=FeedPage)
    async def feed(after: int = Query(0, ge=0, le=2**63 - 1), limit: int = Query(100, ge=1, le=FEED_MAX),
                   wait: float = Query(0, ge=0, le=WAIT_MAX)) -> Any:
        """Accepted receipts after the cursor ``after``, in acceptance order (at most ``limit``)."""
        deadline = time.monotonic() + wait
        while True:
            rows = await asyncio.to_thread(store.feed, after, limit)
            if rows or time.monotonic() >= deadline:
                break
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        items = [FeedItem(seq=r["seq"], id=r["id"], receipt_hash=r["struct_hash"], receipt=feed_receipt(r),
                          accepted_at=r["accepted_at"]) for r in rows]
        return FeedPage(receipts=items, next=rows[-1]["seq"] if rows else after)

    @router.post("/reports/withholding", response_model=WithholdingAnswer,
                 responses={400: {"description": "refused"}, 404: {"description": "unknown receipt"}})
    async def report_withholding(body: WithholdingReport) -> Any:
        """A verifier's signed report that a node withheld a payload (recorded; never a verdict)."""
        if body.receipt is not None:
            plain = Receipt(**body.receipt.model_dump(exclude={"signature"}, by_alias=False))
            if "0x" + plain.struct_hash().hex() != body.receipt_hash:
                raise ApiError(400, "invalid_field", "receipt", "does not hash to receiptHash")
            try:
                node_signer = recover_signer(plain.fast_digest(staking_domain), body.receipt.signature)
            except InvalidSignature as exc:
                raise ApiError(400, "invalid_signature", "receipt.signature", str(exc)) from None
            if node_signer != plain.node:
                raise ApiError(400, "invalid_signature", "receipt.signature", "not the node's signature")
            node = plain.node
        else:
            row = await asyncio.to_thread(store.receipt_by_struct_hash, body.receipt_hash)
            if row is None:
                raise ApiError(404, "not_found", "receiptHash", "no such receipt here; include the signed receipt")
            node = row["node"]
        digest = PayloadWithheld(receipt_hash=body.receipt_hash, node=node).fast_digest(staking_domain)
        try:
            signer = recover_signer(digest, body.signature)
        except InvalidSignature as exc:
            raise ApiError(400, "invalid_signature", "signature", str(exc)) from None
        if signer != body.verifier:
            raise ApiError(400, "invalid_signature", "signature", "not the verifier's PayloadWithheld(receiptHash, "
                                                                  "node) over this deployment's NodeStaking domain")
        if not await asyncio.to_thread(is_active_verifier, body.verifier):
            raise ApiError(400, "verifier_not_active", "verifier", f"{body.verifier} is not an active verifier")
        stored = await asyncio.wrap_future(store.submit(
            Store.job_withholding_report, body.receipt_hash, node, body.verifier, body.signature, body.reason,
            time.time()))
        summary = await asyncio.to_thread(store.node_summary, node)
        return WithholdingAnswer(receipt_hash=body.receipt_hash, node=node, verifier=body.verifier, stored=stored,
                                 reports=summary["reports"])

    @router.get("/nodes/{address}", response_model=NodeView)
    async def node_view(address: str = Path(pattern=r"^0x[0-9a-fA-F]{40}$")) -> Any:
        """What this relayer knows about a node (or verifier): receipts, withholding reports, slashes."""
        account = to_checksum_address(address)
        s = await asyncio.to_thread(store.node_summary, account)
        by_kind: dict[str, int] = {}
        by_status: dict[str, int] = {}
        slashed = 0
        for row in s["slashes"]:
            by_status[row["status"]] = by_status.get(row["status"], 0) + row["n"]
            if row["status"] == "confirmed":
                by_kind[row["kind"]] = by_kind.get(row["kind"], 0) + row["n"]
                slashed += sum(int(a) for a in (row["amounts"] or "").split(",") if a)
        return NodeView(address=account, receipts=s["receipts"], pending_receipts=s["pending"],
                        withheld=s["withheld"], withholding_reports=s["reports"], slashes=sum(by_kind.values()),
                        slashed=str(slashed), slashes_by_kind=by_kind, slash_submissions=by_status)

    return router
