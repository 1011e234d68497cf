"""The season signal in ``opg web`` (docs/seasons.md, docs/web.md): the payer view's standing in the open season and
the signal one answer added to it.

The standing is ``offchain.seasons.standing.SeasonView``'s (the credit row's and ``opg balance``'s numbers: the pure
usage function over the open season's logs, read incrementally). One answer's signal follows the same rules, for its
own charge: a settled ``opg-credit`` answer adds its share of its run's protocol fee (``FeesCredited.protocol_fee *
amount // gross``, what the usage table counts as eligible fees), unless its node was slashed for a node offence in
the season, its channel's charges were voided, or its charge was refunded (then it counts zero); an exact payment
is no settled credit usage and counts zero; an unsettled answer counts once a batch settles it.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address

from ..chain import Chain
from ..seasons.standing import SeasonView
from ..seasons.usage import NODE_OFFENCES

log = logging.getLogger("opg.web")


class WebSeasons:
    """Season standing and per-answer signals for one payer's app (never raises: a season must not break a page)."""

    def __init__(self, chain: Chain, deployment_file: str | Path | None):
        self.chain = chain
        self.view = SeasonView(chain.w3, chain.deployment, deployment_file)
        self._lock = threading.Lock()  # SeasonView keeps its logs between calls

    def standing(self, payer: str) -> dict | None:
        """``{"season", "usage", "fees", "claimable", "claimed"}`` of the open season so far; None if unreadable."""
        with self._lock:
            s = self.view.open_season(payer)
        if s is None:
            return None
        out = {**s, "claimable": None, "claimed": None}
        if self.view.seasons.deployed:
            try:
                st = self.view.seasons.standing(payer, with_open_season=False)
                out.update(claimable=st["claimable"], claimed=st["claimed"])
            except Exception as exc:  # noqa: BLE001
                log.debug("season rewards unavailable: %s", exc)
        return out

    def signal(self, payer: str) -> str | None:
        """The credit row's season signal, as ``opg chat`` prints it: ``counts toward S1: 0.0123 OPG of eligible
        fees`` (the payer's open season so far)."""
        with self._lock:
            return self.view.signal(payer)

    def answer(self, snap: Any, path: dict) -> dict:
        """The season signal one answer added: ``{"counts", "fees", "season", "open", "text"}``."""
        try:
            return self._answer(snap, path)
        except Exception as exc:  # noqa: BLE001
            log.debug("season signal unavailable: %s", exc)
            return {"counts": None, "fees": 0, "season": None, "open": None, "text": "season signal unavailable"}

    def _answer(self, snap: Any, path: dict) -> dict:
        receipt = path.get("receipt") or {}
        node = to_checksum_address(receipt["node"]) if receipt.get("node") else None
        payer = (path.get("voucher") or {}).get("payer") or receipt.get("payer")
        payer = to_checksum_address(payer) if payer else None
        config = self.view.seasons.provisional_config()
        current = config.seasons[-1]
        out: dict[str, Any] = {"counts": False, "fees": 0, "season": current.season, "open": True}
        if path.get("scheme") == "exact":
            return {**out, "text": "counts zero: an exact payment is no settled credit usage (seasons count "
                                   "BatchSettled claims only)"}
        chain_batch = (path.get("batch") or {}).get("chain")
        block = chain_batch["block"] if chain_batch else None
        season = next((s for s in config.seasons if block is not None and s.from_block <= block <= s.to_block), current)
        out.update(season=season.season, open=season is current)
        lo, hi = season.from_block, season.evidence_block
        offences = [s for s in snap.slashes if s["node"] == node and s["kind"] in NODE_OFFENCES.values()
                    and lo <= s["block"] <= hi]
        if offences:
            return {**out, "text": f"counts zero: its node was slashed for {offences[0]['kind']} in S{season.season}, "
                                   "so all its usage of the season counts zero"}
        refunded = [s for s in snap.slashes if path.get("receiptHash") and s["evidence"] == path["receiptHash"]
                    and s["refund"]]
        if refunded:
            return {**out, "text": "counts zero: its charge was refunded"}
        if payer and node:
            voided = self.chain.escrow.events.ChargesVoided.get_logs(
                from_block=lo, to_block=max(lo, min(hi, self.chain.w3.eth.block_number)),
                argument_filters={"payer": payer, "node": node})
            if list(voided):
                return {**out, "text": "counts zero: its channel's charges were voided"}
        fees = (path.get("split") or {}).get("fees")
        if block is None or not fees:
            return {**out, "counts": None, "text": f"counts toward S{current.season} once a batch settles it"}
        amount = int(receipt.get("amount") or 0)
        fee = fees["protocolFee"] * amount // fees["gross"] if fees["gross"] else 0
        tense = "counts toward" if out["open"] else "counted toward (closed)"
        return {**out, "counts": True, "fees": fee, "text": f"{tense} S{season.season}"}
