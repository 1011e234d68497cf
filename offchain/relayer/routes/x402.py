"""x402 facilitator routes: ``GET /supported``, ``POST /verify``, ``POST /settle``, iterating the scheme facilitators."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from x402.schemas import SupportedResponse, VerifyRequest

from .. import deps
from ..facilitators import Facilitators, x402_dump
from ..intake import Intake
from ..models import ErrorBody
from ..rpc import ChainFacts

ERRORS = {
    400: {"model": ErrorBody, "description": "refused input: the field and the reason"},
    413: {"model": ErrorBody, "description": "body too large"},
}


def settle_doc() -> dict:
    """OpenAPI of POST /settle, whose body is parsed by hand (bulk items are validated one by one)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"oneOf": [
                {"$ref": "#/components/schemas/SettleItem"},
                {"$ref": "#/components/schemas/BulkSettle"},
                {"$ref": "#/components/schemas/SettleRequest"},
            ]}}},
        },
        "responses": {
            "200": {"description": "stored (single: SettleAnswer; bulk: BulkSettleAnswer; x402: SettleResponse)",
                    "content": {"application/json": {"schema": {"oneOf": [
                        {"$ref": "#/components/schemas/SettleAnswer"},
                        {"$ref": "#/components/schemas/BulkSettleAnswer"},
                        {"$ref": "#/components/schemas/SettleResponse"},
                    ]}}}},
            "409": {"description": "equivocation: the node signed another receipt for this requestId",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}},
        },
    }


router = APIRouter(tags=["x402"])


@router.get("/supported", response_model=SupportedResponse, response_model_by_alias=True,
            response_model_exclude_none=True)
async def supported(facts: Annotated[ChainFacts, Depends(deps.facts)],
                    facilitators: Annotated[Facilitators, Depends(deps.facilitators)]) -> Any:
    """The x402 kinds this relayer verifies and settles."""
    return facilitators.supported(facts.network)


@router.post("/verify", responses=ERRORS)
async def verify(body: VerifyRequest, facilitators: Annotated[Facilitators, Depends(deps.facilitators)]) -> Any:
    """x402 verify: ``{isValid, invalidReason, payer}`` (200 even when invalid, as x402 clients expect)."""
    return JSONResponse(x402_dump(await facilitators.verify(body)))


@router.post("/settle", openapi_extra=settle_doc())
async def settle(request: Request, intake: Annotated[Intake, Depends(deps.intake)]) -> Any:
    """Store a node's signed receipt(s) for batch settlement (opg-credit), or settle an exact payment now.

    Bodies: ``{receipt, voucher}``; ``{receipts: [{receipt, voucher}, ...]}`` (bulk, per-item results); or an
    x402 settle request ``{x402Version, paymentPayload, paymentRequirements}`` (exact, or opg-credit with the
    receipt in ``paymentPayload.payload.receipt``). A receipt is acknowledged only once committed to disk.
    (Served by the ASGI fast lane in front of the app; this route documents it and serves in-process tests.)"""
    status, payload = await intake.handle(await request.body())
    return JSONResponse(payload, status_code=status)
