"""``paymentPayload.payload`` of ``opg-credit``: the payer's signed cumulative Voucher (CreditEscrow EIP-712 domain),
and on the relayer's ``/settle`` the node's signed Receipt next to it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ...messages import SignedVoucher, Voucher
from ...sdk.wire import WireReceipt
from ...types import Signature
from ..registry import registry

SCHEME = "opg-credit"


class VoucherFields(Voucher):
    """The Voucher's fields (``payer``, ``node``, ``maxCumulative``)."""

    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)


class CreditPayload(BaseModel):
    """``paymentPayload.payload`` of the opg-credit scheme."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel,
                              serialize_by_alias=True)

    voucher: VoucherFields
    signature: Signature
    receipt: WireReceipt | None = Field(None, description="the node's signed receipt (the relayer's POST /settle "
                                                             "only)")

    def signed_voucher(self) -> SignedVoucher:
        v = self.voucher
        return SignedVoucher(payer=v.payer, node=v.node, max_cumulative=v.max_cumulative, signature=self.signature)


registry.declare(SCHEME, CreditPayload)
