"""`tradeops metrics`: the local stack's current figures, read back from its EMF log lines."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tradeops.commands.context import context
from tradeops.commands.output import Column, JsonOpt, out, print_json, print_table, when
from tradeops.runtime.platform.errors import BadInput
from tradeops.runtime.platform.metrics import latest_figures, prometheus_text
from tradeops.runtime.platform.names import names_for

__all__ = ["metrics"]


def metrics(
    name: Annotated[list[str] | None, typer.Option("--name", help="Only this metric (repeatable), e.g. BreakerOpen.")]
    = None,
    prometheus: Annotated[bool, typer.Option("--prometheus", help="Prometheus text format, for a scrape.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The latest figure of every metric the local stack publishes (EMF lines in its logs).

    In production the same lines reach CloudWatch through the log stream; the local emulator does not
    ingest them, so this reads them back from the stack's log files.

    Examples:

        tradeops metrics
        tradeops metrics --name BreakerOpen --json
        tradeops metrics --prometheus > /var/lib/node_exporter/tradeops.prom
    """
    if prometheus and as_json:
        raise BadInput("choose one of --json and --prometheus")
    ctx = context()
    if ctx.target.kind != "local":
        raise BadInput("tradeops metrics reads the local stack's logs; on AWS the figures are in CloudWatch "
                       f"(namespace {names_for(ctx.settings).metric_namespace})")
    log_dir = ctx.settings.state_dir / "logs"
    figures = latest_figures(sorted(log_dir.glob("*.log")))
    if name:
        wanted = set(name)
        figures = [f for f in figures if f["name"] in wanted]
    if prometheus:
        sys.stdout.write(prometheus_text(figures))
        return
    if as_json:
        print_json({"figures": figures, "source": str(log_dir)})
        return
    if not figures:
        out.print("no metrics published yet", markup=False)
        return
    print_table([Column("metric", ident=True), Column("dimensions"), Column("value"), Column("unit"), Column("at"),
                 Column("from")],
                [(f["name"], ", ".join(f"{k}={v}" for k, v in sorted(f["dimensions"].items())) or "-",
                  f"{float(f['value']):g}", f["unit"], when(f["at"]), f.get("component") or "-") for f in figures])
