"""The relayer starved of its chain: its RPC endpoint refuses connections (an HTTP forwarder in front of anvil, shut
down and brought back on the same port). Meanwhile every answer is a documented one (503 ``chain_unavailable`` or
what the caches still know), never a 5xx crash; ``/healthz`` says so; once the chain is back the relayer serves and
settles again without a restart, and a receipt accepted before or during the outage is paid exactly once."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from test_relayer_verify import credit_request

from offchain.devkit.devnet import OPG, ChannelSim, RelayerProc, free_port, wait_until


class RpcForwarder:
    """``http://127.0.0.1:<port>`` forwarding JSON-RPC POSTs to anvil; ``down()`` closes the port (connection
    refused), ``up()`` opens it again. ``fault`` set, the forwarder answers every call itself instead: ``rpc_error``
    a JSON-RPC error object (a provider's "internal error" or rate limit, HTTP 200), ``http_502`` a bad gateway."""

    def __init__(self, target: str):
        self.target, self.port = target, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: ThreadingHTTPServer | None = None
        self.fault: str | None = None

    def up(self) -> None:
        forwarder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if forwarder.fault == "rpc_error":
                    call = json.loads(body)
                    error = {"code": -32005, "message": "limit exceeded: too many requests, try again later"}
                    calls = call if isinstance(call, list) else [call]
                    answer = [{"jsonrpc": "2.0", "id": c.get("id"), "error": error} for c in calls]
                    status, content = 200, json.dumps(answer if isinstance(call, list) else answer[0]).encode()
                elif forwarder.fault == "http_502":
                    status, content = 502, b'{"message": "bad gateway"}'
                else:
                    res = httpx.post(forwarder.target, content=body, headers={"content-type": "application/json"},
                                     timeout=30)
                    status, content = res.status_code, res.content
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture(scope="module")
def starved(devnet, tmp_path_factory):
    rpc = RpcForwarder(devnet.url)
    rpc.up()
    proc = RelayerProc(devnet, tmp_path_factory.mktemp("relayer-outage") / "relayer.sqlite3", 1, "--rpc-retries", "1")
    proc.args[proc.args.index(devnet.url)] = rpc.url
    proc.start()
    yield proc, rpc
    rpc.down()
    proc.stop()


def test_chain_outage_answers_503_never_a_crash_and_the_relayer_recovers_without_restart(starved, devnet):
    relayer, rpc = starved
    node, payer = devnet.new_node(), devnet.new_payer(20 * OPG)
    ch = ChannelSim(devnet, payer, node, price_cap=5 * OPG)
    before = relayer.post("/settle", ch.next(OPG))
    assert before.status_code == 200, before.text
    rpc.down()
    try:
        time.sleep(1)
        health = relayer.get("/healthz")
        assert health.status_code == 503 and health.json()["chainOk"] is False, health.text
        fresh_payer = devnet.new_payer(5 * OPG)  # never seen: nothing cached about it
        fresh = ChannelSim(devnet, fresh_payer, node).voucher(3 * OPG)
        res = relayer.post("/verify", credit_request(devnet, fresh_payer.address, node.address, 3 * OPG,
                                                     fresh.signature, price=OPG))
        assert res.status_code == 503 and res.json()["error"] == "chain_unavailable", res.text
        during = relayer.post("/settle", ch.next(OPG))  # the node's payability may be cached: stored or 503
        assert during.status_code in (200, 503), during.text
        if during.status_code == 503:
            assert during.json()["error"] == "chain_unavailable"
        for path in ("/batches", "/slashes", "/feed/receipts", f"/channels/{payer.address}/{node.address}"):
            res = relayer.get(path)
            assert res.status_code in (200, 503), (path, res.status_code, res.text)
    finally:
        rpc.up()
    deadline = time.monotonic() + 30
    while relayer.get("/healthz").status_code != 200:
        assert time.monotonic() < deadline, relayer.get("/healthz").text
        time.sleep(0.2)
    after = relayer.post("/settle", ch.next(OPG))
    assert after.status_code == 200, after.text
    ids = [before.json()["id"], after.json()["id"]] + ([during.json()["id"]] if during.status_code == 200 else [])
    relayer.wait_receipts(ids, timeout=60)
    channel = relayer.get(f"/channels/{payer.address}/{node.address}").json()
    assert channel["charged"] == channel["settled"] == str(devnet.spent(payer, node)), channel


@pytest.mark.parametrize("fault", ["rpc_error", "http_502"])
def test_rpc_errors_answer_503_never_a_crash_and_the_relayer_recovers(starved, devnet, fault):
    """The RPC answers, but with errors: a JSON-RPC error object for every call (a provider's rate limit) or HTTP
    502. Where the chain is needed the relayer answers 503 ``chain_unavailable`` (never 500), its reads answer, and
    it settles once the RPC is well again."""
    relayer, rpc = starved
    node, payer = devnet.new_node(), devnet.new_payer(20 * OPG)
    ch = ChannelSim(devnet, payer, node, price_cap=5 * OPG)
    before = relayer.post("/settle", ch.next(OPG))
    assert before.status_code == 200, before.text
    relayer.wait_receipts([before.json()["id"]], timeout=60)
    rpc.fault = fault
    try:
        health = wait_until(lambda: (r := relayer.get("/healthz")).status_code == 503 and r.json(), timeout=30,
                            what="the relayer to notice the RPC errors")
        assert health["chainOk"] is False, health
        fresh_payer = devnet.new_payer(5 * OPG)
        fresh = ChannelSim(devnet, fresh_payer, node).voucher(3 * OPG)
        res = relayer.post("/verify", credit_request(devnet, fresh_payer.address, node.address, 3 * OPG,
                                                     fresh.signature, price=OPG))
        assert res.status_code == 503 and res.json()["error"] == "chain_unavailable", res.text
        during = relayer.post("/settle", ch.next(OPG))
        assert during.status_code in (200, 503), during.text
        if during.status_code == 503:
            assert during.json()["error"] == "chain_unavailable", during.text
            ch.cumulative -= OPG  # refused: its node offers it again
        for path in ("/batches", "/slashes", "/feed/receipts", f"/channels/{payer.address}/{node.address}"):
            res = relayer.get(path)
            assert res.status_code in (200, 503), (path, res.status_code, res.text)
    finally:
        rpc.fault = None
    wait_until(lambda: relayer.get("/healthz").status_code == 200, timeout=30, what="healthy again")
    after = relayer.post("/settle", ch.next(OPG))
    assert after.status_code == 200, after.text
    ids = [before.json()["id"], after.json()["id"]] + ([during.json()["id"]] if during.status_code == 200 else [])
    relayer.wait_receipts(ids, timeout=60)
    assert devnet.spent(payer, node) == ch.cumulative
