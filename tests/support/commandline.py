"""`tradeops` command lines parsed as the CLI parses them, down to the command they name, running nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def parse(argv: Sequence[str]) -> Any:
    """The leaf command's context for ``argv`` (``["tradeops", "--aws", "drill", "run", ...]``); the CLI's usage
    error (exit 2 when run) when an option or argument is not one the command takes. Nothing is invoked."""
    import typer.main

    from tradeops.cli import app

    command: Any = typer.main.get_command(app)
    ctx = command.make_context(argv[0], list(argv[1:]))
    while hasattr(command, "resolve_command"):  # a group: the next word names its command (click keeps it apart)
        name, command, args = command.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
        ctx = command.make_context(name, args, parent=ctx)
    return ctx
