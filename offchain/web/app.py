"""``opg web``: a local web app for one payer, on the project's SDK (``offchain.client``).

Pages (server-rendered with Jinja2; ``static/app.js`` streams the chat and refreshes tables and charts; uPlot is
vendored under ``static/vendor/``; every response carries ``Content-Security-Policy: default-src 'self'``):

  /                  chat: node and model picker (ranked), streamed answers, the credit row under each answer
  /answer/{id}       the path of one answer's OPG: voucher, receipt, verdicts, batch + transaction + Merkle proof,
                     split and emission, and the season signal it added
  /batch/{id}        one batch: claims, receipts covered, gas, the chain's log
  /payer             credits over time, the open season's standing, every answer, withdrawals, session keys
  /network           batches, nodes, verifiers, slashes, pools and emissions (sortable, recent windows)
  /api/...           JSON for the page's scripts (chat stream as NDJSON, credit rows, charts, node ranking)
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from ..amounts import parse_opg
from ..chain import Chain
from ..client import OpgClient, WalletError, payment_http_client
from ..client.chat import sse_chunks
from ..client.transport import payment_required_of
from ..sdk.constants import ROLE_INFERENCE, ROLE_VERIFIER
from ..sdk.relayer_client import RelayerClient, RelayerError
from . import fmt
from .index import Index
from .season import WebSeasons

log = logging.getLogger("opg.web")
HERE = Path(__file__).resolve().parent
CSP = "default-src 'self'"
WINDOWS = {"5m": 300, "15m": 900, "1h": 3600, "1d": 86400, "all": None}
TYPICAL = (60, 120)  # prompt and output tokens of the "typical request" nodes are ranked by


@dataclass
class WebConfig:
    rpc_url: str
    relayer_url: str
    payer: str
    account: LocalAccount | None  # the payer's main key, if given; None: session key only
    state_dir: Path
    deployment: Path | None = None
    max_tokens: int = 128
    host: str = "127.0.0.1"
    port: int | None = None  # the port served (the Host header must name it); None: any
    extra: dict = field(default_factory=dict)


class ChatIn(BaseModel):
    prompt: str = Field(min_length=1, max_length=8000)
    node: str | None = Field(None, description="node address; none: the best ranked")
    model: str | None = None
    exact: bool = False
    max_tokens: int | None = Field(None, ge=1, le=4096)
    history: list[dict] = Field(default_factory=list, max_length=40)


class DepositIn(BaseModel):
    amount: str = Field(min_length=1, max_length=40)
    gasless: bool = False


class Web:
    """The app's state: one payer's wallet (OpgClient), the index of chain and relayer, the node ranking."""

    def __init__(self, cfg: WebConfig):
        self.cfg = cfg
        self.wallet = OpgClient(cfg.account, cfg.rpc_url, cfg.deployment, relayer_url=cfg.relayer_url,
                                state=cfg.state_dir, payer_address=cfg.payer)
        self.chain: Chain = self.wallet.chain
        self.relayer = RelayerClient(cfg.relayer_url)
        self.index = Index(self.chain, self.relayer, self.wallet.address)
        self.seasons = WebSeasons(self.chain, cfg.deployment)  # the season signal (offchain/seasons, issue 17)
        self._nodes: list[dict] = []
        self._nodes_at = 0.0
        self._nodes_lock = threading.Lock()
        self._http = httpx.Client(timeout=httpx.Timeout(10, connect=3))

    # Keys ---------------------------------------------------------------------------------------------------
    def keys(self) -> dict:
        """Which keys this app holds, as the page says it."""
        session = None
        try:
            session = self.wallet.session()
        except Exception:  # noqa: BLE001 - the chain may be down; the page still renders
            pass
        main = self.cfg.account is not None
        if session and session.get("inForce"):
            signs = f"session key {session['key']} signs vouchers (allowance left {fmt.opg(session['allowance'])} OPG)"
        elif main:
            signs = "the payer's main key signs vouchers (no session key set up: `opg session` makes one)"
        else:
            signs = "no usable session key: set one up with `opg session --allowance OPG`"
        return {"main": main, "session": session, "signs": signs,
                "held": ("the payer's main key and its session key" if main and session else
                         "the payer's main key" if main else "only the payer's session key")}

    def payer(self, exact: bool = False):
        if exact:
            return self.wallet.payer(use_session=False)
        return self.wallet.payer()

    # Nodes --------------------------------------------------------------------------------------------------
    def nodes(self, max_age: float = 5.0) -> list[dict]:
        """Active inference nodes from their on-chain endpoints, each with its models (``/v1/models``), latency and
        record, ranked: fraud proven or slashed last, then by the price of a typical request, then latency."""
        with self._nodes_lock:
            if time.monotonic() - self._nodes_at < max_age and self._nodes:
                return self._nodes
            snap = self.index.snap
            out = []
            for row in self.index.account_rows(snap, ROLE_INFERENCE):
                if not row["active"] or not row["endpoint"]:
                    continue
                url = row["endpoint"].rstrip("/")
                started = time.perf_counter()
                try:
                    res = self._http.get(url + "/v1/models")
                    models = res.json().get("data") or [] if res.status_code == 200 else []
                except (httpx.HTTPError, ValueError):
                    models = []
                latency = (time.perf_counter() - started) * 1000
                if not models:
                    continue
                priced = []
                for m in models:
                    p = (m.get("opg") or {}).get("pricing") or {}
                    typical = int(p.get("base", 0)) + TYPICAL[0] * int(p.get("perPromptToken", 0)) + \
                        TYPICAL[1] * int(p.get("perOutputToken", 0))
                    priced.append({"id": m.get("id"), "pricing": p, "typical": typical,
                                   "modelId": (m.get("opg") or {}).get("modelId"),
                                   "deterministic": (m.get("opg") or {}).get("deterministic")})
                priced.sort(key=lambda m: m["typical"])
                out.append({**row, "url": url, "models": priced, "latencyMs": round(latency, 1),
                            "typical": priced[0]["typical"]})
            out.sort(key=lambda n: (n["fraudProven"] + n["slashes"] > 0, n["typical"], n["latencyMs"],
                                    -n["stake"]))
            for i, n in enumerate(out):
                n["rank"] = i + 1
            self._nodes, self._nodes_at = out, time.monotonic()
            return out

    # Chat ---------------------------------------------------------------------------------------------------
    def chat(self, body: ChatIn, emit) -> None:
        """Runs in a thread: asks the node through the SDK's paying transport, calls ``emit(dict)`` per event."""
        nodes = self.nodes()
        node = next((n for n in nodes if body.node and n["address"].lower() == body.node.lower()), None)
        if node is None:
            if body.node:
                emit({"type": "error", "message": f"node {body.node} is not an active node with models"})
                return
            if not nodes:
                emit({"type": "error", "message": "no active inference node answers on its on-chain endpoint"})
                return
            node = nodes[0]
        model = body.model or node["models"][0]["id"]
        emit({"type": "start", "node": node["address"], "nodeUrl": node["url"], "model": model,
              "scheme": "exact" if body.exact else "opg-credit"})
        messages = [m for m in body.history if isinstance(m, dict) and m.get("role") in ("user", "assistant")
                    and isinstance(m.get("content"), str)][-20:]
        messages.append({"role": "user", "content": body.prompt})
        request = {"model": model, "messages": messages, "stream": True,
                   "max_tokens": body.max_tokens or self.cfg.max_tokens}
        try:
            payer = self.payer(exact=body.exact)
        except WalletError as exc:
            emit({"type": "error", "message": str(exc)})
            return
        schemes = ("exact",) if body.exact else None
        client = payment_http_client(payer, exact=body.exact, schemes=schemes, base_url=node["url"],
                                     timeout=httpx.Timeout(300, connect=10))
        parts: list[str] = []
        try:
            with client.stream("POST", "/v1/chat/completions", json=request) as res:
                if res.status_code != 200:
                    res.read()
                    emit(self._refusal(res, node, request, body.exact))
                    return
                for chunk in sse_chunks(res.iter_lines()):
                    for choice in chunk.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content")
                        if piece:
                            parts.append(piece)
                            emit({"type": "token", "text": piece})
                ticket = res.extensions.get("opg_payment")
            outcome = ticket.wait(10) if ticket else None
        except httpx.HTTPError as exc:
            emit({"type": "error", "message": f"node {node['url']} failed: {exc.__class__.__name__}"})
            return
        finally:
            client.close()
        if outcome is None:
            emit({"type": "error", "message": "the answer carried no payment outcome"})
            return
        row = self.credit_row(outcome.receipt_id, outcome=outcome.as_dict())
        emit({"type": "done", "answer": "".join(parts), "row": row})

    def _refusal(self, res: httpx.Response, node: dict, request: dict, exact: bool) -> dict:
        """A refused chat as the page shows it; for insufficient credit, what is needed and how to top up."""
        required = payment_required_of(res) or {}
        code = str(required.get("error") or "")
        try:
            body = res.json()
        except ValueError:
            body = {}
        message = ""
        if isinstance(body.get("error"), dict):
            message = body["error"].get("message") or ""
            code = code or str(body["error"].get("code") or "")
        elif isinstance(body.get("error"), str):
            code = code or body["error"]
        short = code.split(":")[0]
        if res.status_code == 402 and short in ("insufficient_balance", "allowance_exceeded", "insufficient_funds",
                                                "exposure_limit") or "insufficient" in message:
            quote = max((int(a.get("amount", 0)) for a in required.get("accepts") or []), default=0)
            try:
                spend = self.wallet.spendable()
            except Exception:  # noqa: BLE001
                spend = {"left": 0, "credits": 0, "allowance": None}
            left = int(spend["left"])
            need = max(quote - left, 0) or quote
            suggest = max(need, parse_opg("1"))
            return {"type": "insufficient", "code": short or "insufficient_balance",
                    "message": message or f"the node refused: {short}", "quote": fmt.opg(quote),
                    "left": fmt.opg(left), "credits": fmt.opg(spend["credits"]),
                    "allowance": None if spend["allowance"] is None else fmt.opg(spend["allowance"]),
                    "needed": fmt.opg(need), "suggest": fmt.opg(suggest, 18),
                    "canDeposit": self.cfg.account is not None, "allowanceShort": short == "allowance_exceeded",
                    "cli": {"deposit": f"opg deposit {fmt.opg(suggest, 18)} --dev-account N (or --keystore FILE)",
                            "gasless": f"opg deposit {fmt.opg(suggest, 18)} --gasless --keystore FILE",
                            "session": "opg session --allowance OPG"}}
        return {"type": "error", "code": short, "message": message or f"HTTP {res.status_code}: {code or res.text[:200]}"}

    # Rows ---------------------------------------------------------------------------------------------------
    def credit_row(self, receipt_id: str | None, outcome: dict | None = None) -> dict:
        """The row under an answer: cost, credits left, pending -> settled in batch N (from the relayer)."""
        record = self.wallet.state.load_request(receipt_id) if receipt_id else None
        outcome = outcome or {}
        payment = (record or {}).get("payment") or {}
        cost = outcome.get("cost") or (record or {}).get("receipt", {}).get("amount")
        left = outcome.get("creditsLeft") or payment.get("creditsLeft")
        scheme = outcome.get("scheme") or (record or {}).get("scheme")
        row = {"receiptId": receipt_id, "cost": fmt.opg(cost), "costWei": str(cost or 0),
               "creditsLeft": fmt.opg(left), "scheme": scheme, "status": "pending", "batchId": None, "tx": None,
               "problem": outcome.get("problem") or (record or {}).get("problem")}
        if scheme == "exact":
            tx = outcome.get("transaction") or payment.get("transaction")
            row.update(status="settled" if tx else "pending", tx=tx, text=(
                f"paid exact, tx {fmt.short(tx)}" if tx else "exact payment pending"))
            return row
        view = None
        if receipt_id:
            try:
                view = self.relayer.receipt(receipt_id)
            except RelayerError:
                view = None
        if view is not None:
            row.update(status=view.status, batchId=view.batch_id, tx=view.tx)
        if row["status"] == "settled":
            row["text"] = f"settled in batch {row['batchId']}, tx {fmt.short(row['tx'])}"
            row["season"] = self.seasons.signal(self.wallet.address)  # opg chat's season signal (docs/seasons.md)
        elif row["status"] == "rejected":
            row["text"] = f"rejected: {view.reason if view else ''}"
        else:
            row["text"] = "pending" + (f" (batch {row['batchId']} sent)" if row["batchId"] else "")
        return row

    # Answer path ---------------------------------------------------------------------------------------------
    def answer_path(self, receipt_id: str) -> dict | None:
        snap = self.index.snap
        record = self.wallet.state.load_request(receipt_id)
        indexed = snap.receipts.get(receipt_id)
        if record is None and indexed is None:
            return None
        receipt = (record or {}).get("receipt") or (indexed or {}).get("receipt") or {}
        view = self.relayer.receipt(receipt_id)
        out: dict[str, Any] = {"id": receipt_id, "record": record, "receipt": receipt, "view": view,
                               "scheme": (record or {}).get("scheme") or "opg-credit"}
        out["voucher"] = {"cap": (record or {}).get("quote"), "maxCumulative": (record or {}).get("maxCumulative"),
                          "signer": (record or {}).get("signer"), "payer": (record or {}).get("payer")}
        receipt_hash = (indexed or {}).get("receiptHash") or (view.receipt_hash if view else None)
        out["receiptHash"] = receipt_hash
        out["verdicts"] = self.verdicts(snap, receipt_id)
        out["proven"] = snap.proofs.get(receipt_hash or "")
        out["slashes"] = [s for s in snap.slashes if receipt_hash and s["evidence"] == receipt_hash]
        if out["scheme"] == "exact":
            tx = ((record or {}).get("payment") or {}).get("transaction")
            out["exactTx"] = tx
            out["exactGas"] = self.index.tx_gas(tx)[0] if tx else None
        batch = None
        if view is not None and view.batch_id is not None:
            batch = self.index.batch_for(snap, view.batch_id)
        out["batch"] = batch
        out["proof"] = self.index.proof(snap, receipt_id) if view is not None and view.status == "settled" else None
        amount = int(receipt.get("amount") or 0)
        out["split"] = self.split(snap, amount, receipt.get("node"), batch)
        out["season"] = self.seasons.answer(snap, out)
        return out

    def verdicts(self, snap, receipt_id: str) -> list[dict]:
        """Each verifier's check of the receipt (``GET /checks/{id}`` on its on-chain endpoint)."""
        out = []
        for address, acct in snap.accounts.items():
            if acct["role"] != ROLE_VERIFIER:
                continue
            endpoint = self.chain.staking.functions.endpoint(address).call() or acct["endpoint"]
            row = {"verifier": address, "endpoint": endpoint, "sampled": False}
            try:
                res = self._http.get(endpoint.rstrip("/") + f"/checks/{receipt_id}", timeout=3)
                if res.status_code == 200:
                    data = res.json()
                    row.update(sampled=True, status=data.get("status"), valid=data.get("valid"),
                               reason=data.get("reason"), posted=data.get("posted"), withheld=data.get("withheld"))
                elif res.status_code == 404:
                    row["status"] = "not sampled"
                else:
                    row["status"] = f"HTTP {res.status_code}"
            except (httpx.HTTPError, ValueError):
                row["status"] = "unreachable"
            out.append(row)
        return out

    def split(self, snap, amount: int, node: str | None, batch: dict | None) -> dict:
        """The answer's amount split as ``RewardDistributor.credit_fees`` splits a node's gross (protocol fee rounds
        up, verifier fee down, the node gets the rest), the batch's FeesCredited row of that node, and the
        emission the answer's share of its epoch's fees earned (once the epoch is finalized)."""
        dist = self.chain.distributor.functions
        pbps, vbps = int(dist.protocol_fee_bps().call()), int(dist.verifier_fee_bps().call())
        protocol = (amount * pbps + 9999) // 10000
        verifier = min(amount * vbps // 10000, amount - protocol)
        out: dict[str, Any] = {"amount": amount, "protocol": protocol, "verifier": verifier,
                               "node": amount - protocol - verifier, "protocolBps": pbps, "verifierBps": vbps,
                               "fees": None, "emission": None, "epoch": None}
        if batch and batch.get("chain") and node:
            fees = [f for f in snap.fees if f["tx"] == batch["chain"]["tx"] and f["node"] == node]
            if fees:
                f = fees[0]
                out["fees"] = f
                out["epoch"] = f["epoch"]
                fin = snap.finalized.get(f["epoch"])
                epoch_fees = int(dist.epoch_fees(f["epoch"]).call())
                if fin is None and dist.epoch_finalized(f["epoch"]).call():
                    fin = {"fees": epoch_fees, "emission": int(dist.epoch_emission(f["epoch"]).call())}
                if fin is not None and fin["fees"]:
                    out["emission"] = fin["emission"] * amount // fin["fees"]
                out["epochFinalized"] = fin is not None
                out["epochEmission"] = fin["emission"] if fin else None
        return out

    # Payer and network ---------------------------------------------------------------------------------------
    def answers(self, limit: int = 500) -> list[dict]:
        snap = self.index.snap
        rows = []
        for r in self.wallet.state.requests(limit=limit):
            if (r.get("payer") or "").lower() != self.wallet.address.lower() or not r.get("receiptId"):
                continue
            indexed = snap.receipts.get(r["receiptId"]) or {}
            cost = int((r.get("receipt") or {}).get("amount") or 0)
            status = indexed.get("status") or ("settled" if r.get("scheme") == "exact" else "pending")
            rows.append({"id": r["receiptId"], "time": r.get("createdAt"), "cost": cost, "node": r.get("node"),
                         "model": r.get("model"), "scheme": r.get("scheme"), "status": status,
                         "batchId": indexed.get("batchId"), "ok": r.get("ok")})
        rows.sort(key=lambda x: x["time"] or 0)
        return rows

    def credits_series(self) -> list[tuple[int, int]]:
        """(time, credits) at every block where the payer's balance could have changed, read at that block."""
        snap = self.index.snap
        payer = self.wallet.address
        blocks = {e["block"] for e in snap.payer_events if e["event"] in ("Deposited", "Withdrawn")}
        blocks |= {b["block"] for b in snap.batches if any(x["payer"] == payer for x in b["settled"])}
        blocks |= {s["block"] for s in snap.slashes if s["payer"] == payer}
        out = []
        esc = self.chain.escrow.functions
        for b in sorted(blocks)[-200:]:
            out.append((self.index.block_time(b), int(esc.balance_of(payer).call(block_identifier=b))))
        out.append((int(time.time()), int(esc.balance_of(payer).call())))
        return out

    def batch_rows(self, since: float | None) -> list[dict]:
        snap = self.index.snap
        exact = [x["gas"] for x in snap.exact_txs]
        exact_avg = sum(exact) // len(exact) if exact else None
        by_tx = {(b.tx_hash or "").lower(): b for b in snap.relayer_batches.values() if b.tx_hash}
        rows = []
        for b in snap.batches:
            if since and b["time"] < since:
                continue
            view = by_tx.get(b["tx"].lower())
            requests = view.receipt_count if view else None
            rows.append({**b, "id": view.id if view else None, "requests": requests,
                         "gasPerRequest": round(b["gas"] / requests) if requests else None,
                         "exactGas": exact_avg})
        return rows


def create_app(cfg: WebConfig, *, start_index: bool = True) -> FastAPI:
    web = Web(cfg)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters.update(opg=fmt.opg, gas=fmt.gas, short=fmt.short, ago=fmt.ago, clock=fmt.clock)

    async def lifespan(_app: FastAPI):
        await asyncio.to_thread(web.index.refresh)
        if start_index:
            web.index.start()
        yield
        web.index.stop()

    app = FastAPI(title="OPG web", description=__doc__, lifespan=lifespan, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.web = web

    hosts = {"127.0.0.1", "localhost", "[::1]", cfg.host}

    @app.middleware("http")
    async def csp(request: Request, call_next):
        refusal = _refuse_foreign(request, hosts, cfg.port)
        response = refusal or await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def page(request: Request, name: str, **ctx: Any) -> HTMLResponse:
        snap = web.index.snap
        return templates.TemplateResponse(request, name, {
            "payer": web.wallet.address, "keys": web.keys(), "snap": snap, "relayer": cfg.relayer_url,
            "rpc": cfg.rpc_url, "chain_id": web.chain.chain_id, **ctx})

    def window_of(request: Request) -> tuple[str, float | None]:
        name = request.query_params.get("window", "all")
        seconds = WINDOWS.get(name)
        if name not in WINDOWS:
            name = "all"
        return name, (time.time() - seconds) if seconds else None

    @app.get("/", response_class=HTMLResponse)
    async def chat_page(request: Request):
        nodes = await asyncio.to_thread(web.nodes)
        spend = await asyncio.to_thread(web.wallet.spendable)
        return page(request, "chat.html", nodes=nodes, spend=spend, max_tokens=cfg.max_tokens, nav="chat")

    @app.get("/api/nodes")
    async def api_nodes():
        nodes = await asyncio.to_thread(web.nodes)
        return [{"address": n["address"], "url": n["url"], "rank": n["rank"], "latencyMs": n["latencyMs"],
                 "stake": fmt.opg(n["stake"]), "slashes": n["slashes"], "fraudProven": n["fraudProven"],
                 "receipts": n["receipts"], "typical": fmt.opg(n["typical"]),
                 "models": [{"id": m["id"], "typical": fmt.opg(m["typical"])} for m in n["models"]]} for n in nodes]

    @app.post("/api/chat")
    async def api_chat(body: ChatIn):
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()

        def emit(event: dict) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, event)

        def run() -> None:
            try:
                web.chat(body, emit)
            except Exception as exc:  # noqa: BLE001 - shown to the user, logged with its trace
                log.exception("chat failed")
                emit({"type": "error", "message": f"{exc.__class__.__name__}: {str(exc)[:300]}"})
            finally:
                emit({"type": "end"})

        threading.Thread(target=run, name="opg-web-chat", daemon=True).start()

        async def stream():
            while True:
                event = await queue.get()
                if event["type"] == "end":
                    return
                yield json.dumps(event) + "\n"

        return StreamingResponse(stream(), media_type="application/x-ndjson",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/api/row/{receipt_id}")
    async def api_row(receipt_id: str):
        if not _is_id(receipt_id):
            return JSONResponse({"error": "invalid_field", "field": "receipt_id", "reason": "0x + 64 hex"}, 400)
        row = await asyncio.to_thread(web.credit_row, receipt_id)
        spend = await asyncio.to_thread(web.wallet.spendable)
        return {**row, "spendable": fmt.opg(spend["left"])}

    @app.post("/api/deposit")
    async def api_deposit(body: DepositIn):
        if cfg.account is None:
            return JSONResponse({"error": "no_key", "field": "amount", "reason":
                                 "this app holds only the session key; deposit with `opg deposit` (--gasless "
                                 "without ETH)"}, 400)
        try:
            amount = parse_opg(body.amount)
        except ValueError as exc:
            return JSONResponse({"error": "invalid_field", "field": "amount", "reason": str(exc)}, 400)
        if amount <= 0:
            return JSONResponse({"error": "invalid_field", "field": "amount", "reason": "must be positive"}, 400)
        try:
            if body.gasless:
                result = await asyncio.to_thread(web.wallet.deposit_gasless, amount)
            else:
                result = await asyncio.to_thread(web.wallet.deposit, amount)
        except WalletError as exc:
            return JSONResponse({"error": "refused", "field": "amount", "reason": str(exc)}, 400)
        spend = await asyncio.to_thread(web.wallet.spendable)
        credits = result.get("credits") or result.get("balance")
        return {"ok": True, "gasless": body.gasless, "transaction": result.get("transaction"),
                "amount": fmt.opg(amount), "credits": fmt.opg(credits), "spendable": fmt.opg(spend["left"])}

    @app.get("/answer/{receipt_id}", response_class=HTMLResponse)
    async def answer_page(request: Request, receipt_id: str):
        if not _is_id(receipt_id):
            return HTMLResponse("not a receipt id", 400)
        path = await asyncio.to_thread(web.answer_path, receipt_id.lower())
        if path is None:
            return HTMLResponse("unknown answer", 404)
        return page(request, "answer.html", a=path, nav="payer")

    @app.get("/batch/{batch_id}", response_class=HTMLResponse)
    async def batch_page(request: Request, batch_id: int):
        snap = web.index.snap
        view = await asyncio.to_thread(web.relayer.batch, batch_id)
        if view is None:
            return HTMLResponse("unknown batch", 404)
        joined = web.index.batch_for(snap, batch_id)
        receipts = sorted((r for r in snap.receipts.values() if r["batchId"] == batch_id),
                          key=lambda r: r["seq"])
        fees = [f for f in snap.fees if joined and joined["chain"] and f["tx"] == joined["chain"]["tx"]]
        exact = [x["gas"] for x in snap.exact_txs]
        return page(request, "batch.html", view=view, chain=joined["chain"] if joined else None, receipts=receipts,
                    fees=fees, exact_gas=(sum(exact) // len(exact)) if exact else None, nav="network")

    @app.get("/payer", response_class=HTMLResponse)
    async def payer_page(request: Request):
        answers = await asyncio.to_thread(web.answers)
        balance = await asyncio.to_thread(web.wallet.balance)
        season = await asyncio.to_thread(web.seasons.standing, web.wallet.address)
        snap = web.index.snap
        return page(request, "payer.html", answers=list(reversed(answers)), balance=balance, season=season,
                    events=list(reversed(snap.payer_events)), nav="payer",
                    partial=request.query_params.get("partial") == "1")

    @app.get("/network", response_class=HTMLResponse)
    async def network_page(request: Request):
        name, since = window_of(request)
        snap = web.index.snap
        nodes = await asyncio.to_thread(web.index.account_rows, snap, ROLE_INFERENCE)
        verifiers = await asyncio.to_thread(web.index.account_rows, snap, ROLE_VERIFIER)
        verifiers = await asyncio.to_thread(_verifier_extras, web, verifiers)
        pools = await asyncio.to_thread(_pools, web)
        slashes = [s for s in snap.slashes if not since or s["time"] >= since]
        return page(request, "network.html", batches=list(reversed(web.batch_rows(since))), nodes=nodes,
                    verifiers=verifiers, slashes=list(reversed(slashes)), pools=pools, window=name,
                    windows=list(WINDOWS), nav="network", partial=request.query_params.get("partial") == "1")

    @app.get("/api/charts/{name}")
    async def chart(name: str, request: Request):
        _, since = window_of(request)
        return await asyncio.to_thread(_chart, web, name, since)

    @app.get("/api/status")
    async def status():
        snap = web.index.snap
        return {"block": snap.block, "batches": len(snap.batches), "slashes": len(snap.slashes),
                "receipts": len(snap.receipts), "error": snap.error, "updatedAt": snap.updated_at}

    @app.get("/healthz")
    async def healthz():
        return {"ok": True, "payer": web.wallet.address, "block": web.index.snap.block}

    return app


def _refuse_foreign(request: Request, hosts: set[str], port: int | None) -> JSONResponse | None:
    """The app spends the payer's credits: only its own pages may drive it.

    - DNS rebinding: a site whose name resolves to 127.0.0.1 reaches this port with its own name in ``Host``; only
      the loopback names (or the ``--host`` served) with the served port are accepted.
    - Cross-site requests (CSRF): a page elsewhere can make the browser POST here (a "simple" request with
      ``Content-Type: text/plain`` needs no CORS preflight). Every POST must carry ``X-OPG-Web: 1`` (a custom header
      forces a preflight, which this app never grants) and JSON, and an ``Origin``, when sent, must be this app's.
    """
    host = request.headers.get("host", "")
    name, _, given_port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
    if not name:
        name, given_port = host, ""
    if name not in hosts or (port is not None and given_port != str(port)):
        return JSONResponse({"error": "forbidden_host", "field": "Host",
                             "reason": f"this app answers only to {sorted(hosts)[0]}:{port or 'PORT'}"}, 400)
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        origin = request.headers.get("origin")
        if origin is not None and origin != f"http://{host}":
            return JSONResponse({"error": "forbidden_origin", "field": "Origin",
                                 "reason": "requests from other sites are refused"}, 403)
        if request.headers.get("x-opg-web") != "1":
            return JSONResponse({"error": "missing_header", "field": "X-OPG-Web",
                                 "reason": "the app's own pages send X-OPG-Web: 1"}, 403)
        if not request.headers.get("content-type", "").startswith("application/json"):
            return JSONResponse({"error": "invalid_content_type", "field": "Content-Type",
                                 "reason": "application/json expected"}, 415)
    return None


def _is_id(value: str) -> bool:
    return len(value) == 66 and value.startswith("0x") and all(c in "0123456789abcdefABCDEF" for c in value[2:])


def _verifier_extras(web: Web, rows: list[dict], epochs: int = 8) -> list[dict]:
    """Each verifier's verdicts (its own ``/metrics`` at its on-chain endpoint: receipts judged valid / invalid,
    verdicts the relayer stored) and its share of the verifier pools of recent epochs (``epoch_verifier_fees`` x
    its weight / the epoch's total weight, what ``collect_verifier_reward`` pays)."""
    dist, stk = web.chain.distributor.functions, web.chain.staking.functions
    current = int(dist.epoch_now().call())
    pools = {e: int(dist.epoch_verifier_fees(e).call()) for e in range(max(0, current - epochs + 1), current + 1)}
    totals = {e: int(stk.total_weight_in(e).call()) for e, fees in pools.items() if fees}
    for row in rows:
        share = 0
        for e, total in totals.items():
            if total:
                share += pools[e] * int(stk.weight_in(e, row["address"]).call()) // total
        row["poolShare"] = share
        row["valid"] = row["invalid"] = row["posted"] = None
        try:
            text = web._http.get(row["endpoint"].rstrip("/") + "/metrics", timeout=2).text
        except httpx.HTTPError:
            continue
        counts: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("opg_verifier_"):
                name, _, value = line.rpartition(" ")
                metric = name.split("{")[0]
                try:
                    counts[metric] = counts.get(metric, 0) + float(value)
                except ValueError:
                    pass
        row["valid"] = int(counts.get("opg_verifier_receipts_agreed_total", 0))
        row["invalid"] = int(counts.get("opg_verifier_receipts_disputed_total", 0))
        row["posted"] = int(counts.get("opg_verifier_verdicts_posted_total", 0))
    return rows


def _pools(web: Web, epochs: int = 8) -> list[dict]:
    """Recent epochs: fees, verifier pool, emission (finalized or not)."""
    dist = web.chain.distributor.functions
    current = int(dist.epoch_now().call())
    rows = []
    for e in range(current, max(-1, current - epochs), -1):
        fees = int(dist.epoch_fees(e).call())
        rows.append({"epoch": e, "fees": fees, "verifierPool": int(dist.epoch_verifier_fees(e).call()),
                     "weight": int(web.chain.staking.functions.total_weight_in(e).call()),
                     "emission": int(dist.epoch_emission(e).call()), "finalized": bool(dist.epoch_finalized(e).call()),
                     "current": e == current,
                     "collected": sum(x["amount"] for x in web.index.snap.emissions if x["epoch"] == e)})
    return rows


def _chart(web: Web, name: str, since: float | None) -> dict:
    """Series for uPlot: ``{"x": [...], "series": [{"label", "values"}], "xlabel", "ylabel"}``."""
    snap = web.index.snap
    if name == "credits":
        pts = [p for p in web.credits_series() if not since or p[0] >= since]
        return {"x": [p[0] for p in pts], "time": True, "ylabel": "OPG",
                "series": [{"label": "credits (OPG)", "values": [fmt.opg_float(p[1]) for p in pts]}]}
    if name == "spend":
        total, xs, ys = 0, [], []
        for a in web.answers():
            total += a["cost"]
            if since and (a["time"] or 0) < since:
                continue
            xs.append(int(a["time"] or 0))
            ys.append(fmt.opg_float(total))
        if xs:  # up to now, so that a single answer still spans a readable time range
            xs.append(int(time.time()))
            ys.append(ys[-1])
        return {"x": xs, "time": True, "ylabel": "OPG",
                "series": [{"label": "spent on answers (OPG, cumulative)", "values": ys}]}
    if name == "gas":
        rows = [r for r in web.batch_rows(since) if r["gasPerRequest"]]
        exact = rows[0]["exactGas"] if rows else None
        series = [{"label": "gas per request (batch)", "values": [r["gasPerRequest"] for r in rows]}]
        if exact:
            series.append({"label": "gas of one exact payment", "values": [exact for _ in rows]})
        return {"x": [r["id"] or i + 1 for i, r in enumerate(rows)], "time": False, "xlabel": "batch",
                "ylabel": "gas", "series": series}
    if name == "fees":
        nodes = sorted({f["node"] for f in snap.fees})
        fees = [f for f in snap.fees if not since or f["time"] >= since]
        xs = sorted({f["time"] for f in fees})
        series = []
        for n in nodes:
            total, values = 0, []
            by_time: dict[int, int] = {}
            for f in fees:
                if f["node"] == n:
                    by_time[f["time"]] = by_time.get(f["time"], 0) + f["gross"]
            for t in xs:
                total += by_time.get(t, 0)
                values.append(fmt.opg_float(total))
            series.append({"label": f"{n[:8]}… fees (OPG)", "values": values})
        return {"x": xs, "time": True, "ylabel": "OPG", "series": series}
    return {"x": [], "series": [], "error": f"no chart {name!r}"}
