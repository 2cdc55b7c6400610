"""`tradeops reimbursements list | approve | reject | export`: the reimbursement ledger, for finance."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from tradeops.commands.context import Context, context
from tradeops.commands.output import JsonOpt, err, out, print_json
from tradeops.runbooks.identity import Identity
from tradeops.runtime.liability.ledger import Ledger, entry_dict, write_csv
from tradeops.runtime.platform.errors import BadInput
from tradeops.runtime.platform.events import EventLog

__all__ = ["reimbursements_app"]

reimbursements_app = typer.Typer(help="The reimbursement ledger: list, approve, reject, export for finance.",
                                 no_args_is_help=True)


def _decider(ctx: Context) -> tuple[Identity, frozenset[str]]:
    identity = ctx.identity()
    return identity, ctx.operators().roles_of(identity.name)


def _record(ctx: Context, who: Identity, kind: str, entry: dict[str, Any], **facts: Any) -> None:
    EventLog(ctx.aws, source=str(who), echo=False).emit(
        kind, stream="reimbursements", order_id=entry["order_id"], amount=str(entry["amount"]),
        currency=entry.get("currency", "GBP"), status=entry["status"], identity_source=who.source, **facts)


def _approvals_text(entry: dict[str, Any]) -> str:
    return f"{len(entry.get('approvals', []))}/{int(entry['required_approvals'])}"


StatusOpt = Annotated[list[str] | None, typer.Option("--status", help="Only this status (repeatable): "
                                                     "PENDING_APPROVAL, APPROVED, REJECTED, NOTHING_DUE.")]


@reimbursements_app.command("list")
def reimbursements_list(status: StatusOpt = None, as_json: JsonOpt = False) -> None:
    """Ledger entries, oldest first (amounts in GBP, rounded up to the penny in the customer's favour)."""
    ledger = Ledger(context().aws)
    entries = sorted((entry_dict(e) for e in ledger.entries(status)), key=lambda e: (e["created_at"], e["order_id"]))
    if as_json:
        print_json(entries)
        return
    table = Table("order", "account", "symbol", "side", "qty", "quote", "fill", "amount £", "waited", "status",
                  "approvals", "created", header_style="bold")
    for e in entries:
        table.add_row(escape(e["order_id"]), escape(e["account_id"]), e["symbol"], e["side"], str(e["quantity"]),
                      e["quote_price"], e["fill_price"], e["amount"], f"{Decimal(e['waited_seconds']):.0f}s",
                      e["status"], _approvals_text(e), e["created_at"])
    out.print(table)
    total = sum((Decimal(e["amount"]) for e in entries), Decimal(0))
    out.print(f"{len(entries)} entries, £{total} GBP")


@reimbursements_app.command("approve")
def reimbursements_approve(
    order_id: Annotated[str, typer.Argument(help="The order id of the reimbursement.")],
    as_json: JsonOpt = False,
) -> None:
    """Approve a pending reimbursement as yourself (finance role; never your own request; once each)."""
    ctx = context()
    ledger = Ledger(ctx.aws)
    who, roles = _decider(ctx)
    entry = entry_dict(ledger.approve(order_id, approver=who.name, roles=roles, source=who.source))
    _record(ctx, who, "reimbursement_approved", entry, approvals=_approvals_text(entry))
    if as_json:
        print_json(entry)
    else:
        out.print(f"{order_id}: approved by {who.name} ({_approvals_text(entry)} approvals); "
                  f"£{entry['amount']} GBP is {entry['status']}")


@reimbursements_app.command("reject")
def reimbursements_reject(
    order_id: Annotated[str, typer.Argument(help="The order id of the reimbursement.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded with your identity).")],
    as_json: JsonOpt = False,
) -> None:
    """Reject a pending reimbursement with a recorded reason (finance role)."""
    ctx = context()
    ledger = Ledger(ctx.aws)
    who, roles = _decider(ctx)
    entry = entry_dict(ledger.reject(order_id, approver=who.name, roles=roles, reason=reason, source=who.source))
    _record(ctx, who, "reimbursement_rejected", entry, reason=reason)
    if as_json:
        print_json(entry)
    else:
        out.print(f"{order_id}: rejected by {who.name}: {reason}")


@reimbursements_app.command("export")
def reimbursements_export(
    csv_path: Annotated[str, typer.Option("--csv", help="CSV file to write, or - for standard output.")],
    status: StatusOpt = None,
) -> None:
    """Export the ledger as CSV for finance (one row per order; amounts GBP)."""
    ledger = Ledger(context().aws)
    entries = sorted(ledger.entries(status), key=lambda e: (e["created_at"], e["order_id"]))
    if csv_path == "-":
        write_csv(entries, sys.stdout)
        return
    path = Path(csv_path)
    try:
        with path.open("w", encoding="utf-8", newline="") as fh:
            rows = write_csv(entries, fh)
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror}") from None
    err.print(f"{rows} entries written to {path}")
