"""Getting a receipt's payload: from its node (challenge protocol) or from its payer (a dispute).

Node protocol (docs/node.md): ``GET {endpoint}/v1/payloads/challenge`` -> ``{"nonce", "expiresAt"}`` (single use), then
``POST {endpoint}/v1/payloads/{receipt_id}`` with ``{"requester", "nonce", "signature"}``, the signature being
``PayloadRequest(node, receipt_id, requester, nonce)`` in the NodeStaking domain. The node releases the payload only to
an active verifier or the receipt's payer: ``{"receiptId", "receipt", "request", "output", "usage", "finishReason",
"pricing"}``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from ..messages import Domain, InvalidSignature, PayloadRequest, Receipt, SignedReceipt, recover_signer
from .judge import payload_mismatch

log = logging.getLogger("opg.verifier.payloads")


def plain(receipt: SignedReceipt) -> Receipt:
    return Receipt(**receipt.model_dump(exclude={"signature"}))


def check_node_signature(receipt: SignedReceipt, domain: Domain) -> str | None:
    """Why the receipt is not signed by its node over ``domain`` (None when it is)."""
    try:
        signer = recover_signer(plain(receipt).fast_digest(domain), receipt.signature)
    except InvalidSignature as exc:
        return f"bad node signature: {exc}"
    return None if signer == receipt.node else "not signed by the receipt's node over this deployment's domain"


def receipt_id(receipt: SignedReceipt | Receipt, domain: Domain) -> str:
    return "0x" + plain(receipt).fast_digest(domain).hex() if isinstance(receipt, SignedReceipt) \
        else "0x" + receipt.fast_digest(domain).hex()


def receipt_hash(receipt: SignedReceipt | Receipt) -> str:
    r = plain(receipt) if isinstance(receipt, SignedReceipt) else receipt
    return "0x" + r.struct_hash().hex()


def base_url(endpoint: str) -> str:
    """A registered endpoint as the node's base URL (a trailing ``/`` or ``/v1`` dropped)."""
    url = endpoint.strip().rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


@dataclass
class Fetch:
    payload: dict | None
    error: str | None = None
    status: int | None = None
    seconds: float = 0.0


class PayloadClient:
    """Fetches payloads from nodes, signing each challenge with the verifier's key."""

    def __init__(self, key: bytes | str, address: str, domain: Domain, timeout: float = 10.0):
        self.key, self.address, self.domain = key, address, domain
        self.http = httpx.Client(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def fetch(self, endpoint: str, receipt: SignedReceipt, rid: str) -> Fetch:
        started = time.perf_counter()
        base = base_url(endpoint)
        try:
            res = self.http.get(f"{base}/v1/payloads/challenge")
            if res.status_code != 200:
                return Fetch(None, f"challenge answered {res.status_code}: {res.text[:200]}", res.status_code,
                             time.perf_counter() - started)
            nonce = res.json()["nonce"]
            signature = PayloadRequest(node=receipt.node, receipt_id=rid, requester=self.address,
                                       nonce=nonce).sign_with(self.key, self.domain)
            res = self.http.post(f"{base}/v1/payloads/{rid}",
                                 json={"requester": self.address, "nonce": nonce, "signature": signature})
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            return Fetch(None, f"{exc.__class__.__name__}: {str(exc)[:200]}", None, time.perf_counter() - started)
        seconds = time.perf_counter() - started
        if res.status_code != 200:
            return Fetch(None, f"payload answered {res.status_code}: {res.text[:200]}", res.status_code, seconds)
        try:
            payload = res.json()
        except ValueError:
            return Fetch(None, "payload is not JSON", 200, seconds)
        if not isinstance(payload, dict):
            return Fetch(None, "payload is not an object", 200, seconds)
        return Fetch(payload, None, 200, seconds)

    def pricing(self, endpoint: str, model_id: str) -> dict | None:
        """The node's current pricing of ``model_id`` from ``GET /v1/models`` (None if unavailable)."""
        try:
            res = self.http.get(f"{base_url(endpoint)}/v1/models", timeout=5)
            for m in res.json().get("data", []):
                opg = m.get("opg") or {}
                if str(opg.get("modelId", "")).lower() == model_id.lower() and isinstance(opg.get("pricing"), dict):
                    return opg["pricing"]
        except (httpx.HTTPError, ValueError, AttributeError, TypeError):
            return None
        return None


def dispute_problem(receipt: SignedReceipt, request: Any, output: Any, domain: Domain,
                    tokens_hash: Any = None, tokens: Any = None) -> str | None:
    """Why a payer's ``{receipt, request, output, tokensHash?}`` cannot be checked (None when the receipt is its
    node's and the payload hashes to it)."""
    return check_node_signature(receipt, domain) or payload_mismatch(plain(receipt), request, output, tokens,
                                                                     tokens_hash)
