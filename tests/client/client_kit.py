"""Client test kit: keystores, the payer CLI run in-process, and ``StubNode``, a real HTTP server that speaks the node's
x402 shapes (402 challenge, voucher check, receipt in ``PAYMENT-RESPONSE`` / ``x_opg_payment`` / the last SSE chunk)
and hands honest receipts to the real relayer. It can also cheat in chosen ways (inflated amount, padded cumulative,
a cumulative above the voucher), which the real node never does, to show the client catches it.

Import as ``from client_kit import ...`` (tests/client is on sys.path for its test files).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account

from offchain.inference import Pricing, canonical_request, input_hash, output_hash
from offchain.messages import Receipt, Voucher, recover_signer

GWEI = 10**9


def write_keystore(path: Path, key: str, password: str) -> Path:
    path.write_text(json.dumps(Account.encrypt(key, password, kdf="pbkdf2", iterations=2)))  # cheap KDF: tests
    return path


def cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """``opg ARGS`` (``offchain.cli.main``) in this process: (exit code, stdout, stderr)."""
    from offchain.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return code, out.getvalue(), err.getvalue()


def b64(data: dict) -> str:
    return base64.b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def unb64(value: str) -> dict:
    return json.loads(base64.b64decode(value))


class QuietServer(ThreadingHTTPServer):
    """A threading HTTP server that does not print clients hanging up on keep-alive connections."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class StubNode:
    """A minimal node: prices by words, answers with a fixed text, checks vouchers like the real node.

    ``mode``: ``honest`` | ``inflate`` (amount above the quote) | ``pad`` (cumulative padded up to the voucher's cap,
    billing requests never made) | ``over_voucher`` (cumulative above the voucher). Honest receipts go to the relayer.
    """

    MODEL = "stub"
    MODEL_ID = "0x" + "ab" * 32

    def __init__(self, devnet: Any, node: Any, relayer_url: str | None, mode: str = "honest",
                 pricing: Pricing | None = None, default_max_tokens: int = 16, answer: str = "the quick brown fox"):
        self.d, self.node, self.relayer_url, self.mode = devnet, node, relayer_url, mode
        self.pricing = pricing or Pricing(base=10**15, per_prompt_token=10**12, per_output_token=10**13)
        self.default_max_tokens = default_max_tokens
        self.answer_text = answer
        self.channels: dict[str, dict] = {}
        self.lock = threading.Lock()
        self.receipts: list[dict] = []
        self.requests_seen: list[dict] = []
        self.delay = 0.0
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def do_GET(self):
                if self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": stub.MODEL, "object": "model", "created": 0,
                                                                 "owned_by": stub.node.address,
                                                                 "opg": {"modelId": stub.MODEL_ID}}]})
                elif self.path == "/healthz":
                    self._json(200, {"ok": True})
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                stub.requests_seen.append({"headers": dict(self.headers), "body": body})
                stub.handle(self, body)

            def _json(self, status: int, data: dict, headers: dict | None = None):
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> StubNode:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # x402 --------------------------------------------------------------------------------------------------------
    def channel(self, payer: str) -> dict:
        return self.channels.setdefault(payer.lower(), {"cumulative": 0, "inflight": {}, "best": None})

    def quote(self, body: dict) -> tuple[int, int, int]:
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        max_tokens = int(body.get("max_tokens") or self.default_max_tokens)
        return prompt, max_tokens, self.pricing.cap(prompt, max_tokens)

    def requirement(self, cap: int, charged: int, prompt: int, max_tokens: int) -> dict:
        return {"scheme": "opg-credit", "network": self.d.network, "asset": self.d.opg.address, "amount": str(cap),
                "payTo": self.node.address, "maxTimeoutSeconds": 300,
                "extra": {"escrow": self.d.escrow.address, "staking": self.d.staking.address, "charged": str(charged),
                          "maxCumulative": str(charged + cap), "priceCap": str(cap), "pricing": self.pricing.wire(),
                          "requestTokens": {"prompt": prompt, "maxTokens": max_tokens}}}

    def challenge(self, h: Any, body: dict, payer: str | None, error: str) -> None:
        prompt, max_tokens, cap = self.quote(body)
        charged = 0
        if payer:
            ch = self.channel(payer)
            charged = ch["cumulative"] + sum(ch["inflight"].values())
        required = {"x402Version": 2, "error": error,
                    "resource": {"url": self.url + "/v1/chat/completions", "description": "chat",
                                 "mimeType": "application/json"},
                    "accepts": [self.requirement(cap, charged, prompt, max_tokens)]}
        h._json(402, required, {"PAYMENT-REQUIRED": b64(required)})

    def handle(self, h: Any, body: dict) -> None:
        header = h.headers.get("PAYMENT-SIGNATURE")
        payer_hint = h.headers.get("X-OPG-Payer")
        if not header:
            return self.challenge(h, body, payer_hint, "payment_required")
        payload = unb64(header)["payload"]
        v = payload["voucher"]
        voucher = Voucher(payer=v["payer"], node=v["node"], max_cumulative=int(v["maxCumulative"]))
        signer = recover_signer(voucher.fast_digest(self.d.escrow_domain), payload["signature"])
        if signer != voucher.payer:
            expiry, _ = self.d.escrow.functions.signer_of(voucher.payer, signer).call()
            if expiry <= self.d.chain_now():
                return self.challenge(h, body, voucher.payer, "invalid_signature")
        prompt, max_tokens, cap = self.quote(body)
        ch = self.channel(voucher.payer)
        token = secrets.token_hex(4)
        with self.lock:
            need = ch["cumulative"] + sum(ch["inflight"].values()) + cap
            if voucher.max_cumulative < need:
                return self.challenge(h, body, voucher.payer, "cap_exceeded")
            ch["inflight"][token] = cap
            if ch["best"] is None or voucher.max_cumulative > int(ch["best"]["maxCumulative"]):
                ch["best"] = {**v, "maxCumulative": str(voucher.max_cumulative), "signature": payload["signature"]}
        if self.delay:
            time.sleep(self.delay)
        words = self.answer_text.split()[:max_tokens]
        text = " ".join(words)
        with self.lock:
            ch["inflight"].pop(token, None)
            amount = self.pricing.cost(prompt, len(words))
            cumulative = ch["cumulative"] + amount
            if self.mode == "inflate":
                amount = cap + 10**15
                cumulative = ch["cumulative"] + amount
            elif self.mode == "pad":
                cumulative = voucher.max_cumulative  # bills the whole cap range, requests never made included
            elif self.mode == "over_voucher":
                cumulative = voucher.max_cumulative + 1
            ch["cumulative"] = cumulative
            params = {"max_tokens": max_tokens, **{k: body[k] for k in ("temperature", "seed", "stop")
                                                   if body.get(k) is not None}}
            request = canonical_request(self.MODEL, [{"role": m["role"], "content": m["content"]}
                                                     for m in body["messages"]], params)
            receipt = Receipt(request_id="0x" + secrets.token_hex(32), payer=voucher.payer, node=self.node.address,
                              model_id=self.MODEL_ID, input_hash=input_hash(request), output_hash=output_hash(text),
                              amount=amount, cumulative=cumulative, timestamp=self.d.chain_now())
            signature = receipt.sign_with(self.node.key, self.d.staking_domain)
            wire = {name: getattr(receipt, attr) for name, _t, attr in Receipt.FIELDS}
            wire.update({"amount": str(amount), "cumulative": str(cumulative), "signature": signature})
            rid = "0x" + receipt.fast_digest(self.d.staking_domain).hex()
            best = dict(ch["best"])
        payment = {"success": True, "transaction": "", "network": self.d.network, "payer": voucher.payer,
                   "scheme": "opg-credit", "receiptId": rid, "receipt": wire, "cost": str(amount),
                   "cumulative": str(cumulative), "creditsLeft": "0", "status": "pending"}
        self.receipts.append({"id": rid, "receipt": wire, "voucher": best})
        if self.mode == "honest" and self.relayer_url:
            res = httpx.post(self.relayer_url + "/settle", json={"receipt": wire, "voucher": best}, timeout=30)
            assert res.status_code == 200, res.text
        usage = {"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words)}
        created = int(time.time())
        if body.get("stream"):
            h.send_response(200)
            h.send_header("content-type", "text/event-stream")
            h.send_header("cache-control", "no-cache")
            h.send_header("connection", "close")
            h.end_headers()
            for i, word in enumerate(words):
                chunk = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": created,
                         "model": self.MODEL, "choices": [{"index": 0, "delta": {
                             **({"role": "assistant"} if i == 0 else {}), "content": (" " if i else "") + word},
                             "finish_reason": None}]}
                h.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
            done = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": created, "model": self.MODEL,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            h.wfile.write(b"data: " + json.dumps(done).encode() + b"\n\n")
            last = {"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": created, "model": self.MODEL,
                    "choices": [], "usage": usage, "x_opg_payment": payment}
            h.wfile.write(b"data: " + json.dumps(last).encode() + b"\n\n")
            h.wfile.write(b"data: [DONE]\n\n")
            h.wfile.flush()
            h.close_connection = True
            return
        completion = {"id": "chatcmpl-stub", "object": "chat.completion", "created": created, "model": self.MODEL,
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                   "finish_reason": "stop"}], "usage": usage, "x_opg_payment": payment}
        h._json(200, completion, {"PAYMENT-RESPONSE": b64(payment)})


# The real node ---------------------------------------------------------------------------------------------------
def start_node(devnet: Any, actor: Any, relayer_url: str, folder: Path, *extra: str, backend: str = "builtin"):
    """``opg node run`` for ``actor`` (a registered inference node) as a child process, its endpoint set on-chain."""
    from offchain.devkit.devchain import free_port, transact
    from offchain.devkit.devnet import DaemonProc

    keystore = write_keystore(folder / f"{actor.address}.json", actor.key, "node-pw")
    password = folder / f"{actor.address}.pw"
    password.write_text("node-pw\n")
    port = free_port()
    transact(devnet.w3, actor.key, devnet.staking.functions.set_endpoint(f"http://127.0.0.1:{port}"))
    proc = DaemonProc("node", ["node", "run", "--rpc-url", devnet.url, "--deployment", str(devnet.deployment_file),
                               "--relayer-url", relayer_url, "--store", str(folder / f"node.{port}.sqlite3"),
                               "--keystore", str(keystore), "--password-file", str(password), "--backend", backend,
                               "--outbox-max-backoff", "0.5", *extra], folder, port=port)
    return proc.start()


class TamperProxy:
    """A real HTTP server in front of a real node that inflates each receipt's amount (and cumulative) by ``extra``
    wei and re-signs it with the node's key: what an over-charging node would send. Streams are buffered."""

    def __init__(self, upstream: str, node: Any, devnet: Any, extra: int):
        self.upstream, self.node, self.d, self.extra = upstream, node, devnet, extra
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _forward(self, method: str):
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                res = httpx.request(method, proxy.upstream + self.path, content=body, headers=headers, timeout=60)
                content, out_headers = res.content, {k: v for k, v in res.headers.items()
                                                     if k.lower() not in ("content-length", "transfer-encoding",
                                                                          "connection", "content-encoding")}
                if res.status_code == 200 and method == "POST":
                    content, out_headers = proxy.tamper(content, out_headers)
                self.send_response(res.status_code)
                for k, v in out_headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def do_GET(self):
                self._forward("GET")

            def do_POST(self):
                self._forward("POST")

        self.server = QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _inflate(self, payment: dict) -> dict:
        r = dict(payment["receipt"])
        r["amount"] = str(int(r["amount"]) + self.extra)
        r["cumulative"] = str(int(r["cumulative"]) + self.extra)
        receipt = Receipt(**{attr: r[name] for name, _t, attr in Receipt.FIELDS})
        r["signature"] = receipt.sign_with(self.node.key, self.d.staking_domain)
        return {**payment, "receipt": r, "cost": r["amount"], "cumulative": r["cumulative"],
                "receiptId": "0x" + receipt.fast_digest(self.d.staking_domain).hex()}

    def tamper(self, content: bytes, headers: dict) -> tuple[bytes, dict]:
        if headers.get("content-type", "").startswith("text/event-stream"):
            lines = []
            for line in content.split(b"\n"):
                if line.startswith(b"data: {") and b"x_opg_payment" in line:
                    chunk = json.loads(line[6:])
                    chunk["x_opg_payment"] = self._inflate(chunk["x_opg_payment"])
                    line = b"data: " + json.dumps(chunk).encode()
                lines.append(line)
            return b"\n".join(lines), headers
        data = json.loads(content)
        if isinstance(data, dict) and "x_opg_payment" in data:
            data["x_opg_payment"] = self._inflate(data["x_opg_payment"])
            headers = {k: v for k, v in headers.items() if k.lower() != "payment-response"}
            headers["PAYMENT-RESPONSE"] = b64(data["x_opg_payment"])
        return json.dumps(data).encode(), headers

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ScriptedNode:
    """An in-process node for ``httpx.MockTransport`` (no chain, no sockets) with the node's channel rule: its 402
    quotes ``charged`` = cumulative + caps in flight, a voucher must cover that plus the request's cap, every request
    costs ``cost`` and is billed under a signed receipt. Hooks let a test hold requests at chosen points to order
    concurrent ones deterministically: ``on_quote(body)`` runs after a 402 is priced and before it leaves,
    ``on_serve(body)`` while a paid request is in flight. ``extra_claim`` wei are added to every quote (a lying
    node)."""

    def __init__(self, payer: Any, node: Any, *, cost: int, cap: int):
        self.payer, self.node, self.cost, self.cap = payer, node, cost, cap
        self.cumulative = 0
        self.inflight: dict[str, int] = {}
        self.lock = threading.Lock()
        self.on_quote: Any = None
        self.on_serve: Any = None
        self.extra_claim = 0
        self.quotes: list[int] = []

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def requirement(self, charged: int) -> dict:
        p = self.payer
        return {"scheme": "opg-credit", "network": p.network, "asset": p.token, "amount": str(self.cap),
                "payTo": self.node.address, "maxTimeoutSeconds": 300,
                "extra": {"escrow": p.escrow, "staking": p.staking, "charged": str(charged)}}

    def challenge(self, body: dict, error: str) -> httpx.Response:
        with self.lock:
            charged = self.cumulative + sum(self.inflight.values()) + self.extra_claim
        self.quotes.append(charged)
        required = {"x402Version": 2, "error": error, "accepts": [self.requirement(charged)]}
        if self.on_quote:
            self.on_quote(body)
        return httpx.Response(402, json=required, headers={"PAYMENT-REQUIRED": b64(required)})

    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content or b"{}")
        header = request.headers.get("PAYMENT-SIGNATURE")
        if not header:
            return self.challenge(body, "payment_required")
        payload = unb64(header)["payload"]
        v = payload["voucher"]
        voucher = Voucher(payer=v["payer"], node=v["node"], max_cumulative=int(v["maxCumulative"]))
        if recover_signer(voucher.fast_digest(self.payer.escrow_domain), payload["signature"]) != voucher.payer:
            return self.challenge(body, "invalid_signature")
        token = secrets.token_hex(4)
        with self.lock:
            refuse = voucher.max_cumulative < self.cumulative + sum(self.inflight.values()) + self.cap
            if not refuse:
                self.inflight[token] = self.cap
        if refuse:
            return self.challenge(body, "cap_exceeded")
        if self.on_serve:
            self.on_serve(body)
        text = "ok"
        with self.lock:
            del self.inflight[token]
            self.cumulative += self.cost
            cumulative = self.cumulative
        receipt = Receipt(request_id="0x" + secrets.token_hex(32), payer=voucher.payer, node=self.node.address,
                          model_id="0x" + "ab" * 32, input_hash="0x" + "22" * 32, output_hash=output_hash(text),
                          amount=self.cost, cumulative=cumulative, timestamp=int(time.time()))
        wire = {name: getattr(receipt, attr) for name, _t, attr in Receipt.FIELDS}
        wire.update({"amount": str(self.cost), "cumulative": str(cumulative),
                     "signature": receipt.sign_with(self.node.key, self.payer.staking_domain)})
        payment = {"success": True, "scheme": "opg-credit", "receipt": wire, "cost": str(self.cost),
                   "cumulative": str(cumulative), "status": "pending"}
        completion = {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant",
                      "content": text}, "finish_reason": "stop"}], "x_opg_payment": payment}
        return httpx.Response(200, json=completion, headers={"PAYMENT-RESPONSE": b64(payment)})
