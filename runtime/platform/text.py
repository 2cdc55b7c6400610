"""How a value reads in front of a person: ``true``/``false``, ``yes``/``no``, ``none``, never a Python repr. Pure.

Shared by the CLI's renderers and by the messages the runbook engine writes (a stop reason that
says ``broker_healthy is true, expected false``, not ``is True, expected = False``).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

__all__ = ["human", "yes_no"]


def human(value: Any) -> str:
    """A value in words: booleans true/false, None as none, structures as compact JSON, the rest as text."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float | Decimal):
        return str(value)
    return json.dumps(value, default=str, sort_keys=True, separators=(", ", ": "))


def yes_no(value: Any) -> str:
    """A yes/no fact (healthy, synthetic, stale): yes, no, or none when unknown."""
    if value is None:
        return "none"
    return "yes" if value else "no"
