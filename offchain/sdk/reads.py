"""Raw JSON-RPC chain reads for the request path (``POST /verify``): pre-computed selectors, hand-rolled ABI
encoding and decoding of static types, one keep-alive ``requests.Session`` per thread, several reads in one JSON-RPC
batch request.

A web3.py contract call costs ~12-15 ms of CPU (ABI machinery, middlewares, formatters) against ~1 ms for the same
``eth_call`` sent as JSON; ``/verify`` makes several on every request. Errors behave as web3.py's do for the relayer:
connection failures and timeouts are ``requests`` exceptions (retried by ``Relayer.retry``; 503 ``chain_unavailable``
after the retries), an HTTP error status raises ``requests.HTTPError``, and a JSON-RPC error or a malformed answer
raises :class:`RpcError` (also a ``requests.RequestException``: 503, not retried).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from typing import Any

import requests
from eth_hash.auto import keccak

__all__ = ["Call", "RawReader", "RpcError", "selector"]


class RpcError(requests.exceptions.RequestException):
    """The endpoint answered a read with a JSON-RPC error or with something that is not the expected result."""


def selector(signature: str) -> str:
    """The 4-byte function selector of ``name(type,...)``, as hex without 0x."""
    return keccak(signature.encode()).hex()[:8]


SPENT = selector("spent(address,address)")
AVAILABLE_OF = selector("available_of(address)")
SIGNER_OF = selector("signer_of(address,address)")
IS_ACTIVE_AS = selector("is_active_as(address,uint8)")
IS_PAYABLE = selector("is_payable(address)")
PAY_CAPACITY = selector("pay_capacity(address)")
THAW_PERIOD = selector("thaw_period()")

_HEX = frozenset("0123456789abcdefABCDEF")


def word_address(address: str) -> str:
    body = address[2:] if address[:2] in ("0x", "0X") else address
    if len(body) != 40 or not _HEX.issuperset(body):
        raise ValueError(f"not an address: {address!r}")
    return "0" * 24 + body.lower()


def word_uint(value: int) -> str:
    if not 0 <= value < 2**256:
        raise ValueError(f"not a uint256: {value}")
    return format(value, "064x")


def calldata(sel: str, *words: str) -> str:
    return "0x" + sel + "".join(words)


def decode_words(result: Any, count: int) -> list[int]:
    """The first ``count`` 32-byte words of an ``eth_call`` result (static return types only)."""
    if not isinstance(result, str) or not result.startswith("0x") or len(result) < 2 + 64 * count:
        raise RpcError(f"unexpected eth_call result {str(result)[:80]!r} (no contract code at the address?)")
    return [int(result[2 + 64 * i: 66 + 64 * i], 16) for i in range(count)]


@dataclass(frozen=True)
class Call:
    """One JSON-RPC request and how to decode its result."""

    method: str
    params: list
    decode: Any  # result -> value

    @staticmethod
    def eth_call(to: str, data: str, decode: Any) -> Call:
        return Call("eth_call", [{"to": to, "data": data}, "latest"], decode)


def _uint(result: Any) -> int:
    return decode_words(result, 1)[0]


def _bool(result: Any) -> bool:
    return decode_words(result, 1)[0] != 0


def _pair(result: Any) -> tuple[int, int]:
    a, b = decode_words(result, 2)
    return a, b


def _block_timestamp(result: Any) -> int:
    if not isinstance(result, dict) or not isinstance(result.get("timestamp"), str):
        raise RpcError(f"unexpected block {str(result)[:80]!r}")
    return int(result["timestamp"], 16)


class RawReader:
    """Reads of one deployment's CreditEscrow and NodeStaking. Thread-safe: each thread uses its own session."""

    def __init__(self, rpc_url: str, escrow: str, staking: str, timeout: float = 15.0):
        self.rpc_url = rpc_url
        self.escrow = escrow
        self.staking = staking
        self.timeout = timeout
        self._local = threading.local()
        self._ids = itertools.count(1)
        self.batch_supported = True  # cleared (for good) if the endpoint refuses JSON-RPC batches

    # The reads ---------------------------------------------------------------------------------------------------
    def spent(self, payer: str, node: str) -> Call:
        return Call.eth_call(self.escrow, calldata(SPENT, word_address(payer), word_address(node)), _uint)

    def available_of(self, payer: str) -> Call:
        return Call.eth_call(self.escrow, calldata(AVAILABLE_OF, word_address(payer)), _uint)

    def signer_of(self, payer: str, key: str) -> Call:
        return Call.eth_call(self.escrow, calldata(SIGNER_OF, word_address(payer), word_address(key)), _pair)

    def thaw_period(self) -> Call:
        return Call.eth_call(self.escrow, calldata(THAW_PERIOD), _uint)

    def is_active_as(self, account: str, role: int) -> Call:
        return Call.eth_call(self.staking, calldata(IS_ACTIVE_AS, word_address(account), word_uint(role)), _bool)

    def is_payable(self, node: str) -> Call:
        return Call.eth_call(self.staking, calldata(IS_PAYABLE, word_address(node)), _bool)

    def pay_capacity(self, node: str) -> Call:
        return Call.eth_call(self.staking, calldata(PAY_CAPACITY, word_address(node)), _uint)

    @staticmethod
    def latest_timestamp() -> Call:
        return Call("eth_getBlockByNumber", ["latest", False], _block_timestamp)

    # Transport ---------------------------------------------------------------------------------------------------
    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
            s.headers.update({"Content-Type": "application/json"})
        return s

    def _post(self, body: Any) -> Any:
        res = self.session().post(self.rpc_url, json=body, timeout=self.timeout)
        res.raise_for_status()
        try:
            return res.json()
        except ValueError as exc:
            raise RpcError(f"the RPC answered something that is not JSON: {res.text[:80]!r}") from exc

    @staticmethod
    def _result(call: Call, answer: Any) -> Any:
        if not isinstance(answer, dict):
            raise RpcError(f"unexpected JSON-RPC answer {str(answer)[:80]!r}")
        if answer.get("error") is not None:
            err = answer["error"]
            message = err.get("message") if isinstance(err, dict) else err
            raise RpcError(f"{call.method} failed: {str(message)[:200]}")
        if "result" not in answer:
            raise RpcError(f"unexpected JSON-RPC answer {str(answer)[:80]!r}")
        return call.decode(answer["result"])

    def one(self, call: Call) -> Any:
        return self._result(call, self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": call.method,
                                              "params": call.params}))

    def many(self, calls: list[Call]) -> list[Any]:
        """Every call's decoded result, in order: one HTTP request (a JSON-RPC batch) when there are several."""
        if len(calls) == 1 or not self.batch_supported:
            return [self.one(c) for c in calls]
        ids = [next(self._ids) for _ in calls]
        answer = self._post([{"jsonrpc": "2.0", "id": i, "method": c.method, "params": c.params}
                             for i, c in zip(ids, calls, strict=True)])
        if not isinstance(answer, list):  # an endpoint without batch support answers one error object
            self.batch_supported = False
            return [self.one(c) for c in calls]
        by_id = {a.get("id"): a for a in answer if isinstance(a, dict)}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise RpcError(f"the JSON-RPC batch answer lacks {len(missing)} of {len(ids)} results")
        return [self._result(c, by_id[i]) for i, c in zip(ids, calls, strict=True)]
