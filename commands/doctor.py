"""`tradeops doctor`: what is wrong and how to fix it (exit 1 on any problem)."""

from __future__ import annotations

import typer

from tradeops.commands.context import aws_chosen
from tradeops.commands.output import JsonOpt, out, print_json
from tradeops.runbooks.doctor import diagnose
from tradeops.runtime.platform.settings import load_settings

__all__ = ["doctor"]


def doctor(as_json: JsonOpt = False) -> None:
    """Check the target, the stack, the operators file and roster, your identity, the brokers, the flags,
    the dead-letter queue, the audit chain and the clock: one line each, ok or a problem with its fix."""
    findings = diagnose(load_settings(), aws_target=aws_chosen())
    problems = [f for f in findings if not f.ok and not f.skipped]
    if as_json:
        print_json({"ok": not problems, "checks": [f.as_dict() for f in findings]})
    else:
        width = max(len(f.check) for f in findings)
        for f in findings:
            mark = "[green]ok[/]     " if f.ok else ("[dim]skipped[/]" if f.skipped else "[red]PROBLEM[/]")
            out.print(f"{mark} {f.check.ljust(width)}  ", end="")
            out.print(f.detail + (f" — fix: {f.fix}" if f.fix and not f.ok else ""), markup=False)
        out.print(f"\n{len(problems)} problem(s)" if problems else "\nno problems found", markup=False)
    if problems:
        raise typer.Exit(1)
