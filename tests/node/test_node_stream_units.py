"""The streaming charge rule in process (``offchain.node.engine.StreamRun``), with the builtin model and a recording
stand-in for the payments: a client that leaves before any piece is delivered pays nothing; one that leaves after
``k`` pieces pays for ``k`` output tokens, with a receipt request reproducible by re-running with the tokens
generated; a client that stays pays for everything; generation never passes the cap."""

from __future__ import annotations

import asyncio

from offchain.backends import BuiltinBackend
from offchain.inference import ChatMessage, GenParams, Pricing
from offchain.node.catalog import Job, ServedModel
from offchain.node.engine import StreamRun
from offchain.node.metrics import NodeMetrics
from offchain.node.payments import Admission
from offchain.node.x402 import Quote

PRICING = Pricing(base=100, per_prompt_token=1, per_output_token=10)


class Recorder:
    def __init__(self):
        self.completed, self.released = [], 0

    def complete(self, adm, served):
        self.completed.append(served)
        return {"success": True, "cost": str(PRICING.cost(served.prompt_tokens, served.billed_output_tokens))}

    def release(self, adm):
        self.released += 1


def Adm(cap: int) -> Admission:  # noqa: N802 - an admitted opg-credit request of this cap
    return Admission(scheme="opg-credit", payer="0x" + "00" * 20,
                     quote=Quote(model="slow", prompt_tokens=0, max_tokens=0, cap=cap, pricing=PRICING, url="",
                                 stream=True))


def job(max_tokens: int = 40, prompt: str = "Explain settlement in detail, take 3") -> Job:
    backend = BuiltinBackend(name="slow", token_delay=0.01)
    messages = [ChatMessage(role="user", content=prompt)]
    params = GenParams(max_tokens=max_tokens)
    prompt_tokens = backend.count_prompt_tokens(messages)
    cap = PRICING.cap(prompt_tokens, max_tokens)
    quote = Quote(model="slow", prompt_tokens=prompt_tokens, max_tokens=max_tokens, cap=cap, pricing=PRICING, url="",
                  stream=True)
    return Job(model=ServedModel("slow", backend, PRICING), messages=messages, params=params, quote=quote)


async def drive(j: Job, deliver: int | None) -> tuple[Recorder, list]:
    """Run a stream; the 'client' takes ``deliver`` pieces then leaves (None: stays to the end)."""
    payments = Recorder()
    adm = Adm(j.quote.cap)
    run = StreamRun(j, adm, payments, NodeMetrics(), asyncio.get_running_loop())
    worker = asyncio.get_running_loop().run_in_executor(None, run.work)
    events = []
    while True:
        if deliver is not None and sum(1 for e in events if e[0] == "piece") >= deliver:
            run.close(False)
            break
        kind, value = await run.next_event()
        events.append((kind, value))
        if kind == "piece":
            run.delivered_one()
        if kind in ("payment", "error"):
            run.close(True)
            break
    await worker
    return payments, events


def test_a_client_gone_before_any_piece_is_delivered_pays_nothing():
    payments, _ = asyncio.run(drive(job(), 0))
    assert payments.completed == [] and payments.released == 1


def test_a_client_gone_after_k_pieces_pays_for_k_tokens_of_a_reproducible_receipt():
    j = job()
    payments, _ = asyncio.run(drive(j, 3))
    [served] = payments.completed
    assert served.billed_output_tokens == 3 and 3 <= served.output_tokens < 40
    assert served.request["params"]["max_tokens"] == served.output_tokens
    rerun = j.model.backend.generate(j.messages, GenParams(max_tokens=served.output_tokens))
    assert rerun.text == served.text and rerun.output_tokens == served.output_tokens


def test_a_client_that_stays_pays_for_the_whole_answer():
    j = job()
    payments, events = asyncio.run(drive(j, None))
    [served] = payments.completed
    full = j.model.backend.generate(j.messages, j.params)
    assert served.billed_output_tokens == full.output_tokens and served.text == full.text
    assert served.request["params"]["max_tokens"] == 40
    assert "".join(v for k, v in events if k == "piece") == full.text and events[-1][0] == "payment"


def test_generation_stops_at_the_cap():
    j = job(max_tokens=5)
    payments, events = asyncio.run(drive(j, None))
    [served] = payments.completed
    assert served.output_tokens == 5 and served.finish_reason == "length"
    assert sum(1 for k, _ in events if k == "piece") == 5
