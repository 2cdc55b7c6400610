"""A check's expectation against a probe's value: ``expect: false``, ``{lt: 120}``, ``{in: [...]}``. Pure."""

from __future__ import annotations

from typing import Any

from tradeops.runtime.platform.text import human

__all__ = ["describe_expect", "expectation_met"]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def expectation_met(expect: Any, value: Any) -> bool:
    """Whether a probe's value meets an ``expect`` (a value, or one of equals/lt/le/gt/ge/in)."""
    if not isinstance(expect, dict):
        return bool(value == expect)
    (cmp, bound), = expect.items()
    if cmp == "equals":
        return bool(value == bound)
    if cmp == "in":
        return bool(value in bound)
    got, limit = _number(value), _number(bound)
    if got is None or limit is None:
        return False
    return {"lt": got < limit, "le": got <= limit, "gt": got > limit, "ge": got >= limit}[cmp]


def describe_expect(expect: Any) -> str:
    """An expectation in words: ``false``, ``< 120``, ``one of primary, secondary``."""
    if not isinstance(expect, dict):
        return human(expect)
    (cmp, bound), = expect.items()
    if cmp == "in":
        return "one of " + ", ".join(human(b) for b in bound)
    return {"equals": "", "lt": "< ", "le": "<= ", "gt": "> ", "ge": ">= "}[cmp] + human(bound)
