"""``POST /verdicts`` and ``GET /slashes``."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from ...daemon.errors import ApiError
from ...messages import InvalidSignature, recover_signer
from ...sdk.constants import ROLE_VERIFIER
from .. import deps
from ..events import Events
from ..metrics import Metrics
from ..models import SlashView, VerdictAnswer, VerdictIn
from ..rpc import ChainFacts, Rpc
from ..slasher import Slasher
from ..store import Store
from .x402 import ERRORS

router = APIRouter(tags=["slashing"])


@router.post("/verdicts", response_model=VerdictAnswer, responses=ERRORS)
async def verdicts(body: VerdictIn, facts: Annotated[ChainFacts, Depends(deps.facts)],
                   rpc: Annotated[Rpc, Depends(deps.rpc)], store: Annotated[Store, Depends(deps.store)],
                   events: Annotated[Events, Depends(deps.events)], metrics: Annotated[Metrics, Depends(deps.metrics)],
                   slasher: Annotated[Slasher, Depends(deps.slasher)]) -> Any:
    """A verifier's signed Verdict. Verdicts are collected until their signers' vote weight reaches
    ``fraud_quorum_bps`` of the live verifier weight; then the relayer submits ``slash_fraud`` (valid=false) and
    slashes the lazy verifiers, or ``prove_valid`` (valid=true) and slashes the false accusers. A verifier that
    signed both ways is slashed for a double vote."""
    digest = body.fast_digest(facts.staking_domain)
    try:
        signer = recover_signer(digest, body.signature)
    except InvalidSignature as exc:
        raise ApiError(400, "invalid_signature", "signature", str(exc)) from None
    if signer != body.verifier:
        raise ApiError(400, "invalid_signature", "signature",
                       "not the verifier's signature over this deployment's NodeStaking domain")
    active = await asyncio.to_thread(lambda: rpc.retry(
        lambda: rpc.chain().staking.functions.is_active_as(body.verifier, ROLE_VERIFIER).call()))
    if not active:
        raise ApiError(400, "verifier_not_active", "verifier", f"{body.verifier} is not an active verifier")
    stored = await asyncio.wrap_future(store.submit(Store.job_verdict, body.receipt_hash, body.verifier,
                                                    body.valid, body.signature, time.time()))
    if stored:
        metrics.verdicts.inc(1, str(body.valid).lower())
        events.verdict_stored.publish(body.receipt_hash)
    quorum = await asyncio.to_thread(slasher.fraud_quorum_bps)
    return VerdictAnswer(
        receipt_hash=body.receipt_hash, verifier=body.verifier, valid=body.valid, stored=stored,
        receipt_known=store.receipts.by_struct_hash(body.receipt_hash) is not None,
        invalid_verdicts=len(store.slashes.verdicts(body.receipt_hash, valid=False)), fraud_quorum_bps=quorum,
    )


@router.get("/slashes", response_model=list[SlashView])
async def slashes(store: Annotated[Store, Depends(deps.store)],
                  status: str | None = Query(None, pattern="^(queued|sent|confirmed|skipped|failed)$"),
                  limit: int = Query(100, ge=1, le=1000)) -> Any:
    """Slashing submissions (equivocation, fraud, lazy_verifier, prove_valid, false_accuser, double_vote), newest
    first."""
    return [SlashView(id=s.id, kind=s.kind, evidence=s.evidence, subject=s.subject, status=s.status, tx_hash=s.tx_hash,
                      amount=None if s.amount is None else str(s.amount), error=s.error, created_at=s.created_at,
                      updated_at=s.updated_at)
            for s in store.slashes.list(status, limit)]
