"""Checking submitted receipts without the chain: shape, amounts, timestamp, the node's signature and the voucher's.

These are pure functions of a ``CheckContext`` so that large bulk submissions can be checked in worker processes
(``check_bulk``), in parallel with the HTTP thread; what needs the chain (is the node active, is a session key's voucher
signature in force) is left to the caller.
"""

from __future__ import annotations

import enum
import multiprocessing
import os
import threading
import time
from collections.abc import Container
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import pydantic_core
from pydantic import ValidationError

from ..daemon.errors import ApiError, from_validation_error
from ..messages import Domain, InvalidSignature, SignedReceipt, SignedVoucher, recover_signer
from .models import SettleItem
from .store import ValidReceipt

RECEIPT_FIELDS = tuple(SignedReceipt.model_fields)
VOUCHER_FIELDS = tuple(SignedVoucher.model_fields)


class Slashable(enum.Enum):
    """Why a refused receipt is one no honest node signs, so its signer is slashed (``slash_invalid_receipt``)."""

    AMOUNT_ABOVE_CUMULATIVE = "amount_above_cumulative"  # amount > cumulative
    FUTURE_DATED = "future_dated"  # dated beyond the clock skew (the chain judges it against MAX_FUTURE)


class Refusal(ApiError):
    """A refused receipt item: an ApiError that may be slashable evidence (``slashable``)."""

    def __init__(self, status: int, error: str, field: str | None, reason: str, slashable: Slashable | None = None):
        super().__init__(status, error, field, reason)
        self.slashable = slashable


@dataclass(frozen=True)
class CheckContext:
    network: str
    escrow_domain: Domain
    staking_domain: Domain
    clock_skew: int
    max_age: int  # min(max_receipt_age, dispute_window): older receipts are refused


@dataclass
class Checked:
    """A receipt item past its local checks, with what is still to be asked of the chain."""

    index: int
    prefix: str
    valid: ValidReceipt
    voucher_digest: bytes
    voucher_ok: bool  # signed by the payer itself (or known good); otherwise ask escrow.signer_of (session key)
    voucher_signer: str = ""  # the recovered signer of the voucher


def check_item(raw: Any, index: int, prefix: str, ctx: CheckContext, now: float,
               known_vouchers: Container | None = None) -> Checked | ApiError:
    """Every check of one ``{receipt, voucher}`` item that needs no chain read; ``prefix`` names it in errors."""
    try:
        item = SettleItem.model_validate(raw)
    except ValidationError as exc:
        return from_validation_error(exc, prefix.rstrip("."))
    if item.network is not None and item.network != ctx.network:
        return ApiError(400, "wrong_network", f"{prefix}network", f"this relayer settles on {ctx.network}")
    r, v = item.receipt, item.voucher
    if r.payer != v.payer:
        return ApiError(400, "payer_mismatch", f"{prefix}receipt.payer", "must equal voucher.payer")
    if r.node != v.node:
        return ApiError(400, "node_mismatch", f"{prefix}receipt.node", "must equal voucher.node")
    if r.amount == 0:
        return ApiError(400, "invalid_amount", f"{prefix}receipt.amount", "must be greater than 0")
    if r.amount > r.cumulative:
        return Refusal(400, "invalid_amount", f"{prefix}receipt.amount", "must not exceed receipt.cumulative",
                       Slashable.AMOUNT_ABOVE_CUMULATIVE)
    if r.cumulative > v.max_cumulative:
        return ApiError(400, "cap_exceeded", f"{prefix}receipt.cumulative",
                        f"cumulative {r.cumulative} exceeds the voucher's maxCumulative {v.max_cumulative}")
    if r.timestamp > now + ctx.clock_skew:
        return Refusal(400, "invalid_timestamp", f"{prefix}receipt.timestamp", "is in the future",
                       Slashable.FUTURE_DATED)
    if r.timestamp + ctx.max_age < now:
        return ApiError(400, "invalid_timestamp", f"{prefix}receipt.timestamp",
                        f"is more than {ctx.max_age} s old: a backdated receipt would escape its dispute window")
    struct_hash = r.struct_hash()
    digest = r.fast_digest(ctx.staking_domain)
    try:
        signer = recover_signer(digest, r.signature)
    except InvalidSignature as exc:
        return ApiError(400, "invalid_signature", f"{prefix}receipt.signature", str(exc))
    if signer != r.node:
        return ApiError(400, "invalid_signature", f"{prefix}receipt.signature",
                        f"not the node's signature over this deployment's NodeStaking domain (chainId "
                        f"{ctx.staking_domain.chain_id}, {ctx.staking_domain.verifying_contract}): signed for "
                        f"another chain or contract, or by another key")
    vdigest = v.fast_digest(ctx.escrow_domain)
    voucher_ok = known_vouchers is not None and (vdigest, v.signature) in known_vouchers
    vsigner = v.payer
    if not voucher_ok:
        try:
            vsigner = recover_signer(vdigest, v.signature)
        except InvalidSignature as exc:
            return ApiError(400, "invalid_signature", f"{prefix}voucher.signature", str(exc))
        voucher_ok = vsigner == v.payer
    valid = ValidReceipt(id="0x" + digest.hex(), struct_hash="0x" + struct_hash.hex(), receipt=r, voucher=v,
                         voucher_signer=vsigner)
    return Checked(index, prefix, valid, vdigest, voucher_ok, vsigner)


# Worker processes ------------------------------------------------------------------------------------------------
_context: CheckContext | None = None
_known_vouchers: dict[tuple[bytes, str], bool] = {}  # voucher signatures this worker found to be the payer's
_KNOWN_MAX = 50_000


def init_worker(ctx: CheckContext, parent: int) -> None:
    global _context
    from .keccak import use_fast_keccak

    use_fast_keccak()
    _context = ctx
    threading.Thread(target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A worker outlives a relayer killed with SIGKILL otherwise (its queue never reports EOF)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def warm_up() -> bool:
    return _context is not None


class ValidationPool:
    """Processes checking large bulk submissions (``workers`` 0: none, all checks in the HTTP process); started
    with the relayer's workers, stopped with them."""

    def __init__(self, workers: int, ctx: CheckContext):
        self.workers, self.ctx = workers, ctx
        self.executor: ProcessPoolExecutor | None = None

    def start(self) -> None:
        if self.workers and self.executor is None:
            self.executor = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=init_worker, initargs=(self.ctx, os.getpid()))
            for _ in range(self.workers):  # start them now, without waiting for them
                self.executor.submit(warm_up)

    def stop(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None


def check_bulk(body: bytes, now: float) -> list[tuple]:
    """Check every item of a bulk body (``{"receipts": [...]}``) in a worker; compact picklable answers."""
    assert _context is not None, "init_worker was not run"
    items = pydantic_core.from_json(body)["receipts"]
    out: list[tuple] = []
    for i, raw in enumerate(items):
        res = check_item(raw, i, f"receipts[{i}].", _context, now, _known_vouchers)
        if isinstance(res, Checked) and res.voucher_ok:
            if len(_known_vouchers) >= _KNOWN_MAX:
                _known_vouchers.clear()
            _known_vouchers[(res.voucher_digest, res.valid.voucher.signature)] = True
        if isinstance(res, ApiError):
            slashable = getattr(res, "slashable", None)
            out.append((False, res.status, res.error, res.field, res.reason, slashable.value if slashable else None))
        else:
            r, v = res.valid.receipt, res.valid.voucher
            out.append((True, res.valid.id, res.valid.struct_hash, tuple(getattr(r, f) for f in RECEIPT_FIELDS),
                        tuple(getattr(v, f) for f in VOUCHER_FIELDS), res.voucher_digest, res.voucher_ok,
                        res.voucher_signer))
    return out


def unpack(index: int, answer: tuple) -> Checked | ApiError:
    """The main process's view of one ``check_bulk`` answer."""
    if not answer[0]:
        status, error, field, reason, slashable = answer[1:]
        return Refusal(status, error, field, reason, Slashable(slashable) if slashable else None)
    _ok, rid, struct_hash, rvalues, vvalues, vdigest, voucher_ok, vsigner = answer
    receipt = SignedReceipt.model_construct(**dict(zip(RECEIPT_FIELDS, rvalues, strict=True)))
    voucher = SignedVoucher.model_construct(**dict(zip(VOUCHER_FIELDS, vvalues, strict=True)))
    return Checked(index, f"receipts[{index}].", ValidReceipt(rid, struct_hash, receipt, voucher, vsigner), vdigest,
                   voucher_ok, vsigner)
