"""`tradeops flags [set NAME VALUE]`: the control flags in SSM; a routing change by hand is break-glass."""

from __future__ import annotations

from typing import Annotated

import typer

from tradeops.commands.context import context
from tradeops.commands.output import JsonOpt, YesOpt, confirm, human, out, print_json
from tradeops.runbooks import breakglass
from tradeops.runtime.orderpath.flags import Flags, validate_flag

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
            out.print(f"{key:>10}: {human(value)}", markup=False)


@flags_app.command("set")
def set_flag(
    name: Annotated[str, typer.Argument(metavar="NAME", help="processing | mode | active | trickle")],
    value: Annotated[str, typer.Argument(metavar="VALUE", help="The new value.")],
    reason: Annotated[str, typer.Option(help="Why (required for processing, mode and active; goes to the audit "
                                             "log and the alert).")] = "",
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Set one flag by hand (workers see it within a second). Prefer a runbook: it has four-eyes.

    processing, mode and active are break-glass: allowed only to an identity with a break-glass role
    in the roster, only with --reason; the change is written to the audit log first and an alert
    naming you and the reason goes to the alert topic. trickle (the standby's share in auto mode)
    is lighter: no role and no reason, recorded as a flag_set event.

    Example:

        tradeops flags set active secondary --reason "primary down, runbook blocked (INC-123)"
    """
    canonical = validate_flag(name, value)  # bad name or value: one line, exit 2, before anything else
    ctx = context()
    ctx.announce(quiet=as_json)
    who = ctx.identity()
    roster = ctx.operators() if name in breakglass.GUARDED_FLAGS else None
    if roster is not None:
        breakglass.authorize(who, roster, reason)
    before = Flags(ctx.aws).read().as_dict()[name]
    if not as_json:
        glass = " (break-glass: audited and alerted)" if roster is not None else ""
        out.print(f"{name}: {human(before)} -> {canonical} on {ctx.target_text()}{glass}", markup=False)
    confirm(f"Set {name} to {canonical}?", yes=yes, what=f"setting flag {name}")
    result = breakglass.set_flag(ctx.aws, identity=who, roster=roster, flag=name, value=canonical, reason=reason,
                                 target=ctx.target_text())
    if as_json:
        print_json({**result, "target": ctx.target_json(), "identity": who.name, "identity_source": who.source})
        return
    out.print(f"{name}: {human(result['before'])} -> {result['after']} (by {who.name})", markup=False)
