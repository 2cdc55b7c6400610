"""`tradeops audit verify`: the hash-chained audit log of every runbook decision."""

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
    """Check the whole audit chain; name the first broken record (exit 1)."""
    result = AuditLog(context().aws, chain=chain).verify()
    if as_json:
        print_json(result.__dict__)
        if not result.ok:
            raise typer.Exit(1)
        return
    if not result.ok:
        raise CheckFailed(result.summary())
    out.print(result.summary(), markup=False)
