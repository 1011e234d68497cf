"""Helpers of the verifier tests (import as ``from verifier_kit import ...``): a devnet whose clock runs level with
the wall clock after the verifiers' warm-up, verifier and node daemons as processes, what a node signs for a request
(built here for the tests that need no node), and minimal x402 ``opg-credit`` paying (voucher signing with
eth-account, base64 ``PAYMENT-SIGNATURE``) for the tests that talk to a real node."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from eth_account import Account

from offchain.backends import CheatingBackend, load_backend
from offchain.devkit.devchain import transact
from offchain.devkit.devnet import Actor, DaemonProc, Devnet, RelayerProc, free_port, rand32, wait_until
from offchain.inference import ChatMessage, GenParams, Pricing, canonical_request, input_hash, output_hash
from offchain.messages import Receipt, SignedReceipt, SignedVoucher, Voucher

BUILTIN = load_backend("builtin")
PRICING = Pricing(base=10**15, per_prompt_token=10**13, per_output_token=10**14)  # wei of OPG
PASSWORD = "test-password"


LEAD = 60  # after the warm-up the chain is this far behind the wall clock


def past_devnet(tmp: Path) -> Devnet:
    """A devnet whose genesis lies ``warmup + LEAD`` seconds in the past, so that after :func:`live` (the warm-up and
    a jump to the next epoch boundary) the chain's clock is within ``LEAD`` seconds of the wall clock. Receipts are
    dated by the wall clock and must stay within the dispute window of the chain's time (call :func:`live` once)."""
    from offchain.deployments import Params

    offset = Params.devnet().warmup + 1 + LEAD
    return Devnet(tmp, anvil_extra=["--timestamp", str(int(time.time()) - offset)])


def sync_clock(devnet: Devnet) -> None:
    """Move the chain's clock up to the wall clock (never back)."""
    lag = int(time.time()) - devnet.chain_now()
    if lag > 0:
        devnet.advance(lag)


def live(devnet: Devnet, verifiers: list[Actor]) -> None:
    """Like ``Devnet.make_live`` (warm-up, heartbeat, next epoch) but landing the chain's clock near the wall clock:
    the next epoch starts at the first boundary after the warm-up, then the clock catches up within that epoch."""
    devnet.advance(devnet.params.warmup + 1)
    for v in verifiers:
        transact(devnet.w3, v.key, devnet.staking.functions.heartbeat())
    distributor = devnet.system.distributor.functions
    end, length = distributor.current_epoch_end().call(), distributor.epoch_length().call()
    now = devnet.chain_now()
    boundary = end if now < end else end + ((now - end) // length + 1) * length
    devnet.rpc("evm_setNextBlockTimestamp", boundary)
    devnet.rpc("evm_mine")
    epoch = distributor.epoch_now().call()
    lag = int(time.time()) - devnet.chain_now()
    if 0 < lag < length - 5:
        devnet.advance(lag)
    assert distributor.epoch_now().call() == epoch, "the clock sync crossed an epoch"
    assert devnet.staking.functions.total_weight_in(epoch).call() > 0


def keystore(actor: Actor, folder: Path) -> Path:
    path = folder / f"{actor.address}.json"
    path.write_text(json.dumps(Account.encrypt(actor.key, PASSWORD, kdf="pbkdf2", iterations=2)))
    return path


def set_endpoint(devnet: Devnet, actor: Actor, url: str) -> None:
    transact(devnet.w3, actor.key, devnet.staking.functions.set_endpoint(url))


def verifier_proc(devnet: Devnet, relayer: RelayerProc, actor: Actor, folder: Path, *extra: str,
                  sample_rate: float = 1.0, deadline: float = 2.0, name: str = "verifier",
                  register_endpoint: bool = True, backends: str = "builtin", lazy: bool = False) -> DaemonProc:
    """``opg verifier run`` for ``actor`` (not started); its registered endpoint is set to the daemon's URL. ``lazy``:
    the same daemon with the tests' lazy judge (``lazy_verifier.py``: vouches valid=true without checking)."""
    store = folder / f"{name}-{actor.address[:10]}.sqlite3"
    env = {"OPG_VERIFIER_PASSWORD": PASSWORD}
    proc = DaemonProc(name, [
        "verifier", "run", "--rpc-url", devnet.url, "--deployment", str(devnet.deployment_file),
        "--relayer-url", relayer.url, "--store", str(store), "--keystore", str(keystore(actor, folder)),
        "--backends", backends, "--sample-rate", str(sample_rate), "--payload-deadline", str(deadline),
        "--payload-retry", "0.5", "--payload-timeout", "3", "--poll-interval", "0.2", *extra,
    ], folder, env=env)
    if lazy:  # python lazy_verifier.py <the same arguments>, with the project importable
        proc.args[1:3] = [str(Path(__file__).with_name("lazy_verifier.py"))]
        proc.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parents[2]),
                                                              proc.env.get("PYTHONPATH")]))
    if register_endpoint:
        set_endpoint(devnet, actor, proc.url)
    return proc


def node_proc(devnet: Devnet, relayer: RelayerProc, actor: Actor, folder: Path, *extra: str,
              name: str = "node", endpoint: str | None = None, backend: str = "builtin") -> DaemonProc:
    """``opg node run`` for ``actor`` with the builtin backend (not started); the registered endpoint is the daemon's
    URL unless ``endpoint`` is given (a node withholding its payloads registers somewhere unreachable)."""
    store = folder / f"{name}-{actor.address[:10]}.sqlite3"
    proc = DaemonProc(name, [
        "node", "run", "--rpc-url", devnet.url, "--deployment", str(devnet.deployment_file),
        "--relayer-url", relayer.url, "--store", str(store), "--keystore", str(keystore(actor, folder)),
        "--backend", backend, "--price-base", "0.001", "--price-prompt-token", "0.00001",
        "--price-output-token", "0.0001", "--outbox-max-backoff", "0.5", "--settled-ttl", "0.5", *extra,
    ], folder, env={"OPG_NODE_PASSWORD": PASSWORD})
    set_endpoint(devnet, actor, endpoint or proc.url)
    return proc


def start_all(procs: list[DaemonProc]) -> None:
    """Start daemons in parallel (each ``start`` waits for its ``/healthz``)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(procs)) as pool:
        for future in [pool.submit(p.start) for p in procs]:
            future.result()


def stop_all(*procs: DaemonProc) -> None:
    for p in procs:
        try:
            p.stop()
        except Exception:
            pass


# What a node signs (for tests without a node daemon) ----------------------------------------------------------------
def serve_locally(devnet: Devnet, payer: Actor, node: Actor, prompt: str, cumulative_before: int = 0,
                  cheat: bool = False, max_tokens: int = 32, model_id: str | None = None) -> dict:
    """The request, answer, signed receipt and voucher a builtin node would produce for ``prompt``."""
    backend = CheatingBackend(BUILTIN, 1.0) if cheat else BUILTIN
    messages = [ChatMessage(role="user", content=prompt)]
    params = GenParams(max_tokens=max_tokens)
    gen = backend.generate(messages, params)
    request = canonical_request(BUILTIN.name, messages, params)
    amount = PRICING.cost(gen.prompt_tokens, gen.output_tokens)
    receipt = Receipt(request_id=rand32(), payer=payer.address, node=node.address,
                      model_id=model_id or BUILTIN.model_id,
                      input_hash=input_hash(request), output_hash=output_hash(gen.text), amount=amount,
                      cumulative=cumulative_before + amount, timestamp=int(time.time()))
    signed = SignedReceipt(**receipt.model_dump(), signature=receipt.sign_with(node.key, devnet.staking_domain))
    cap = cumulative_before + PRICING.cap(gen.prompt_tokens, max_tokens)
    v = Voucher(payer=payer.address, node=node.address, max_cumulative=cap)
    voucher = SignedVoucher(**v.model_dump(), signature=v.sign_with(payer.key, devnet.escrow_domain))
    return {"request": request, "output": gen.text, "receipt": signed, "voucher": voucher,
            "usage": {"promptTokens": gen.prompt_tokens, "outputTokens": gen.output_tokens},
            "pricing": PRICING.wire(), "id": "0x" + receipt.fast_digest(devnet.staking_domain).hex(),
            "receiptHash": "0x" + receipt.struct_hash().hex()}


def receipt_wire(receipt: SignedReceipt) -> dict:
    names = {attr: name for name, _t, attr in receipt.FIELDS}
    data = {names.get(k, k): v for k, v in receipt.model_dump(mode="json").items()}
    data["amount"], data["cumulative"] = str(receipt.amount), str(receipt.cumulative)
    return data


def dispute_body(served: dict) -> dict:
    return {"receipt": receipt_wire(served["receipt"]), "request": served["request"], "output": served["output"],
            "pricing": served["pricing"], "usage": served["usage"]}


# x402 opg-credit paying against a real node -------------------------------------------------------------------------
def b64json(data: dict) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


def unb64json(value: str) -> dict:
    return json.loads(base64.b64decode(value))


def pay_chat(devnet: Devnet, node_url: str, payer: Actor, prompt: str, max_tokens: int = 24,
             model: str = "builtin", timeout: float = 60) -> dict:
    """One paid chat completion over x402 ``opg-credit``: the 402 quote, a voucher for ``extra.maxCumulative``, the
    retry with ``PAYMENT-SIGNATURE``. Returns the answer, the receipt (as the node released it), its id and the
    canonical request the receipt's inputHash commits to."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens}
    headers = {"X-OPG-Payer": payer.address}
    with httpx.Client(base_url=node_url, timeout=timeout) as http:
        quote = http.post("/v1/chat/completions", json=body, headers=headers)
        assert quote.status_code == 402, quote.text
        required = unb64json(quote.headers["PAYMENT-REQUIRED"])
        req = next(a for a in required["accepts"] if a["scheme"] == "opg-credit")
        cap = int(req["extra"]["maxCumulative"])
        v = Voucher(payer=payer.address, node=req["payTo"], max_cumulative=cap)
        payment = {"x402Version": 2, "accepted": req, "payload": {
            "voucher": {"payer": payer.address, "node": req["payTo"], "maxCumulative": str(cap)},
            "signature": v.sign_with(payer.key, devnet.escrow_domain)}}
        res = http.post("/v1/chat/completions", json=body, headers={**headers, "PAYMENT-SIGNATURE": b64json(payment)})
        assert res.status_code == 200, res.text
    answer = res.json()
    paid = unb64json(res.headers["PAYMENT-RESPONSE"])
    text = answer["choices"][0]["message"]["content"]
    request = canonical_request(model, [ChatMessage(role="user", content=prompt)], GenParams(max_tokens=max_tokens))
    return {"answer": text, "receiptId": paid["receiptId"], "receipt": paid["receipt"], "payment": paid,
            "request": request, "pricing": req["extra"].get("pricing"), "usage": answer.get("usage"),
            "cost": int(paid["cost"])}


def honest_answer(prompt: str, max_tokens: int = 24) -> str:
    return BUILTIN.generate([ChatMessage(role="user", content=prompt)], GenParams(max_tokens=max_tokens)).text


def cheats(rate: float, prompt: str, max_tokens: int = 24, seed: int = 0) -> bool:
    """Whether a node run with ``--backend builtin?cheat_rate=rate`` (seed ``seed``) answers ``prompt`` wrongly."""
    return CheatingBackend(BUILTIN, rate, seed).cheats([ChatMessage(role="user", content=prompt)],
                                                        GenParams(max_tokens=max_tokens))


# Reads --------------------------------------------------------------------------------------------------------------
def slashes(relayer: RelayerProc, kind: str | None = None, status: str | None = None) -> list[dict]:
    return [s for s in relayer.get("/slashes", params={"limit": 1000}).json()
            if (kind is None or s["kind"] == kind) and (status is None or s["status"] == status)]


def wait_receipts(relayer: RelayerProc, ids: list[str], statuses: tuple[str, ...] = ("settled",),
                  timeout: float = 30) -> list[dict]:
    """Poll the relayer until each receipt (handed over by a node's outbox, so perhaps not there yet) has one of
    ``statuses``."""
    def views() -> list[dict] | None:
        out = []
        for i in ids:
            res = relayer.get(f"/receipts/{i}")
            if res.status_code != 200 or res.json()["status"] not in statuses:
                return None
            out.append(res.json())
        return out

    return wait_until(views, timeout=timeout, interval=0.2, what=f"{len(ids)} receipts {statuses}")


def check(proc: DaemonProc, receipt_id: str) -> dict | None:
    res = proc.client.get(f"/checks/{receipt_id}")
    return res.json() if res.status_code == 200 else None


def wait_check(proc: DaemonProc, receipt_id: str, timeout: float = 30) -> dict:
    return wait_until(lambda: (c := check(proc, receipt_id)) and c["status"] != "queued" and c,
                      timeout=timeout, what=f"{proc.name} decides {receipt_id}")


def metric(proc: DaemonProc, name: str) -> float:
    total = 0.0
    for line in proc.client.get("/metrics").text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            key = line.split(" ")[0]
            if key == name or key.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def opg_balance(devnet: Devnet, actor: Actor) -> int:
    return devnet.opg.functions.balanceOf(actor.address).call()


def fraud_proven(devnet: Devnet, receipt_hash: str) -> bool:
    return devnet.staking.functions.fraud_proven_at(bytes.fromhex(receipt_hash[2:])).call() != 0


def valid_proven(devnet: Devnet, receipt_hash: str) -> bool:
    return devnet.staking.functions.valid_proven_at(bytes.fromhex(receipt_hash[2:])).call() != 0


def receipt_hash_of(receipt: dict) -> str:
    from offchain.sdk.wire import parse_receipt
    from offchain.verifier.payloads import plain

    return "0x" + plain(parse_receipt(receipt)).struct_hash().hex()


# A node's own front (attacks R4 and evidence sharing) ----------------------------------------------------------------
class SelectiveFront:
    """The withholding node's public endpoint: forwards to the node, but refuses the payload requests of the
    verifiers in ``refused`` (read from the signed request's ``requester``), as a node's operator could."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.refused: set[str] = set()
        self.refusals = 0
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _forward(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else None
                if method == "POST" and self.path.startswith("/v1/payloads/") and body:
                    try:
                        requester = str(json.loads(body).get("requester", "")).lower()
                    except ValueError:
                        requester = ""
                    if requester in front.refused:
                        front.refusals += 1
                        self.send_response(503)
                        self.send_header("Content-Type", "application/json")
                        self.end_headers()
                        self.wfile.write(b'{"error":"busy"}')
                        return
                res = httpx.request(method, front.upstream + self.path, content=body,
                                    headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
                                    timeout=30)
                self.send_response(res.status_code)
                self.send_header("Content-Type", res.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(res.content)))
                self.end_headers()
                self.wfile.write(res.content)

            def do_GET(self):  # noqa: N802
                self._forward("GET")

            def do_POST(self):  # noqa: N802
                self._forward("POST")

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> SelectiveFront:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
