"""``GET /payers/{payer}/pending``: a payer's receipts not yet settled, each with its voucher's cap (issue 13).

A voucher lets its node charge up to ``maxCumulative``; a node that served less may sign a made-up receipt for the
rest of the cap ("one price cap per voucher" billing of an unserved request). A single-device client knows every
receipt it received and every request it made: it lists what the relayer holds for it here and refuses a receipt
it never asked for (``offchain.client.payer.Payer.audit``), before it settles.
"""

from __future__ import annotations

from typing import Annotated, Any

from eth_utils import to_checksum_address
from fastapi import APIRouter, Depends, Path, Query

from .. import deps
from ..store import Store

router = APIRouter(tags=["relayer"])


@router.get("/payers/{payer}/pending")
async def payer_pending(store: Annotated[Store, Depends(deps.store)],
                        payer: str = Path(pattern=r"^0x[0-9a-fA-F]{40}$"),
                        limit: int = Query(500, ge=1, le=5000)) -> Any:
    """The payer's pending receipts, oldest first: ``{payer, receipts: [{id, node, amount, cumulative, voucherCap,
    timestamp, acceptedAt, batchId}]}`` (amounts as decimal strings)."""
    payer = to_checksum_address(payer)
    rows = store.receipts.pending_of_payer(payer, limit)
    return {"payer": payer, "receipts": [
        {"id": r.id, "node": r.node, "amount": str(r.amount), "cumulative": str(r.cumulative),
         "voucherCap": str(r.voucher_cap), "timestamp": r.timestamp, "acceptedAt": r.accepted_at,
         "batchId": r.batch_id} for r in rows]}
