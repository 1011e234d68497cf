"""``GET /v1/payloads/challenge`` and ``POST /v1/payloads/{receipt_id}``: a receipt's payload, released only to an
active verifier or the receipt's payer (see ``offchain.node.payloads``)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict

from ...daemon.app import ErrorBody
from ...types import Address, Bytes32, Signature
from ..payloads import PayloadDesk


class PayloadAsk(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requester: Address
    nonce: Bytes32
    signature: Signature


def payloads_router(desk: PayloadDesk) -> APIRouter:
    router = APIRouter(tags=["payloads"])

    @router.get("/v1/payloads/challenge")
    async def challenge() -> dict[str, Any]:
        """A fresh single-use nonce (valid 60 s) to sign in a PayloadRequest."""
        return desk.challenge()

    @router.post("/v1/payloads/{receipt_id:hash32}", responses={
        403: {"model": ErrorBody, "description": "the requester is neither an active verifier nor the payer"},
        404: {"model": ErrorBody, "description": "no such receipt on this node"}})
    async def release(body: PayloadAsk, receipt_id: str = Path(pattern=r"^0x[0-9a-fA-F]{64}$")) -> dict[str, Any]:
        """The receipt's payload ``{receiptId, receipt, request, output, usage, finishReason, pricing}`` for an active
        verifier or the receipt's payer; 400 bad/expired/reused nonce or bad signature, 403 not authorised, 404
        unknown receipt."""
        return await asyncio.to_thread(desk.release, receipt_id.lower(), body.requester, body.nonce, body.signature)

    return router
