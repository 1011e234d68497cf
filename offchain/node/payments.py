"""Payment for one request: the scheme-independent part. Every scheme's node side is a server registered in
``offchain.schemes`` (``opg-credit``: ``schemes/credit/server.py``; ``exact``: ``schemes/exact/server.py``); this
module iterates them for the 402 offer, checks what every scheme shares (x402 version, network, asset, payTo), hands
admission to the server of the payload's scheme and ends the admission through the server that admitted it.

A server receives a :class:`NodeContext` (the node's key, deployment addresses, chain view, relayer client, store,
channels, limits, metrics) and answers ``requirement(quote, charged)``, ``admit(quote, payload)``,
``confirm(admission)`` (joins a check left running with the model), ``complete(admission, served)`` and
``release(admission)``; its ``upfront`` says whether a stream is settled before its first piece leaves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from pydantic import ValidationError
from x402.schemas import AssetAmount, PaymentPayload, PaymentRequirements

from ..messages import Domain
from ..schemes import registry
from ..sdk.relayer_client import RelayerClient
from .chainview import ChainView
from .channels import Channels
from .store import NodeStore
from .x402 import MAX_TIMEOUT_SECONDS, Offer, PaymentRefused, Quote, decode_payment

log = logging.getLogger("opg.node.payments")


@dataclass
class Admission:
    """A request whose payment was accepted; exactly one of ``complete`` / ``release`` ends it. Schemes subclass it
    with what their charge needs."""

    scheme: str
    payer: str
    quote: Quote
    upfront: bool = False  # settled before a stream's first piece leaves (exact)
    done: bool = field(default=False)
    pending: Future | None = None  # a check running while the model does, joined by ``confirm``


@dataclass
class Served:
    """What the model did for an admitted request."""

    request: dict  # the canonical request the receipt's inputHash commits to
    text: str
    prompt_tokens: int
    output_tokens: int  # generated
    billed_output_tokens: int  # charged (fewer when the client left mid-stream)
    finish_reason: str
    model_id: str
    tokens: dict | None = None  # {promptIds, outputIds, finishReason}: committed in outputHash (offchain.inference)
    output_hash: str | None = None  # the receipt's outputHash (None: keccak of the text alone)


@dataclass
class NodeContext:
    """What a scheme's node side may use."""

    account: LocalAccount
    network: str
    offer: Offer
    chain: ChainView
    relayer: RelayerClient
    store: NodeStore
    channels: Channels
    escrow_domain: Domain
    staking_domain: Domain
    max_unsettled: int
    require_relayer: bool
    metrics: Any
    on_receipt: Callable[[str], None]  # a receipt (its id) was committed
    on_exact_settled: Callable[[str], None]  # the relayer made an exact transfer (its key), not yet recorded

    @property
    def node(self) -> str:
        return self.account.address


class SchemeServer:
    """Base of a scheme's node side (x402's ``SchemeNetworkServer``: ``scheme``, ``parse_price``,
    ``enhance_payment_requirements``) plus admission and charge."""

    scheme: str = ""
    upfront: bool = False

    def __init__(self, ctx: NodeContext):
        self.ctx = ctx

    # x402 SchemeNetworkServer ----------------------------------------------------------------------------------
    def parse_price(self, price: Any, network: str) -> AssetAmount:
        """A price in OPG wei (int or decimal string) as x402's AssetAmount of this node's OPG."""
        if isinstance(price, AssetAmount):
            return price
        return AssetAmount(amount=str(int(price)), asset=self.ctx.offer.asset)

    def enhance_payment_requirements(self, requirements: PaymentRequirements, supported_kind: Any,
                                     extensions: list[str]) -> PaymentRequirements:
        return requirements

    # Offer -----------------------------------------------------------------------------------------------------
    def base_requirement(self, quote: Quote, extra: dict) -> PaymentRequirements:
        price = self.parse_price(quote.cap, self.ctx.network)
        return PaymentRequirements(scheme=self.scheme, network=self.ctx.network, asset=price.asset,
                                   amount=price.amount, pay_to=self.ctx.node, max_timeout_seconds=MAX_TIMEOUT_SECONDS,
                                   extra=extra)

    def requirement(self, quote: Quote, charged: int) -> PaymentRequirements:
        raise NotImplementedError

    def parse(self, payload: PaymentPayload, payer: str | None = None) -> Any:
        """``payload.payload`` as this scheme's model; PaymentRefused ``invalid_payment`` naming the field if not."""
        try:
            return registry.parse(self.scheme, payload.payload)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            what = "missing" if first.get("type") == "missing" else first.get("msg", "invalid")
            raise PaymentRefused("invalid_payment", f"payload.{where}: {what} ({self.scheme} payload)",
                                 payer) from None

    @staticmethod
    def relayer_body(payload: PaymentPayload, requirement: PaymentRequirements) -> dict:
        """An x402 ``/verify`` or ``/settle`` body for ``payload`` against ``requirement``."""
        req = requirement.model_dump(mode="json", by_alias=True)
        return {"x402Version": 2,
                "paymentPayload": {**payload.model_dump(mode="json", by_alias=True, exclude_none=True),
                                   "accepted": req},
                "paymentRequirements": req}

    # Admission and charge --------------------------------------------------------------------------------------
    def admit(self, quote: Quote, payload: PaymentPayload) -> Admission:
        raise NotImplementedError

    def confirm(self, adm: Admission) -> None:
        """Blocking, before anything is charged or streamed: the end of an admission check left running while the
        model ran (PaymentRefused / ApiError if it failed). Nothing to wait for unless the scheme defers one."""

    def complete(self, adm: Admission, served: Served | None) -> dict:
        raise NotImplementedError

    def release(self, adm: Admission) -> None:
        adm.done = True


class Payments:
    def __init__(self, *, account: LocalAccount, network: str, offer: Offer, chain: ChainView, relayer: RelayerClient,
                 store: NodeStore, channels: Channels, escrow_domain: Domain, staking_domain: Domain,
                 max_unsettled: int, require_relayer: bool, metrics: Any, on_receipt: Any = None,
                 on_exact_settled: Any = None):
        self.ctx = NodeContext(account=account, network=network, offer=offer, chain=chain, relayer=relayer,
                               store=store, channels=channels, escrow_domain=escrow_domain,
                               staking_domain=staking_domain, max_unsettled=max_unsettled,
                               require_relayer=require_relayer, metrics=metrics,
                               on_receipt=on_receipt or (lambda rid: None),
                               on_exact_settled=on_exact_settled or (lambda key: None))
        self.node, self.network, self.offer, self.channels = account.address, network, offer, channels
        self.metrics = metrics
        # every registered scheme with a node side, in preference order
        self.servers: dict[str, SchemeServer] = {name: cls(self.ctx) for name, cls in registry.servers()}

    # Challenge ---------------------------------------------------------------------------------------------------
    def charged_for(self, payer: str | None) -> int:
        """A channel's cumulative charge plus the caps in flight (0 for an unknown payer)."""
        if not payer:
            return 0
        channel = self.channels.peek(payer)
        return channel.charged if channel is not None else 0

    def requirements(self, quote: Quote, payer: str | None) -> list[PaymentRequirements]:
        charged = self.charged_for(payer)
        return [server.requirement(quote, charged) for server in self.servers.values()]

    def challenge(self, quote: Quote, payer: str | None, error: str, reason: str) -> dict:
        self.metrics.payment_required.inc(1, error)
        return self.offer.challenge(quote, self.requirements(quote, payer), error, reason)

    # Admission ---------------------------------------------------------------------------------------------------
    def admit(self, quote: Quote, header: str | None) -> Admission:
        """Blocking (chain and relayer calls). PaymentRefused -> 402; ApiError(503) if the relayer is required."""
        names = " or ".join(self.servers)
        if header is None or not header.strip():
            raise PaymentRefused("payment_required", "this request costs at most "
                                 f"{quote.cap} wei of OPG: pay with {names} (PAYMENT-SIGNATURE header)")
        payload = decode_payment(header)
        accepted = payload.accepted
        server = self.servers.get(accepted.scheme)
        if server is None:
            raise PaymentRefused("unsupported_scheme", f"this node accepts {' and '.join(self.servers)}, "
                                 f"not {accepted.scheme!r}")
        if accepted.network != self.network:
            raise PaymentRefused("network_mismatch", f"this node is paid on {self.network}, not {accepted.network}")
        if accepted.asset.lower() != self.offer.asset.lower():
            raise PaymentRefused("asset_mismatch", f"the asset is OPG {self.offer.asset}, not {accepted.asset}")
        if accepted.pay_to.lower() != self.node.lower():
            raise PaymentRefused("recipient_mismatch", f"payTo must be this node {self.node}, not {accepted.pay_to}")
        return server.admit(quote, payload)

    def confirm(self, adm: Admission) -> None:
        """Blocking: wait for what the admission's scheme checks while the model runs (PaymentRefused -> 402)."""
        self.servers[adm.scheme].confirm(adm)

    # Ending ------------------------------------------------------------------------------------------------------
    def release(self, adm: Admission) -> None:
        """Nothing is charged (the model failed, or nothing was delivered)."""
        if adm.done:
            return
        self.servers[adm.scheme].release(adm)
        adm.done = True

    def complete(self, adm: Admission, served: Served | None) -> dict:
        """Charge for ``served``; returns the payment result (``x_opg_payment`` / PAYMENT-RESPONSE). Blocking."""
        if adm.done:
            raise RuntimeError("payment already ended")
        return self.servers[adm.scheme].complete(adm, served)
