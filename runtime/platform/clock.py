"""The one timestamp format of tradeops: UTC, milliseconds, ``Z`` (``2026-11-26T09:07:25.123Z``).

Every stored, logged, published or printed moment goes through :func:`iso`, and every one read
back through :func:`parse_iso`, so records sort as strings and two formats never meet in one
report. Times are always timezone-aware UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from tradeops.runtime.platform.errors import BadInput

__all__ = ["iso", "parse_duration", "parse_iso", "utcnow"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


def iso(at: datetime | None = None) -> str:
    """``at`` (default now) as UTC with milliseconds and ``Z``; a naive ``at`` is refused."""
    moment = utcnow() if at is None else at
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no defined UTC moment")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """An ISO 8601 timestamp (``Z`` or an offset) as an aware UTC datetime; ValueError otherwise."""
    moment = datetime.fromisoformat(str(text).strip())
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no timezone")
    return moment.astimezone(UTC)


def parse_duration(text: str) -> float:
    """Seconds from ``500ms``, ``10s``, ``1.5s``, ``2m``, ``1h`` or a bare number of seconds."""
    match = _DURATION.match(text or "")
    if not match:
        raise BadInput(f"not a duration: {text!r} (e.g. 10s, 500ms, 2m)")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
