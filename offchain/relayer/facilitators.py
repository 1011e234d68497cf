"""The relayer's x402 facilitators, one per scheme, each an ``x402.interfaces.SchemeNetworkFacilitator`` whose class
is registered in the scheme registry (``offchain.schemes.registry``, as x402's ``x402Facilitator.register``).
``/supported``, ``/verify`` and ``/settle`` iterate them (``Facilitators``): no dispatch on the scheme's name."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable, Iterator
from typing import Any

from x402.schemas import SupportedKind, SupportedResponse, VerifyRequest, VerifyResponse

from ..daemon.errors import ApiError
from ..schemes import registry


class Facilitators:
    """The facilitator instances the composition root built, in the registry's preference order."""

    def __init__(self, instances: Iterable[Any]):
        by_name = {f.scheme: f for f in instances}
        for name, facilitator in by_name.items():
            check_facilitator(facilitator)
            if registry.part("facilitator", name) is not type(facilitator):
                raise TypeError(f"{type(facilitator).__name__} is not the registered facilitator of {name!r}")
        self._by_name = {name: by_name[name] for name, _cls in registry.facilitators() if name in by_name}

    def __iter__(self) -> Iterator[Any]:
        return iter(self._by_name.values())

    async def verify(self, req: VerifyRequest) -> VerifyResponse:
        """x402 verify by the request's scheme; the request's own ``x402Version`` is the payload's when it is not 2
        (so a facilitator that checks the version sees it)."""
        facilitator = self.get(req.payment_requirements.scheme)
        payload = req.payment_payload
        if req.x402_version != 2:
            payload = payload.model_copy(update={"x402_version": req.x402_version})
        return await run_scheme(facilitator.verify, payload, req.payment_requirements)

    def supported(self, network: str) -> SupportedResponse:
        """``GET /supported``: every facilitator's kind on ``network`` and their signers."""
        kinds = [SupportedKind(x402_version=2, scheme=f.scheme, network=network, extra=f.get_extra(network))
                 for f in sorted(self, key=lambda f: f.scheme)]
        signers = sorted({s for f in self for s in f.get_signers(network)})
        return SupportedResponse(kinds=kinds, signers={"eip155:*": signers})

    def get(self, scheme: str) -> Any:
        """The facilitator of ``scheme``; 400 ``unsupported_scheme`` if this relayer has none."""
        found = self._by_name.get(scheme)
        if found is None:
            raise ApiError(400, "unsupported_scheme", "paymentRequirements.scheme",
                           f"this relayer handles {' and '.join(sorted(self._by_name))}")
        return found


async def run_scheme(method: Any, *args: Any) -> Any:
    """Call a facilitator's ``verify``/``settle``: a coroutine function is awaited, a blocking one runs in a thread
    (x402's facilitator accepts both)."""
    if inspect.iscoroutinefunction(method):
        return await method(*args)
    return await asyncio.to_thread(method, *args)


def x402_dump(model: Any) -> dict:
    """An x402 answer's JSON: camelCase, nulls left out but ``invalidReason`` / ``errorReason`` of a refusal and the
    fields a model lists in ``always_present``."""
    data = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    if "isValid" in data:
        data.setdefault("invalidReason", None)
    if "success" in data and not data["success"]:
        data.setdefault("errorReason", None)
    for name in getattr(model, "always_present", ()):
        data.setdefault(name, None)
    return data


def check_facilitator(facilitator: Any) -> None:
    """TypeError unless ``facilitator`` has every member of x402's ``SchemeNetworkFacilitator`` protocol (not
    runtime-checkable: checked here by name)."""
    members = ("scheme", "caip_family", "get_extra", "get_signers", "verify", "settle")
    missing = [m for m in members if not hasattr(facilitator, m)]
    if missing:
        raise TypeError(f"{type(facilitator).__name__} is not an x402 SchemeNetworkFacilitator: no {missing}")
