"""Payload release (privacy): a receipt's prompt and answer go only to an active staked verifier or to the receipt's
payer, who proves who it is by signing a fresh single-use challenge.

``GET /v1/payloads/challenge`` -> ``{"nonce", "expiresAt"}`` (32 random bytes, valid 60 s, used once);
``POST /v1/payloads/{receipt_id}`` ``{"requester", "nonce", "signature"}`` with ``signature =
PayloadRequest(node, receipt_id, requester, nonce)`` signed in the NodeStaking EIP-712 domain. Checks, in order:
the nonce (400 ``invalid_nonce``: unknown, expired or used; it is spent by any attempt), the signature
(400 ``invalid_signature``), the receipt (404 ``not_found``), the requester (403 ``not_authorized`` unless it is the
receipt's payer or ``staking.is_active_as(requester, VERIFIER)``).
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from ..daemon.errors import ApiError
from ..messages import Domain, InvalidSignature, PayloadRequest, recover_signer
from .chainview import ChainView
from .store import NodeStore

CHALLENGE_TTL = 60
MAX_CHALLENGES = 100_000


class PayloadDesk:
    def __init__(self, node: str, store: NodeStore, chain: ChainView, staking_domain: Domain, metrics: Any):
        self.node, self.store, self.chain, self.domain, self.metrics = node, store, chain, staking_domain, metrics
        self._nonces: dict[str, float] = {}
        self._lock = threading.Lock()

    def challenge(self) -> dict:
        nonce = "0x" + secrets.token_hex(32)
        expires = time.time() + CHALLENGE_TTL
        with self._lock:
            if len(self._nonces) >= MAX_CHALLENGES:
                now = time.time()
                for n in [n for n, t in self._nonces.items() if t <= now]:
                    del self._nonces[n]
                while len(self._nonces) >= MAX_CHALLENGES:
                    del self._nonces[next(iter(self._nonces))]
            self._nonces[nonce] = expires
        return {"nonce": nonce, "expiresAt": int(expires)}

    def _refuse(self, status: int, error: str, field: str | None, reason: str) -> ApiError:
        self.metrics.payloads.inc(1, error)
        return ApiError(status, error, field, reason)

    def release(self, receipt_id: str, requester: str, nonce: str, signature: str) -> dict:
        """Blocking (may read the chain). ApiError 400/403/404 as in the module docstring."""
        with self._lock:
            expires = self._nonces.pop(nonce.lower(), None)
        if expires is None or expires < time.time():
            raise self._refuse(400, "invalid_nonce", "nonce", "unknown, expired or already used challenge nonce: "
                               "GET /v1/payloads/challenge for a fresh one")
        request = PayloadRequest(node=self.node, receipt_id=receipt_id, requester=requester, nonce=nonce)
        try:
            signer = recover_signer(request.fast_digest(self.domain), signature)
        except InvalidSignature as exc:
            raise self._refuse(400, "invalid_signature", "signature", str(exc)) from None
        if signer != request.requester:
            raise self._refuse(400, "invalid_signature", "signature",
                               "not the requester's PayloadRequest signature (node, receiptId, requester, nonce) in "
                               "this deployment's NodeStaking domain")
        stored = self.store.receipt(receipt_id)
        if stored is None:
            raise self._refuse(404, "not_found", "receipt_id", "this node signed no receipt with that id")
        if request.requester == stored.payer:
            self.metrics.payloads.inc(1, "released_payer")
        elif self.chain.is_active_verifier(request.requester):
            self.metrics.payloads.inc(1, "released_verifier")
        else:
            raise self._refuse(403, "not_authorized", "requester",
                               f"{request.requester} is neither this receipt's payer nor an active verifier")
        return stored.payload
