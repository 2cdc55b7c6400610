"""What every command prints with: the two consoles, JSON for scripts, and small renderers."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

__all__ = ["JsonOpt", "YesOpt", "compact", "err", "out", "print_json"]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (scripts).")]


def print_json(data: Any) -> None:
    """One JSON document on standard output: sorted keys, money and times as strings."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def compact(value: Any, limit: int = 160) -> str:
    """A value in one line of at most ``limit`` characters (JSON for structures)."""
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"
