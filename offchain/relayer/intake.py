"""``POST /settle``'s body, parsed once and handed to its handler: an x402 settle request goes to its scheme's
facilitator (``facilitators.Facilitators``), ``{receipts: [...]}`` and ``{receipt, voucher}`` to the opg-credit
scheme's receipt intake (``CreditScheme.accept`` / ``accept_bulk``)."""

from __future__ import annotations

import time

import pydantic_core
from pydantic import ValidationError
from x402.schemas import SettleRequest

from ..daemon.disk import DiskReserve
from ..daemon.errors import ApiError, from_validation_error
from .credit import CreditScheme
from .facilitators import Facilitators, run_scheme, x402_dump
from .models import SettleAnswer
from .rpc import ChainFacts


class Intake:
    def __init__(self, facts: ChainFacts, credit: CreditScheme, facilitators: Facilitators, max_bulk: int,
                 reserve: DiskReserve | None = None):
        self.network, self.credit, self.facilitators, self.max_bulk = facts.network, credit, facilitators, max_bulk
        self.reserve = reserve  # 503 store_full while the store's disk is nearly full (daemon.disk)

    async def handle(self, raw: bytes) -> tuple[int, dict]:
        """(status, JSON body) of ``POST /settle``; refusals raise ApiError."""
        started = time.perf_counter()
        if self.reserve is not None:
            self.reserve.check()
        try:
            data = pydantic_core.from_json(raw)
        except ValueError as exc:
            raise ApiError(400, "invalid_json", None, f"malformed JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_request", None, "the body must be a JSON object")
        if "paymentPayload" in data or "x402Version" in data:
            return await self._x402(data)
        if "receipts" in data:
            return await self._bulk(data, raw, started)
        if "receipt" in data or "voucher" in data:
            _answer, outcome = await self.credit.accept("", data, started)
            return 200, SettleAnswer(id=outcome.id, status=outcome.status, batch_id=outcome.batch_id,
                                     reason=outcome.reason, duplicate=outcome.duplicate).model_dump(
                mode="json", by_alias=True)
        raise ApiError(400, "missing_field", "receipt",
                       "give {receipt, voucher}, {receipts: [...]} or an x402 settle request")

    async def _x402(self, data: dict) -> tuple[int, dict]:
        try:
            req = SettleRequest.model_validate(data)
        except ValidationError as exc:
            raise from_validation_error(exc) from None
        facilitator = self.facilitators.get(req.payment_requirements.scheme)
        answer = await run_scheme(facilitator.settle, req.payment_payload, req.payment_requirements)
        return 200, x402_dump(answer)

    async def _bulk(self, data: dict, raw: bytes, started: float) -> tuple[int, dict]:
        unknown = sorted(set(data) - {"receipts", "network"})
        if unknown:
            raise ApiError(400, "unknown_field", unknown[0], "unknown field")
        items = data["receipts"]
        if not isinstance(items, list):
            raise ApiError(400, "invalid_field", "receipts", "must be a list of {receipt, voucher}")
        if not items:
            raise ApiError(400, "invalid_field", "receipts", "must not be empty")
        for i, it in enumerate(items):
            if not isinstance(it, dict):
                raise ApiError(400, "invalid_field", f"receipts[{i}]", "must be an object {receipt, voucher}")
        if len(items) > self.max_bulk:
            raise ApiError(413, "too_many_receipts", "receipts",
                           f"at most {self.max_bulk} receipts per request, got {len(items)}")
        network = data.get("network")
        if network is not None and network != self.network:
            raise ApiError(400, "wrong_network", "network", f"this relayer settles on {self.network}")
        answer = await self.credit.accept_bulk(items, raw, started)
        return 200, answer.model_dump(mode="json", by_alias=True, exclude_none=True)
