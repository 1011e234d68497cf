"""``GET /receipts/{id}`` and ``GET /channels/{payer}/{node}``."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from eth_utils import to_checksum_address
from fastapi import APIRouter, Depends, Path

from ...daemon.errors import ApiError
from .. import deps
from ..ledger import Ledger
from ..models import ChannelView, ErrorBody, ReceiptView
from ..rpc import Rpc
from ..store import Store
from .x402 import ERRORS

router = APIRouter(tags=["relayer"])


@router.get("/receipts/{receipt_id}", response_model=ReceiptView, responses={404: {"model": ErrorBody}})
async def receipt(store: Annotated[Store, Depends(deps.store)],
                  receipt_id: str = Path(pattern=r"^0x[0-9a-fA-F]{64}$")) -> Any:
    """A receipt by id (its EIP-712 digest): pending, settled or rejected, with its batch and transaction."""
    row = store.receipts.get(receipt_id)
    if row is None:
        raise ApiError(404, "not_found", "id", "no such receipt")
    return ReceiptView(
        id=row.id, status=row.status, reason=row.reason, batch_id=row.batch_id, tx=row.batch_tx,
        batch_status=row.batch_status, request_id=row.request_id, payer=row.payer, node=row.node,
        amount=str(row.amount), cumulative=str(row.cumulative), timestamp=row.timestamp,
        receipt_hash=row.struct_hash, accepted_at=row.accepted_at, settled_at=row.settled_at,
    )


@router.get("/channels/{payer}/{node}", response_model=ChannelView, responses=ERRORS)
async def channel(store: Annotated[Store, Depends(deps.store)], ledger: Annotated[Ledger, Depends(deps.ledger)],
                  rpc: Annotated[Rpc, Depends(deps.rpc)], payer: str = Path(pattern=r"^0x[0-9a-fA-F]{40}$"),
                  node: str = Path(pattern=r"^0x[0-9a-fA-F]{40}$")) -> Any:
    """A (payer, node) channel: charged, settled on-chain, best voucher, pending receipts."""
    payer, node = to_checksum_address(payer), to_checksum_address(node)
    spent = await asyncio.to_thread(lambda: rpc.retry(lambda: rpc.chain().escrow.functions.spent(payer, node).call()))
    ch = ledger.get(payer, node)
    pending = store.receipts.pending_of_channel(payer, node, limit=100)
    return ChannelView(
        payer=payer, node=node, charged=str(ch.charged if ch else 0), settled=str(spent),
        settled_known=str(ch.settled if ch else 0), voucher_cap=str(ch.cap if ch else 0),
        pending_receipts=ch.pending if ch else 0,
        pending=[{"id": p.id, "amount": str(p.amount), "cumulative": str(p.cumulative), "batchId": p.batch_id}
                 for p in pending],
    )
