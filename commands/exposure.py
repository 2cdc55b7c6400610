"""`tradeops exposure`: what delay is costing customers, live."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tradeops.commands.context import context
from tradeops.commands.output import JsonOpt, out, print_json, when
from tradeops.runtime.liability.exposuretable import read_summary
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import utcnow
from tradeops.runtime.platform.errors import BadInput, StackError

__all__ = ["exposure", "render_exposure"]

STALE_SECONDS = 5.0


def _age(summary: dict[str, Any], now: datetime) -> float:
    try:
        return max(0.0, (now - datetime.fromisoformat(summary["updated_at"])).total_seconds())
    except (KeyError, ValueError):
        return float("inf")


def _read(aws: Aws) -> dict[str, Any]:
    summary = read_summary(aws)
    if summary is None:
        raise StackError("no exposure summary yet: is the divergence monitor running? (`tradeops status`)")
    age = _age(summary, utcnow())
    summary["age_seconds"] = round(age, 1)
    summary["stale"] = age > STALE_SECONDS
    return summary


def render_exposure(summary: dict[str, Any], *, top: int = 20) -> Group:
    """The operator's picture of one summary: headline, thresholds, worst orders."""
    headline = Text.assemble(
        ("Total exposure ", "bold"), (f"£{summary['total_exposure']} GBP", "bold"),
        f" over {summary['pending_orders']} pending orders ({summary['exposed_orders']} exposed)"
        f" · max divergence {summary['max_divergence_pct']}%"
        f" · oldest pending {summary['oldest_pending_seconds']:.1f}s",
    )
    parts: list[Any] = [headline]
    # Orders it cannot price are an unknown, never a zero: say so next to the total they are not in.
    for key, what, meaning, style in (
            ("unpriced", "have no price at all", "their exposure is unknown, not in the total", "bold red"),
            ("stale_price", "are priced from a tick older than {after:.0f}s", "their exposure rests on an old price",
             "yellow")):
        figures = summary.get(key) or {}
        if figures.get("orders"):
            parts.append(Text(f"{key.replace('_', ' ')}: {figures['orders']} pending orders "
                              + what.format(after=figures.get("after_seconds") or 0)
                              + f" (notional £{figures['notional']} GBP at quote, oldest waiting "
                              f"{figures['oldest_seconds']:.0f}s): {meaning}", style=style))
    if summary.get("stale"):
        parts.append(Text(f"warning: this summary is {summary['age_seconds']:.0f}s old; "
                          "is the divergence monitor running?", style="yellow"))
    # Cells fold rather than being cut: order ids are what people type next.
    thresholds = Table("threshold", "limit", "now", "state", "orders", "paging", header_style="bold")
    paging = summary.get("paging") or {}
    for t in summary["thresholds"]:
        page = paging.get(t["name"]) or {}
        # The figures are exact and immediate; the paging column says whether a person has been told yet.
        told = {"firing": f"paged (breach began {when(page.get('began_at'))})", "pending": "held down",
                "idle": ""}.get(page.get("state", "idle"), "")
        thresholds.add_row(t["name"], f"{t['limit']} {t['unit']}", f"{t['value']} {t['unit']}",
                           "[red]BREACHED[/]" if t["breached"] else "[green]ok[/]",
                           str(t.get("orders_breached", "")), told)
    parts.append(thresholds)
    worst = Table("order", "symbol", "side", "qty", "quote", "live", "divergence %", "exposure £", "max £",
                  "waited", header_style="bold", title="worst orders")
    for row in summary["worst"][:top]:
        worst.add_row(escape(row["order_id"]), row["symbol"], row["side"], row["quantity"], row["quote_price"],
                      row["price"] or "-", row["divergence_pct"], row["exposure"], row["max_exposure"],
                      f"{row['waited_seconds']:.0f}s")
    worst.columns[0].no_wrap = True
    worst.columns[0].min_width = max((len(r["order_id"]) for r in summary["worst"][:top]), default=5)
    for column in (*thresholds.columns, *worst.columns[1:]):
        column.overflow = "fold"
    parts.append(worst if summary["worst"] else Text("no order is exposed"))
    doubles = summary.get("double_executions") or {}
    if doubles.get("open"):
        parts.append(Text(f"double executions: {doubles['open']} open, notional £{doubles['notional']}, "
                          f"price move since £{doubles['price_move']}, at risk £{doubles['at_risk']} "
                          "(`tradeops orders duplicates`)", style="bold red"))
    parts.append(Text(f"updated {when(summary['updated_at'])} · amounts in GBP, rounded half-up to the penny",
                      style="dim"))
    return Group(*parts)


def exposure(
    watch: Annotated[bool, typer.Option("--watch", help="Refresh in place every second (Ctrl-C stops).")] = False,
    as_json: JsonOpt = False,
    top: Annotated[int, typer.Option(min=1, max=20, help="How many of the worst orders to show.")] = 20,
    refreshes: Annotated[int, typer.Option(hidden=True, help="Stop --watch after this many refreshes (tests).")]
    = 0,
) -> None:
    """The live liability picture: total exposure, worst orders, thresholds and which are breached.

    Pending orders it cannot price are counted apart, never as zero exposure: `unpriced` (their symbol has
    no price) and `stale_price` (its last price is older than TRADEOPS_PRICE_STALE_SECONDS), each with
    the count, the oldest wait and the notional at quote; thresholds unpriced_amount and stale_amount
    alert on them like the exposure thresholds.

    Examples:

        tradeops exposure
        tradeops exposure --json | jq .unpriced
    """
    if watch and as_json:
        raise BadInput("--watch and --json do not combine (use --json in a loop for scripts)")
    aws = context().aws
    if not watch:
        summary = _read(aws)
        if as_json:
            print_json(summary)
        else:
            out.print(render_exposure(summary, top=top))
        return
    done = 0
    try:
        with Live(render_exposure(_read(aws), top=top), console=out, refresh_per_second=4) as live:
            while not refreshes or done < refreshes:
                time.sleep(1.0)
                live.update(render_exposure(_read(aws), top=top))
                done += 1
    except KeyboardInterrupt:
        return
