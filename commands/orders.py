"""`tradeops orders ...`: look at one order; declare a broker's in-doubt orders void; double executions."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from tradeops.commands.context import context
from tradeops.commands.output import JsonOpt, YesOpt, compact, out, print_json
from tradeops.runbooks.unwind import UNWIND_ROLES, unwind
from tradeops.runtime.orderpath.doubles import UNWOUND, WRITTEN_OFF
from tradeops.runtime.orderpath.intake import order_json
from tradeops.runtime.orderpath.ops import declare_void, double_executions, in_flight_orders
from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.platform.errors import BadInput

__all__ = ["orders_app"]

orders_app = typer.Typer(help="Look at orders; declare a broker's in-doubt orders void; find and decide double "
                              "executions.", no_args_is_help=True)

_SHOWN = ("order_id", "status", "provider", "symbol", "side", "quantity", "order_type", "limit_price", "quote_price",
          "fill_price", "placed_at", "filled_at", "synthetic")


@orders_app.command("show")
def show(order_id: Annotated[str, typer.Argument(help="The order id.")], as_json: JsonOpt = False) -> None:
    """One order with its state, provider, fill and history."""
    order = order_json(OrderStore(context().aws).require(order_id))
    if as_json:
        print_json(order)
        return
    for key in _SHOWN:
        if order.get(key) is not None:
            out.print(f"{key:>12}: {order[key]}")
    for key in ("void_declared", "void_check", "double_execution"):
        if order.get(key):
            out.print(f"{key}: {escape(compact(order[key], 400))}")
    table = Table("at", "status", "actor", "provider", "note", header_style="bold")
    for entry in order.get("history", []):
        table.add_row(entry.get("at", ""), entry.get("status", ""), entry.get("actor", ""),
                      entry.get("provider", ""), entry.get("note", ""))
    out.print(table)


@orders_app.command("declare-void")
def declare_void_command(
    provider: Annotated[str, typer.Option(help="The broker whose in-flight orders are declared void.")],
    reason: Annotated[str, typer.Option(help="Why (recorded with the declaration).")] = "broker unavailable",
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Declare PROVIDER's in-doubt orders void so they may go to the other broker. Records who did it."""
    ctx = context()
    who = ctx.identity()
    pending = in_flight_orders(ctx.aws, provider)
    if not yes and not as_json:
        out.print(
            f"{len(pending)} order(s) in flight at {provider}. Declaring them void means you accept that "
            f"{provider} will never fill them."
        )
        typer.confirm("Declare them void?", abort=True)
    released = declare_void(ctx.aws, provider, actor=who.name, reason=reason)
    if as_json:
        print_json({"provider": provider, "declared_by": who.name, "identity_source": who.source,
                    "released": released})
    else:
        out.print(f"{len(released)} order(s) declared void at {provider} by {who.name} ({who.source}); "
                  "they will be routed again")


def _fill_text(fill: dict) -> str:
    return (f"{fill.get('provider')} {fill.get('quantity')} @ {fill.get('price')} at {fill.get('at') or '?'}"
            + ("" if fill.get("recorded") else " (not on the order record)"))


@orders_app.command("duplicates")
def duplicates(
    state: Annotated[list[str] | None, typer.Option(help="Only these states: open, unwound, written_off "
                                                         "(repeatable; default all).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every double execution found after a void: both fills, who declared the void, and its state.

    Open ones are positions the trading desk must unwind (or write off):
    `tradeops orders unwind ORDER_ID --reason "closed out on the desk"`.

    Examples: `tradeops orders duplicates`, `tradeops orders duplicates --state open --json`.
    """
    wanted = tuple(state or ("open", UNWOUND, WRITTEN_OFF))
    unknown = sorted(set(wanted) - {"open", UNWOUND, WRITTEN_OFF})
    if unknown:
        raise BadInput(f"unknown state {', '.join(unknown)} (one of open, unwound, written_off)")
    rows = double_executions(context().aws, states=wanted)
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no double executions")
        return
    table = Table("order", "state", "fills", "notional £", "void declared by", "decided", header_style="bold")
    for row in rows:
        decided = ""
        if row.get("state") != "open":
            decided = f"{', '.join(row.get('decided_by') or [])}: {row.get('decision_reason', '')}"
        elif row.get("decisions"):
            decided = f"waiting: {len(row['decisions'])} of {row.get('approvals_needed')} decided"
        table.add_row(escape(row["order_id"]), row.get("state", ""),
                      "\n".join(_fill_text(f) for f in row.get("fills") or []), str(row.get("notional")),
                      str(row.get("void_declared_by")), escape(decided))
    out.print(table)


@orders_app.command("unwind")
def unwind_command(
    order_id: Annotated[str, typer.Argument(help="The order executed twice.")],
    reason: Annotated[str, typer.Option(help="What was done and why (recorded with the decision).")],
    write_off: Annotated[bool, typer.Option("--write-off", help="Record it as written off instead of unwound.")]
    = False,
    as_json: JsonOpt = False,
) -> None:
    """Record your decision on a double execution: unwound (default) or --write-off.

    Needs one of the roles ops-manager or risk (operators file). Above the settable notional
    (TRADEOPS_UNWIND_DUAL_APPROVAL, default £10,000) two different people must make the same
    decision; the first one's is recorded and waits for the second.

    Example: `tradeops orders unwind ord-123 --reason "sold 10 SYM1 at 101.20 on the desk"`.
    """
    ctx = context()
    who = ctx.identity()
    operators = ctx.operators()
    record = unwind(ctx.aws, order_id, identity=who.name, source=who.source,
                    outcome=WRITTEN_OFF if write_off else UNWOUND, reason=reason, roles_of=dict(operators.roles))
    if as_json:
        print_json(record)
        return
    if record["state"] == "open":
        out.print(f"{who.name}'s decision is recorded; the notional £{record['notional']} needs "
                  f"{record['approvals_needed']} people with one of {', '.join(UNWIND_ROLES)} to decide the same")
    else:
        out.print(f"order {order_id}: double execution {record['state']} "
                  f"(decided by {', '.join(record['decided_by'])})")
