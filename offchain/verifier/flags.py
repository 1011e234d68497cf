"""Flags on-chain: following the ``Flagged`` events (the receipt is decoded from the flag transaction itself, so no
relayer can hide it) and queueing a check of each; sending this verifier's own flags of fraud it found by sampling;
and then sharing its evidence (the node's payload) with every other active verifier."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import httpx
from web3.exceptions import ContractLogicError

from ..messages import SignedReceipt
from ..sdk.constants import ROLE_VERIFIER
from ..sdk.contracts import Contracts
from ..sdk.tx import revert_message
from ..sdk.wire import parse_receipt
from .intake import Intake
from .metrics import Metrics, Trouble
from .onchain import ChainAccess
from .payloads import plain, receipt_hash
from .store import VerifierStore

log = logging.getLogger("opg.verifier")

RECEIPT_FIELDS = ("request_id", "payer", "node", "model_id", "input_hash", "output_hash", "amount", "cumulative",
                  "timestamp")


class FlagWatcher:
    def __init__(self, access: ChainAccess, store: VerifierStore, intake: Intake, metrics: Metrics,
                 stopping: threading.Event, start_block: int, on_flagged: Callable[[str], Any],
                 flag_mined: Callable[[str], None] = lambda rid: None):
        self.access, self.store, self.intake, self.metrics = access, store, intake, metrics
        self.stopping, self.start_block, self.on_flagged = stopping, start_block, on_flagged
        self.flag_mined = flag_mined  # this verifier's flag of this receipt id was mined, not yet recorded
        self.address = access.address

    def follow(self) -> None:
        chain = self.access.chain()
        last = int(self.store.get_state("flag_block", str(self.start_block - 1)))
        latest = chain.w3.eth.block_number
        while last < latest and not self.stopping.is_set():
            to = min(latest, last + 5_000)
            for ev in chain.staking.events.Flagged().get_logs(from_block=last + 1, to_block=to):
                self._on_flag(chain, ev)
            last = to
            self.store.set_state("flag_block", last)

    def _on_flag(self, chain: Contracts, ev: Any) -> None:
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
        reason = self.intake.skip_reason(receipt)
        if self.store.queue_check(self.intake.item(receipt), source, skip_reason=reason):
            self.intake.wake_checks()
            log.info("receipt %s flagged by %s (%s): queued", h, flagger, source)
            if reason:
                self.metrics.skipped.inc(1, reason)

    def _flagged_receipt(self, chain: Contracts, ev: Any, h: str) -> SignedReceipt | None:
        try:
            tx = chain.w3.eth.get_transaction(ev["transactionHash"])
            if tx["to"] == chain.staking.address:
                fn, args = chain.staking.contract.decode_function_input(tx["input"])
                if fn.fn_name == "flag":
                    r = args["receipt"]
                    values = list(r.values()) if isinstance(r, dict) else list(r)
                    receipt = SignedReceipt(**dict(zip(RECEIPT_FIELDS, values, strict=True)),
                                            signature=bytes(args["signature"]))
                    if receipt_hash(receipt) == h:
                        return receipt
        except Exception as exc:  # a flag sent through a contract: fall back to what this verifier has seen
            log.debug("cannot decode flag transaction: %s", exc)
        row = self.store.receipt_by_hash(h)
        return parse_receipt(row.receipt) if row else None

    def send(self) -> None:
        """Flag on-chain the receipts this verifier's sampling found fraudulent (unless decided or flagged already)."""
        staking = self.access.chain().staking
        st = staking.functions
        for row in self.store.pending_flags():
            h = row.receipt_hash
            hb = bytes.fromhex(h[2:])
            if st.flagged_by(hb, self.address).call():  # sent before a crash kept it from being recorded
                self._sent(row.id, h, self._flag_tx(staking, hb), "recovered")
                continue
            if self.store.flagged_by_others(h, self.address):
                self.store.set_flag_state(row.id, "skipped")
                continue
            if st.fraud_proven_at(hb).call() or st.valid_proven_at(hb).call():
                self.store.set_flag_state(row.id, "skipped")
                continue
            receipt = parse_receipt(self.store.receipt(row.id).receipt)
            try:
                tx = self.access.transact(st.flag(plain(receipt).as_tuple(), bytes.fromhex(receipt.signature[2:])),
                                          "flag", h)
            except ContractLogicError as exc:
                self.store.set_flag_state(row.id, "failed")
                self.metrics.flags.inc(1, "refused")
                log.warning("flag of %s refused: %s", h, revert_message(exc))
                continue
            self.flag_mined(row.id)
            self._sent(row.id, h, tx, "sent")

    def _sent(self, rid: str, receipt_hash: str, tx: str | None, how: str) -> None:
        """This verifier's flag of ``rid`` is on-chain: record it, then share the evidence."""
        self.store.set_flag_state(rid, "sent", tx)
        self.metrics.flags.inc(1, "sent")
        log.info("flagged receipt %s on-chain (%s, %s)", receipt_hash, tx, how)
        self.on_flagged(rid)

    def _flag_tx(self, staking: Any, receipt_hash: bytes) -> str | None:
        """The transaction of this verifier's ``Flagged`` event on the receipt (None if the chain cannot tell)."""
        try:
            events = staking.events.Flagged().get_logs(
                from_block=self.start_block, argument_filters={"receipt_hash": receipt_hash, "flagger": self.address})
        except Exception as exc:
            log.warning("cannot read the Flagged event of %s: %s", "0x" + receipt_hash.hex(), exc)
            return None
        return "0x" + bytes(events[0]["transactionHash"]).hex() if events else None


class EvidenceSharer:
    """After flagging: hand the node's payload (request, answer, committed tokens, which hash to the signed receipt,
    so nobody can forge it) to every other active verifier's ``POST /disputes``, so that a node releasing a payload
    only to the verifier that drew it cannot starve the quorum by withholding it from the rest (now that withholding
    is no vote, attack R4)."""

    def __init__(self, access: ChainAccess, store: VerifierStore, metrics: Metrics, trouble: Trouble,
                 stopping: threading.Event):
        self.access, self.store, self.metrics, self.trouble, self.stopping = access, store, metrics, trouble, stopping
        self.address = access.address

    def share(self, rid: str, attempts: int = 20, pause: float = 1.0) -> int:
        """Returns how many verifiers took the evidence of receipt ``rid``."""
        check = self.store.check(rid)
        if not check or check.payload is None:
            return 0
        payload = check.payload
        body = {k: payload[k] for k in ("request", "output", "tokens", "pricing", "usage", "finishReason")
                if payload.get(k) is not None}
        body["receipt"] = self.store.receipt(rid).receipt
        try:
            st = self.access.chain().staking
            seen: list[str] = []
            for ev in st.events.Registered().get_logs(from_block=self.access.deployment.start_block):
                if ev["args"]["role"] == ROLE_VERIFIER and ev["args"]["node"] not in seen:
                    seen.append(ev["args"]["node"])
            targets = [(v, st.endpoint(v)) for v in seen if v != self.address and st.is_active_as(v, ROLE_VERIFIER)]
        except Exception as exc:
            self.trouble.error("evidence", exc)
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
                    if self.stopping.wait(pause):
                        return taken
        self.metrics.evidence.inc(taken)
        log.info("shared the evidence of %s with %d of %d verifiers", rid, taken, len(targets))
        return taken
