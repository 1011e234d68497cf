"""Numbers for people: OPG with sensible precision (never exponent form), gas, times, short hashes."""

from __future__ import annotations

import time
from decimal import Decimal

from ..amounts import WEI_PER_OPG


def opg(wei: int | str | None, places: int = 6) -> str:
    """wei -> "12.345678" OPG: ``places`` decimals, trailing zeros dropped; a non-zero amount below the precision
    shows its first two significant digits ("0.00000012") instead of reading as 0. Never exponent form."""
    if wei is None or wei == "":
        return "-"
    wei = int(wei)
    sign = "-" if wei < 0 else ""
    wei = abs(wei)
    whole, frac = divmod(wei, WEI_PER_OPG)
    digits = f"{frac:018d}"
    shown = digits[:places].rstrip("0")
    if whole == 0 and frac and not shown:
        first = len(digits) - len(digits.lstrip("0"))
        shown = digits[: first + 2].rstrip("0")
    return f"{sign}{whole:,}" + (f".{shown}" if shown else "")


def opg_float(wei: int | str | None) -> float:
    """For charts only (the page formats axis labels itself, in fixed notation)."""
    return float(Decimal(int(wei or 0)) / WEI_PER_OPG)


def gas(value: int | None) -> str:
    return "-" if value is None else f"{int(value):,}"


def short(value: str | None, keep: int = 10) -> str:
    if not value:
        return "-"
    return value if len(value) <= keep + 6 else f"{value[:keep]}…{value[-4:]}"


def ago(ts: float | None) -> str:
    if not ts:
        return "-"
    delta = max(0, int(time.time() - ts))
    if delta < 60:
        return f"{delta} s ago"
    if delta < 3600:
        return f"{delta // 60} min ago"
    return f"{delta // 3600} h {delta % 3600 // 60} min ago"


def clock(ts: float | None) -> str:
    return "-" if not ts else time.strftime("%H:%M:%S", time.localtime(ts))
