"""`tradeops audit verify|anchor`: the hash-chained audit log of every runbook decision, and its anchors."""

from __future__ import annotations

from typing import Annotated

import typer

from tradeops.commands.context import context
from tradeops.commands.output import JsonOpt, out, print_json
from tradeops.runbooks.audit import AuditLog
from tradeops.runtime.platform.errors import CheckFailed

__all__ = ["audit_app"]

audit_app = typer.Typer(help="The hash-chained audit log of every runbook decision.", no_args_is_help=True)


@audit_app.callback()
def _audit() -> None:
    """The hash-chained audit log of every runbook decision."""


@audit_app.command()
def verify(
    chain: Annotated[str, typer.Option(help="Audit chain to check.")] = "audit",
    as_json: JsonOpt = False,
) -> None:
    """Check the whole audit chain, then against every anchor; name the first record that disagrees (exit 1).

    The anchors (written outside the table, under Object Lock) catch a record rewritten together with
    every later digest and the head, which the chain alone cannot.

    Examples:

        tradeops audit verify
        tradeops audit verify --json
    """
    result = AuditLog(context().aws, chain=chain).verify()
    if as_json:
        print_json(result.__dict__)
        if not result.ok:
            raise typer.Exit(1)
        return
    if not result.ok:
        if result.anchors:
            out.print(f"{result.records} records; {result.anchors} anchors checked; the last good anchor is at "
                      f"record {result.last_good_anchor or 'none'}", markup=False)
        raise CheckFailed(result.summary())
    out.print(result.summary(), markup=False)


@audit_app.command()
def anchor(
    chain: Annotated[str, typer.Option(help="Audit chain to anchor.")] = "audit",
    as_json: JsonOpt = False,
) -> None:
    """Anchor the chain head now, outside the table (the stack also does it on a schedule and after each
    runbook execution). Nothing is written when no record was appended since the last anchor.

    Example:

        tradeops audit anchor
    """
    ctx = context()
    ctx.announce(quiet=as_json)
    who = str(ctx.identity().name)
    written = AuditLog(ctx.aws, chain=chain).anchor(by=who, reason="tradeops audit anchor")
    if as_json:
        print_json({"anchored": written is not None, "anchor": written, "target": ctx.target_json()})
        return
    if written is None:
        out.print(f"audit chain {chain!r}: nothing new since the last anchor", markup=False)
        return
    out.print(f"audit chain {chain!r} anchored at record {written['seq']} ({written['key']})", markup=False)
