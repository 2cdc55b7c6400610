"""`tradeops orders ...`: look at one order; declare a broker's in-doubt orders void."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tradeops.commands.context import context
from tradeops.commands.output import JsonOpt, YesOpt, out, print_json
from tradeops.runtime.orderpath.intake import order_json
from tradeops.runtime.orderpath.ops import declare_void, in_flight_orders
from tradeops.runtime.orderpath.orders import OrderStore

__all__ = ["orders_app"]

orders_app = typer.Typer(help="Look at orders; declare a broker's in-doubt orders void.", no_args_is_help=True)

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
