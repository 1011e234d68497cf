"""The Verifier: follows the relayer's receipt feed and the chain's ``Flagged`` events, re-executes sampled, flagged
and disputed receipts, signs verdicts, hands them to the relayer, flags fraud on-chain and heartbeats every epoch.

Threads:
- feed: long-polls ``GET /feed/receipts`` from the persisted cursor, samples (``sampling.Sampler``), queues checks;
- chain: follows ``Flagged`` events (the receipt is decoded from the flag transaction itself, so no relayer can hide
  it), sends this verifier's flags and its ``heartbeat()`` once per epoch (again if its warm stake grew);
- work: runs due checks on a pool of ``workers`` threads (fetch the payload from the node, re-execute, decide);
- outbox: sends decided verdicts and withholding reports to the relayer (retrying while it is down).

A payload the node does not release by the deadline is NOT a verdict: the check ends ``withheld`` with a signed
``PayloadWithheld`` report (not a vote, never slashable), no ``Verdict`` and no flag. Otherwise a node could get an
honest verifier slashed as a false accuser by withholding from it alone while the others prove the answer valid
(attack R4). Withholding is answered by the payer's bonded dispute, whose payload re-opens the check.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
from web3 import Web3
from web3.exceptions import ContractLogicError

from ..chain import ROLE_VERIFIER, Chain
from ..daemon.keys import load_account
from ..daemon.metrics import Registry
from ..daemon.settings import ConfigError
from ..deployments import load_deployment
from ..messages import PayloadWithheld, SignedReceipt, Verdict
from .config import VerifierSettings
from .judge import CannotJudge, drifting, judge
from .payloads import (
    PayloadClient,
    check_node_signature,
    parse_receipt,
    plain,
    receipt_hash,
    receipt_json,
)
from .sampling import Sampler
from .store import VerifierStore

log = logging.getLogger("opg.verifier")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
HEARTBEAT_CHECK = 3.0
ENDPOINT_TTL = 30.0
MAX_ERRORS = 5


class Metrics(Registry):
    def __init__(self) -> None:
        super().__init__()
        self.seen = self.counter("opg_verifier_receipts_seen_total", "Receipts read from the relayer's feed.")
        self.sampled = self.counter("opg_verifier_receipts_sampled_total", "Feed receipts drawn for re-execution.")
        self.flags_seen = self.counter("opg_verifier_flags_seen_total",
                                       "Flagged events of other accounts (verifiers, disputing payers).")
        self.disputes = self.counter("opg_verifier_disputes_received_total", "Payers' payloads received (POST /disputes).")
        self.checked = self.counter("opg_verifier_receipts_checked_total", "Receipts judged by re-execution.",
                                    ("source",))
        self.agreed = self.counter("opg_verifier_receipts_agreed_total", "Receipts judged valid.")
        self.disputed = self.counter("opg_verifier_receipts_disputed_total", "Receipts judged invalid (fraud, "
                                                                             "overcharge or wrong payload).")
        self.withheld = self.counter("opg_verifier_receipts_withheld_total",
                                     "Payloads a node did not release by the deadline (reported, no verdict).")
        self.skipped = self.counter("opg_verifier_receipts_skipped_total", "Receipts not judged, by reason.",
                                    ("reason",))
        self.verdicts = self.counter("opg_verifier_verdicts_posted_total", "Verdicts the relayer stored.", ("valid",))
        self.reports = self.counter("opg_verifier_withholding_reports_total", "Withholding reports the relayer took.")
        self.flags = self.counter("opg_verifier_flags_sent_total", "flag() transactions sent.", ("result",))
        self.heartbeats = self.counter("opg_verifier_heartbeats_total", "heartbeat() transactions sent.")
        self.evidence = self.counter("opg_verifier_evidence_shared_total",
                                     "Verifiers that took this verifier's evidence of a receipt it flagged.")
        self.drift_flags = self.counter("opg_verifier_drifting_nodes_total",
                                        "Nodes the teacher-forcing binomial test flagged (sampled at rate 1).")
        self.errors = self.counter("opg_verifier_errors_total", "Errors by place.", ("where",))
        self.reexec = self.histogram("opg_verifier_reexecution_seconds", "Time to re-execute one request.",
                                     LATENCY_BUCKETS)
        self.fetch = self.histogram("opg_verifier_payload_fetch_seconds", "Time of one payload request to a node.",
                                    LATENCY_BUCKETS)


def _revert(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc)
    return text.replace("execution reverted: ", "")


class Verifier:
    """Everything the API and the threads share. Construction connects, loads the key, the backends and the store
    (ConfigError / StoreMismatch / connection errors are turned into one line by the CLI)."""

    def __init__(self, settings: VerifierSettings, backends: list[Any] | None = None):
        self.settings = settings
        w3 = Web3(Web3.HTTPProvider(settings.rpc_url, request_kwargs={"timeout": 15}))
        self.chain_id = int(w3.eth.chain_id)
        self.account = load_account(settings, self.chain_id)
        self.address = self.account.address
        self.key = bytes(self.account.key)
        self.deployment = load_deployment(chain_id=self.chain_id, path=settings.deployment)
        self.chain = Chain(w3=w3, deployment=self.deployment)
        self.staking_address = self.deployment.address("NodeStaking")
        if len(w3.eth.get_code(self.staking_address)) == 0:
            raise ConfigError(f"no NodeStaking code at {self.staking_address} on chain {self.chain_id}: "
                              "wrong deployment file for this RPC?")
        self.domain = self.chain.staking_domain
        self.warmup = int(self.chain.staking.functions.warmup().call())
        self.backends: dict[str, Any] = {}
        for backend in backends if backends is not None else self._load_backends(settings.backend_specs):
            self.backends[backend.model_id.lower()] = backend
            if getattr(backend, "open_weights_id", None):  # the same weights served by any engine: teacher forcing
                self.backends.setdefault(backend.open_weights_id.lower(), backend)
        self.sampler = Sampler(self.key, settings.sample_rate)
        self.metrics = Metrics()
        self.store = VerifierStore(settings.store)
        self.store.bind(self.chain_id, self.staking_address, self.address)
        self.drifting = {d["node"] for d in self.store.drift() if d["flagged_at"]}  # sampled at rate 1
        self.payloads = PayloadClient(self.key, self.address, self.domain, settings.payload_timeout)
        self.relayer = httpx.Client(base_url=settings.relayer_url, timeout=30)
        self._local = threading.local()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="check")
        self._running: dict[str, Future] = {}
        self._wake = threading.Event()  # a check finished or new checks were queued: dispatch at once
        self._decided = threading.Event()  # a verdict was decided: the outbox sends it at once
        self._endpoints: dict[str, tuple[str, float]] = {}
        self.relayer_ok: bool | None = None
        self.last_error: str | None = None
        self.metrics.gauge("opg_verifier_feed_cursor", "The last feed seq read.",
                           lambda: {(): int(self.store.get_state("feed_cursor", "0"))})
        self.metrics.gauge("opg_verifier_checks", "Checks by status.",
                           lambda: {(k,): v for k, v in self.store.counts().items()}, ("status",))

    @staticmethod
    def _load_backends(specs: list[str]) -> list[Any]:
        from ..backends import load_backend

        out = []
        for spec in specs:
            try:
                out.append(load_backend(spec))
            except Exception as exc:
                raise ConfigError(f"cannot load backend {spec!r}: {str(exc).splitlines()[0] if str(exc) else exc!r}") \
                    from None
        return out

    # Helpers -----------------------------------------------------------------------------------------------------
    def thread_chain(self) -> Chain:
        chain = getattr(self._local, "chain", None)
        if chain is None:
            w3 = Web3(Web3.HTTPProvider(self.settings.rpc_url, request_kwargs={"timeout": 15}))
            chain = self._local.chain = Chain(w3=w3, deployment=self.deployment)
        return chain

    def endpoint(self, node: str) -> str:
        cached = self._endpoints.get(node)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        url = self.thread_chain().staking.functions.endpoint(node).call()
        self._endpoints[node] = (url, time.monotonic() + ENDPOINT_TTL)
        return url

    def item(self, receipt: SignedReceipt, seq: int | None = None) -> dict:
        return {"id": "0x" + plain(receipt).fast_digest(self.domain).hex(), "receipt_hash": receipt_hash(receipt),
                "node": receipt.node, "model_id": receipt.model_id.lower(), "receipt": receipt_json(receipt),
                "seq": seq}

    def skip_reason(self, receipt: SignedReceipt) -> str | None:
        if self.settings.lazy:
            return None
        return None if receipt.model_id.lower() in self.backends else "model not served by this verifier"

    def _error(self, where: str, exc: BaseException) -> None:
        self.last_error = f"{where}: {exc.__class__.__name__}: {str(exc)[:300]}"
        self.metrics.errors.inc(1, where)

    # Lifecycle ---------------------------------------------------------------------------------------------------
    def start(self) -> None:
        for name, target in (("feed", self._feed_loop), ("chain", self._chain_loop), ("work", self._work_loop),
                             ("outbox", self._outbox_loop)):
            thread = threading.Thread(target=target, name=f"verifier-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("verifier %s started: chain %d, sampling %.4g, backends %s", self.address, self.chain_id,
                 self.settings.sample_rate, ", ".join(f"{b.name} ({m[:10]})" for m, b in self.backends.items()))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.payloads.close()
        self.relayer.close()
        self.store.close()

    def wake(self) -> None:
        """Dispatch due checks now (a dispute's payload arrived)."""
        self._wake.set()

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    # Feed --------------------------------------------------------------------------------------------------------
    def _feed_loop(self) -> None:
        client = httpx.Client(base_url=self.settings.relayer_url, timeout=40)
        delay = self.settings.poll_interval
        while not self._stop.is_set():
            try:
                got = self.poll_feed(client, wait=min(5.0, max(0.0, self.settings.poll_interval * 4)))
                self.relayer_ok, delay = True, self.settings.poll_interval
                if got:
                    continue
            except (httpx.HTTPError, ValueError) as exc:
                self.relayer_ok = False
                self._error("feed", exc)
                delay = min(10.0, delay * 2)
            except Exception as exc:
                self._error("feed", exc)
                log.exception("feed poll failed")
                delay = min(10.0, delay * 2)
            self._stop.wait(delay)
        client.close()

    def poll_feed(self, client: httpx.Client, wait: float = 0.0) -> int:
        """Read one page of the feed after the stored cursor; returns the number of receipts read."""
        cursor = int(self.store.get_state("feed_cursor", "0"))
        res = client.get("/feed/receipts", params={"after": cursor, "limit": self.settings.feed_batch, "wait": wait})
        res.raise_for_status()
        page = res.json()
        items, sampled, skipped = [], set(), {}
        for entry in page["receipts"]:
            try:
                receipt = parse_receipt(entry["receipt"])
            except ValueError as exc:
                log.warning("feed receipt %s is malformed: %s", entry.get("id"), exc)
                continue
            it = self.item(receipt, entry["seq"])
            if it["id"] != str(entry["id"]).lower() or check_node_signature(receipt, self.domain):
                log.warning("feed receipt %s does not verify against this deployment; ignored", entry.get("id"))
                continue
            items.append(it)
            if self.sampler(it["id"]) or it["node"] in self.drifting:
                sampled.add(it["id"])
                reason = self.skip_reason(receipt)
                if reason:
                    skipped[it["id"]] = reason
        self.store.add_feed_page(items, int(page["next"]), sampled, skipped)
        if sampled:
            self._wake.set()
        self.metrics.seen.inc(len(items))
        self.metrics.sampled.inc(len(sampled))
        for reason in skipped.values():
            self.metrics.skipped.inc(1, reason)
        return len(page["receipts"])

    # Chain: flags and heartbeats ---------------------------------------------------------------------------------
    def _chain_loop(self) -> None:
        next_heartbeat = 0.0
        while not self._stop.is_set():
            try:
                self.follow_flags()
                self.send_flags()
                if self.settings.heartbeat and time.monotonic() >= next_heartbeat:
                    self.heartbeat()
                    next_heartbeat = time.monotonic() + HEARTBEAT_CHECK
            except Exception as exc:
                self._error("chain", exc)
                log.warning("chain tick failed: %s", exc)
            self._stop.wait(self.settings.poll_interval)

    def follow_flags(self) -> None:
        chain = self.thread_chain()
        start = self.settings.from_block if self.settings.from_block is not None else self.deployment.start_block
        last = int(self.store.get_state("flag_block", str(start - 1)))
        latest = chain.w3.eth.block_number
        while last < latest and not self._stop.is_set():
            to = min(latest, last + 5_000)
            for ev in chain.staking.events.Flagged().get_logs(from_block=last + 1, to_block=to):
                self._on_flag(chain, ev)
            last = to
            self.store.set_state("flag_block", last)

    def _on_flag(self, chain: Chain, ev: Any) -> None:
        h = "0x" + bytes(ev["args"]["receipt_hash"]).hex()
        flagger = ev["args"]["flagger"]
        self.store.add_flag(h, flagger, ev["blockNumber"], ev["args"]["bond"])
        if flagger == self.address:
            return
        self.metrics.flags_seen.inc()
        receipt = self._flagged_receipt(chain, ev, h)
        if receipt is None:
            log.warning("flag of %s by %s: cannot find the receipt (flag transaction not decodable)", h, flagger)
            return
        source = "dispute" if flagger == receipt.payer else "flag"
        reason = self.skip_reason(receipt)
        if self.store.queue_check(self.item(receipt), source, skip_reason=reason):
            self._wake.set()
            log.info("receipt %s flagged by %s (%s): queued", h, flagger, source)
            if reason:
                self.metrics.skipped.inc(1, reason)

    def _flagged_receipt(self, chain: Chain, ev: Any, h: str) -> SignedReceipt | None:
        try:
            tx = chain.w3.eth.get_transaction(ev["transactionHash"])
            if tx["to"] == self.staking_address:
                fn, args = chain.staking.decode_function_input(tx["input"])
                if fn.fn_name == "flag":
                    r = args["receipt"]
                    values = list(r.values()) if isinstance(r, dict) else list(r)
                    names = ["request_id", "payer", "node", "model_id", "input_hash", "output_hash", "amount",
                             "cumulative", "timestamp"]
                    receipt = SignedReceipt(**dict(zip(names, values, strict=True)), signature=bytes(args["signature"]))
                    if receipt_hash(receipt) == h:
                        return receipt
        except Exception as exc:  # a flag sent through a contract: fall back to what this verifier has seen
            log.debug("cannot decode flag transaction: %s", exc)
        row = self.store.receipt_by_hash(h)
        return parse_receipt(row["receipt"]) if row else None

    def send_flags(self) -> None:
        chain = self.thread_chain()
        for row in self.store.pending_flags():
            h = row["receipt_hash"]
            if self.store.flagged_by_others(h, self.address):
                self.store.set_flag_state(row["id"], "skipped")
                continue
            hb = bytes.fromhex(h[2:])
            st = chain.staking.functions
            if st.fraud_proven_at(hb).call() or st.valid_proven_at(hb).call() or st.flagged_by(hb, self.address).call():
                self.store.set_flag_state(row["id"], "skipped")
                continue
            receipt = parse_receipt(self.store.receipt(row["id"])["receipt"])
            fn = st.flag(plain(receipt).as_tuple(), bytes.fromhex(receipt.signature[2:]))
            try:
                tx = self.transact(chain, fn)
            except ContractLogicError as exc:
                self.store.set_flag_state(row["id"], "failed")
                self.metrics.flags.inc(1, "refused")
                log.warning("flag of %s refused: %s", h, _revert(exc))
                continue
            self.store.set_flag_state(row["id"], "sent", tx)
            self.metrics.flags.inc(1, "sent")
            log.info("flagged receipt %s of node %s on-chain (%s)", h, receipt.node, tx)
            self._pool.submit(self.share_evidence, row["id"])

    def share_evidence(self, rid: str, attempts: int = 20, pause: float = 1.0) -> int:
        """After flagging: hand the node's payload (request, answer, committed tokens, which hash to the signed
        receipt, so nobody can forge it) to every other active verifier's ``POST /disputes``, so that a node releasing
        a payload only to the verifier that drew it cannot starve the quorum by withholding it from the rest (now
        that withholding is no vote, attack R4). Returns how many verifiers took it."""
        check = self.store.check(rid)
        if not check or not check["payload"]:
            return 0
        payload = json.loads(check["payload"])
        body = {k: payload[k] for k in ("request", "output", "tokens", "pricing", "usage", "finishReason")
                if payload.get(k) is not None}
        body["receipt"] = self.store.receipt(rid)["receipt"]
        try:
            chain = self.thread_chain()
            st = chain.staking
            seen: list[str] = []
            for ev in st.events.Registered().get_logs(from_block=self.deployment.start_block):
                if ev["args"]["role"] == ROLE_VERIFIER and ev["args"]["node"] not in seen:
                    seen.append(ev["args"]["node"])
            targets = [(v, st.functions.endpoint(v).call()) for v in seen if v != self.address
                       and st.functions.is_active_as(v, ROLE_VERIFIER).call()]
        except Exception as exc:
            self._error("evidence", exc)
            return 0
        taken = 0
        with httpx.Client(timeout=10) as http:
            for address, endpoint in targets:
                for _ in range(attempts):  # 409 until that verifier has seen the flag
                    try:
                        res = http.post(endpoint.rstrip("/") + "/disputes", json=body)
                    except httpx.HTTPError:
                        res = None
                    if res is not None and res.status_code in (200, 202):
                        taken += 1
                        break
                    if res is not None and res.status_code not in (409, 502, 503) and res.status_code < 500:
                        log.warning("verifier %s refused the evidence of %s: %s", address, rid, res.text[:200])
                        break
                    if self._stop.wait(pause):
                        return taken
        self.metrics.evidence.inc(taken)
        log.info("shared the evidence of %s with %d of %d verifiers", rid, taken, len(targets))
        return taken

    def heartbeat(self) -> int | None:
        """Heartbeat if this epoch's recorded weight is below the warm stake; returns the weight sent, if any."""
        chain = self.thread_chain()
        st = chain.staking.functions
        epoch = int(chain.distributor.functions.epoch_now().call())
        node = st.nodes(self.address).call()
        role, jailed, stake, fresh, fresh_since = node[0], node[1], node[2], node[5], node[6]
        if role != ROLE_VERIFIER or jailed or stake < st.min_stake(ROLE_VERIFIER).call():
            return None
        now = int(chain.w3.eth.get_block("latest")["timestamp"])
        warm = stake if now >= fresh_since + self.warmup else stake - fresh
        if warm == 0 or st.weight_in(epoch + 1, self.address).call() >= warm:
            return None
        try:
            tx = self.transact(chain, st.heartbeat())
        except ContractLogicError as exc:
            log.warning("heartbeat refused: %s", _revert(exc))
            return None
        self.metrics.heartbeats.inc()
        self.store.set_state("heartbeat_epoch", epoch)
        log.info("heartbeat in epoch %d: weight %d from epoch %d (%s)", epoch, warm, epoch + 1, tx)
        return warm

    def transact(self, chain: Chain, fn: Any) -> str:
        """Simulate, send from this verifier's key, wait for the receipt (only the chain thread sends)."""
        w3 = chain.w3
        fn.call({"from": self.address})
        tx = fn.build_transaction({"from": self.address, "nonce": w3.eth.get_transaction_count(self.address,
                                                                                                   "pending"),
                                   "chainId": self.chain_id})
        signed = self.account.sign_transaction(tx)
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction {tx_hash.hex()} reverted")
        return "0x" + bytes(tx_hash).hex()

    # Work: checks and the outbox ---------------------------------------------------------------------------------
    def _outbox_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.flush_outbox()
            except Exception as exc:
                self._error("outbox", exc)
                log.exception("outbox tick failed")
            self._decided.wait(self.settings.poll_interval)
            self._decided.clear()

    def _work_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._running = {k: f for k, f in self._running.items() if not f.done()}
                free = self.settings.workers - len(self._running)
                if free > 0:
                    for row in self.store.due_checks(time.time(), set(self._running), free):
                        self._running[row["id"]] = self._pool.submit(self._run_and_wake, row)
            except Exception as exc:
                self._error("work", exc)
                log.exception("work tick failed")
            self._wake.wait(min(0.1, self.settings.poll_interval))
            self._wake.clear()

    def _run_and_wake(self, row: dict) -> None:
        try:
            self.run_check(row)
        finally:
            self._wake.set()

    def run_check(self, row: dict) -> None:
        rid = row["id"]
        try:
            self._check(row)
        except Exception as exc:
            self._error("check", exc)
            log.exception("check of %s failed", rid)
            if row["attempts"] + 1 >= MAX_ERRORS:
                self.store.skip(rid, f"error: {exc.__class__.__name__}: {exc}")
                self.metrics.skipped.inc(1, "error")
            else:
                now = time.time()
                self.store.attempt_failed(rid, f"error: {exc}", now, now + self.settings.payload_retry * 2)

    def _check(self, row: dict) -> None:
        rid = row["id"]
        receipt = parse_receipt(self.store.receipt(rid)["receipt"])
        if self.settings.lazy:
            self.decide(row, True, "vouched without checking (lazy mode)")
            return
        backend = self.backends.get(receipt.model_id.lower())
        if backend is None:
            self.store.skip(rid, "model not served by this verifier")
            self.metrics.skipped.inc(1, "model not served by this verifier")
            return
        payload = json.loads(row["payload"]) if row["payload"] else None
        if payload is None:
            endpoint = self.endpoint(receipt.node)
            fetched = self.payloads.fetch(endpoint, receipt, rid)
            self.metrics.fetch.observe(fetched.seconds)
            if fetched.payload is None:
                now = time.time()
                first = row["first_attempt_at"] or now
                if now - first >= self.settings.payload_deadline:
                    self.withheld(row, receipt, f"withheld: no payload within {self.settings.payload_deadline:g} s "
                                                f"({fetched.error})")
                else:
                    self.store.attempt_failed(rid, fetched.error or "no payload", first,
                                              now + self.settings.payload_retry)
                return
            payload = fetched.payload
        elif not isinstance(payload.get("pricing"), dict):
            pricing = self.payloads.pricing(self.endpoint(receipt.node), receipt.model_id)
            if pricing is not None:
                payload = {**payload, "pricing": pricing}
        try:
            j = judge(plain(receipt), payload, backend, self.settings.proxy_tolerance)
            if not j.valid and row["source"] == "sample":
                self.store.keep_payload(rid, payload)  # the evidence this verifier shares once it has flagged
        except CannotJudge as exc:
            self.store.skip(rid, str(exc))
            self.metrics.skipped.inc(1, "cannot judge")
            return
        if j.rerun is not None or j.scored:
            self.metrics.reexec.observe(j.seconds)
        if j.scored:
            self.note_drift(receipt.node, j.scored, j.drifted, j.max_margin or 0.0)
        self.metrics.checked.inc(1, row["source"])
        self.decide(row, j.valid, j.reason, seconds=j.seconds)

    def note_drift(self, node: str, scored: int, drifted: int, max_margin: float) -> None:
        """Teacher-forced statistics: a node whose tokens drift beyond the honest rate (binomial test) is sampled at
        rate 1 from now on and reported (``GET /drift``, the metric, the log), never slashed on this alone."""
        totals = self.store.add_drift(node, scored, drifted, max_margin)
        if node not in self.drifting and drifting(totals["scored"], totals["drifted"]):
            self.store.flag_drift(node)
            self.drifting.add(node)
            self.metrics.drift_flags.inc()
            log.warning("node %s drifts from its claimed model: %d of %d tokens beyond the drift margin over %d "
                        "receipts; sampling all its receipts", node, totals["drifted"], totals["scored"],
                        totals["receipts"])

    def withheld(self, row: dict, receipt: SignedReceipt, reason: str) -> bool:
        """The node did not release the payload by the deadline: a signed ``PayloadWithheld`` report, never a
        verdict (no vote either way, no flag), so nobody can turn it into a false-accuser slash of this verifier."""
        signature = PayloadWithheld(receipt_hash=row["receipt_hash"], node=receipt.node).sign_with(self.key,
                                                                                                  self.domain)
        if not self.store.withheld(row["id"], reason, signature):
            return False
        self.metrics.withheld.inc()
        self._decided.set()
        log.warning("node %s withheld the payload of %s (reported, no verdict): %s", receipt.node, row["id"], reason)
        return True

    def decide(self, row: dict, valid: bool, reason: str, seconds: float | None = None) -> bool:
        h = row["receipt_hash"]
        signature = Verdict(receipt_hash=h, valid=valid).sign_with(self.key, self.domain)
        flag = (not valid and self.settings.flag_fraud and row["source"] == "sample"
                and not self.store.flagged_by_others(h, self.address))
        if not self.store.decide(row["id"], valid, reason, signature, seconds, flag):
            return False
        (self.metrics.agreed if valid else self.metrics.disputed).inc()
        self._decided.set()
        log.info("receipt %s of node %s: %s (%s)", row["id"], row["node"], "valid" if valid else "INVALID", reason)
        return True

    def flush_outbox(self) -> None:
        for row in self.store.unposted():
            if row["valid"] is not None and row["posted"] == 0:
                body = {"receiptHash": row["receipt_hash"], "valid": bool(row["valid"]), "verifier": self.address,
                        "signature": row["signature"]}
                try:
                    res = self.relayer.post("/verdicts", json=body)
                except httpx.HTTPError as exc:
                    self.relayer_ok = False
                    self._error("outbox", exc)
                    return
                if res.status_code == 200:
                    self.store.mark_posted(row["id"], 1)
                    self.metrics.verdicts.inc(1, str(bool(row["valid"])).lower())
                elif 400 <= res.status_code < 500:
                    self.store.mark_posted(row["id"], -1, res.text[:300])
                    log.warning("relayer refused the verdict on %s: %s", row["id"], res.text[:300])
                else:
                    return
            if row["withheld"] and row["reported"] == 0 and row["report_signature"]:
                receipt = self.store.receipt(row["id"])["receipt"]
                body = {"receiptHash": row["receipt_hash"], "verifier": self.address,
                        "signature": row["report_signature"], "receipt": receipt,
                        "reason": (row["reason"] or "")[:200]}
                try:
                    res = self.relayer.post("/reports/withholding", json=body)
                except httpx.HTTPError as exc:
                    self._error("outbox", exc)
                    return
                if res.status_code == 200:
                    self.store.mark_reported(row["id"], 1)
                    self.metrics.reports.inc()
                elif 400 <= res.status_code < 500:
                    self.store.mark_reported(row["id"], -1)
                    log.warning("relayer refused the withholding report on %s: %s", row["id"], res.text[:300])

    # Disputes (POST /disputes) -----------------------------------------------------------------------------------
    def accused(self, h: str) -> bool:
        """Whether the receipt is accused: flagged on-chain by anyone (seen in the ``Flagged`` events) or disputed."""
        return self.store.flagged(h) or self.dispute_open(h)

    def dispute_open(self, h: str) -> bool:
        """Whether the receipt's payer disputed it on-chain (``flag`` with a bond)."""
        d = self.thread_chain().staking.functions.disputes(bytes.fromhex(h[2:])).call()
        return int(d[1]) > 0

    def health(self) -> dict:
        chain_ok, active, weight, block = True, None, None, None
        try:
            chain = self.thread_chain()
            block = chain.w3.eth.block_number
            active = bool(chain.staking.functions.is_active_as(self.address, ROLE_VERIFIER).call())
            weight = int(chain.staking.functions.vote_weight(self.address).call())
        except Exception:
            chain_ok = False
        try:
            store_ok = self.store.ping()
        except Exception:
            store_ok = False
        alive = self.alive()
        return {
            "ok": chain_ok and store_ok and alive, "verifier": self.address, "chainId": self.chain_id,
            "chainOk": chain_ok, "storeOk": store_ok, "relayerOk": self.relayer_ok, "workersAlive": alive,
            "lastBlock": block, "active": active, "voteWeight": str(weight) if weight is not None else None,
            "sampleRate": self.settings.sample_rate, "lazy": self.settings.lazy,
            "backends": [{"name": b.name, "modelId": m,
                          "deterministic": bool(b.deterministic) and m != getattr(b, "open_weights_id", None),
                          "judgedBy": "teacher-forcing" if m == getattr(b, "open_weights_id", None)
                          else "re-execution"} for m, b in self.backends.items()],
            "feedCursor": int(self.store.get_state("feed_cursor", "0")) if store_ok else None,
            "checks": self.store.counts() if store_ok else None, "lastError": self.last_error,
        }
