"""`tradeops prices ...`, `tradeops exposure` and `tradeops reimbursements ...`: thin shells for operators and finance.

``prices_app`` and ``reimbursements_app`` are typer sub-apps and ``exposure`` a command function
that cli.py mounts as ``tradeops prices``, ``tradeops reimbursements`` and ``tradeops exposure``;
cli.main turns a ``TradeopsError`` into one line and its exit code.
"""

from __future__ import annotations

import json
import re
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from runtime.errors import BadInput, StackError

__all__ = ["exposure", "parse_duration", "prices_app", "reimbursements_app", "render_exposure"]

prices_app = typer.Typer(help="The simulated market-data feed: show prices, script moves for drills.",
                         no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
reimbursements_app = typer.Typer(help="The reimbursement ledger: list, approve, reject, export for finance.",
                                 no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON document for scripts.")]
STALE_SECONDS = 5.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


def _settings() -> Any:
    from runtime.stack import resolve_settings

    return resolve_settings()


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def parse_duration(text: str) -> float:
    """Seconds from ``10s``, ``1.5s``, ``500ms``, ``2m`` or a bare number of seconds."""
    match = _DURATION.match(text or "")
    if not match:
        raise BadInput(f"not a duration: {text!r} (e.g. 10s, 500ms, 2m)")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value / 1000 if unit == "ms" else value * 60 if unit == "m" else value


# ---- prices -------------------------------------------------------------------------------------


def _feed_call(method: str, path: str, body: Any = None) -> dict[str, Any]:
    settings = _settings()
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
        _print_json(answer)
        return
    table = Table("symbol", "price (GBP)", header_style="bold")
    for symbol, price in answer["prices"].items():
        table.add_row(symbol, price)
    out.print(table)
    for spike in answer.get("spikes", []):
        out.print(f"moving: {spike['symbol']} {spike['from']} -> {spike['to']} ({spike['pct']}%) "
                  f"until {spike['ends_at']}")
    out.print(f"{answer.get('ticks_per_second')} ticks/s in batches every {answer.get('batch_seconds')} s")


@prices_app.command("spike")
def prices_spike(
    symbol: Annotated[str, typer.Argument(help="A symbol the feed publishes, e.g. SYM3.")],
    pct: Annotated[str, typer.Option("--pct", help="Move in percent of the current price (negative: down).")],
    over: Annotated[str, typer.Option("--over", help="Over how long, e.g. 10s, 500ms, 2m (0: at once).")] = "0s",
    as_json: JsonOpt = False,
) -> None:
    """Move SYMBOL's price linearly by --pct percent over --over (instead of its random walk)."""
    try:
        pct_value = Decimal(pct)
    except InvalidOperation:
        raise BadInput(f"--pct must be a number, got {pct!r}") from None
    answer = _feed_call("POST", "/spike", {"symbol": symbol, "pct": str(pct_value),
                                           "over_seconds": parse_duration(over)})
    if as_json:
        _print_json(answer)
    else:
        out.print(f"{answer['symbol']}: {answer['from']} -> {answer['to']} ({answer['pct']}%) "
                  f"over {answer['over_seconds']:g}s, until {answer['ends_at']}")


# ---- exposure -----------------------------------------------------------------------------------


def _age(summary: dict[str, Any], now: datetime) -> float:
    try:
        return max(0.0, (now - datetime.fromisoformat(summary["updated_at"])).total_seconds())
    except (KeyError, ValueError):
        return float("inf")


def _read(aws: Any) -> dict[str, Any]:
    from runtime.monitor import read_summary

    summary = read_summary(aws)
    if summary is None:
        raise StackError("no exposure summary yet: is the divergence monitor running? (`tradeops status`)")
    age = _age(summary, datetime.now(UTC))
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
    if summary.get("stale"):
        parts.append(Text(f"warning: this summary is {summary['age_seconds']:.0f}s old; "
                          "is the divergence monitor running?", style="yellow"))
    thresholds = Table("threshold", "limit", "now", "state", "orders", header_style="bold")
    for t in summary["thresholds"]:
        thresholds.add_row(t["name"], f"{t['limit']} {t['unit']}", f"{t['value']} {t['unit']}",
                           "[red]BREACHED[/]" if t["breached"] else "[green]ok[/]",
                           str(t.get("orders_breached", "")))
    parts.append(thresholds)
    worst = Table("order", "symbol", "side", "qty", "quote", "live", "divergence %", "exposure £", "max £",
                  "waited", header_style="bold", title="worst orders")
    for row in summary["worst"][:top]:
        worst.add_row(escape(row["order_id"]), row["symbol"], row["side"], row["quantity"], row["quote_price"],
                      row["price"] or "-", row["divergence_pct"], row["exposure"], row["max_exposure"],
                      f"{row['waited_seconds']:.0f}s")
    parts.append(worst if summary["worst"] else Text("no order is exposed"))
    parts.append(Text(f"updated {summary['updated_at']} · amounts in GBP, rounded half-up to the penny",
                      style="dim"))
    return Group(*parts)


def exposure(
    watch: Annotated[bool, typer.Option("--watch", help="Refresh in place every second (Ctrl-C stops).")] = False,
    as_json: JsonOpt = False,
    top: Annotated[int, typer.Option(min=1, max=20, help="How many of the worst orders to show.")] = 20,
    refreshes: Annotated[int, typer.Option(hidden=True, help="Stop --watch after this many refreshes (tests).")]
    = 0,
) -> None:
    """The live liability picture: total exposure, worst orders, thresholds and which are breached."""
    if watch and as_json:
        raise BadInput("--watch and --json do not combine (use --json in a loop for scripts)")
    from runtime.aws import Aws

    aws = Aws(_settings())
    if not watch:
        summary = _read(aws)
        if as_json:
            _print_json(summary)
        else:
            out.print(render_exposure(summary, top=top))
        return
    from rich.live import Live

    done = 0
    try:
        with Live(render_exposure(_read(aws), top=top), console=out, refresh_per_second=4) as live:
            while not refreshes or done < refreshes:
                time.sleep(1.0)
                live.update(render_exposure(_read(aws), top=top))
                done += 1
    except KeyboardInterrupt:
        return


# ---- reimbursements -----------------------------------------------------------------------------


def _ledger() -> tuple[Any, Any, Any]:
    from runtime.aws import Aws
    from runtime.ledger import Ledger

    settings = _settings()
    aws = Aws(settings)
    return settings, aws, Ledger(aws)


def _decider(settings: Any, aws: Any) -> tuple[Any, frozenset[str]]:
    from runbooks.identity import current_identity, load_operators, operators_path

    identity = current_identity(settings, aws)
    return identity, load_operators(operators_path(settings)).roles_of(identity.name)


def _record(aws: Any, who: Any, kind: str, entry: dict[str, Any], **facts: Any) -> None:
    from runtime.events import EventLog

    EventLog(aws, source=str(who), echo=False).emit(
        kind, stream="reimbursements", order_id=entry["order_id"], amount=str(entry["amount"]),
        currency=entry.get("currency", "GBP"), status=entry["status"], identity_source=who.source, **facts)


def _approvals_text(entry: dict[str, Any]) -> str:
    return f"{len(entry.get('approvals', []))}/{int(entry['required_approvals'])}"


StatusOpt = Annotated[list[str] | None, typer.Option("--status", help="Only this status (repeatable): "
                                                     "PENDING_APPROVAL, APPROVED, REJECTED, NOTHING_DUE.")]


@reimbursements_app.command("list")
def reimbursements_list(status: StatusOpt = None, as_json: JsonOpt = False) -> None:
    """Ledger entries, oldest first (amounts in GBP, rounded up to the penny in the customer's favour)."""
    from runtime.ledger import entry_dict

    _, _, ledger = _ledger()
    entries = sorted((entry_dict(e) for e in ledger.entries(status)), key=lambda e: (e["created_at"], e["order_id"]))
    if as_json:
        _print_json(entries)
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
    from runtime.ledger import entry_dict

    settings, aws, ledger = _ledger()
    who, roles = _decider(settings, aws)
    entry = entry_dict(ledger.approve(order_id, approver=who.name, roles=roles, source=who.source))
    _record(aws, who, "reimbursement_approved", entry, approvals=_approvals_text(entry))
    if as_json:
        _print_json(entry)
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
    from runtime.ledger import entry_dict

    settings, aws, ledger = _ledger()
    who, roles = _decider(settings, aws)
    entry = entry_dict(ledger.reject(order_id, approver=who.name, roles=roles, reason=reason, source=who.source))
    _record(aws, who, "reimbursement_rejected", entry, reason=reason)
    if as_json:
        _print_json(entry)
    else:
        out.print(f"{order_id}: rejected by {who.name}: {reason}")


@reimbursements_app.command("export")
def reimbursements_export(
    csv_path: Annotated[str, typer.Option("--csv", help="CSV file to write, or - for standard output.")],
    status: StatusOpt = None,
) -> None:
    """Export the ledger as CSV for finance (one row per order; amounts GBP)."""
    from runtime.ledger import write_csv

    _, _, ledger = _ledger()
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
