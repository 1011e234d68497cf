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
from typing import Annotated, Any

from eth_utils import to_checksum_address
from fastapi import APIRouter, Depends, Path, Query

from ...daemon.errors import ApiError
from ...messages import InvalidSignature, PayloadWithheld, Receipt, recover_signer
from .. import deps
from ..models import FeedItem, FeedPage, NodeView, WithholdingAnswer, WithholdingReport
from ..rpc import ChainFacts, Rpc
from ..store import FeedEntry, Store

FEED_MAX = 1000
WAIT_MAX = 30.0
router = APIRouter(tags=["verifiers"])


def feed_receipt(row: FeedEntry) -> dict[str, Any]:
    """A feed entry as the signed receipt with camelCase names (big integers as decimal strings)."""
    return {
        "requestId": row.request_id, "payer": row.payer, "node": row.node, "modelId": row.model_id,
        "inputHash": row.input_hash, "outputHash": row.output_hash, "amount": str(row.amount),
        "cumulative": str(row.cumulative), "timestamp": row.timestamp, "signature": row.signature,
    }


@router.get("/feed/receipts", response_model=FeedPage)
async def feed(store: Annotated[Store, Depends(deps.store)], after: int = Query(0, ge=0, le=2**63 - 1), limit: int = Query(100, ge=1, le=FEED_MAX),
               wait: float = Query(0, ge=0, le=WAIT_MAX)) -> Any:
    """Accepted receipts after the cursor ``after``, in acceptance order (at most ``limit``)."""
    deadline = time.monotonic() + wait
    while True:
        rows = await asyncio.to_thread(store.receipts.feed, after, limit)
        if rows or time.monotonic() >= deadline:
            break
        await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
    items = [FeedItem(seq=r.seq, id=r.id, receipt_hash=r.struct_hash, receipt=feed_receipt(r),
                      accepted_at=r.accepted_at) for r in rows]
    return FeedPage(receipts=items, next=rows[-1].seq if rows else after)

@router.post("/reports/withholding", response_model=WithholdingAnswer,
             responses={400: {"description": "refused"}, 404: {"description": "unknown receipt"}})
async def report_withholding(body: WithholdingReport, store: Annotated[Store, Depends(deps.store)],
                             facts: Annotated[ChainFacts, Depends(deps.facts)],
                             rpc: Annotated[Rpc, Depends(deps.rpc)]) -> Any:
    """A verifier's signed report that a node withheld a payload (recorded; never a verdict)."""
    if body.receipt is not None:
        plain = Receipt(**body.receipt.model_dump(exclude={"signature"}, by_alias=False))
        if "0x" + plain.struct_hash().hex() != body.receipt_hash:
            raise ApiError(400, "invalid_field", "receipt", "does not hash to receiptHash")
        try:
            node_signer = recover_signer(plain.fast_digest(facts.staking_domain), body.receipt.signature)
        except InvalidSignature as exc:
            raise ApiError(400, "invalid_signature", "receipt.signature", str(exc)) from None
        if node_signer != plain.node:
            raise ApiError(400, "invalid_signature", "receipt.signature", "not the node's signature")
        node = plain.node
    else:
        row = await asyncio.to_thread(store.receipts.by_struct_hash, body.receipt_hash)
        if row is None:
            raise ApiError(404, "not_found", "receiptHash", "no such receipt here; include the signed receipt")
        node = row.node
    digest = PayloadWithheld(receipt_hash=body.receipt_hash, node=node).fast_digest(facts.staking_domain)
    try:
        signer = recover_signer(digest, body.signature)
    except InvalidSignature as exc:
        raise ApiError(400, "invalid_signature", "signature", str(exc)) from None
    if signer != body.verifier:
        raise ApiError(400, "invalid_signature", "signature", "not the verifier's PayloadWithheld(receiptHash, "
                                                              "node) over this deployment's NodeStaking domain")
    if not await asyncio.to_thread(lambda: rpc.retry(lambda: rpc.chain().is_active_verifier(body.verifier))):
        raise ApiError(400, "verifier_not_active", "verifier", f"{body.verifier} is not an active verifier")
    stored = await asyncio.wrap_future(store.submit(
        Store.job_withholding_report, body.receipt_hash, node, body.verifier, body.signature, body.reason,
        time.time()))
    summary = await asyncio.to_thread(store.slashes.node_summary, node)
    return WithholdingAnswer(receipt_hash=body.receipt_hash, node=node, verifier=body.verifier, stored=stored,
                             reports=summary.reports)

@router.get("/nodes/{address}", response_model=NodeView)
async def node_view(store: Annotated[Store, Depends(deps.store)], address: str = Path(pattern=r"^0x[0-9a-fA-F]{40}$")) -> Any:
    """What this relayer knows about a node (or verifier): receipts, withholding reports, slashes."""
    account = to_checksum_address(address)
    s = await asyncio.to_thread(store.slashes.node_summary, account)
    by_kind: dict[str, int] = {}
    by_status: dict[str, int] = {}
    slashed = 0
    for group in s.slashes:
        by_status[group.status] = by_status.get(group.status, 0) + group.n
        if group.status == "confirmed":
            by_kind[group.kind] = by_kind.get(group.kind, 0) + group.n
            slashed += sum(group.amounts)
    return NodeView(address=account, receipts=s.receipts, pending_receipts=s.pending,
                    withheld=s.withheld, withholding_reports=s.reports, slashes=sum(by_kind.values()),
                    slashed=str(slashed), slashes_by_kind=by_kind, slash_submissions=by_status)
