"""`tradeops orders ...`: look at one order; declare a broker's in-doubt orders void (four-eyes or
break-glass); list and decide double executions."""

from __future__ import annotations

from typing import Annotated

import typer

from tradeops.commands.context import context
from tradeops.commands.output import (
    Column,
    JsonOpt,
    YesOpt,
    compact,
    confirm,
    human,
    out,
    print_json,
    print_table,
    when,
    yes_no,
)
from tradeops.commands.runbook import run_guided
from tradeops.runbooks import breakglass
from tradeops.runbooks.unwind import UNWIND_ROLES, unwind
from tradeops.runtime.orderpath.double_executions import UNWOUND, WRITTEN_OFF
from tradeops.runtime.orderpath.figures import double_executions
from tradeops.runtime.orderpath.inflight import in_flight_orders
from tradeops.runtime.orderpath.orders import OrderStore, order_json
from tradeops.runtime.platform.errors import BadInput

__all__ = ["orders_app"]

orders_app = typer.Typer(help="Look at orders; declare a broker's in-doubt orders void; find and decide double "
                              "executions.", no_args_is_help=True)

_SHOWN = ("order_id", "status", "provider", "symbol", "side", "quantity", "order_type", "limit_price", "quote_price",
          "fill_price", "placed_at", "filled_at", "synthetic")
_TIMES = ("placed_at", "filled_at", "created_at", "updated_at")


@orders_app.command("show")
def show(order_id: Annotated[str, typer.Argument(metavar="ORDER_ID", help="The order id.")],
         as_json: JsonOpt = False) -> None:
    """One order with its state, provider, fill and history (exit 1 if there is no such order)."""
    order = order_json(OrderStore(context().aws).require(order_id))
    if as_json:
        print_json(order)
        return
    for key in _SHOWN:
        if order.get(key) is None:
            continue
        value = order[key]
        text = when(value) if key in _TIMES else yes_no(value) if key == "synthetic" else human(value)
        out.print(f"{key:>12}: {text}", markup=False)
    for key in ("void_declared", "void_check", "double_execution"):
        if order.get(key):
            out.print(f"{key}: {compact(order[key], 400)}", markup=False)
    print_table([Column("at"), Column("status"), Column("actor", ident=True), Column("provider"), Column("note")],
                [(when(e.get("at")), e.get("status", ""), e.get("actor", ""), e.get("provider") or "",
                  e.get("note") or "") for e in order.get("history", [])])


@orders_app.command("declare-void")
def declare_void_command(
    provider: Annotated[str, typer.Option(help="The broker whose in-flight orders are declared void.")],
    reason: Annotated[str, typer.Option(help="Why (required; goes on every released order and the audit log).")]
    = "",
    break_glass: Annotated[bool, typer.Option("--break-glass", help="Declare it alone, now (needs a break-glass "
                                                                    "role; audited and alerted).")] = False,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
    poll: Annotated[float, typer.Option(metavar="SECONDS", help="Seconds between looks at the approvals.",
                                        min=0.05)] = 1.0,
) -> None:
    """Declare PROVIDER's in-doubt orders void so they may go to the other broker.

    A four-eyes operation: it runs the declare-void runbook (two approvers). With --break-glass a
    holder of a break-glass role declares it alone, audited and alerted. Either way the broker is
    asked once more right before each order is released, and an order it now answers for is
    settled instead.

    Example:

        tradeops orders declare-void --provider primary --reason "primary down since 09:05, no answer (INC-123)"
    """
    if len(reason.strip()) < 3:
        raise BadInput("declare-void needs --reason (it goes on every released order and into the audit log)")
    ctx = context()
    pending = in_flight_orders(ctx.aws, provider)
    if not pending:
        if as_json:
            print_json({"provider": provider, "released": [], "settled": [], "target": ctx.target_json()})
        else:
            out.print(f"no order is in flight at {provider}; nothing to declare", markup=False)
        return
    if not break_glass:
        run_guided(ctx, "declare-void", {"provider": provider, "reason": reason}, yes=yes, as_json=as_json, poll=poll)
        return
    ctx.announce(quiet=as_json)
    who = ctx.identity()
    roster = ctx.operators()
    breakglass.authorize(who, roster, reason)
    if not as_json:
        out.print(f"{len(pending)} order(s) in flight at {provider}. Declaring them void means you accept that "
                  f"{provider} will never fill them (it is asked once more first).", markup=False)
    confirm("Declare them void (break-glass)?", yes=yes, what="declaring orders void")
    result = breakglass.declare_void(ctx.aws, identity=who, roster=roster, provider=provider, reason=reason,
                                     target=ctx.target_text())
    if as_json:
        print_json({**result, "target": ctx.target_json()})
    else:
        out.print(f"{len(result['released'])} order(s) declared void at {provider} by {who.name} ({who.source}); "
                  f"they will be routed again. {len(result['settled'])} settled by the broker's answer.", markup=False)


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
        out.print("no double executions", markup=False)
        return
    decided = []
    for row in rows:
        text = ""
        if row.get("state") != "open":
            text = f"{', '.join(row.get('decided_by') or [])}: {row.get('decision_reason', '')}"
        elif row.get("decisions"):
            text = f"waiting: {len(row['decisions'])} of {row.get('approvals_needed')} decided"
        decided.append(text)
    print_table([Column("order", ident=True), Column("state"), Column("fills"), Column("notional £", justify="right"),
                 Column("void declared by", ident=True), Column("decided")],
                [(row["order_id"], row.get("state", ""), "; ".join(_fill_text(f) for f in row.get("fills") or []),
                  row.get("notional"), row.get("void_declared_by"), text)
                 for row, text in zip(rows, decided, strict=True)])


@orders_app.command("unwind")
def unwind_command(
    order_id: Annotated[str, typer.Argument(help="The order executed twice.")],
    reason: Annotated[str, typer.Option(help="What was done and why (recorded with the decision).")],
    write_off: Annotated[bool, typer.Option("--write-off", help="Record it as written off instead of unwound.")]
    = False,
    as_json: JsonOpt = False,
) -> None:
    """Record your decision on a double execution: unwound (default) or --write-off.

    Needs one of the roles ops-manager or risk (in the shared roster). Above the settable notional
    (TRADEOPS_UNWIND_DUAL_APPROVAL, default £10,000) two different people must make the same
    decision; the first one's is recorded and waits for the second.

    Example: `tradeops orders unwind ord-123 --reason "sold 10 VOD.L at 0.7250 on the desk"`.
    """
    ctx = context()
    ctx.announce(quiet=as_json)
    who = ctx.identity()
    operators = ctx.operators()
    record = unwind(ctx.aws, order_id, identity=who.name, source=who.source,
                    outcome=WRITTEN_OFF if write_off else UNWOUND, reason=reason, roles_of=dict(operators.roles))
    if as_json:
        print_json({**record, "target": ctx.target_json()})
        return
    if record["state"] == "open":
        out.print(f"{who.name}'s decision is recorded; the notional £{record['notional']} needs "
                  f"{record['approvals_needed']} people with one of {', '.join(UNWIND_ROLES)} to decide the same",
                  markup=False)
    else:
        out.print(f"order {order_id}: double execution {record['state']} "
                  f"(decided by {', '.join(record['decided_by'])})", markup=False)
