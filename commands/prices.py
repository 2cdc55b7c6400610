"""`tradeops prices show | spike`: the simulated market-data feed, and scripted moves for drills."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import httpx
import typer

from tradeops.commands.context import context
from tradeops.commands.output import Column, JsonOpt, out, print_json, print_table, when
from tradeops.runtime.platform.clock import parse_duration
from tradeops.runtime.platform.errors import BadInput, StackError

__all__ = ["prices_app"]

prices_app = typer.Typer(help="The simulated market-data feed: show prices, script moves for drills.",
                         no_args_is_help=True)


def _feed_call(method: str, path: str, body: Any = None) -> dict[str, Any]:
    settings = context().settings
    if not settings.prices_url:
        raise StackError("the price feed's address is unknown (is the stack up? `tradeops up`; "
                         "or set TRADEOPS_PRICES_URL)")
    url = settings.prices_url.rstrip("/") + path
    try:
        response = httpx.request(method, url, json=body, timeout=5.0)
    except httpx.HTTPError as exc:
        raise StackError(f"the price feed at {settings.prices_url} is not reachable: {exc}") from None
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if response.status_code == 400:
        raise BadInput(answer.get("error", "the price feed refused the request"))
    if response.status_code != 200:
        raise StackError(f"the price feed answered HTTP {response.status_code} {answer.get('error', '')}".rstrip())
    return answer


@prices_app.command("show")
def prices_show(as_json: JsonOpt = False) -> None:
    """The feed's latest price of every symbol, and any scripted move in progress."""
    answer = _feed_call("GET", "/prices")
    if as_json:
        print_json(answer)
        return
    print_table([Column("symbol", ident=True), Column("price (GBP)", justify="right")],
                list(answer["prices"].items()))
    for spike in answer.get("spikes", []):
        out.print(f"moving: {spike['symbol']} {spike['from']} -> {spike['to']} ({spike['pct']}%) "
                  f"until {when(spike['ends_at'])}", markup=False)
    out.print(f"{answer.get('ticks_per_second')} ticks/s in batches every {answer.get('batch_seconds')} s")


@prices_app.command("spike")
def prices_spike(
    symbol: Annotated[str, typer.Argument(metavar="SYMBOL", help="A symbol the feed publishes, e.g. VOD.L.")],
    pct: Annotated[str, typer.Option("--pct", metavar="PERCENT", help="Move in percent of the current price "
                                                                      "(negative: down).")],
    over: Annotated[str, typer.Option("--over", metavar="DURATION", help="Over how long, e.g. 10s, 500ms, 2m "
                                                                         "(0: at once).")] = "0s",
    as_json: JsonOpt = False,
) -> None:
    """Move SYMBOL's price linearly by --pct percent over --over (instead of its random walk).

    Example:

        tradeops prices spike VOD.L --pct -5 --over 10s
    """
    try:
        pct_value = Decimal(pct)
    except InvalidOperation:
        raise BadInput(f"--pct must be a number, got {pct!r}") from None
    ctx = context()
    ctx.announce(quiet=as_json)
    answer = _feed_call("POST", "/spike", {"symbol": symbol, "pct": str(pct_value),
                                           "over_seconds": parse_duration(over)})
    if as_json:
        print_json(answer)
    else:
        out.print(f"{answer['symbol']}: {answer['from']} -> {answer['to']} ({answer['pct']}%) "
                  f"over {answer['over_seconds']:g}s, until {when(answer['ends_at'])}", markup=False)
