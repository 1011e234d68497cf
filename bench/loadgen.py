"""Load generation shared by the relayer benchmarks (``bench/relayer.py``, ``bench/scale.py``): simulated payers and
nodes signing vouchers and receipts with the SDK's signing and wire code, the bodies nodes hand to the relayer's
``POST /settle`` (one receipt, or bulk), and the closed-loop drivers that send them to one or several relayers,
optionally for a bounded time.

Signing happens before any timing (the drivers only send pre-encoded bodies): it is the payers' and nodes' cost, not
the relayer's. ``bench/`` is not a package; the benchmarks import this module from their own directory.
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import statistics
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
from eth_account import Account
from web3 import Web3

from offchain.devkit.devnet import ROLE_INFERENCE, Actor, new_key
from offchain.messages import Domain, Receipt, Registration, Voucher
from offchain.sdk.reads import RawReader
from offchain.sdk.wire import parse_receipt, receipt_json, voucher_json

OPG = 10**18

__all__ = ["Population", "fund_population", "Workload", "sign_channel", "receipt_id", "encode", "interleave", "bulk_chunks", "bulk_body", "bulk_bodies",
           "RawConnection", "open_connections", "run_bulk", "run_single", "percentile", "wait_settled",
           "settle_latencies"]


# Setup: payers and nodes on the chain --------------------------------------------------------------------------------
@dataclass
class Population:
    """Payers with credits in the escrow and inference nodes registered and staked."""

    payers: list[Actor]
    nodes: list[Actor]


class _Pipeline:
    """Transactions signed locally with explicit nonces, sent in JSON-RPC batches without waiting for each to be mined
    (anvil automines them in the order sent), then every receipt checked, in batches too: thousands of set-up
    transactions in seconds."""

    BATCH = 200

    def __init__(self, w3: Web3):
        self.w3, self.chain_id = w3, w3.eth.chain_id
        self.url = w3.provider.endpoint_uri
        self.max_fee = w3.eth.get_block("latest")["baseFeePerGas"] * 4 + 10**9
        self.nonces: dict[str, int] = {}
        self.raw: list[str] = []

    def send(self, key: str, to: str, data: str = "0x", value: int = 0, gas: int = 300_000) -> None:
        sender = Account.from_key(key).address
        if sender not in self.nonces:
            self.nonces[sender] = self.w3.eth.get_transaction_count(sender, "pending")
        tx = {"from": sender, "to": to, "data": data, "value": value, "gas": gas, "nonce": self.nonces[sender],
              "chainId": self.chain_id, "maxFeePerGas": self.max_fee, "maxPriorityFeePerGas": 10**9}
        self.nonces[sender] += 1
        self.raw.append("0x" + Account.sign_transaction(tx, key).raw_transaction.hex().removeprefix("0x"))

    def _batch(self, method: str, params: list[list]) -> list[Any]:
        out = []
        for i in range(0, len(params), self.BATCH):
            body = [{"jsonrpc": "2.0", "id": k, "method": method, "params": p}
                    for k, p in enumerate(params[i:i + self.BATCH])]
            answers = sorted(httpx.post(self.url, json=body, timeout=120).json(), key=lambda a: a["id"])
            for a in answers:
                if a.get("error"):
                    raise RuntimeError(f"set-up {method} failed: {a['error']}")
            out += [a["result"] for a in answers]
        return out

    def wait(self) -> None:
        hashes = self._batch("eth_sendRawTransaction", [[r] for r in self.raw])
        self.raw.clear()
        deadline = time.monotonic() + 120
        while hashes:
            receipts = self._batch("eth_getTransactionReceipt", [[h] for h in hashes])
            for h, r in zip(hashes, receipts, strict=True):
                if r is not None and r["status"] != "0x1":
                    raise RuntimeError(f"set-up transaction {h} reverted")
            hashes = [h for h, r in zip(hashes, receipts, strict=True) if r is None]
            if hashes and time.monotonic() > deadline:
                raise RuntimeError(f"{len(hashes)} set-up transactions not mined after 120 s")
            time.sleep(0.1 if hashes else 0)


def fund_population(w3: Web3, system: Any, deployer: str, payers: int, nodes: int, deposit: int,
                    stake: int) -> Population:
    """``payers`` new accounts each credited ``deposit`` OPG in the escrow (``deposit_for`` by the deployer: a payer
    only signs, it needs no ether) and ``nodes`` new inference nodes each staking ``stake``."""
    pop = Population([new_key() for _ in range(payers)], [new_key() for _ in range(nodes)])
    staking_domain = Domain.staking(system.deployment.chainId, system.staking.address)
    opg, escrow, staking = system.opg, system.escrow, system.staking
    tx = _Pipeline(w3)
    tx.send(deployer, opg.address, opg.encode_abi("approve", args=[escrow.address, deposit * payers]))
    for payer in pop.payers:
        tx.send(deployer, escrow.address, escrow.encode_abi("deposit_for", args=[payer.address, deposit]))
    for node in pop.nodes:
        tx.send(deployer, node.address, value=10**19, gas=21_000)
        tx.send(deployer, opg.address, opg.encode_abi("transfer", args=[node.address, stake]))
    tx.wait()
    for node in pop.nodes:
        proof = Registration(account=node.address).sign_with(node.key, staking_domain)
        tx.send(node.key, opg.address, opg.encode_abi("approve", args=[staking.address, stake]))
        tx.send(node.key, staking.address, staking.encode_abi(
            "register", args=[ROLE_INFERENCE, stake, "http://bench.invalid", bytes.fromhex(proof[2:])]), gas=600_000)
    tx.wait()
    return pop


class Workload:
    """A funded population and its channels, signing receipts for them: each payer pays ``nodes_per_payer`` nodes
    (payer i the nodes i, i + step, ... modulo the node count), or every node (None). ``cumulative`` is each
    channel's highest signed cumulative."""

    def __init__(self, w3: Web3, system: Any, deployer: str, payers: int, nodes: int, deposit: int,
                 nodes_per_payer: int | None = None):
        self.w3, self.system = w3, system
        self.escrow_domain = Domain.escrow(w3.eth.chain_id, system.escrow.address)
        self.staking_domain = Domain.staking(w3.eth.chain_id, system.staking.address)
        pop = fund_population(w3, system, deployer, payers, nodes, deposit,
                              system.deployment.params.min_inference_stake * 2)
        self.payers, self.nodes = pop.payers, pop.nodes
        k = len(self.nodes) if nodes_per_payer is None else min(nodes_per_payer, len(self.nodes))
        step = max(1, len(self.nodes) // k)
        self.channels = [(p, self.nodes[(i + j * step) % len(self.nodes)]) for i, p in enumerate(self.payers)
                         for j in range(k)]
        self.cumulative: dict[tuple[str, str], int] = {}

    def sign(self, total: int, pool: ProcessPoolExecutor) -> list[list[dict]]:
        """About ``total`` receipts spread evenly over the channels: one list per channel, in order, each receipt
        with the voucher its payer signed just before the request."""
        per = -(-total // len(self.channels))
        amount = OPG // 1000
        jobs = []
        for p, n in self.channels:
            key = (p.address, n.address)
            start = self.cumulative.get(key, 0)
            self.cumulative[key] = start + per * amount
            jobs.append((p.key, n.key, self.escrow_domain.model_dump(), self.staking_domain.model_dump(), per, start,
                         amount, int(time.time())))
        return list(pool.map(sign_channel, jobs, chunksize=max(1, len(jobs) // 64)))

    def unpaid(self, expected: dict[tuple[str, str], int] | None = None) -> dict[tuple[str, str], tuple[int, int]]:
        """Channels whose amount paid on-chain (``escrow.spent``) differs from ``expected`` (default: every receipt
        signed): {channel: (expected, paid)}. One JSON-RPC batch of reads per 500 channels."""
        expected = self.cumulative if expected is None else expected
        reader = RawReader(self.w3.provider.endpoint_uri, self.system.escrow.address, self.system.staking.address)
        keys = list(expected)
        paid = [x for i in range(0, len(keys), 500) for x in reader.many([reader.spent(p, n) for p, n in keys[i:i + 500]])]
        return {k: (expected[k], v) for k, v in zip(keys, paid, strict=True) if v != expected[k]}

    def check_paid(self) -> bool:
        return not self.unpaid()


# Signing (run in worker processes, before any timing) ---------------------------------------------------------------
def sign_channel(args: tuple) -> list[dict]:
    """Receipts for one channel, in order: per receipt a voucher (cap = charged + 10 x amount, what a payer signs
    before its request) and the node's receipt, both in the wire form (``{"receipt": ..., "voucher": ...}``).

    ``args``: (payer key, node key, escrow domain fields, staking domain fields, count, start cumulative, amount,
    timestamp); a tuple of plain values so that a process pool can map it."""
    payer_key, node_key, escrow_domain, staking_domain, count, start_cumulative, amount, ts = args
    escrow_domain, staking_domain = Domain(**escrow_domain), Domain(**staking_domain)
    payer, node = Account.from_key(payer_key).address, Account.from_key(node_key).address
    out, cumulative = [], start_cumulative
    for _ in range(count):
        voucher = Voucher(payer=payer, node=node, max_cumulative=cumulative + 10 * amount)
        cumulative += amount
        receipt = Receipt(request_id="0x" + secrets.token_hex(32), payer=payer, node=node, model_id="0x" + "11" * 32,
                          input_hash="0x" + secrets.token_hex(32), output_hash="0x" + secrets.token_hex(32),
                          amount=amount, cumulative=cumulative, timestamp=ts)
        out.append({"receipt": receipt_json(receipt, receipt.sign_with(node_key, staking_domain)),
                    "voucher": voucher_json(voucher, voucher.sign_with(payer_key, escrow_domain))})
    return out


def receipt_id(item: dict, staking_domain: Domain) -> str:
    """The id the relayer gives a receipt: its EIP-712 digest in the staking domain."""
    return "0x" + parse_receipt(item["receipt"]).fast_digest(staking_domain).hex()


def encode(item: dict) -> bytes:
    return json.dumps(item, separators=(",", ":")).encode()


# Bodies -------------------------------------------------------------------------------------------------------------
def interleave(channels: list[list[dict]]) -> list[dict]:
    """Receipts in arrival order: round-robin over the channels."""
    return [ch[i] for i in range(max(len(c) for c in channels)) for ch in channels if i < len(ch)]


def bulk_chunks(channels: list[list[dict]], size: int, newest_voucher: bool) -> list[list[dict]]:
    """The items of bulk /settle bodies of ``size`` receipts, in sending order.

    newest_voucher=False: receipts from every node mixed, each with its own voucher.
    newest_voucher=True: what a node does: it submits its own receipts, pairing each with the newest voucher it
    holds for that channel (the one its payer signed last; it covers every earlier receipt of the channel)."""
    if not newest_voucher:
        items = interleave(channels)
        return [items[i:i + size] for i in range(0, len(items), size)]
    by_node: dict[str, list[list[dict]]] = {}
    for ch in channels:
        by_node.setdefault(ch[0]["receipt"]["node"], []).append(ch)
    chunks_per_node = []
    for items in (interleave(chs) for chs in by_node.values()):
        chunks = []
        for i in range(0, len(items), size):
            chunk = items[i:i + size]
            newest = {x["receipt"]["payer"]: x["voucher"] for x in chunk}
            chunks.append([{"receipt": x["receipt"], "voucher": newest[x["receipt"]["payer"]]} for x in chunk])
        chunks_per_node.append(chunks)
    # the nodes submit concurrently: interleave their requests
    return interleave(chunks_per_node)


def bulk_body(chunk: list[dict]) -> bytes:
    return b'{"receipts":[' + b",".join(encode(x) for x in chunk) + b"]}"


def bulk_bodies(channels: list[list[dict]], size: int, newest_voucher: bool) -> list[bytes]:
    return [bulk_body(chunk) for chunk in bulk_chunks(channels, size, newest_voucher)]


# Drivers ------------------------------------------------------------------------------------------------------------
class RawConnection:
    """A minimal HTTP/1.1 keep-alive client connection (asyncio streams) for the high-rate single-receipt phases.

    httpx's async client costs ~1-3 ms of CPU per request here (more than the relayer spends on a receipt), so on
    two shared cores it, not the relayer, would set the pace; this one costs tens of microseconds."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> RawConnection:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        assert self.reader is not None and self.writer is not None
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.host.encode(), len(body), body))
        status = int((await self.reader.readline()).split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def open_connections(url: str, count: int) -> list[RawConnection]:
    host, port = url.removeprefix("http://").split(":")
    return [await RawConnection(host, int(port)).open() for _ in range(count)]


def _urls(urls: str | list[str]) -> list[str]:
    return [urls] if isinstance(urls, str) else urls


def _until(seconds: float | None) -> float:
    return time.perf_counter() + seconds if seconds is not None else float("inf")


Post = Callable[[bytes], Awaitable[tuple[int, bytes]]]


async def _closed_loop(posts: list[tuple[str, Post]], bodies: list[bytes], seconds: float | None,
                       accepted: Callable[[bytes], int], answered: list[int] | None) -> dict:
    """One worker per ``(url, post)`` sending the next body on the last answer, until the bodies run out or the
    ``seconds`` are up (requests in flight finish); ``accepted(answer)``: receipts an answer accepted.

    A 503 (the relayer is busy or its store or chain is unavailable: retry later) puts the body back to be sent
    again, after a pause of that worker, as a node's outbox would; ``unavailable`` counts them by error code.
    ``answered`` (if given) receives the indices of the bodies answered 200."""
    queue = list(reversed(range(len(bodies))))
    latencies: list[float] = []
    answered = [] if answered is None else answered
    unavailable: dict[str, int] = {}
    per_url = dict.fromkeys((url for url, _ in posts), 0)

    async def worker(url: str, post: Post, until: float) -> None:
        while queue and time.perf_counter() < until:
            index = queue.pop()
            t0 = time.perf_counter()
            status, answer = await post(bodies[index])
            if status == 503:
                code = str(json.loads(answer).get("error")) if answer[:1] == b"{" else "503"
                unavailable[code] = unavailable.get(code, 0) + 1
                queue.append(index)
                await asyncio.sleep(0.2)
                continue
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                raise RuntimeError(f"settle failed: {status} {answer[:300]!r}")
            per_url[url] += accepted(answer)
            answered.append(index)

    start, until = time.perf_counter(), _until(seconds)
    await asyncio.gather(*(worker(url, post, until) for url, post in posts))
    elapsed = time.perf_counter() - start
    done = sum(per_url.values())
    return {"receipts": done, "seconds": elapsed, "rate": done / elapsed, "requests": len(latencies),
            "unavailable": unavailable, "per_url": per_url,
            "p50_ms": 1000 * statistics.median(latencies) if latencies else None,
            "p99_ms": 1000 * percentile(latencies, 99) if latencies else None}


def _httpx_post(client: httpx.AsyncClient, url: str) -> Post:
    async def post(body: bytes) -> tuple[int, bytes]:
        res = await client.post(f"{url}/settle", content=body, headers={"content-type": "application/json"})
        return res.status_code, res.content

    return post


async def run_bulk(urls: str | list[str], bodies: list[bytes], concurrency: int, seconds: float | None = None,
                   answered: list[int] | None = None) -> dict:
    """``concurrency`` workers (spread round-robin over the relayers ``urls``) each sending the next bulk body on the
    last answer, until the bodies run out or, with ``seconds``, that time is up (requests in flight finish).
    ``answered`` (if given) receives the indices of the bodies answered; ``per_url``: receipts accepted by each
    relayer; 503 answers as in ``_closed_loop``."""
    urls = _urls(urls)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        for url in urls:
            await client.get(f"{url}/healthz")
        posts = [(urls[i % len(urls)], _httpx_post(client, urls[i % len(urls)])) for i in range(concurrency)]
        return await _closed_loop(posts, bodies, seconds, lambda answer: json.loads(answer)["accepted"], answered)


async def run_single(urls: str | list[str], items: list[bytes], concurrency: int, client: str = "raw",
                     seconds: float | None = None, answered: list[int] | None = None) -> dict:
    """One receipt per request, ``concurrency`` connections (spread round-robin over the relayers ``urls``) each
    sending its next request on the last answer, until the items run out or ``seconds`` are up; ``answered`` as in
    :func:`run_bulk`. ``client``: "raw" (:class:`RawConnection`) or "httpx"."""
    urls = _urls(urls)
    targets = [urls[i % len(urls)] for i in range(concurrency)]
    if client == "raw":
        conns = [(await open_connections(url, 1))[0] for url in targets]
        try:
            posts = [(url, functools.partial(c.post, "/settle")) for url, c in zip(targets, conns, strict=True)]
            res = await _closed_loop(posts, items, seconds, lambda _: 1, answered)
        finally:
            for c in conns:
                c.close()
    else:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            for url in urls:
                await http.get(f"{url}/healthz")
            res = await _closed_loop([(url, _httpx_post(http, url)) for url in targets], items, seconds,
                                     lambda _: 1, answered)
    return {**res, "client": client}


# Reads --------------------------------------------------------------------------------------------------------------
def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def wait_settled(client: httpx.Client, timeout: float = 300) -> float:
    """Wait until the relayer reports nothing pending; the seconds waited."""
    start = time.monotonic()
    while client.get("/healthz").json()["pendingReceipts"] > 0:
        if time.monotonic() - start > timeout:
            raise RuntimeError("receipts still pending")
        time.sleep(0.2)
    return time.monotonic() - start


def settle_latencies(client: httpx.Client, ids: list[str]) -> list[float]:
    """Acceptance to confirmation (the relayer's ``settledAt - acceptedAt``) of the settled receipts among ``ids``."""
    out = []
    for rid in ids:
        view: dict[str, Any] = client.get(f"/receipts/{rid}").json()
        if view.get("status") == "settled" and view.get("settledAt"):
            out.append(view["settledAt"] - view["acceptedAt"])
    return out
