"""A payer's season standing for the client: the credit row's season signal and ``opg balance``'s season lines.

``SeasonView`` keeps the logs it has read and fetches only new blocks on each call, so a chat can ask after every
answer. It never raises: a chain it cannot read gives no line (the row and the balance must not fail because of
a season).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address

from ..deployments import Deployment
from .ops import Seasons
from .usage import fetch_logs, season_rows

log = logging.getLogger(__name__)


def _opg(wei: int, places: int = 6) -> str:
    text = f"{wei / 10**18:.{places}f}".rstrip("0").rstrip(".")
    return text or "0"


class SeasonView:
    """The open season's standing of payers, from the chain's logs (read incrementally)."""

    def __init__(self, w3: Any, deployment: Deployment, deployment_file: str | Path | None = None):
        self.seasons = Seasons(w3, deployment, Path(deployment_file) if deployment_file else None)
        self._logs: list[dict] = []
        self._read_to: int | None = None
        self._start: int | None = None

    def _rows(self) -> tuple[int, dict[str, dict]]:
        """The open season's number and rows, from its own logs only (read once, then new blocks only)."""
        config = self.seasons.provisional_config()
        season = config.seasons[-1]
        if self._start != season.from_block or self._read_to is None or self._read_to > season.to_block:
            self._logs, self._read_to, self._start = [], season.from_block - 1, season.from_block
        if season.to_block > self._read_to:
            self._logs += fetch_logs(self.seasons.w3, config, from_block=self._read_to + 1, to_block=season.to_block)
            self._read_to = season.to_block
        return season.season, season_rows(self._logs, config, season)

    def open_season(self, payer: str) -> dict | None:
        """``{"season", "usage", "fees"}`` of the open season so far, or None if the chain cannot be read."""
        try:
            number, rows = self._rows()
        except Exception as exc:  # noqa: BLE001 (the row must never fail because of a season)
            log.debug("season standing unavailable: %s", exc)
            return None
        row = rows.get(to_checksum_address(payer), {})
        return {"season": number, "usage": row.get("usage", 0), "fees": row.get("fees", 0)}

    def signal(self, payer: str) -> str | None:
        """The credit row's part: ``counts toward S2: 0.0123 OPG of eligible fees``."""
        s = self.open_season(payer)
        return None if s is None else f"counts toward S{s['season']}: {_opg(s['fees'])} OPG of eligible fees"

    def balance_lines(self, payer: str) -> list[str]:
        """``opg balance``'s season lines: the open season's usage and fees, and rewards claimed/claimable."""
        s = self.open_season(payer)
        if s is None:
            return []
        lines = [f"season       S{s['season']} so far: {_opg(s['usage'])} OPG of usage, {_opg(s['fees'])} OPG of "
                 "eligible fees"]
        if self.seasons.deployed:
            try:
                st = self.seasons.standing(payer, with_open_season=False)
                lines.append(f"rewards      {_opg(st['claimable'])} OPG claimable (`opg season claim`), "
                             f"{_opg(st['claimed'])} OPG claimed")
            except Exception as exc:  # noqa: BLE001
                log.debug("season rewards unavailable: %s", exc)
        return lines
