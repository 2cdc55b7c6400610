"""`tradeops load run|list|show`: load scenarios with k6-style thresholds (see tradeops.experiments.load)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tradeops.commands.context import context
from tradeops.commands.output import JsonOpt, err, out, print_json
from tradeops.experiments.load import LoadRequest, Progress, check_request, prepare, run_load
from tradeops.loadtests.scenario import ScenarioError, load_scenario, shipped_scenarios
from tradeops.loadtests.thresholds import BUILT_IN, merge
from tradeops.runtime.platform.clock import parse_duration
from tradeops.runtime.platform.errors import BadInput, CheckFailed

__all__ = ["load_app"]

load_app = typer.Typer(help="Load scenarios (Locust) with pass/fail thresholds and order reconciliation.",
                       no_args_is_help=True)

_EXAMPLES = """
Examples:

  tradeops load run steady --rate 20 --duration 30s
  tradeops load run market-open --peak 120 --threshold "time_to_fill p99 < 1.5s"
  tradeops load run step --param every=20s --workers 2 --json > summary.json
  tradeops load run steady --target https://intake.staging.example --token-file ~/.staging-token
"""


def _pairs(items: list[str] | None) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise BadInput(f"--param expects NAME=VALUE, got {item!r}")
        params[name.strip()] = value.strip()
    return params


class _ProgressLine:
    """One line that rewrites itself on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, p: Progress) -> None:
        if self.quiet:
            return
        if p.phase == "load":
            achieved = "-" if p.achieved_rate is None else f"{p.achieved_rate:.1f}/s"
            filled = "-" if p.filled is None else str(p.filled)
            line = (f"load {p.elapsed:5.0f}s/{p.duration:.0f}s  target {p.target_rate:.1f}/s  achieved {achieved}"
                    f"  placed {p.placed}  filled {filled}  failed {p.failed}")
        elif p.phase == "drain":
            line = f"drain {p.elapsed:4.0f}s/{p.duration:.0f}s  settled {p.filled}/{p.placed}  {p.detail}"
        else:
            line = f"reconciling {p.placed} orders against the orders table and the brokers' fills"
        now = time.monotonic()
        if self.tty:
            err.print(f"\r{line:<100}", end="", markup=False, highlight=False)
        elif now - self.last >= 5 or p.phase != "load":
            err.print(line, markup=False)
            self.last = now

    def done(self) -> None:
        if self.tty and not self.quiet:
            err.print("")


def _render(summary: dict[str, Any], run_dir: Path) -> None:
    verdict = "[bold green]PASSED[/]" if summary["passed"] else "[bold red]FAILED[/]"
    scenario = summary["scenario"]
    out.print(f"{verdict}  load run {summary['run_id']}  scenario {scenario['name']}  "
              f"({', '.join(f'{k}={v}' for k, v in scenario['shape'].items() if k != 'kind')})")
    table = Table("threshold", "measured", "result", "from", header_style="bold")
    for t in summary["thresholds"]:
        table.add_row(t["threshold"], t["shown"], "[green]ok[/]" if t["passed"] else "[red]breached[/]", t["source"])
    out.print(table)
    orders = summary.get("orders")
    if orders:
        out.print("orders: " + ", ".join(f"{k.replace('_', ' ')} {orders[k]}" for k in (
            "placed", "filled", "rejected", "pending", "dead_lettered", "lost", "filled_twice", "wrong_broker",
            "unrecorded_fill", "unanswered")) + "  by broker: " + (", ".join(
            f"{p} {n}" for p, n in orders["by_provider"].items()) or "none"))
    else:
        out.print(f"orders: not reconciled ({summary['reconciliation']['note']})")
    ttf = summary["time_to_fill"]
    if ttf["count"]:
        out.print("time to fill: " + ", ".join(f"{k} {ttf[k] * 1000:.0f} ms" for k in ("p50", "p90", "p99", "max")))
    rates, http = summary["rates"], summary["http"]
    out.print(f"rate: target {rates['target']:.2f}/s, achieved {rates['achieved']:.2f}/s; http: {http['requests']} "
              f"requests, {http['failures']} failed")
    aws = summary["aws_requests"]
    if aws.get("per_filled_order"):
        per = aws["per_filled_order"]
        out.print(f"AWS requests per filled order: {per['total']:.2f} (" + ", ".join(
            f"{s} {n:.2f}" for s, n in per["by_service"].items()) + ")")
    if summary.get("highest_sustained_rate") is not None and len(summary.get("stages", [])) > 1:
        out.print(f"highest sustained rate: {summary['highest_sustained_rate']:.1f}/s")
    out.print(f"run folder: {run_dir}")


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[threading.Event]:
    """SIGTERM ends the load early and still drains, reconciles and writes the summary (how `stop_load` and a
    container's stop end a run); a second SIGTERM terminates at once. Ctrl-C still abandons the run."""
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


@load_app.command("run", epilog=_EXAMPLES)
def run(
    scenario: Annotated[str, typer.Argument(help="A shipped scenario (`tradeops load list`) or a scenario file.")],
    rate: Annotated[str | None, typer.Option(help="Orders per second (the base or first-step rate).")] = None,
    duration: Annotated[str | None, typer.Option(help="How long the load runs, e.g. 30s, 10m.")] = None,
    peak: Annotated[str | None, typer.Option(help="Peak orders per second (market-open, spike, step cap).")] = None,
    param: Annotated[list[str] | None, typer.Option(metavar="NAME=VALUE",
                                                    help="Any other scenario parameter (ramp, decay, at, "
                                                         "length, multiple, step, every, user_rate, drain).")] = None,
    threshold: Annotated[list[str] | None, typer.Option(help='Add or override a threshold, e.g. '
                                                             '"time_to_fill p99 < 2s".')] = None,
    workers: Annotated[int, typer.Option(min=0, max=64, help="Locust worker processes on this machine "
                                                             "(0: one Locust process).")] = 0,
    remote_workers: Annotated[int, typer.Option(min=0, max=1000,
                                                help="Locust workers that will join from other machines "
                                                     "(locust -f ... --worker --master-host THIS_HOST).")] = 0,
    master_bind: Annotated[str, typer.Option(help="Address the Locust master listens on for workers.")]
    = "127.0.0.1",
    master_port: Annotated[int | None, typer.Option(help="Port the Locust master listens on.")] = None,
    drain: Annotated[str | None, typer.Option(help="How long to wait for pending orders to settle after "
                                                   "the load stops (default: the scenario's).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="The run folder (default "
                                                               "runs/<time>-load-<scenario>/).")] = None,
    target: Annotated[str | None, typer.Option(help="Another platform's intake URL (default: the local "
                                                    "stack's).")] = None,
    token_file: Annotated[Path | None, typer.Option(help="The bearer token file for --target.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress line.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a load scenario, reconcile its orders, and pass or fail on its thresholds (exit 1 if any breaks).

    SIGTERM stops the load early; the run still drains, reconciles and writes its summary."""
    params = _pairs(param)
    for name, value in (("rate", rate), ("duration", duration), ("peak", peak)):
        if value is not None:
            params[name] = value
    if remote_workers and master_bind == "127.0.0.1":
        raise BadInput("--remote-workers needs --master-bind set to an address the other machines can reach")
    request = LoadRequest(scenario=scenario, params=params, thresholds=threshold or [], workers=workers,
                          remote_workers=remote_workers, master_bind=master_bind, master_port=master_port,
                          out=out_dir, target=target, token_file=token_file,
                          drain=parse_duration(drain) if drain is not None else None)
    check_request(request)  # bad input is the answer even when no stack is up
    settings = context().settings
    prepared = prepare(request, settings)
    if not quiet:
        err.print(f"load run: {prepared.scenario.name} against {prepared.target}, run folder {prepared.run_dir}",
                  markup=False)
    progress = _ProgressLine(quiet)
    try:
        with _stop_on_sigterm() as stop:
            result = run_load(request, settings, on_progress=progress, prepared=prepared, stop=stop)
    finally:
        progress.done()
    if as_json:
        print_json(result.summary)
    else:
        _render(result.summary, result.run_dir)
    if not result.passed:
        breached = result.summary["breached"]
        raise CheckFailed(f"load run failed: {len(breached)} threshold(s) breached: " + "; ".join(breached))


@load_app.command("list")
def list_scenarios(as_json: JsonOpt = False) -> None:
    """The shipped scenarios, with their shapes."""
    rows: list[dict[str, Any]] = []
    for name in shipped_scenarios():
        scenario = load_scenario(name)
        rows.append({"name": name, "description": scenario.description, "shape": scenario.shape.describe(),
                     "thresholds": [t.text for t in scenario.thresholds]})
    if as_json:
        print_json(rows)
        return
    table = Table("scenario", "shape", "description", header_style="bold")
    for row in rows:
        shape = row["shape"]
        table.add_row(row["name"], ", ".join(f"{k}={v}" for k, v in shape.items()), row["description"])
    out.print(table)


@load_app.command("show")
def show(
    scenario: Annotated[str, typer.Argument(help="A shipped scenario or a scenario file.")],
    param: Annotated[list[str] | None, typer.Option(metavar="NAME=VALUE", help="Scenario parameters.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """One scenario as it would run: shape, stages, order mix and the thresholds in force."""
    try:
        loaded = load_scenario(scenario, _pairs(param))
    except ScenarioError as exc:
        raise BadInput(str(exc)) from None
    thresholds = merge(BUILT_IN, loaded.thresholds)
    shape = loaded.shape
    info = {"name": loaded.name, "description": loaded.description, "source": loaded.source,
            "shape": shape.describe(), "expected_orders": round(shape.expected_orders()),
            "mean_rate": shape.mean_rate, "peak_rate": shape.peak_rate, "user_rate": loaded.user_rate,
            "drain_seconds": loaded.drain, "stages": [asdict(s) for s in shape.stages()],
            "mix": loaded.document.get("mix", {}),
            "thresholds": [{"threshold": t.text, "source": t.source} for t in thresholds]}
    if as_json:
        print_json(info)
        return
    out.print(f"[bold]{loaded.name}[/]: {loaded.description}  ({loaded.source})")
    out.print("shape: " + ", ".join(f"{k}={v}" for k, v in info["shape"].items()))
    out.print(f"orders: about {info['expected_orders']} at {shape.mean_rate:.1f}/s on average, peak "
              f"{shape.peak_rate:.1f}/s; drain {loaded.drain:.0f}s")
    out.print("mix: " + ", ".join(f"{k}={v}" for k, v in info["mix"].items()))
    out.print("thresholds: " + "; ".join(f"{t['threshold']} ({t['source']})" for t in info["thresholds"]))
