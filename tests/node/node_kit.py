"""Test kit of the node tests: the node as a real process, and small payer-side helpers (x402 headers, vouchers,
payload requests, SSE parsing) written against the wire format, independent of the client SDK.

Import as ``from node_kit import ...`` (pytest puts tests/node on sys.path for the test files here).
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account

from offchain.devkit.devchain import free_port, transact
from offchain.devkit.devnet import OPG, Actor, DaemonProc, Devnet, wait_until
from offchain.messages import Domain, PayloadRequest, Voucher

PASSWORD = "node-test-password"
PRICE_BASE, PRICE_PROMPT, PRICE_OUTPUT = "0.001", "0.00001", "0.0001"  # OPG, the test nodes' --price-* flags


def wei(opg: str) -> int:
    from decimal import Decimal

    return int(Decimal(opg) * OPG)


def cost(prompt_tokens: int, output_tokens: int, base: str = PRICE_BASE, prompt: str = PRICE_PROMPT,
         output: str = PRICE_OUTPUT) -> int:
    return wei(base) + wei(prompt) * prompt_tokens + wei(output) * output_tokens


# The devnet's clock ------------------------------------------------------------------------------------------------
LEAD = 60  # after the verifiers' warm-up (``live``) the chain's clock is at most this far behind the wall clock


def past_devnet(tmp: Path) -> Devnet:
    """A devnet whose genesis lies ``warmup + 1 + LEAD`` s in the past, so that making verifiers live (``live``: the
    warm-up, then the next epoch) leaves the chain's clock near the wall clock, and every test of a module sees the
    two clocks within a few minutes of each other, before and after: stock x402 exact clients date their
    authorisations by the wall clock (valid 300 s) while the chain judges them by its own, and the node dates receipts
    by the chain's clock (never more than 240 s ahead of it)."""
    from offchain.deployments import Params

    offset = Params.devnet().warmup + 1 + LEAD
    return Devnet(tmp, anvil_extra=["--timestamp", str(int(time.time()) - offset)])


def live(devnet: Devnet, verifiers: list[Actor]) -> int:
    """Verifiers become live (warm-up, heartbeat, the next epoch) with the chain's clock landing near the wall
    clock, and heartbeat again so they stay live in the epoch after. Returns the epoch they are live in."""
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
    for v in verifiers:
        transact(devnet.w3, v.key, devnet.staking.functions.heartbeat())
    assert devnet.staking.functions.total_weight_in(epoch).call() > 0
    return epoch


def receipt_time(devnet: Devnet) -> int:
    """What the node dates a receipt now: max(wall, chain clock), at most 240 s after the chain's clock."""
    chain = devnet.chain_now()
    return min(max(int(time.time()), chain), chain + 240)


# The node process -------------------------------------------------------------------------------------------------
def keystore(actor: Actor, folder: Path) -> tuple[Path, Path]:
    """An encrypted keystore of ``actor`` (cheap KDF: tests only) and a password file."""
    path = folder / f"{actor.address}.json"
    path.write_text(json.dumps(Account.encrypt(actor.key, PASSWORD, kdf="pbkdf2", iterations=2)))
    password = folder / f"{actor.address}.password"
    password.write_text(PASSWORD + "\n")
    return path, password


class NodeProc(DaemonProc):
    """``opg node run`` for ``actor`` (a registered inference node) as a child process; its endpoint is set to its
    real URL on-chain before it starts."""

    def __init__(self, devnet: Devnet, actor: Actor, relayer_url: str, folder: Path, *extra: str,
                 backend: str = "builtin", store: Path | None = None, port: int | None = None,
                 env: dict | None = None, name: str = "node"):
        port = port or free_port()
        ks, password = keystore(actor, folder)
        self.store = store or folder / f"{name}.sqlite3"
        args = ["node", "run", "--rpc-url", devnet.url, "--deployment", str(devnet.deployment_file),
                "--relayer-url", relayer_url, "--store", str(self.store), "--keystore", str(ks),
                "--password-file", str(password), "--backend", backend, "--price-base", PRICE_BASE,
                "--price-prompt-token", PRICE_PROMPT, "--price-output-token", PRICE_OUTPUT,
                "--outbox-max-backoff", "0.5", "--settled-ttl", "0.5", *extra]
        super().__init__(name, args, folder, env=env, port=port)
        self.devnet, self.actor, self.address = devnet, actor, actor.address
        endpoint = devnet.staking.functions.endpoint(actor.address).call()
        if endpoint != self.url:
            transact(devnet.w3, actor.key, devnet.staking.functions.set_endpoint(self.url))

    def restart(self, timeout: float = 60) -> NodeProc:
        self.stop()
        self.client = httpx.Client(base_url=self.url, timeout=60)
        return self.start(timeout)


# x402 -------------------------------------------------------------------------------------------------------------
def b64json(data: dict) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


def unb64(value: str) -> dict:
    return json.loads(base64.b64decode(value))


def chat_body(prompt: str = "What does the relayer settle?", max_tokens: int = 24, model: str = "builtin",
              **extra: Any) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, **extra}


def requirement(challenge: dict, scheme: str) -> dict:
    return next(a for a in challenge["accepts"] if a["scheme"] == scheme)


def voucher_header(req: dict, payer: Actor, max_cumulative: int, *, key: str | None = None,
                   domain: Domain | None = None, devnet: Devnet | None = None, node: str | None = None,
                   accepted: dict | None = None) -> str:
    """PAYMENT-SIGNATURE for opg-credit: a Voucher (payer, node, maxCumulative) signed by ``key`` (default the
    payer's) in ``domain`` (default this deployment's escrow)."""
    node = node or req["payTo"]
    domain = domain or Domain.escrow(int(req["network"].split(":")[1]), req["extra"]["escrow"])
    v = Voucher(payer=payer.address, node=node, max_cumulative=max_cumulative)
    signature = v.sign_with(key or payer.key, domain)
    return b64json({"x402Version": 2, "accepted": accepted or req,
                    "payload": {"voucher": {"payer": payer.address, "node": node,
                                            "maxCumulative": str(max_cumulative)},
                                "signature": signature}})


class Payer:
    """A payer talking to a node over plain httpx: ask (402), sign what the challenge says, pay."""

    def __init__(self, actor: Actor, node_url: str):
        self.actor = actor
        self.http = httpx.Client(base_url=node_url, timeout=60)

    def ask(self, body: dict) -> httpx.Response:
        return self.http.post("/v1/chat/completions", json=body, headers={"X-OPG-Payer": self.actor.address})

    def challenge(self, body: dict) -> dict:
        res = self.ask(body)
        assert res.status_code == 402, res.text
        return res.json()

    def charged(self, body: dict | None = None) -> int:
        return int(requirement(self.challenge(body or chat_body()), "opg-credit")["extra"]["charged"])

    def pay(self, body: dict, max_cumulative: int | None = None, **voucher_kw: Any) -> httpx.Response:
        req = requirement(self.challenge(body), "opg-credit")
        cap = int(req["extra"]["maxCumulative"]) if max_cumulative is None else max_cumulative
        header = voucher_header(req, self.actor, cap, **voucher_kw)
        return self.http.post("/v1/chat/completions", json=body, headers={"PAYMENT-SIGNATURE": header})

    def stream(self, body: dict, max_cumulative: int | None = None) -> tuple[httpx.Response, list]:
        req = requirement(self.challenge({**body, "stream": True}), "opg-credit")
        cap = int(req["extra"]["maxCumulative"]) if max_cumulative is None else max_cumulative
        header = voucher_header(req, self.actor, cap)
        with self.http.stream("POST", "/v1/chat/completions", json={**body, "stream": True},
                              headers={"PAYMENT-SIGNATURE": header}) as res:
            if res.status_code == 200:
                lines = list(res.iter_lines())
            else:
                lines = []
                res.read()
        return res, sse_events(lines)


def sse_events(lines: list[str]) -> list:
    """``data:`` payloads of an SSE stream: dicts, and the string "[DONE]"."""
    out: list = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: "):]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def payment_of(res: httpx.Response) -> dict:
    return unb64(res.headers["PAYMENT-RESPONSE"])


def x402_exact_client(devnet, actor: Actor, sync: bool = False):
    """A stock x402 client paying ``exact`` with ``actor``'s key, OPG allow-listed by the spend controls."""
    from x402 import x402Client, x402ClientSync
    from x402.mechanisms.evm.exact import ExactEvmScheme

    client = (x402ClientSync if sync else x402Client)()
    client.register(devnet.network, ExactEvmScheme(signer=Account.from_key(actor.key)))
    client.set_spend_controls({"allowed_assets": [{"network": devnet.network, "asset": devnet.opg.address}]})
    return client


# Payloads ---------------------------------------------------------------------------------------------------------
def ask_payload(node_url: str, node: str, receipt_id: str, requester: Actor, domain: Domain, *,
                signer_key: str | None = None, nonce: str | None = None) -> tuple[httpx.Response, dict]:
    """Fetch a challenge (unless ``nonce`` is given), sign the PayloadRequest with ``signer_key`` (default the
    requester's), ask for the payload. Returns the answer and the request body sent."""
    with httpx.Client(base_url=node_url, timeout=30) as http:
        if nonce is None:
            nonce = http.get("/v1/payloads/challenge").json()["nonce"]
        signature = PayloadRequest(node=node, receipt_id=receipt_id, requester=requester.address,
                                   nonce=nonce).sign_with(signer_key or requester.key, domain)
        body = {"requester": requester.address, "nonce": nonce, "signature": signature}
        return http.post(f"/v1/payloads/{receipt_id}", json=body), body


def wait_receipts_settled(relayer, ids: list[str], timeout: float = 60) -> list[dict]:
    """Wait until the relayer knows each receipt and has settled it."""
    def known() -> bool:
        return all(relayer.get(f"/receipts/{i}").status_code == 200 for i in ids)

    wait_until(known, timeout=timeout, what="the relayer to know the receipts")
    return relayer.wait_receipts(ids, timeout=timeout)


def wait_relayer_idle(relayer, timeout: float = 60) -> None:
    wait_until(lambda: relayer.get("/healthz").json().get("pendingReceipts") == 0, timeout=timeout,
               what="the relayer to have no pending receipts")
    time.sleep(0.2)
