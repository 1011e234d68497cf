"""Typed reads: a repository's row dataclass is built from a row read by column name (SQLite's ``sqlite3.Row`` or
the PostgreSQL dialect's ``Row``), one field per column, through ``typed_row``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def _same(value: Any) -> Any:
    return value


def typed_row(cls: type[T], row: Any, **convert: Callable[[Any], Any]) -> T:
    """The frozen dataclass ``cls`` from ``row``: each field is the column of its name, passed through
    ``convert[field]`` where given (JSON text to a dict, 0/1 to a bool, decimal text to an int)."""
    return cls(**{f.name: convert.get(f.name, _same)(row[f.name]) for f in fields(cls)})  # type: ignore[arg-type]
