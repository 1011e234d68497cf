"""The HTTP API's error type: every 4xx answer is ``{"error": code, "field": dotted.path | null, "reason": text}``."""

from __future__ import annotations

from pydantic import ValidationError


class ApiError(Exception):
    """A refused request: HTTP ``status``, a short machine-readable ``error`` code, the offending ``field``."""

    def __init__(self, status: int, error: str, field: str | None, reason: str):
        super().__init__(f"{error}: {field}: {reason}")
        self.status = status
        self.error = error
        self.field = field
        self.reason = reason

    def body(self) -> dict:
        return {"error": self.error, "field": self.field, "reason": self.reason}


def field_path(loc: tuple | list, prefix: str = "") -> str | None:
    """A pydantic error location as a dotted path (list indices in brackets), under ``prefix``."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or None


def from_validation_error(exc: ValidationError, prefix: str = "", status: int = 400) -> ApiError:
    """The first problem of a pydantic ValidationError as an ApiError naming the field."""
    first = exc.errors(include_url=False)[0]
    reason = first.get("msg", "invalid value")
    if first.get("type") == "missing":
        return ApiError(status, "missing_field", field_path(first["loc"], prefix), "field required")
    if first.get("type") == "extra_forbidden":
        return ApiError(status, "unknown_field", field_path(first["loc"], prefix), "unknown field")
    return ApiError(status, "invalid_field", field_path(first["loc"], prefix), reason)
