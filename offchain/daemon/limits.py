"""Resource bounds every daemon applies before its framework sees a request (the outermost ASGI layer).

- **Body size**: at most ``max_body`` bytes, whether declared (``Content-Length``) or streamed (chunked transfer
  encoding, counted as it arrives): 413 ``body_too_large`` and the connection closed, without reading the rest.
- **Idle partial bodies**: a request whose body stops arriving for ``idle_timeout`` seconds is answered 408
  ``request_timeout`` and the connection closed; a body in several parts must arrive within ``body_timeout`` seconds
  of its first part.
- **JSON shape**: a JSON body nested deeper than ``MAX_JSON_DEPTH`` or carrying a lone UTF-16 surrogate escape
  (``"\\ud800"``, which no UTF-8 store or answer can hold) is refused 400 ``invalid_json`` before any parser recurses
  into it.

Headers are bounded by uvicorn (``h11_max_incomplete_event_size``, see ``serve``), idle keep-alive connections by
``timeout_keep_alive``, and the number of open connections by ``limit_concurrency``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any

MAX_JSON_DEPTH = 64
MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_BODY = 4 * 1024 * 1024  # a daemon that sets none (the verifier: a dispute carries request and answer)
# Seconds; the environment may change them for every daemon at once (OPG_BODY_IDLE_TIMEOUT, OPG_BODY_TIMEOUT).
DEFAULT_IDLE_TIMEOUT = float(os.environ.get("OPG_BODY_IDLE_TIMEOUT", "10"))
DEFAULT_BODY_TIMEOUT = float(os.environ.get("OPG_BODY_TIMEOUT", "60"))
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(rb"[\[\]{}]")
_HIGH = rb"\\u[dD][89abAB][0-9a-fA-F]{2}"
_LOW = rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}"
_LONE_SURROGATE = re.compile(rb"(?<!\\)(?:\\\\)*(?:" + _HIGH + rb"(?!" + _LOW + rb")|(?<!" + _HIGH + rb")" + _LOW + rb")")


def json_problem(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why a JSON text is refused before parsing (too deep, a lone surrogate), or None. Malformed JSON passes here
    and is refused by the parser with its own message."""
    if b"\\u" in body and _LONE_SURROGATE.search(body):
        return "a lone UTF-16 surrogate escape (\\ud800-\\udfff not in a pair) is not text"
    if not max_depth or body.count(b"[") + body.count(b"{") <= max_depth:
        return None
    depth = 0
    for m in _BRACKET.finditer(_STRING.sub(b'""', body)):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return f"JSON nested deeper than {max_depth} levels"
        else:
            depth -= 1
    return None


def text_problem(value: str, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """The same check for already-decoded text (a header's JSON): lone surrogates and nesting depth."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone UTF-16 surrogate is not text"
    return json_problem(value.encode("utf-8"), max_depth)


def _answer(status: int, error: str, reason: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": error, "field": None, "reason": reason}).encode()


class RequestGuard:
    """The outermost ASGI layer of a daemon: body size, idle and total body time, JSON depth and surrogates.

    The body is read here, within the bounds, and handed to the app as one message; later ``receive`` calls (a
    client disconnecting during a streamed answer) go to the server as usual."""

    def __init__(self, app: Any, max_body: int, idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
                 body_timeout: float = DEFAULT_BODY_TIMEOUT, max_depth: int = MAX_JSON_DEPTH,
                 max_header_bytes: int = MAX_HEADER_BYTES, own_depth_check: frozenset = frozenset()):
        """``own_depth_check``: ``(method, path)`` pairs whose handler parses with a depth-bounded parser itself
        (the relayer's ``POST /settle``: pydantic_core), so the depth scan is skipped on that hot path."""
        self.app, self.max_body = app, max_body
        self.idle_timeout, self.body_timeout, self.max_depth = idle_timeout, body_timeout, max_depth
        self.max_header_bytes, self.own_depth_check = max_header_bytes, own_depth_check

    def __getattr__(self, name: str) -> Any:  # the wrapped app's state, routes, openapi() (tests, uvicorn)
        return getattr(self.app, name)

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared, header_bytes = None, 0
        for name, value in scope.get("headers", []):
            header_bytes += len(name) + len(value) + 4
            if name == b"content-length":
                declared = int(value) if value.isdigit() else -1
        if header_bytes > self.max_header_bytes:
            await self._refuse(send, *_answer(431, "headers_too_large",
                                              f"request headers exceed {self.max_header_bytes} bytes"))
            return
        if declared is not None and declared > self.max_body:
            await self._refuse(send, *_answer(413, "body_too_large", f"request body exceeds {self.max_body} bytes"))
            return
        try:
            body = await self._read(receive)
        except _TooLarge:
            await self._refuse(send, *_answer(413, "body_too_large", f"request body exceeds {self.max_body} bytes"))
            return
        except (_Idle, TimeoutError) as exc:
            reason = (f"no body bytes for {self.idle_timeout:g} s" if isinstance(exc, _Idle)
                      else f"the body did not arrive within {self.body_timeout:g} s")
            await self._refuse(send, *_answer(408, "request_timeout", reason))
            return
        except _Gone:
            return
        if body and _is_json(scope):
            depth = 0 if (scope["method"], scope["path"]) in self.own_depth_check else self.max_depth
            problem = json_problem(body, depth)
            if problem:
                await self._refuse(send, *_answer(400, "invalid_json", problem), close=False)
                return
        sent = False

        async def replay() -> dict:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _read(self, receive: Any) -> bytes:
        """The body, within the bounds. Fast path (the whole body in the first message, as for most requests): one
        idle timeout; a body in several parts must also arrive within ``body_timeout``."""
        message = await self._next(receive)
        chunk = message.get("body", b"")
        if not message.get("more_body", False):
            if len(chunk) > self.max_body:
                raise _TooLarge()
            return chunk
        chunks, size = [chunk], len(chunk)
        async with asyncio.timeout(self.body_timeout):
            while True:
                message = await self._next(receive)
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    raise _TooLarge()
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)

    async def _next(self, receive: Any) -> dict:
        try:
            async with asyncio.timeout(self.idle_timeout):
                message = await receive()
        except TimeoutError:
            raise _Idle() from None
        if message["type"] == "http.disconnect":
            raise _Gone()
        return message

    @staticmethod
    async def _refuse(send: Any, status: int, body: bytes, close: bool = True) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _is_json(scope: dict) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            return b"json" in value.lower()
    return scope.get("method") == "POST"  # FastAPI parses a body without a content type as JSON too


class _TooLarge(Exception):
    pass


class _Idle(Exception):
    pass


class _Gone(Exception):
    pass
