"""``POST /deposits``: gasless deposits (the checks and the transaction: ``relayer.deposits.Deposits``)."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from .. import deps
from ..deposits import Deposits
from ..models import DepositAnswer, DepositIn

router = APIRouter(tags=["deposits"])


@router.post("/deposits", response_model=DepositAnswer, status_code=200,
             responses={202: {"model": DepositAnswer, "description": "sent, not mined yet: post again"},
                        400: {"description": "refused authorisation"}, 409: {"description": "nonce used"}})
async def deposit(body: DepositIn, deposits: Annotated[Deposits, Depends(deps.deposits)]) -> Any:
    """Submit a gasless deposit: the payer's EIP-3009 ReceiveWithAuthorization to the escrow."""
    status, answer = await asyncio.to_thread(deposits.handle, body)
    return JSONResponse(answer, status_code=status)
