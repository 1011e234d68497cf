"""``GET /batches`` and ``GET /batches/{id}``."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from ...daemon.errors import ApiError
from .. import deps
from ..models import BatchView, ClaimView, ErrorBody
from ..store import Store

SQLITE_INT_MAX = 2**63 - 1  # ids and cursors are SQLite integers: larger ones are refused 400, not 500

router = APIRouter(tags=["relayer"])


def batch_view(store: Store, row: dict, full: bool) -> BatchView:
    claims = json.loads(row["claims"])
    return BatchView(
        id=row["id"], status=row["status"], receipts_root=row["receipts_root"], receipt_count=row["receipt_count"],
        claims=[ClaimView(max_cumulative=c["maxCumulative"], **{k: v for k, v in c.items() if k != "maxCumulative"})
                for c in claims] if full else None,
        claim_count=len(claims), tx_hash=row["tx_hash"], nonce=row["nonce"], block_number=row["block_number"],
        gas_used=row["gas_used"], gas_price=row["gas_price"], settled_amount=row["settled_amount"],
        attempts=row["attempts"], error=row["error"], created_at=row["created_at"], sent_at=row["sent_at"],
        confirmed_at=row["confirmed_at"],
        transactions=[t["tx_hash"] for t in store.transactions("batch", str(row["id"]))] if full else None,
    )


@router.get("/batches", response_model=list[BatchView], response_model_exclude_none=True)
async def batches(store: Annotated[Store, Depends(deps.store)],
                  status: str | None = Query(None, pattern="^(built|sent|confirmed|failed|skipped)$"),
                  limit: int = Query(50, ge=1, le=1000),
                  before: int | None = Query(None, ge=1, le=SQLITE_INT_MAX)) -> Any:
    """Batches, newest first."""
    return [batch_view(store, b, full=False) for b in store.batches(status, limit, before)]


@router.get("/batches/{batch_id}", response_model=BatchView, responses={404: {"model": ErrorBody}})
async def batch(store: Annotated[Store, Depends(deps.store)], batch_id: int = Path(ge=1, le=SQLITE_INT_MAX)) -> Any:
    """One batch: Merkle root, transaction(s), status, gas used, and its claims with their outcomes."""
    row = store.batch(batch_id)
    if row is None:
        raise ApiError(404, "not_found", "id", "no such batch")
    return batch_view(store, row, full=True)
