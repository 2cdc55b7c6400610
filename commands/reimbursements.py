"""`tradeops reimbursements list | approve | reject | export`: the reimbursement ledger, for finance."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from tradeops.commands.context import Context, context
from tradeops.commands.output import Column, JsonOpt, YesOpt, confirm, err, out, print_json, print_table, when
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


StatusOpt = Annotated[list[str] | None, typer.Option(
    "--status", metavar="STATUS", help="Only this status (repeatable): PENDING_APPROVAL, APPROVED, REJECTED, "
                                       "NOTHING_DUE.")]


@reimbursements_app.command("list")
def reimbursements_list(status: StatusOpt = None, as_json: JsonOpt = False) -> None:
    """Ledger entries, oldest first (amounts in GBP, rounded up to the penny in the customer's favour)."""
    ledger = Ledger(context().aws)
    entries = sorted((entry_dict(e) for e in ledger.entries(status)), key=lambda e: (e["created_at"], e["order_id"]))
    if as_json:
        print_json(entries)
        return
    print_table([Column("order", ident=True), Column("account", ident=True), Column("symbol"), Column("side"),
                 Column("qty", justify="right"), Column("quote", justify="right"), Column("fill", justify="right"),
                 Column("amount £", justify="right"), Column("waited", justify="right"), Column("status"),
                 Column("approvals"), Column("created")],
                [(e["order_id"], e["account_id"], e["symbol"], e["side"], e["quantity"], e["quote_price"],
                  e["fill_price"], e["amount"], f"{Decimal(e['waited_seconds']):.0f}s", e["status"], _approvals_text(e),
                  when(e["created_at"])) for e in entries])
    total = sum((Decimal(e["amount"]) for e in entries), Decimal(0))
    out.print(f"{len(entries)} entries, £{total} GBP")


@reimbursements_app.command("approve")
def reimbursements_approve(
    order_id: Annotated[str, typer.Argument(metavar="ORDER_ID", help="The order id of the reimbursement.")],
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Approve a pending reimbursement as yourself (finance role in the roster; never your own request; once each).

    Example:

        tradeops reimbursements approve ord-20261126-0042
    """
    ctx = context()
    ctx.announce(quiet=as_json)
    ledger = Ledger(ctx.aws)
    who, roles = _decider(ctx)
    confirm(f"Approve the reimbursement of order {order_id} as {who.name}?", yes=yes,
            what="approving the reimbursement")
    entry = entry_dict(ledger.approve(order_id, approver=who.name, roles=roles, source=who.source))
    _record(ctx, who, "reimbursement_approved", entry, approvals=_approvals_text(entry))
    if as_json:
        print_json(entry)
    else:
        out.print(f"{order_id}: approved by {who.name} ({_approvals_text(entry)} approvals); "
                  f"£{entry['amount']} GBP is {entry['status']}")


@reimbursements_app.command("reject")
def reimbursements_reject(
    order_id: Annotated[str, typer.Argument(metavar="ORDER_ID", help="The order id of the reimbursement.")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded with your identity).")],
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Reject a pending reimbursement with a recorded reason (finance role in the roster).

    Example:

        tradeops reimbursements reject ord-20261126-0042 --reason "customer cancelled before the delay"
    """
    ctx = context()
    ctx.announce(quiet=as_json)
    ledger = Ledger(ctx.aws)
    who, roles = _decider(ctx)
    confirm(f"Reject the reimbursement of order {order_id} as {who.name}?", yes=yes,
            what="rejecting the reimbursement")
    entry = entry_dict(ledger.reject(order_id, approver=who.name, roles=roles, reason=reason, source=who.source))
    _record(ctx, who, "reimbursement_rejected", entry, reason=reason)
    if as_json:
        print_json(entry)
    else:
        out.print(f"{order_id}: rejected by {who.name}: {reason}")


@reimbursements_app.command("export")
def reimbursements_export(
    csv_path: Annotated[str, typer.Option("--csv", metavar="FILE", help="CSV file to write, or - for standard "
                                                                         "output.")],
    status: StatusOpt = None,
) -> None:
    """Export the ledger as CSV for finance (one row per order; amounts GBP).

    Example:

        tradeops reimbursements export --csv reimbursements-2026-11.csv --status APPROVED
    """
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
