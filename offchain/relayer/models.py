"""Pydantic models of the relayer's HTTP API (requests and answers).

Signed messages are the SDK's own models (``offchain.messages``) accepting their EIP-712 field names in camelCase
(``requestId``, ``maxCumulative``) as well as the SDK's snake_case serialisation.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ..messages import SignedReceipt, SignedVerdict, SignedVoucher
from ..types import Address, Bytes32, Signature, Uint256


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, alias_generator=to_camel,
                              serialize_by_alias=True)


class ReceiptIn(SignedReceipt):
    """A node's signed Receipt (NodeStaking EIP-712 domain)."""

    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)


class VoucherIn(SignedVoucher):
    """A payer's signed Voucher (CreditEscrow EIP-712 domain)."""

    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)


class VerdictIn(SignedVerdict):
    """A verifier's signed Verdict on a receipt's struct hash (NodeStaking EIP-712 domain)."""

    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True)


# POST /settle (opg-credit) ---------------------------------------------------------------------------------------
class SettleItem(ApiModel):
    """One receipt and the voucher it relies on."""

    receipt: ReceiptIn
    voucher: VoucherIn
    network: str | None = Field(None, description="optional CAIP-2 network the node signed for, e.g. eip155:31337")


class BulkSettle(ApiModel):
    receipts: list[SettleItem] = Field(description="up to max_bulk (default 1,000) items")
    network: str | None = None


class SettleAnswer(ApiModel):
    id: str = Field(description="the receipt id: its EIP-712 digest")
    status: Literal["pending", "settled", "rejected"]
    batch_id: int | None = None
    reason: str | None = None
    duplicate: bool = False


class BulkItemResult(ApiModel):
    index: int
    id: str | None = None
    status: str | None = None
    batch_id: int | None = None
    reason: str | None = None
    duplicate: bool | None = None
    error: str | None = None
    field: str | None = None


class BulkSettleAnswer(ApiModel):
    accepted: int = Field(description="items stored now or before (duplicates)")
    refused: int
    results: list[BulkItemResult]


class ErrorBody(BaseModel):
    error: str
    field: str | None
    reason: str


# Reads -----------------------------------------------------------------------------------------------------------
class ReceiptView(ApiModel):
    id: str
    status: str
    reason: str | None
    batch_id: int | None
    tx: str | None
    batch_status: str | None
    request_id: str
    payer: str
    node: str
    amount: str
    cumulative: str
    timestamp: int
    receipt_hash: str
    accepted_at: float
    settled_at: float | None


class ChannelView(ApiModel):
    payer: Address
    node: Address
    charged: str = Field(description="highest cumulative of an accepted receipt")
    settled: str = Field(description="paid on-chain (escrow.spent, read now)")
    settled_known: str = Field(description="paid on-chain as the relayer recorded it")
    voucher_cap: str = Field(description="the best voucher's maxCumulative")
    pending_receipts: int
    pending: list[dict[str, Any]]


class ClaimView(ApiModel):
    payer: str
    node: str
    max_cumulative: str
    signature: str
    total: str
    receipts: int
    outcome: int | None = None


class BatchView(ApiModel):
    id: int
    status: str
    receipts_root: str
    receipt_count: int
    claims: list[ClaimView] | None = None
    claim_count: int
    tx_hash: str | None = None
    nonce: int | None = None
    block_number: int | None = None
    gas_used: int | None = None
    gas_price: str | None = None
    settled_amount: str | None = None
    attempts: int
    error: str | None = None
    created_at: float
    sent_at: float | None = None
    confirmed_at: float | None = None
    transactions: list[str] | None = None


class SlashView(ApiModel):
    id: int
    kind: str
    evidence: str
    subject: str
    status: str
    tx_hash: str | None = None
    amount: str | None = None
    error: str | None = None
    created_at: float
    updated_at: float


class VerdictAnswer(ApiModel):
    receipt_hash: str
    verifier: str
    valid: bool
    stored: bool = Field(description="false if the same verdict was already stored")
    receipt_known: bool
    invalid_verdicts: int
    fraud_quorum_bps: int = Field(description="share of the live verifier weight (bps) that proves fraud or validity")


class LeaseHealth(ApiModel):
    """The sending lease (relayer.lease): this process's role, its instance id, the holder and epoch."""

    role: str = Field(description="leader (this process sends the transactions) or follower")
    instance: str
    holder: str | None = Field(description="the lease's holder as last read (None: nobody took it yet)")
    epoch: int = Field(description="the holder's fencing epoch (one more per change of holder)")


class Health(ApiModel):
    ok: bool
    chain_ok: bool
    store_ok: bool
    chain_id: int
    last_block: int | None
    pending_receipts: int
    inflight_batch: int | None
    relayer: str
    worker_alive: bool
    last_error: str | None
    lease: LeaseHealth


# The verifiers' feed, withholding reports and node views (routes/feed.py) ---------------------------------------
class FeedReceipt(ReceiptIn):
    """A node's signed Receipt with its EIP-712 (camelCase) field names, as the verifiers' feed serves it."""


class FeedItem(ApiModel):
    seq: int = Field(description="acceptance order; pass the last one seen as `after`")
    id: str = Field(description="the receipt id: its EIP-712 digest (NodeStaking domain)")
    receipt_hash: str = Field(description="the receipt's EIP-712 struct hash, what verdicts sign")
    receipt: dict[str, Any] = Field(description="the signed receipt: requestId, payer, node, modelId, inputHash, "
                                                "outputHash, amount, cumulative (decimal strings), timestamp, signature")
    accepted_at: float


class FeedPage(ApiModel):
    receipts: list[FeedItem]
    next: int = Field(description="the cursor for the next page (the last seq returned, or `after`)")


class WithholdingReport(ApiModel):
    """A verifier's signed report that the receipt's node withheld its payload."""

    receipt_hash: Bytes32 = Field(description="the receipt's struct hash")
    verifier: Address
    signature: Signature = Field(description="the verifier's PayloadWithheld(receiptHash, node) signature (not a "
                                             "verdict: never counted as a vote)")
    receipt: FeedReceipt | None = Field(None, description="the signed receipt, if the relayer may not hold it")
    reason: str | None = Field(None, max_length=200)


class WithholdingAnswer(ApiModel):
    receipt_hash: str
    node: str
    verifier: str
    stored: bool
    reports: int = Field(description="reports on this node so far")


class NodeView(ApiModel):
    address: str
    receipts: int = Field(description="receipts of the node accepted by this relayer")
    pending_receipts: int
    withheld: int = Field(description="distinct receipts verifiers reported withheld")
    withholding_reports: int
    slashes: int = Field(description="confirmed slashes of this account")
    slashed: str = Field(description="OPG (wei) taken by confirmed slashes")
    slashes_by_kind: dict[str, int] = Field(description="confirmed slashes per kind")
    slash_submissions: dict[str, int] = Field(description="slash submissions per status")


# Gasless deposits (deposits.py, routes/deposits.py) ----------------------------------------------------------------
class DepositAuthorization(ApiModel):
    """EIP-3009 ``ReceiveWithAuthorization`` fields (OPG domain), x402's naming."""

    from_: Address = Field(alias="from", description="the payer (token owner and signer)")
    to: Address = Field(description="must be the CreditEscrow")
    value: Uint256 = Field(description="OPG amount in wei")
    valid_after: Uint256
    valid_before: Uint256
    nonce: Bytes32


class DepositIn(ApiModel):
    authorization: DepositAuthorization
    signature: Signature


class DepositAnswer(ApiModel):
    success: bool
    status: str = Field(description="confirmed | pending")
    transaction: str
    payer: Address
    amount: str
    balance: str | None = Field(None, description="the payer's escrow credits after the deposit")
