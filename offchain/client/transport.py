"""httpx transports that pay automatically: a ``402 Payment Required`` from an OPG node is answered with a voucher
(``opg-credit``, preferred) or, if allowed, an EIP-3009 authorisation (``exact``), and the request is sent again.

    import openai
    from offchain.client import Payer, payment_http_client

    payer = Payer.from_key(key, "deployments/31337.json", relayer_url=relayer, state="~/.opg")
    ai = openai.OpenAI(base_url=node + "/v1", api_key="unused", http_client=payment_http_client(payer))
    ai.chat.completions.create(model="builtin", messages=[...])          # streaming works too

Every request carries ``X-OPG-Payer`` so the node's 402 quotes the channel's current charge. After a paid answer the
node's receipt (``PAYMENT-RESPONSE`` header, ``x_opg_payment`` in the JSON body or in the last SSE chunk of a stream)
is checked by the :class:`~offchain.client.payer.Payer`; ``response.extensions["opg_payment"]`` is a
:class:`PaymentTicket` whose ``outcome`` (a :class:`~offchain.client.payer.PaymentOutcome`) is set once the receipt
has been seen (at once for JSON answers, when the last chunk passes for streams). A payment the client refuses
(over-charging node, quote above your limit, a node's unexplained claim) is answered locally with a 402 whose JSON
body ``{"error": {"message", "type", "code"}}`` says why, which the openai package raises as ``APIStatusError``.

Paying with the first request: a transport remembers the requirement it paid for each request (URL and body), and
when the same request is sent again it pays with the first attempt (x402 lets a client pay upfront), if that scheme's
client allows it (``reuse_quote``: ``opg-credit``, whose voucher is signed against the local channel view, not the
old quote's ``extra.charged``). The node's 402 is then a cache miss (answered ``Cache-Control: no-store``): the
remembered quote is dropped and the fresh one paid, as on a first request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from typing import Any

import httpx

from .payer import PAYER_HEADER, Payer, PaymentOutcome, PaymentRefused, Reservation, decode_b64_json

log = logging.getLogger("opg.client.transport")

PAYMENT_REQUIRED = "payment-required"
PAYMENT_SIGNATURE = "PAYMENT-SIGNATURE"
PAYMENT_RESPONSE = ("payment-response", "x-payment-response")
_HOP_HEADERS = {"content-length", "content-encoding", "transfer-encoding"}
MAX_QUOTES = 256  # remembered requirements per transport (one per distinct request)


class PaymentTicket:
    """Attached to a paid response as ``response.extensions["opg_payment"]``."""

    def __init__(self, reservation: Reservation):
        self.reservation = reservation
        self.outcome: PaymentOutcome | None = None
        self._done = threading.Event()

    def _finish(self, outcome: PaymentOutcome) -> None:
        self.outcome = outcome
        self._done.set()

    def wait(self, timeout: float | None = None) -> PaymentOutcome | None:
        self._done.wait(timeout)
        return self.outcome


def payment_required_of(response: httpx.Response) -> dict | None:
    """The x402 ``PaymentRequired`` of a 402 (header first, then the JSON body), or None. The body must be read."""
    header = response.headers.get(PAYMENT_REQUIRED)
    if header:
        try:
            return decode_b64_json(header)
        except ValueError:
            pass
    try:
        body = json.loads(response.content)
    except (ValueError, httpx.ResponseNotRead):
        return None
    return body if isinstance(body, dict) and isinstance(body.get("accepts"), list) else None


def payment_response_of(headers: httpx.Headers, body: Any = None) -> dict | None:
    """The node's payment response: ``PAYMENT-RESPONSE`` header, else ``x_opg_payment`` of the JSON body."""
    for name in PAYMENT_RESPONSE:
        value = headers.get(name)
        if value:
            try:
                return decode_b64_json(value)
            except ValueError:
                pass
    if isinstance(body, dict) and isinstance(body.get("x_opg_payment"), dict):
        return body["x_opg_payment"]
    return None


def _request_json(request: httpx.Request) -> dict | None:
    try:
        data = json.loads(request.content or b"null")
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _origin(request: httpx.Request) -> str:
    url = request.url
    return f"{url.scheme}://{url.netloc.decode()}"


def _refusal(exc: PaymentRefused) -> httpx.Response:
    body = {"error": {"message": f"opg client refused to pay: {exc}", "type": "payment_refused", "code": exc.code}}
    return httpx.Response(402, json=body, headers={"x-opg-client-refusal": exc.code},
                          extensions={"opg_refusal": exc})


class _SSETracker:
    """Reads an SSE stream of chat.completion.chunk objects as it passes: the text and the final payment chunk."""

    def __init__(self, flow: _Flow, reservation: Reservation, request: httpx.Request, ticket: PaymentTicket):
        self.flow, self.res, self.request, self.ticket = flow, reservation, request, ticket
        self._buf = b""
        self.parts: list[str] = []
        self.payment: dict | None = None
        self.usage: dict | None = None
        self.finish: str | None = None
        self.done = False

    def feed(self, chunk: bytes) -> None:
        if self.done:
            return
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                self.close()
                return
            try:
                obj = json.loads(data)
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            for choice in obj.get("choices") or []:
                delta = (choice or {}).get("delta") or {}
                if isinstance(delta.get("content"), str):
                    self.parts.append(delta["content"])
                if choice.get("finish_reason"):
                    self.finish = choice["finish_reason"]
            if obj.get("usage"):
                self.usage = obj["usage"]
            if isinstance(obj.get("x_opg_payment"), dict):
                self.payment = obj["x_opg_payment"]
                self.close()
                return

    def close(self) -> None:
        if self.done:
            return
        self.done = True
        self.ticket._finish(self.flow.complete(self.res, self.payment, self.request, "".join(self.parts),
                                               self.usage, self.finish))


class _TrackedStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, tracker: _SSETracker):
        self.inner, self.tracker = inner, tracker

    def __iter__(self):
        for chunk in self.inner:
            self.tracker.feed(chunk)
            yield chunk
        self.tracker.close()

    def close(self) -> None:
        try:
            self.tracker.close()
        finally:
            self.inner.close()


class _AsyncTrackedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, tracker: _SSETracker):
        self.inner, self.tracker = inner, tracker

    async def __aiter__(self):
        async for chunk in self.inner:
            self.tracker.feed(chunk)
            yield chunk
        self.tracker.close()

    async def aclose(self) -> None:
        try:
            self.tracker.close()
        finally:
            await self.inner.aclose()


class _Flow:
    """The payment logic shared by the sync and async transports (no I/O of its own)."""

    def __init__(self, payer: Payer, allow_exact: bool, max_attempts: int, schemes: tuple[str, ...] | None = None):
        self.payer, self.allow_exact, self.max_attempts = payer, allow_exact, max_attempts
        self.schemes = tuple(schemes) if schemes else None
        self._quotes: OrderedDict[tuple[str, bytes], tuple[dict, dict | None]] = OrderedDict()
        self._quotes_lock = threading.Lock()

    # The node's quote of a request, for paying it with the first attempt next time -----------------------------
    @staticmethod
    def _quote_key(request: httpx.Request) -> tuple[str, bytes]:
        return str(request.url), hashlib.blake2b(request.content, digest_size=16).digest()

    def remember(self, request: httpx.Request, requirement: dict, resource: dict | None) -> None:
        client = self.payer.schemes.get(str(requirement.get("scheme")))
        if not getattr(client, "reuse_quote", False):
            return
        with self._quotes_lock:
            self._quotes[self._quote_key(request)] = (requirement, resource)
            while len(self._quotes) > MAX_QUOTES:
                self._quotes.popitem(last=False)

    def forget(self, request: httpx.Request) -> None:
        with self._quotes_lock:
            self._quotes.pop(self._quote_key(request), None)

    def prepaid(self, request: httpx.Request) -> Reservation | None:
        """A payment for ``request`` from the node's last quote of the same request, or None (none known, or this
        client will not pay it now: then the node's own 402 decides, as on a first request)."""
        with self._quotes_lock:
            entry = self._quotes.get(self._quote_key(request))
        if entry is None:
            return None
        try:
            return self.payer.prepare(entry[0], entry[1])
        except PaymentRefused:
            self.forget(request)
            return None

    def send_args(self, request: httpx.Request, res: Reservation | None) -> httpx.Request:
        return self.first(request) if res is None else self.paid(request, res)

    def first(self, request: httpx.Request) -> httpx.Request:
        headers = httpx.Headers(request.headers)
        headers.setdefault(PAYER_HEADER, self.payer.address)
        return httpx.Request(request.method, request.url, headers=headers, content=request.content,
                             extensions=request.extensions)

    def paid(self, request: httpx.Request, res: Reservation) -> httpx.Request:
        headers = httpx.Headers(request.headers)
        headers[PAYMENT_SIGNATURE] = res.header()
        headers.setdefault(PAYER_HEADER, self.payer.address)
        return httpx.Request(request.method, request.url, headers=headers, content=request.content,
                             extensions=request.extensions)

    def reserve(self, response: httpx.Response, window: tuple[float, float] | None = None,
                retry_of: Reservation | None = None,
                request: httpx.Request | None = None) -> Reservation | httpx.Response | None:
        """What to do with a (read) 402: a reservation to pay it, a local refusal, or None (pass the 402 on).
        ``window``: when the request that drew it was sent and when the 402 arrived; ``retry_of``: the payment
        it refused, if any (``Payer.prepare``)."""
        required = payment_required_of(response)
        if not required:
            return None
        try:
            requirement = self.payer.choose(required.get("accepts") or [], self.allow_exact, self.schemes)
            if requirement is None:
                return None
            res = self.payer.prepare(requirement, required.get("resource"), window=window, retry_of=retry_of)
            if request is not None:
                self.remember(request, requirement, required.get("resource"))
            return res
        except PaymentRefused as exc:
            log.warning("%s", exc)
            return _refusal(exc)

    def after(self, res: Reservation, response: httpx.Response) -> None:
        """A paid attempt answered with an error status: 402 = refused (nothing served), else nothing known."""
        if response.status_code == 402:
            self.payer.rejected(res)
        elif 400 <= response.status_code < 500:
            self.payer.rejected(res)
        else:
            self.payer.abandon(res)

    def complete(self, res: Reservation, payment: dict | None, request: httpx.Request, answer: str | None,
                 usage: dict | None, finish: str | None) -> PaymentOutcome:
        return self.payer.complete(res, payment, request=_request_json(request), answer=answer,
                                   node_url=_origin(request), usage=usage, finish_reason=finish)

    def finish_json(self, res: Reservation, request: httpx.Request, response: httpx.Response,
                    body: bytes) -> httpx.Response:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        answer = usage = finish = None
        if isinstance(data, dict):
            choices = data.get("choices") or []
            if choices and isinstance(choices[0], dict):
                answer = (choices[0].get("message") or {}).get("content")
                finish = choices[0].get("finish_reason")
            usage = data.get("usage")
        ticket = PaymentTicket(res)
        ticket._finish(self.complete(res, payment_response_of(response.headers, data), request, answer, usage, finish))
        headers = [(k, v) for k, v in response.headers.multi_items() if k.lower() not in _HOP_HEADERS]
        return httpx.Response(response.status_code, headers=headers, content=body,
                              extensions={**response.extensions, "opg_payment": ticket})

    def finish_stream(self, res: Reservation, request: httpx.Request, response: httpx.Response,
                      asynchronous: bool) -> httpx.Response:
        ticket = PaymentTicket(res)
        tracker = _SSETracker(self, res, request, ticket)
        stream = (_AsyncTrackedStream(response.stream, tracker) if asynchronous
                  else _TrackedStream(response.stream, tracker))
        return httpx.Response(response.status_code, headers=response.headers, stream=stream,
                              extensions={**response.extensions, "opg_payment": ticket})


#: 402 errors after a payment that a fresh voucher can fix (the node's quote of the channel moved on)
RETRYABLE = {"cap_exceeded", "stale_voucher", "payment_required"}


def _retryable(response: httpx.Response, prepaid: bool = False) -> bool:
    """Whether a 402 answering a paid attempt is worth paying again (read first): any fresh quote after a payment
    made from a remembered one (a cache miss), else a quote of the channel that moved on."""
    required = payment_required_of(response)
    return bool(required) and (prepaid or required.get("error") in RETRYABLE)


def _is_stream(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith("text/event-stream")


class PayingTransport(httpx.BaseTransport):
    """Sync httpx transport paying 402s through ``payer`` (see the module doc)."""

    def __init__(self, payer: Payer, transport: httpx.BaseTransport | None = None, *, exact: bool = False,
                 max_attempts: int = 3, schemes: tuple[str, ...] | None = None):
        self.payer = payer
        self.inner = transport or httpx.HTTPTransport()
        self.flow = _Flow(payer, exact, max_attempts, schemes)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        if PAYMENT_SIGNATURE.lower() in request.headers:
            return self.inner.handle_request(request)
        flow = self.flow
        res = prepaid = flow.prepaid(request)
        # when each attempt left and its answer came: a 402 may count caps of requests in flight on the node
        # then that ended since (Payer.prepare's window)
        sent = time.time()
        response = self._send(request, res)
        received = time.time()
        paid, most = int(prepaid is not None), flow.max_attempts + (prepaid is not None)
        while True:
            if res is not None:  # a paid attempt
                if response.status_code < 400:
                    return self._deliver(res, request, response)
                flow.after(res, response)
                if response.status_code != 402:
                    return response
                response.read()
                if res is prepaid:
                    flow.forget(request)
                if not _retryable(response, res is prepaid) or paid >= most:
                    return response
            elif response.status_code != 402:
                return response
            else:
                response.read()
            nxt = flow.reserve(response, (sent, received), res, request)
            if not isinstance(nxt, Reservation):
                if nxt is None:
                    return response
                response.close()
                return nxt
            response.close()
            res, paid = nxt, paid + 1
            sent = time.time()
            response = self._send(request, res)
            received = time.time()

    def _send(self, request: httpx.Request, res: Reservation | None) -> httpx.Response:
        try:
            return self.inner.handle_request(self.flow.send_args(request, res))
        except BaseException:
            if res is not None:
                self.payer.abandon(res)
            raise

    def _deliver(self, res: Reservation, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if _is_stream(response):
            return self.flow.finish_stream(res, request, response, asynchronous=False)
        try:
            body = response.read()
        except BaseException:
            self.payer.abandon(res)
            raise
        finally:
            response.close()
        return self.flow.finish_json(res, request, response, body)

    def close(self) -> None:
        self.inner.close()


class AsyncPayingTransport(httpx.AsyncBaseTransport):
    """Async httpx transport paying 402s through ``payer`` (see the module doc)."""

    def __init__(self, payer: Payer, transport: httpx.AsyncBaseTransport | None = None, *, exact: bool = False,
                 max_attempts: int = 3, schemes: tuple[str, ...] | None = None):
        self.payer = payer
        self.inner = transport or httpx.AsyncHTTPTransport()
        self.flow = _Flow(payer, exact, max_attempts, schemes)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        if PAYMENT_SIGNATURE.lower() in request.headers:
            return await self.inner.handle_async_request(request)
        flow = self.flow
        res = prepaid = flow.prepaid(request)
        sent = time.time()  # see PayingTransport
        response = await self._send(request, res)
        received = time.time()
        paid, most = int(prepaid is not None), flow.max_attempts + (prepaid is not None)
        while True:
            if res is not None:  # a paid attempt
                if response.status_code < 400:
                    return await self._deliver(res, request, response)
                flow.after(res, response)
                if response.status_code != 402:
                    return response
                await response.aread()
                if res is prepaid:
                    flow.forget(request)
                if not _retryable(response, res is prepaid) or paid >= most:
                    return response
            elif response.status_code != 402:
                return response
            else:
                await response.aread()
            nxt = flow.reserve(response, (sent, received), res, request)
            if not isinstance(nxt, Reservation):
                if nxt is None:
                    return response
                await response.aclose()
                return nxt
            await response.aclose()
            res, paid = nxt, paid + 1
            sent = time.time()
            response = await self._send(request, res)
            received = time.time()

    async def _send(self, request: httpx.Request, res: Reservation | None) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(self.flow.send_args(request, res))
        except BaseException:
            if res is not None:
                self.payer.abandon(res)
            raise

    async def _deliver(self, res: Reservation, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if _is_stream(response):
            return self.flow.finish_stream(res, request, response, asynchronous=True)
        try:
            body = await response.aread()
        except BaseException:
            self.payer.abandon(res)
            raise
        finally:
            await response.aclose()
        return self.flow.finish_json(res, request, response, body)

    async def aclose(self) -> None:
        await self.inner.aclose()


def payment_http_client(payer: Payer, *, exact: bool = False, schemes: tuple[str, ...] | None = None,
                        transport: httpx.BaseTransport | None = None, **httpx_kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` that pays OPG nodes' 402s: opg-credit; ``exact=True`` also allows exact payments from the
    payer's own OPG when no credit requirement fits; ``schemes`` sets the order explicitly (``("exact",)``: exact
    only). Pass it as ``openai.OpenAI(http_client=...)``. Other arguments go to ``httpx.Client``."""
    httpx_kwargs.setdefault("timeout", httpx.Timeout(300, connect=10))
    return httpx.Client(transport=PayingTransport(payer, transport, exact=exact, schemes=schemes), **httpx_kwargs)


def async_payment_http_client(payer: Payer, *, exact: bool = False, schemes: tuple[str, ...] | None = None,
                              transport: httpx.AsyncBaseTransport | None = None,
                              **httpx_kwargs: Any) -> httpx.AsyncClient:
    """The ``httpx.AsyncClient`` counterpart of :func:`payment_http_client` (for ``openai.AsyncOpenAI``)."""
    httpx_kwargs.setdefault("timeout", httpx.Timeout(300, connect=10))
    return httpx.AsyncClient(transport=AsyncPayingTransport(payer, transport, exact=exact, schemes=schemes),
                             **httpx_kwargs)
