"""`tradeops flags [set NAME VALUE]`: the control flags in SSM."""

from __future__ import annotations

from typing import Annotated

import typer

from tradeops.commands.context import context
from tradeops.commands.output import JsonOpt, out, print_json
from tradeops.runtime.orderpath.flags import Flags

__all__ = ["flags_app"]

flags_app = typer.Typer(help="Read or set the control flags in SSM.", invoke_without_command=True)


@flags_app.callback()
def show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Show the control flags."""
    if ctx.invoked_subcommand:
        return
    values = Flags(context().aws).read().as_dict()
    if as_json:
        print_json(values)
    else:
        for key, value in values.items():
            out.print(f"{key:>10}: {value}")


@flags_app.command("set")
def set_flag(
    name: Annotated[str, typer.Argument(help="processing | mode | active | trickle")],
    value: Annotated[str, typer.Argument(help="The new value.")],
) -> None:
    """Set one flag (workers see it within a second). Prefer a runbook for failover."""
    ctx = context()
    flags = Flags(ctx.aws)
    before = flags.read().as_dict().get(name)
    canonical = flags.set(name, value, actor=ctx.identity().name)
    out.print(f"{name}: {before} -> {canonical}")
