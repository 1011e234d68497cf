"""Running a paid request on its backend, in a worker thread: to completion (non-streaming), or piece by piece into an
SSE stream whose delivery decides the charge.

Streaming (:class:`StreamRun`): the worker thread generates and pushes each text piece to the event loop; the HTTP
side counts a piece *delivered* once its chunk has been handed to the server (``send`` returned). When generation
ends, the worker waits until every piece is delivered or the client is gone, then charges: in full, or, if the
client left, only for the pieces delivered (each piece is at least one token, so this never over-charges; nothing
delivered, nothing charged). A client that leaves stops generation at the next token.

An ``exact`` stream is settled in full (the authorisation is for the quote) once its first piece is generated and
before that piece is sent (:meth:`StreamRun.settle_upfront`): streamed text cannot be withheld afterwards, so a payer
who cancels its authorisation or empties its wallet during generation gets a 402 and no text.

Receipts of a stream cut short commit to what was generated (``output``) with ``max_tokens`` = the tokens generated,
which a deterministic backend reproduces exactly; the charge is the delivered share of it (never more).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..inference import BackendError, Generation, canonical_request, generation_output_hash
from .catalog import Job
from .payments import Admission, Payments, Served

log = logging.getLogger("opg.node.engine")


class ModelFailed(Exception):
    """The backend failed; nothing is charged (502)."""


def budget_tokens(job: Job, cap: int) -> int:
    """The most output tokens the request's cap pays for (never above its max_tokens)."""
    pricing = job.model.pricing
    return max(0, min(job.params.max_tokens, pricing.max_output_tokens_within(cap, job.quote.prompt_tokens)))


def generate(job: Job, on_token: Callable[[str], bool | None] | None, metrics: Any) -> Generation:
    started = time.perf_counter()
    try:
        gen = job.model.backend.generate(job.messages, job.params, on_token)
    except BackendError as exc:
        metrics.model_errors.inc(1, job.model.name)
        raise ModelFailed(str(exc)) from exc
    except Exception as exc:  # a backend bug is a model failure too: the payer is not charged
        metrics.model_errors.inc(1, job.model.name)
        log.exception("backend %s failed", job.model.name)
        raise ModelFailed(f"{exc.__class__.__name__}: {exc}") from exc
    metrics.generation.observe(time.perf_counter() - started)
    metrics.tokens.inc(gen.prompt_tokens, "prompt")
    metrics.tokens.inc(gen.output_tokens, "output")
    return gen


def served(job: Job, gen: Generation, billed: int | None = None, cut_short: bool = False) -> Served:
    """What the receipt and payload commit to: the effective request, the text and (for a real model) the prompt and
    output token ids with the finish reason, inside ``outputHash`` (``offchain.inference.generation_output_hash``)."""
    params = job.params
    if cut_short and gen.output_tokens >= 1:
        params = params.model_copy(update={"max_tokens": gen.output_tokens})
    commitment, tokens = generation_output_hash(gen)
    return Served(request=canonical_request(job.model.name, job.messages, params), text=gen.text,
                  prompt_tokens=gen.prompt_tokens, output_tokens=gen.output_tokens,
                  billed_output_tokens=gen.output_tokens if billed is None else min(billed, gen.output_tokens),
                  finish_reason=gen.finish_reason, model_id=job.model.backend.model_id, tokens=tokens,
                  output_hash=commitment)


def run_to_completion(job: Job, adm: Admission, payments: Payments, metrics: Any) -> tuple[Generation, dict]:
    """Blocking: generate, then charge. ModelFailed: nothing charged."""
    try:
        gen = generate(job, None, metrics)
        return gen, payments.complete(adm, served(job, gen))
    except BaseException:
        payments.release(adm)  # nothing charged (a no-op once complete() charged)
        raise


class StreamRun:
    """One streaming request: the worker thread's side (``work``) and the event loop's (``next_event``,
    ``delivered_one``, ``close``). Events: ``("piece", text)``, ``("generated", Generation)``, ``("payment", dict)``,
    ``("error", message)``."""

    def __init__(self, job: Job, adm: Admission, payments: Payments, metrics: Any, loop: asyncio.AbstractEventLoop):
        self.job, self.adm, self.payments, self.metrics, self.loop = job, adm, payments, metrics, loop
        self.queue: asyncio.Queue = asyncio.Queue()
        self.cond = threading.Condition()
        self.pushed = 0
        self.delivered = 0
        self.gone = False  # the client left before the end
        self.finished = False  # the final chunk was sent
        self.budget = budget_tokens(job, adm.quote.cap)
        # exact streams are settled before their first piece leaves (``settle_upfront``): text already streamed
        # cannot be withheld if the transfer then fails (the payer cancels the authorisation, or empties its wallet)
        self.upfront = adm.upfront
        self.paid: dict | None = None
        self.settled = threading.Event()

    # Worker thread -----------------------------------------------------------------------------------------------
    def _push(self, event: tuple[str, Any]) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, event)
        except RuntimeError:  # the loop is gone (shutdown)
            with self.cond:
                self.gone = True

    def _on_token(self, piece: str) -> bool:
        with self.cond:
            if self.gone or self.pushed >= self.budget:  # the client left, or the cap is reached ("length")
                return False
            if not piece:
                return True
            self.pushed += 1
        self._push(("piece", piece))
        return True

    def work(self) -> None:
        """Runs in a worker thread: generate, wait for delivery, charge, push the payment (or the error)."""
        try:
            try:
                gen = generate(self.job, self._on_token, self.metrics)
            except ModelFailed as exc:
                self.payments.release(self.adm)
                self._push(("error", str(exc)))
                return
            self._push(("generated", gen))
            with self.cond:
                self.cond.wait_for(lambda: self.gone or self.delivered >= self.pushed)
                gone, delivered = self.gone, self.delivered
            if self.upfront:  # paid in full before the first piece (or refused, and then nothing was sent)
                if gone:
                    self.metrics.cancelled.inc()
                    return
                self.settled.wait()
                if self.paid is not None:
                    self._push(("payment", self.paid))
                return
            if gone:
                self.metrics.cancelled.inc()
                if delivered == 0:
                    self.payments.release(self.adm)
                    return
                self.payments.complete(self.adm, served(self.job, gen, billed=delivered, cut_short=True))
                return
            payment = self.payments.complete(self.adm, served(self.job, gen))
            self._push(("payment", payment))
        except Exception as exc:
            log.exception("streaming request failed")
            self.payments.release(self.adm)
            self._push(("error", f"{exc.__class__.__name__}: {exc}"))

    def settle_upfront(self) -> dict:
        """Blocking, before the first piece is sent: settle an ``exact`` payment (in full: the authorisation is for
        the quote). A failed settlement stops generation; the caller answers 402 and sends no text."""
        try:
            self.paid = self.payments.complete(self.adm, None)  # type: ignore[arg-type]  # exact needs no Served
        finally:
            self.settled.set()
        if not self.paid.get("success"):
            with self.cond:
                self.gone = True
                self.cond.notify_all()
        return self.paid

    # Event loop --------------------------------------------------------------------------------------------------
    async def next_event(self) -> tuple[str, Any]:
        return await self.queue.get()

    def delivered_one(self) -> None:
        with self.cond:
            self.delivered += 1
            self.cond.notify_all()

    def close(self, completed: bool) -> None:
        """The HTTP side is done: ``completed`` when the final chunk went out, else the client left."""
        with self.cond:
            self.finished = completed
            if not completed:
                self.gone = True
            self.cond.notify_all()
