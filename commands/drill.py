"""`tradeops drill run|list|due`, `tradeops drill schedule ...` and `tradeops demo`: chaos drills under load.

The work is in tradeops.experiments.drill (the runner, handed the report builder of tradeops.reports
from here) and tradeops.experiments.schedule (the rules)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tradeops.commands.output import JsonOpt, err, out, print_json
from tradeops.drillresult.figures import FIGURES, measured_text
from tradeops.experiments.drill import DrillRequest, Progress, describe, history, prepare, run_drill, scenarios
from tradeops.runtime.platform.clock import parse_duration
from tradeops.runtime.platform.errors import BadInput, CheckFailed, OperationFailed
from tradeops.runtime.platform.settings import Settings, load_settings

__all__ = ["drill_app", "render_result", "run_one"]

drill_app = typer.Typer(help="Chaos drills: a Chaos Toolkit experiment under load, measured and judged.",
                        no_args_is_help=True)

_EXAMPLES = """
Examples:

  tradeops drill run primary-outage
  tradeops drill run primary-blackhole --rate 20 --duration 15s --json > result.json
  tradeops drill run both-down --stop-oldest-pending 30s
  tradeops drill run primary-outage --tolerance "time_to_detect<=0.5"
  tradeops drill run primary-blackhole --duration 10s --junit drill-junit.xml
  tradeops drill run primary-blackhole --backend proxy
  tradeops --aws drill run primary-blackhole --backend fis --target https://intake.staging.example --token-file token
"""

HEADLINE = ("time_to_detect", "time_to_first_secondary_fill", "time_to_99pct_secondary", "time_back_on_primary",
            "orders_placed", "orders_filled", "orders_lost", "orders_filled_twice", "max_oldest_pending_seconds",
            "max_exposure_gbp", "reimbursements_owed_gbp")


def _tolerances(items: list[str] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in items or []:
        for op in ("<=", ">=", "==", "<", ">", "="):
            name, sep, bound = item.partition(op)
            if sep:
                found[name.strip()] = f"{'==' if op == '=' else op} {bound.strip()}"
                break
        else:
            raise BadInput(f"--tolerance expects FIGURE<=VALUE (or >=, ==), got {item!r}")
    return found


def _seconds(value: str | None, what: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except (BadInput, ValueError):
        raise BadInput(f"{what}: {value!r} is not a duration like 10s or 1m") from None


def _build_report(run_dir: Path, settings: Settings, generated_by: str) -> None:
    """The drill's report builder: the command layer sees both drills and reports, which do not see each other."""
    from tradeops.reports.build import build_run_report  # Jinja2 and the chart code: only once a drill has run

    build_run_report(run_dir, settings, generated_by=generated_by)


class _Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def __call__(self, p: Progress) -> None:
        if not self.quiet:
            err.print(f"{p.phase}: {p.detail}", markup=False)


def render_result(result: dict[str, Any], *, names: tuple[str, ...] = HEADLINE) -> None:
    """The verdict, the headline figures with their tolerances, and the run folder."""
    verdict = "[bold green]PASSED[/]" if result["passed"] else "[bold red]FAILED[/]"
    out.print(f"{verdict}  drill {result['scenario']}: {result.get('title') or ''}")
    checks = {c["figure"]: c for c in result["checks"]}
    table = Table("figure", "measured", "tolerance", "result", header_style="bold")
    for name in names:
        check = checks.get(name)
        outcome = "-" if check is None else ("[green]ok[/]" if check["passed"] else "[red]failed[/]")
        table.add_row(FIGURES[name][0], measured_text(name, result["figures"].get(name)),
                      check["tolerance"] if check else "-", outcome)
    for name, check in checks.items():
        if name not in names:
            table.add_row(FIGURES[name][0], measured_text(name, result["figures"].get(name)), check["tolerance"],
                          "[green]ok[/]" if check["passed"] else "[red]failed[/]")
    out.print(table)
    journal = result["journal"]
    out.print(f"journal: {journal['status']}, steady state before {journal['steady_state_before']}, "
              f"after {journal['steady_state_after']}, deviated {journal['deviated']}", markup=False)
    if result["stop_conditions"]["interrupted"]:
        out.print("[bold red]stopped by a stop condition[/]: the method was cut short and the rollbacks ran")
    for failure in result["failures"]:
        out.print(f"  failed: {failure}", markup=False)
    out.print(f"run folder: {result['run_dir']}", markup=False)
    report = Path(result["run_dir"]) / "report.html"
    if report.is_file():
        out.print(f"report: {report} (tradeops report build {result['run_dir']} --pdf for a PDF)", markup=False)


def junit_target(path: Path) -> Path:
    """The ``--junit`` file, checked before anything starts: BadInput (exit 2) unless it can be written."""
    target = path.expanduser().absolute()
    if target.is_dir():
        raise BadInput(f"--junit {path}: is a folder, not a file")
    if not target.parent.is_dir():
        raise BadInput(f"--junit {path}: folder {target.parent} does not exist")
    if target.exists() and not os.access(target, os.W_OK):
        raise BadInput(f"--junit {path}: not writable")
    # Permissions alone do not say (a read-only file system, an administrator's run): a file is made and removed.
    try:
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".junit-"):
            pass
    except OSError as exc:
        raise BadInput(f"--junit {path}: folder {target.parent} is not writable ({exc.strerror})") from None
    return target


def _write_junit(path: Path, result: dict[str, Any]) -> None:
    from tradeops.drillresult.junit import junit_xml

    try:
        path.write_bytes(junit_xml(result))
    except OSError as exc:
        raise OperationFailed(f"--junit {path}: {exc.strerror}; the drill's result is in "
                              f"{result['run_dir']}/result.json") from None


def run_one(request: DrillRequest, settings: Settings, *, quiet: bool, as_json: bool, junit: Path | None = None,
            watch: bool = False, announce: Callable[[], None] | None = None) -> dict[str, Any]:
    """Check, run, render; CheckFailed (exit 1) naming the failing figures when the drill fails.

    ``watch``: the live panel on the terminal while it runs; ``junit``: the result as JUnit XML there too;
    ``announce`` prints the target (another platform's) once the request is known to be good."""
    prepared = prepare(request, settings)
    if announce is not None:
        announce()
    if watch:
        from tradeops.commands.drillpanel import DrillPanel

        out.print(f"drill {prepared.name}: run folder {prepared.run_dir}", markup=False)
        with DrillPanel(out, prepared.name) as panel:
            done = run_drill(request, settings, build_report=_build_report, on_progress=panel.progress,
                             on_sample=panel.sample, prepared=prepared)
    else:
        if not quiet:
            err.print(f"drill {prepared.name}: run folder {prepared.run_dir}", markup=False)
        done = run_drill(request, settings, build_report=_build_report, on_progress=_Progress(quiet),
                         prepared=prepared)
    if junit is not None:
        _write_junit(junit, done.result)
    if as_json:
        print_json(done.result)
    else:
        render_result(done.result)
    if not done.passed:
        raise CheckFailed(f"drill {prepared.name} failed: " + "; ".join(done.result["failures"]))
    return done.result


@drill_app.command("run", epilog=_EXAMPLES)
def run(
    scenario: Annotated[str, typer.Argument(help="A shipped scenario (`tradeops drill list`) or an experiment file.")],
    rate: Annotated[float | None, typer.Option(help="Orders per second of the load (default: the scenario's).")]
    = None,
    duration: Annotated[str | None, typer.Option(help="How long the fault lasts, e.g. 10s (default: the "
                                                      "scenario's).")] = None,
    recover: Annotated[str | None, typer.Option(help="How long to watch the recovery after the fault ends.")] = None,
    tolerance: Annotated[list[str] | None, typer.Option(metavar="FIGURE<=VALUE",
                                                        help="Add or replace a figure's tolerance, e.g. "
                                                             "time_to_detect<=0.5.")] = None,
    stop_exposure: Annotated[str | None, typer.Option(metavar="GBP", help="Stop condition: abort when total "
                                                                          "exposure reaches this.")] = None,
    stop_oldest_pending: Annotated[str | None, typer.Option(metavar="DURATION",
                                                            help="Stop condition: abort when the oldest pending "
                                                                 "order is this old.")] = None,
    drain: Annotated[str | None, typer.Option(help="How long pending orders may take to settle after the load.")]
    = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="The run folder (default "
                                                               "runs/<time>-drill-<scenario>/).")] = None,
    junit: Annotated[Path | None, typer.Option(metavar="FILE", help="Also write the result as JUnit XML, one test "
                                                                   "case per tolerance figure (for CI).")] = None,
    backend: Annotated[str | None, typer.Option(metavar="sim|proxy|fis", help="How the faults are injected: sim "
                                                "(the simulated brokers; the local stack's default), proxy (the fault "
                                                "proxies in front of the brokers), fis (AWS Fault Injection Service; "
                                                "AWS's default without proxies).")] = None,
    target: Annotated[str | None, typer.Option(metavar="URL", help="With --aws: the intake to load (default: the "
                                                                   "runtime stack's IntakeUrl).")] = None,
    token_file: Annotated[Path | None, typer.Option(help="The bearer token of the intake a drill of another "
                                                         "platform loads.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live panel, no progress lines.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a drill: start the stack if none is up, load it, break it, measure, judge (exit 1 naming the figure).

    At a terminal a live panel shows the drill as it runs; piped, or with --json, it prints nothing but the
    result. With --aws it drills the platform on AWS instead (nothing local starts): load at its intake, faults
    through the proxies or FIS, every order reconciled against its orders table and the brokers' own answers."""
    request = DrillRequest(scenario=scenario, rate=rate, duration=_seconds(duration, "--duration"),
                           recover=_seconds(recover, "--recover"), tolerance=_tolerances(tolerance),
                           stop_exposure_gbp=stop_exposure,
                           stop_oldest_pending=_seconds(stop_oldest_pending, "--stop-oldest-pending"),
                           drain=_seconds(drain, "--drain"), out=out_dir, backend=backend, target=target,
                           token_file=token_file)
    junit_path = junit_target(junit) if junit is not None else None
    settings, announce = _drill_target(quiet=quiet or as_json)
    watch = out.is_terminal and not as_json and not quiet
    run_one(request, settings, quiet=not watch, as_json=as_json, junit=junit_path, watch=watch, announce=announce)


def _drill_target(*, quiet: bool) -> tuple[Settings, Callable[[], None] | None]:
    """The local stack's settings; with --aws (or TRADEOPS_TARGET=aws) AWS's, and how to print that target."""
    from tradeops.commands.context import aws_chosen, context

    settings = load_settings()
    if not (aws_chosen() or settings.target == "aws"):
        return settings, None
    ctx = context()
    return ctx.settings, lambda: ctx.announce(quiet=quiet)


@drill_app.command("list")
def list_drills(as_json: JsonOpt = False) -> None:
    """The shipped scenarios, each with its title and its last result."""
    last = history(load_settings())
    rows = []
    for name in scenarios():
        rows.append({**describe(name), "last": last.get(name)})
    if as_json:
        print_json(rows)
        return
    table = Table("scenario", "last result", "when", "title", header_style="bold")
    for row in rows:
        entry = row["last"]
        table.add_row(row["scenario"], entry["verdict"] if entry else "never run", entry["at"] if entry else "-",
                      row["title"] or "")
    out.print(table)


# ---- the schedule ---------------------------------------------------------------------------------
schedule_app = typer.Typer(help="The drill schedule: a YAML file of scenario, cron, environment and load.",
                           no_args_is_help=True)
drill_app.add_typer(schedule_app, name="schedule")

ScheduleOpt = Annotated[Path, typer.Option("--schedule", help="The schedule file.")]
DEFAULT_SCHEDULE = Path("drills.yaml")


@schedule_app.command("add")
def schedule_add(
    name: Annotated[str, typer.Argument(help="A name for the entry.")],
    scenario: Annotated[str, typer.Option(help="The scenario to run.")],
    cron: Annotated[str, typer.Option(help='Five-field cron expression, e.g. "0 2 * * 1-5".')],
    environment: Annotated[str, typer.Option(help="Where it runs (local, staging, ...).")] = "local",
    rate: Annotated[float | None, typer.Option(help="Orders per second of the load.")] = None,
    timezone: Annotated[str, typer.Option(help="The zone the cron expression is read in.")] = "UTC",
    schedule: ScheduleOpt = DEFAULT_SCHEDULE,
    as_json: JsonOpt = False,
) -> None:
    """Add an entry. Example: tradeops drill schedule add nightly --scenario primary-outage --cron "0 2 * * *" """
    from tradeops.experiments.schedule import ScheduleError, parse_entry
    from tradeops.experiments.schedulefile import load_schedule, save_schedule
    from tradeops.runtime.platform.clock import iso, utcnow

    current = load_schedule(schedule, scenarios=scenarios())
    if any(e.name == name for e in current.entries):
        raise BadInput(f"schedule {schedule}: an entry named {name!r} exists; remove it first")
    doc: dict[str, Any] = {"name": name, "scenario": scenario, "cron": cron, "environment": environment,
                           "timezone": timezone, "added_at": iso(utcnow())}
    if rate is not None:
        doc["rate"] = rate
    try:
        parse_entry(doc, scenarios=scenarios())
    except ScheduleError as exc:
        raise BadInput(str(exc)) from None
    save_schedule(current, [*current.documents, doc])
    if as_json:
        print_json(doc)
    else:
        out.print(f"added {name}: {scenario} at '{cron}' ({timezone}) in {environment}", markup=False)


@schedule_app.command("remove")
def schedule_remove(name: Annotated[str, typer.Argument(help="The entry to remove.")],
                    schedule: ScheduleOpt = DEFAULT_SCHEDULE, as_json: JsonOpt = False) -> None:
    """Remove an entry. Example: tradeops drill schedule remove nightly"""
    from tradeops.experiments.schedulefile import load_schedule, save_schedule

    current = load_schedule(schedule)
    kept = [d for d in current.documents if d.get("name") != name]
    if len(kept) == len(current.documents):
        raise CheckFailed(f"schedule {schedule}: no entry named {name!r}")
    save_schedule(current, kept)
    if as_json:
        print_json({"removed": name, "schedule": str(schedule.resolve())})
    else:
        out.print(f"removed {name}", markup=False)


@schedule_app.command("list")
def schedule_list(schedule: ScheduleOpt = DEFAULT_SCHEDULE, as_json: JsonOpt = False) -> None:
    """The entries with their next run and last run."""
    from tradeops.experiments.schedule import next_run
    from tradeops.experiments.schedulefile import last_runs, load_schedule
    from tradeops.runtime.platform.clock import iso, utcnow

    current = load_schedule(schedule)
    last = last_runs(schedule)
    now = utcnow()
    rows = [{**doc, "next_run": iso(next_run(entry, now)), "last_run": iso(last[entry.name]) if entry.name in last
             else None} for entry, doc in zip(current.entries, current.documents, strict=True)]
    if as_json:
        print_json({"drills": rows, "blackouts": [w.name for w in current.windows]})
        return
    table = Table("name", "scenario", "cron", "environment", "next run", "last run", header_style="bold")
    for row in rows:
        table.add_row(row["name"], row["scenario"], row["cron"], row["environment"], row["next_run"],
                      row["last_run"] or "never")
    out.print(table)


@schedule_app.command("export")
def schedule_export(
    format_: Annotated[str, typer.Option("--format", help="cron (a crontab) or eventbridge (EventBridge "
                                                          "Scheduler CreateSchedule requests as JSON).")] = "cron",
    schedule: ScheduleOpt = DEFAULT_SCHEDULE,
    stack_name: Annotated[str | None, typer.Option("--stack", metavar="NAME",
                                                   help="eventbridge: the base stack whose runtime stack "
                                                        "(NAME-runtime) runs the drills (default: the stack_name "
                                                        "setting).")] = None,
) -> None:
    """Print what to install on your own scheduler. Example: tradeops drill schedule export --format cron | crontab -

    eventbridge reads the scheduled-drill target (an ECS task of the drill image, and the role Scheduler starts it
    with) from the deployed runtime stack: tradeops --aws drill schedule export --format eventbridge. It refuses
    an entry that would fire inside a blackout window within a year: nothing refuses it when it fires."""
    from tradeops.experiments.schedule import cron_line
    from tradeops.experiments.schedulefile import load_schedule

    if format_ not in ("cron", "eventbridge"):
        raise BadInput(f"--format must be cron or eventbridge, not {format_!r}")
    current = load_schedule(schedule)
    path = str(schedule.resolve())
    if format_ == "eventbridge":
        print_json({"schedules": _eventbridge_schedules(current, stack_name)})
        return
    lines = ["# tradeops drill schedule (generated; `tradeops drill due` applies the blackout windows)"]
    for entry in current.entries:
        lines += [f"CRON_TZ={entry.timezone}",
                  cron_line(entry, f"tradeops drill due --schedule {path} --entry {entry.name} --quiet")]
    out.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)


def _eventbridge_schedules(current: Any, stack_name: str | None) -> list[dict[str, Any]]:
    """Each entry as a CreateSchedule request, aimed at the runtime stack's drill task; blackouts refused first."""
    from tradeops.commands.context import context
    from tradeops.experiments.schedule import ScheduleError, blackout_firing, drill_target, eventbridge_schedule
    from tradeops.runtime.platform.clock import iso, utcnow
    from tradeops.runtime.stack.deploy import runtime_stack_name, stack_outputs

    now = utcnow()
    for entry in current.entries:
        clash = blackout_firing(entry, current.windows, now)
        if clash is not None:
            raise BadInput(f"entry {entry.name}: '{entry.cron}' ({entry.timezone}) fires at {iso(clash[0])}, inside "
                           f"the blackout window {clash[1].name}; EventBridge would run it there")
    ctx = context()
    stack = runtime_stack_name(stack_name or ctx.settings.stack_name)
    try:
        target = drill_target(stack_outputs(ctx.aws, stack), stack)
    except ScheduleError as exc:
        raise OperationFailed(str(exc)) from None
    return [eventbridge_schedule(entry, target) for entry in current.entries]


@drill_app.command("due")
def due(
    schedule: ScheduleOpt = DEFAULT_SCHEDULE,
    entry: Annotated[str | None, typer.Option(help="Only this entry.")] = None,
    force: Annotated[str | None, typer.Option(metavar="REASON", help="Run inside a blackout window, for this "
                                                                     "recorded reason.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what is due; run nothing.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run the drills that are due (for cron or a CI job), refusing blackout windows unless --force REASON.

    Example: tradeops drill due --schedule drills.yaml"""
    from tradeops.experiments.schedule import blackout_at, is_due
    from tradeops.experiments.schedulefile import last_runs, load_schedule, record_run
    from tradeops.runtime.platform.clock import utcnow

    if force is not None and not force.strip():
        raise BadInput("--force needs a reason")
    current = load_schedule(schedule, scenarios=scenarios())
    last = last_runs(schedule)
    now = utcnow()
    report: list[dict[str, Any]] = []
    failed = []
    for item in current.entries:
        if entry is not None and item.name != entry:
            continue
        if entry is None and not is_due(item, last.get(item.name), now):
            continue
        window = blackout_at(now, current.windows)
        if window is not None and force is None:
            report.append(record_run(schedule, item.name, now, outcome="refused",
                                     reason=f"inside the blackout window {window.name}"))
            continue
        if dry_run:
            report.append({"entry": item.name, "outcome": "due"})
            continue
        forced = {"forced": force, "blackout": window.name} if window is not None else {}
        try:
            result = run_one(DrillRequest(scenario=item.scenario, rate=item.rate), load_settings(), quiet=quiet,
                             as_json=False)
            report.append(record_run(schedule, item.name, now, outcome="passed", run_dir=result["run_dir"], **forced))
        except CheckFailed as exc:
            failed.append(item.name)
            report.append(record_run(schedule, item.name, now, outcome="failed", reason=str(exc), **forced))
    if as_json:
        print_json(report)
    else:
        for line in report:
            out.print(f"{line['entry']}: {line['outcome']}" + (f" ({line['reason']})" if line.get("reason") else ""),
                      markup=False)
        if not report:
            out.print("nothing is due", markup=False)
    if failed:
        raise CheckFailed(f"drills failed: {', '.join(failed)}")


DEMO_FIGURES = ("time_to_detect", "time_to_99pct_secondary", "orders_lost", "orders_filled_twice")


def demo(
    rate: Annotated[float, typer.Option(help="Orders per second.")] = 5.0,
    as_json: JsonOpt = False,
) -> None:
    """The first thing to run: start the stack if none is up, break the primary broker under load, show the figures.

    Runs the primary-outage drill at a modest rate, prints time to detect and recover, orders lost and
    filled twice, the verdict and the run folder, and stops the stack if it started it. Exits 1 naming
    the failing figure if the drill fails. Example: tradeops demo
    """
    request = DrillRequest(scenario="primary-outage", rate=rate, duration=5.0, recover=10.0)
    settings = load_settings()
    prepared = prepare(request, settings)
    done = run_drill(request, settings, build_report=_build_report, on_progress=_Progress(as_json),
                     prepared=prepared)
    if as_json:
        print_json(done.result)
    else:
        render_result(done.result, names=DEMO_FIGURES)
    if not done.passed:
        raise CheckFailed("demo drill failed: " + "; ".join(done.result["failures"]))
