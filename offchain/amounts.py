"""OPG amounts: decimal strings for people ("12.5"), integers of wei (1e-18 OPG) everywhere else."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

WEI_PER_OPG = 10**18


def parse_opg(text: str | int | Decimal) -> int:
    """``"12.5"`` OPG -> wei; at most 18 decimals; refuses negatives and garbage (ValueError)."""
    try:
        value = Decimal(str(text).strip().replace("_", ""))
    except InvalidOperation:
        raise ValueError(f"not an OPG amount: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"not an OPG amount: {text!r}")
    wei = value * WEI_PER_OPG
    if wei != wei.to_integral_value():
        raise ValueError(f"{text} OPG has more than 18 decimals")
    return int(wei)


def format_opg(wei: int | str, places: int | None = None, grouping: bool = False) -> str:
    """wei -> ``"12.5"`` (trailing zeros dropped; ``places`` rounds down to that many decimals; ``grouping``
    writes thousands as ``1,234.5``)."""
    wei = int(wei)
    sign = "-" if wei < 0 else ""
    whole, frac = divmod(abs(wei), WEI_PER_OPG)
    digits = f"{frac:018d}"
    if places is not None:
        digits = digits[:places]
    digits = digits.rstrip("0")
    if not digits and places is not None and whole == 0 and frac:
        # a tiny non-zero amount would read as 0: show its significant digits instead
        digits = f"{frac:018d}".rstrip("0")
    return sign + (f"{whole:,}" if grouping else str(whole)) + (f".{digits}" if digits else "")
