"""The relayer starved of its chain: its RPC endpoint refuses connections (an HTTP forwarder in front of anvil, shut
down and brought back on the same port). Meanwhile every answer is a documented one (503 ``chain_unavailable`` or
what the caches still know), never a 5xx crash; ``/healthz`` says so; once the chain is back the relayer serves and
settles again without a restart, and a receipt accepted before or during the outage is paid exactly once."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from test_relayer_verify import credit_request

from offchain.devkit.devnet import OPG, ChannelSim, RelayerProc, free_port


class RpcForwarder:
    """``http://127.0.0.1:<port>`` forwarding JSON-RPC POSTs to anvil; ``down()`` closes the port (connection
    refused), ``up()`` opens it again."""

    def __init__(self, target: str):
        self.target, self.port = target, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server: ThreadingHTTPServer | None = None

    def up(self) -> None:
        target = self.target

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                res = httpx.post(target, content=body, headers={"content-type": "application/json"}, timeout=30)
                self.send_response(res.status_code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(res.content)))
                self.end_headers()
                self.wfile.write(res.content)

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
