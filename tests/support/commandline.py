"""`tradeops` command lines: parsed as the CLI parses them, down to the command they name, running nothing; or
run in this process through the console script's own entry point."""

from __future__ import annotations

import sys
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


def run_main(capsys: Any, *args: str) -> tuple[int, str, str]:
    """Run the `tradeops` entry point in this process (the same main() the console script runs) with ``args``;
    its exit code and what it printed (``capsys``: pytest's capture fixture)."""
    from tradeops.cli import main

    argv, sys.argv = sys.argv, ["tradeops", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err
