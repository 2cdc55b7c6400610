"""Secrets out of evidence: every document a report or pack holds passes through :func:`redact`. Pure.

A field whose name looks like a secret (token, password, API key, credential, ...) is blanked, a bearer
token in any text is cut, and so is any of the secret values themselves (the intake token, the brokers'
keys) wherever it appears, so a key planted in a journal or an audit record cannot reach a report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["REDACTED", "redact"]

_SECRET_KEY = re.compile(r"(token|secret|password|passwd|api[_-]?key|authorization|credential)", re.I)
_SECRET_TEXT = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{4,}")
REDACTED = "[redacted]"


def redact(value: Any, known: Iterable[str] = ()) -> Any:
    """``value`` with every secret-looking field, bearer token and known secret value replaced.

    ``known`` are the secret values themselves (intake token, broker keys): any string holding one
    has it cut out, wherever the string came from."""
    secrets = sorted({s for s in known if s and len(s) >= 4}, key=len, reverse=True)

    def walk(v: Any, key: str | None = None) -> Any:
        if key is not None and _SECRET_KEY.search(key) and v not in (None, "", [], {}):
            return REDACTED
        if isinstance(v, Mapping):
            return {k: walk(x, str(k)) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x) for x in v]
        if isinstance(v, str):
            for s in secrets:
                v = v.replace(s, REDACTED)
            return _SECRET_TEXT.sub(r"\1 " + REDACTED, v)
        return v

    return walk(value)
