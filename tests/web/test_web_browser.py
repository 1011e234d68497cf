"""`opg web` in a real browser (Debian's headless Chromium driven by Playwright's Python package, never a downloaded
browser), against the whole system as real processes on a private anvil: relayer, an honest node, a cheating node
(every answer wrong), three verifiers sampling every receipt, all with the fast ``builtin`` backend.

The browser, as the payer (anvil account 8, OPG in its wallet but no credits yet):
  - sends a chat, is told what credit it needs and tops up from the page (gasless deposit), sends again, sees the
    tokens arrive one by one and the credit row with the charged amount (the receipt's);
  - follows that answer's path once it settled: the batch, the transaction, gas, the Merkle proof verified against
    the on-chain root, and the same amounts as the chain's ``BatchSettled`` log and transaction receipt;
  - sees a slash in the network view after the cheating node is caught (its traffic comes from a second payer
    through the SDK);
  - sees charts with data.
Every request the pages make goes to 127.0.0.1 (Playwright's request events), every page carries
``Content-Security-Policy: default-src 'self'``, and no CSP violation is reported. Screenshots are saved under
``.cache/test-artifacts/web/`` and checked to be non-blank.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from eth_account import Account
from web3.logs import DISCARD

from offchain.daemon.keys import anvil_key
from offchain.devkit.devchain import free_port, stop_process
from offchain.devkit.system import OPG, Operator, System

ROOT = Path(__file__).resolve().parents[2]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = ROOT / ".cache" / "test-artifacts" / "web"
WEB_PAYER, SDK_PAYER = 8, 7

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make test installs it)")


def _ports(n: int) -> list[int]:
    return [free_port() for _ in range(n)]


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    rpc, relayer, *ports = _ports(7)
    s = System(state_dir=tmp / "state", rpc_port=rpc, relayer_port=relayer, backend="builtin", sample_rate=1.0,
               deployments_dir=tmp / "deployments", batch_age=1.5, quiet=True,
               nodes=[Operator("honest", "inference", 1, ports[0], 300),
                      Operator("cheater", "inference", 5, ports[1], 300, cheat_rate=1.0)],
               verifiers=[Operator("verifier-1", "verifier", 2, ports[2], 200),
                          Operator("verifier-2", "verifier", 3, ports[3], 300),
                          Operator("verifier-3", "verifier", 6, ports[4], 400)])
    try:
        s.start()
        s.fund(Account.from_key(anvil_key(WEB_PAYER)).address, 50 * OPG)
        s.tmp = tmp
        yield s
    finally:
        s.stop()


def start_web(system, who: list[str], state_dir: Path, name: str):
    """``opg web`` as a subprocess; returns (process, url) once its /healthz answers."""
    port = free_port()
    log = system.tmp / f"{name}.log"
    args = [sys.executable, "-m", "offchain.cli", "web", *who, "--rpc-url", system.rpc_url,
            "--relayer-url", system.relayer_url, "--deployment", str(system.deployment_file),
            "--state-dir", str(state_dir), "--port", str(port), "--max-tokens", "16"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


@pytest.fixture(scope="module")
def web(system):
    proc, url = start_web(system, ["--dev-account", str(WEB_PAYER)], system.tmp / "web-client", "web")
    yield url
    stop_process(proc)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(browser, web):
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    p = context.new_page()
    p.requests_seen = []
    p.csp_headers = []
    p.console_errors = []
    p.on("request", lambda r: p.requests_seen.append(r.url))
    p.on("response", lambda r: p.csp_headers.append((r.url, r.headers.get("content-security-policy"))))
    p.on("console", lambda m: p.console_errors.append(m.text) if m.type == "error" else None)
    yield p
    context.close()


def png_colours(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct pixel colours) of an 8-bit RGB/RGBA PNG (Chromium's screenshots), decoded here
    (zlib + the five PNG row filters) so the check needs no imaging package."""
    import struct
    import zlib

    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour_type = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and colour_type in (2, 6), (depth, colour_type)
            bpp = 3 if colour_type == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw, stride = zlib.decompress(idat), width * bpp
    prev, colours = bytearray(stride), set()
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        if y % 4 == 0:  # every fourth row is plenty to tell a page from a blank
            colours.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp * 2))
        prev = line
    return width, height, len(colours)


def shot(page, name: str) -> Path:
    """A full-page screenshot under the artefacts folder, checked to be non-blank (many distinct colours)."""
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    width, height, colours = png_colours(path.read_bytes())
    assert width > 300 and height > 300, (width, height)
    assert colours > 20, f"{name}: a blank screenshot ({colours} colours)"
    return path


def send(page, prompt: str, node: str | None = None) -> None:
    page.fill("#prompt", prompt)
    if node:
        page.select_option("#node", node)
    page.click("#send")


def node_address(system, name: str) -> str:
    return next(n.address for n in system.nodes if n.name == name)


def test_chat_tops_up_then_streams_tokens_and_shows_the_credit_row(system, web, page):
    page.goto(web + "/")
    assert page.locator("#nodes tbody tr").count() == 2
    assert "this app holds" in page.locator("#keys").inner_text()
    honest = node_address(system, "honest")
    # No credits yet: the page says what the answer needs and tops up from the page (gasless: the relayer pays gas).
    send(page, "What does the relayer settle?", honest)
    page.wait_for_selector(".credit-row.insufficient", timeout=30_000)
    assert not page.locator("#topup").get_attribute("class").count("hidden")
    assert "needs up to" in page.locator("#topup-text").inner_text()
    page.fill("#topup-amount", "5")
    page.click("#deposit-gasless")
    page.wait_for_selector("#topup-result.good", timeout=60_000)
    assert "deposited 5 OPG gaslessly" in page.locator("#topup-result").inner_text()
    credits = system.chain.escrow.functions.balance_of(Account.from_key(anvil_key(WEB_PAYER)).address).call()
    assert credits == 5 * OPG
    # Now the answer streams: count the token events as they arrive.
    send(page, "Why batch settlements?", honest)
    answer = page.locator(".turn").nth(1)
    answer.locator(".text[data-tokens]").wait_for(timeout=30_000)
    # (locators, not wait_for_function: the page's CSP forbids the eval that needs)
    answer.locator(".credit-row .cost").wait_for(timeout=60_000)
    tokens = int(answer.locator(".text").get_attribute("data-tokens"))
    assert tokens > 3, "the answer arrived in one piece, not token by token"
    assert answer.locator(".text").inner_text().strip()
    row = answer.locator(".credit-row")
    cost_wei = int(row.locator(".cost").get_attribute("data-wei"))
    assert cost_wei > 0
    assert "this answer cost" in row.inner_text() and "credits left" in row.inner_text()
    receipt_id = row.locator("a.path-link").get_attribute("href").rsplit("/", 1)[1]
    view = httpx.get(f"{system.relayer_url}/receipts/{receipt_id}").json()
    assert int(view["amount"]) == cost_wei  # the row shows what the node's signed receipt charged
    answer.locator(".credit-row[data-status=settled]").wait_for(timeout=60_000)
    assert "settled in batch" in row.inner_text()
    assert "counts toward S1: " in row.locator(".season").inner_text()  # the season signal, as `opg chat` prints it
    shot(page, "chat")
    page.receipt_id = receipt_id


def test_the_answers_path_reaches_its_batch_with_the_chains_amounts_and_a_verified_proof(system, web, page):
    receipt_id = page.receipt_id
    page.click(".turn >> nth=1 >> a.path-link")
    page.wait_for_selector("#path-batch", timeout=30_000)
    view = httpx.get(f"{system.relayer_url}/receipts/{receipt_id}").json()
    batch = httpx.get(f"{system.relayer_url}/batches/{view['batchId']}").json()
    tx = batch["txHash"]
    w3 = system.chain.w3
    receipt = w3.eth.get_transaction_receipt(tx)
    log = system.chain.escrow.events.BatchSettled().process_receipt(receipt, errors=DISCARD)[0]
    assert page.locator("#path-tx").inner_text().lower() == tx.lower()
    assert int(page.locator("#batch-amount").get_attribute("data-wei")) == log.args.amount
    assert int(page.locator("#batch-gas").get_attribute("data-gas")) == receipt.gasUsed
    assert int(page.locator("#receipt-amount").get_attribute("data-wei")) == int(view["amount"])
    assert "✓" in page.locator("#proof-verified").inner_text()
    # the split adds up to the answer's amount
    parts = [int(page.locator(f"#split-{k}").get_attribute("data-wei")) for k in ("node", "verifier", "protocol")]
    assert sum(parts) == int(view["amount"])
    assert page.locator("#verdicts tbody tr").count() == 3
    # the season signal it added: its share of its node's protocol fee in the batch's FeesCredited (docs/seasons.md)
    run = next(f for f in system.chain.distributor.events.FeesCredited().process_receipt(receipt, errors=DISCARD)
               if f.args.node == node_address(system, "honest"))
    signal = page.locator("#season-signal")
    assert signal.get_attribute("data-counts") == "yes"
    assert int(signal.get_attribute("data-wei")) == run.args.protocol_fee * int(view["amount"]) // run.args.gross > 0
    assert "counts toward S1" in signal.inner_text() and "eligible fees" in signal.inner_text()
    shot(page, "answer-path")
    page.click("#path-batch")
    page.wait_for_selector("#batch-tx")
    assert page.locator("#batch-tx").inner_text().lower() == tx.lower()


def test_the_network_view_shows_the_slash_of_the_cheating_node(system, web, page):
    from offchain.client import OpgClient, payment_http_client

    payer = Account.from_key(anvil_key(SDK_PAYER))
    system.fund(payer.address, 10 * OPG)
    wallet = OpgClient(payer, system.rpc_url, system.deployment_file, relayer_url=system.relayer_url,
                       state=system.tmp / "sdk-client")
    wallet.deposit(10 * OPG)
    cheater = next(n for n in system.nodes if n.name == "cheater")
    with payment_http_client(wallet.payer(), base_url=cheater.url, timeout=60) as http:
        for i in range(2):
            res = http.post("/v1/chat/completions", json={"model": "builtin", "max_tokens": 8,
                                                          "messages": [{"role": "user", "content": f"q{i}"}]})
            assert res.status_code == 200, res.text
    page.goto(web + "/network")
    page.wait_for_selector("#slashes tr.slash", timeout=180_000)  # the table refreshes itself every 3 s
    text = page.locator("#slashes").inner_text()
    assert "fraud" in text
    cheater_row = page.locator("#net-nodes tbody tr", has_text=cheater.address[:10])
    assert "jailed" in cheater_row.inner_text()
    verifiers = page.locator("#net-verifiers tbody tr")
    assert verifiers.count() == 3 and "unreachable" not in page.locator("#net-verifiers").inner_text()
    # an answer of the slashed node: its path says its season signal counts zero
    rid = next(r["receiptId"] for r in wallet.state.requests(limit=50)
               if r.get("receiptId") and (r.get("node") or "").lower() == cheater.address.lower())
    page.goto(web + f"/answer/{rid}")
    signal = page.locator("#season-signal")
    assert signal.get_attribute("data-counts") == "no" and int(signal.get_attribute("data-wei")) == 0
    assert "counts zero: its node was slashed for fraud" in signal.inner_text()
    page.goto(web + "/network")
    # sortable: clicking a header orders the rows
    page.click("#batches th:has-text('gas / request')")
    assert page.locator("#batches th[data-dir]").count() >= 1
    shot(page, "network")


def test_charts_have_data(system, web, page):
    page.goto(web + "/network")
    page.locator('.chart[data-chart=gas][data-points]:not([data-points="0"]) canvas').wait_for(timeout=30_000)
    assert int(page.locator(".chart[data-chart=gas]").get_attribute("data-points")) > 0
    page.goto(web + "/payer")
    page.locator('.chart[data-chart=credits][data-points]:not([data-points="0"]):not([data-points="1"]) canvas').wait_for(timeout=30_000)
    assert int(page.locator(".chart[data-chart=credits]").get_attribute("data-points")) > 1
    assert page.locator("#answers tbody tr").count() >= 1
    # the open season's standing, as the seasons package computes it from the chain's logs (`opg balance`'s numbers)
    from offchain.seasons.standing import SeasonView

    payer = Account.from_key(anvil_key(WEB_PAYER)).address
    standing = SeasonView(system.chain.w3, system.chain.deployment, system.deployment_file).open_season(payer)
    card = page.locator("#season-standing")
    assert int(card.get_attribute("data-fees")) == standing["fees"] > 0
    assert int(card.get_attribute("data-usage")) == standing["usage"] > 0
    assert f"S{standing['season']} so far" in card.inner_text()
    assert "Deposited" in page.locator("#events").inner_text()
    shot(page, "payer")


def test_an_app_holding_only_the_session_key_says_so_and_pays_with_it(system, page):
    from offchain.client import OpgClient

    payer = Account.from_key(anvil_key(SDK_PAYER))
    wallet = OpgClient(payer, system.rpc_url, system.deployment_file, relayer_url=system.relayer_url,
                       state=system.tmp / "sdk-client")
    session = wallet.authorize_session(expires_in=3 * 3600, allowance=2 * OPG)
    proc, url = start_web(system, ["--payer", payer.address], system.tmp / "sdk-client", "web-session")
    try:
        page.goto(url + "/")
        keys = page.locator("#keys").inner_text()
        assert "only the payer's session key" in keys and session["key"][:10] in keys
        send(page, "Who signs this voucher?", node_address(system, "honest"))
        page.locator(".turn >> nth=0 >> .credit-row a.path-link").wait_for(timeout=60_000)
        page.click(".turn >> nth=0 >> a.path-link")
        page.wait_for_selector("#step-voucher")
        voucher = page.locator("#step-voucher").inner_text()
        assert session["key"] in voucher and "(session key)" in voucher
        refused = httpx.post(url + "/api/deposit", json={"amount": "1"}, headers={"X-OPG-Web": "1"})
        assert refused.status_code == 400 and "only the session key" in refused.json()["reason"]
        shot(page, "session-key-answer")
    finally:
        stop_process(proc)


def test_attack_cross_site_request_to_spend_the_payers_credits_is_refused(system, web):
    body = '{"prompt": "spend my credits", "node": null}'
    credits = system.chain.escrow.functions.balance_of(Account.from_key(anvil_key(WEB_PAYER)).address).call()
    forged = [
        ({"Content-Type": "text/plain", "Origin": "http://evil.example"}, 403),  # a simple form/fetch POST
        ({"Content-Type": "application/json", "X-OPG-Web": "1", "Origin": "http://evil.example"}, 403),
        ({"Content-Type": "application/json"}, 403),  # no X-OPG-Web: the header a cross-site page cannot send
        ({"Content-Type": "text/plain", "X-OPG-Web": "1"}, 415),
    ]
    for headers, status in forged:
        for path in ("/api/chat", "/api/deposit"):
            res = httpx.post(web + path, content=body, headers=headers)
            assert res.status_code == status, (path, headers, res.text)
            assert res.json()["field"] in ("Origin", "X-OPG-Web", "Content-Type")
    time.sleep(1)
    assert system.chain.escrow.functions.balance_of(Account.from_key(anvil_key(WEB_PAYER)).address).call() == credits


def test_attack_dns_rebinding_host_is_refused(web):
    port = urlparse(web).port
    for host in (f"evil.example:{port}", "127.0.0.1:1", f"localhost.evil.example:{port}"):
        res = httpx.get(web + "/payer", headers={"Host": host})
        assert res.status_code == 400 and res.json()["error"] == "forbidden_host", host
        res = httpx.post(web + "/api/chat", json={"prompt": "x"}, headers={"Host": host, "X-OPG-Web": "1"})
        assert res.status_code == 400, host
    assert httpx.get(web + "/payer").status_code == 200  # the honest path: the app's own address


def test_opg_web_refuses_to_start_without_exactly_one_payer(system, tmp_path):
    for args, code in (([], 2), (["--dev-account", "4", "--payer", "0x" + "11" * 20], 2),
                       (["--payer", "0x" + "22" * 20, "--state-dir", str(tmp_path)], 1)):
        out = subprocess.run([sys.executable, "-m", "offchain.cli", "web", "--rpc-url", system.rpc_url,
                              "--deployment", str(system.deployment_file), *args], cwd=ROOT, capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == code, (args, out.stdout, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("opg web: error:"), out.stderr


def test_every_request_stays_on_127_0_0_1_under_the_content_security_policy(page):
    hosts = {urlparse(u).hostname for u in page.requests_seen if not u.startswith(("data:", "blob:"))}
    assert hosts == {"127.0.0.1"}, hosts
    documents = [(u, c) for u, c in page.csp_headers if not u.startswith(("data:", "blob:"))]
    assert documents and all(c == "default-src 'self'" for _u, c in documents), \
        [u for u, c in documents if c != "default-src 'self'"][:5]
    violations = [e for e in page.console_errors if "Content Security Policy" in e]
    assert not violations, violations
