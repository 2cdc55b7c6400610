"""What every command prints with: the two consoles, JSON for scripts, tables, values in words, confirmations.

The conventions every command keeps (README, "Output"):

- ``--json`` prints one JSON document on stdout and nothing else there;
- tables never cut a value: on a terminal too narrow for a table its rows are shown one block each
  (``field: value`` lines); piped, a table is plain text with whole headers and whole cells;
- values read as words (``true``/``false``, ``yes``/``no``, ``none``), never Python reprs;
- times are UTC with milliseconds and ``Z`` (:func:`when`);
- anything that asks for confirmation takes ``-y/--yes``, and without a terminal to ask on it stops
  with one line instead of hanging or guessing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from tradeops.runtime.platform.clock import iso, parse_iso
from tradeops.runtime.platform.errors import CheckFailed, Refused
from tradeops.runtime.platform.text import human, yes_no

__all__ = [
    "Column",
    "JsonOpt",
    "YesOpt",
    "ask",
    "compact",
    "confirm",
    "err",
    "human",
    "interactive",
    "out",
    "print_json",
    "print_table",
    "when",
    "yes_no",
]

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document for scripts.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (scripts).")]


def print_json(data: Any) -> None:
    """One JSON document on standard output: sorted keys, money and times as strings."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def compact(value: Any, limit: int = 160) -> str:
    """A value in one line of at most ``limit`` characters (words for scalars, JSON for structures)."""
    text = human(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def when(value: Any) -> str:
    """A moment in the one format (UTC, milliseconds, Z); anything that is not a timestamp as it is."""
    if value in (None, ""):
        return "none"
    try:
        return iso(parse_iso(str(value)))
    except ValueError:
        return str(value)


@dataclass(frozen=True)
class Column:
    """A table column; an ``ident`` column (ids people type) is never wrapped or cut."""

    name: str
    ident: bool = False
    justify: str = "left"


def _cell(value: Any) -> str:
    return human(value)


def print_table(columns: Sequence[Column], rows: Sequence[Sequence[Any]], *, console: Console | None = None,
                title: str | None = None) -> None:
    """Rows under whole headers, every cell whole (see the module docstring for how)."""
    console = console or out
    cells = [[_cell(v) for v in row] for row in rows]
    if not console.is_terminal:
        # Piped: plain text, padded to the widest cell, no colours, nothing cut.
        widths = [max([len(c.name)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
        lines = [[c.name for c in columns], *cells]
        if title:
            console.print(title, markup=False, soft_wrap=True)
        for line in lines:
            console.print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip(), markup=False,
                          soft_wrap=True)
        return
    natural = sum(max([len(c.name)] + [len(r[i]) for r in cells]) + 3 for i, c in enumerate(columns)) + 1
    if natural > console.width:
        # Too narrow for columns: one block per row, so ids and headers stay whole.
        if title:
            console.print(f"[bold]{escape(title)}[/]")
        label = max(len(c.name) for c in columns)
        for n, row in enumerate(cells):
            if n:
                console.print()
            for c, v in zip(columns, row, strict=True):
                # An id longer than the line folds onto the next line rather than being cut.
                console.print(f"[bold]{escape(c.name.rjust(label))}[/]: {escape(v)}", overflow="fold")
        return
    from rich.table import Table  # only a terminal wide enough draws one; every command imports this module

    table = Table(header_style="bold", title=title)
    for c in columns:
        table.add_column(c.name, justify=c.justify, no_wrap=c.ident, overflow="fold")  # type: ignore[arg-type]
    for row in cells:
        table.add_row(*(escape(v) for v in row))
    console.print(table)


def interactive() -> bool:
    """Whether a person can answer a prompt (standard input is a terminal)."""
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):  # closed or replaced stdin
        return False


def ask(prompt: str, *, to_stderr: bool = False) -> bool:
    """Ask a yes/no question on the terminal; only y/yes is a yes, and closed input is a no.

    Ctrl-C is not an answer: it raises KeyboardInterrupt, so whatever asked can stop and say how
    to continue (typer's prompt would turn it into an ordinary "no")."""
    stream = sys.stderr if to_stderr else sys.stdout
    stream.write(f"{prompt} [y/N]: ")
    stream.flush()
    line = sys.stdin.readline()
    if not line:
        stream.write("\n")
        return False
    return line.strip().lower() in ("y", "yes")


def confirm(prompt: str, *, yes: bool, what: str) -> None:
    """Ask before ``what``; returns when confirmed. ``--yes`` skips the question.

    Without a terminal and without ``--yes`` it refuses at once (exit 1, one line) rather than
    waiting on input that will never come; a "no" (or closed input) is CheckFailed, nothing done.
    """
    if yes:
        return
    if not interactive():
        raise Refused(f"{what} needs a confirmation and there is no terminal to ask on: run it at a terminal, "
                      "or pass --yes")
    if not ask(prompt):
        raise CheckFailed(f"not confirmed: {what} was not done")
