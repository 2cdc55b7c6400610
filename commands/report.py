"""`tradeops report build|list|annotate|incident|self-assessment|execution-quality`: the FCA reports.

The work is in tradeops.reports (the evidence model, templates, charts and builders)."""

from __future__ import annotations

import getpass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Annotated, Any

import typer

from tradeops.commands.context import context
from tradeops.commands.output import Column, JsonOpt, out, print_json, print_table
from tradeops.reports.build import annotate as annotate_folder
from tradeops.reports.build import build_run_report, list_reports, write_index
from tradeops.runtime.platform.clock import iso, parse_duration, parse_iso, utcnow
from tradeops.runtime.platform.errors import BadInput, TradeopsError
from tradeops.runtime.platform.settings import Settings, load_settings

__all__ = ["SinceOpt", "UntilOpt", "moment", "period", "report_app", "report_folder", "who"]

report_app = typer.Typer(help="Scenario-testing, incident and period reports for the FCA (PS21/3, SYSC 15A).",
                         no_args_is_help=True)

PdfOpt = Annotated[bool, typer.Option("--pdf", help="Also write report.pdf (WeasyPrint).")]


def moment(value: str | None, what: str, *, default: datetime | None = None) -> datetime:
    """A date (YYYY-MM-DD, midnight UTC) or an ISO time with a zone; BadInput naming the option otherwise."""
    if value is None:
        if default is None:
            raise BadInput(f"{what} is required")
        return default
    try:
        return datetime.combine(date.fromisoformat(value), time(), UTC)
    except ValueError:
        pass
    try:
        return parse_iso(value)
    except ValueError:
        raise BadInput(f"{what}: {value!r} is not a date (YYYY-MM-DD) or a UTC time (2026-11-26T09:00:00Z)") from None


SinceOpt = Annotated[str, typer.Option(metavar="DATE", help="Start of the period (YYYY-MM-DD or a UTC time).")]
UntilOpt = Annotated[str | None, typer.Option(metavar="DATE", help="End of the period (default: now).")]


def period(since: str, until: str | None) -> tuple[datetime, datetime]:
    """``--since`` and ``--until`` (default now) as UTC times; BadInput unless the period runs forwards."""
    start = moment(since, "--since")
    end = moment(until, "--until", default=utcnow())
    if end <= start:
        raise BadInput("--until must be after --since")
    return start, end


def who(settings: Settings) -> str:
    """Who makes a report: the command's identity on its target, or the OS user when there is no target."""
    try:
        identity = context().identity()
        return f"{identity.name} ({identity.source})"
    except TradeopsError:
        return f"{settings.operator or getpass.getuser()} ({'TRADEOPS_OPERATOR' if settings.operator else 'os-user'})"


def report_folder(settings: Settings, run: str) -> Path:
    """A run folder given as a path, or by its name under the runs folder."""
    path = Path(run)
    if path.is_dir():
        return path
    under = Path(settings.runs_dir) / run
    if under.is_dir():
        return under
    raise BadInput(f"no run folder {run!r} (give its path, or its name under {settings.runs_dir})")


def _built(folder: Path, files: dict[str, Path], evidence: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json({"folder": str(folder), "files": {k: str(v) for k, v in files.items()},
                    "verdict": evidence.get("verdict"), "passed": evidence.get("passed"), "kind": evidence.get("kind"),
                    "id": evidence.get("id")})
        return
    out.print(f"{evidence.get('title')}: {evidence.get('verdict')}", markup=False)
    for name, path in files.items():
        out.print(f"  {name}: {path}", markup=False)


@report_app.command("build")
def build(
    run: Annotated[str, typer.Argument(help="A drill's run folder (its path, or its name under the runs folder).")],
    pdf: PdfOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Build (or rebuild) the scenario-testing report of a drill run: report.html, report.md, evidence.json.

    Every drill builds its report when it ends; run this after `report annotate`, or for --pdf.

    Examples:

      tradeops report build runs/20261126T155151Z-drill-primary-outage
      tradeops report build 20261126T155151Z-drill-primary-outage --pdf --json
    """
    settings = load_settings()
    folder = report_folder(settings, run)
    built = build_run_report(folder, settings, generated_by=who(settings), pdf=pdf)
    if Path(settings.runs_dir).resolve() in folder.resolve().parents:
        write_index(Path(settings.runs_dir))
    _built(built.folder, built.files, dict(built.evidence), as_json)


@report_app.command("list")
def list_(
    as_json: JsonOpt = False,
    root: Annotated[Path | None, typer.Option("--runs", help="The folder to look in (default: the runs folder).")]
    = None,
) -> None:
    """List every report, newest first, and write index.html (with the time-to-recover trend) in the runs folder.

    Examples:

      tradeops report list
      tradeops report list --json | jq '.reports[0]'
    """
    settings = load_settings()
    folder = root or Path(settings.runs_dir)
    rows = list_reports(folder)
    index = write_index(folder) if folder.is_dir() else None
    if as_json:
        print_json({"reports": rows, "index": str(index) if index else None})
        return
    if not rows:
        out.print(f"no reports under {folder}", markup=False)
        return
    print_table([Column("date (UTC)"), Column("kind"), Column("scenario"), Column("result"), Column("detect s"),
                 Column("recover s"), Column("lost"), Column("double fills"), Column("max exposure £"),
                 Column("folder")],
                [[r["at"], r["kind"], r["scenario"], r["verdict"], r["headline"].get("time_to_detect"),
                  r["headline"].get("time_to_recover"), r["headline"].get("orders_lost"),
                  r["headline"].get("orders_filled_twice"), r["headline"].get("max_exposure_gbp"), r["folder"]]
                 for r in rows])
    if index:
        out.print(f"index: {index}", markup=False)


@report_app.command("annotate")
def annotate(
    run: Annotated[str, typer.Argument(help="A run folder or an incident's folder (path or name).")],
    vulnerability: Annotated[str | None, typer.Option(help="A vulnerability the run found.")] = None,
    owner: Annotated[str | None, typer.Option(help="Who owns fixing the vulnerability.")] = None,
    due: Annotated[str | None, typer.Option(metavar="YYYY-MM-DD", help="When it is due.")] = None,
    lesson: Annotated[str | None, typer.Option(help="A lesson learned.")] = None,
    action: Annotated[str | None, typer.Option(help="The action taken on the lesson.")] = None,
    close: Annotated[str | None, typer.Option(metavar="ID", help="Close a vulnerability (e.g. V1).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a vulnerability (owner and due date), a lesson (and its action), or close a vulnerability; the
    report is rebuilt.

    Examples:

      tradeops report annotate RUN --vulnerability "breaker opens late under 5% packet loss" \\
          --owner sre-team --due 2027-01-31
      tradeops report annotate RUN --lesson "page the duty engineer on the first breaker" --action "paging rule 12"
      tradeops report annotate RUN --close V1
    """
    settings = load_settings()
    folder = report_folder(settings, run)
    by = who(settings)
    data = annotate_folder(folder, vulnerability=vulnerability, owner=owner, due=due, lesson=lesson, action=action,
                           close=close, by=by, at=iso())
    if (folder / "result.json").is_file():
        build_run_report(folder, settings, generated_by=by)
    else:
        out.print("incident folder: run `tradeops report incident EXECUTION` to rebuild its report", markup=False)
    if as_json:
        print_json(data)
    else:
        out.print(f"{len(data.get('vulnerabilities') or [])} vulnerabilities, {len(data.get('lessons') or [])} lessons "
                  f"recorded in {folder}", markup=False)


@report_app.command("incident")
def incident(
    execution: Annotated[str, typer.Argument(help="The runbook execution id (`tradeops runbook list`).")],
    lookback: Annotated[str, typer.Option(help="How long before the execution started the incident window opens.")]
    = "15m",
    pdf: PdfOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Build the incident report of a real failover (or any runbook execution): timeline, decisions and approvers,
    orders delayed, exposure, reimbursements, and any time outside tolerance.

    Examples:

      tradeops report incident failover-20261126-0915
      tradeops report incident failover-20261126-0915 --lookback 30m --pdf
    """
    from datetime import timedelta

    from tradeops.reports.incident import build_incident_report

    try:
        window = timedelta(seconds=parse_duration(lookback))
    except (BadInput, ValueError):
        raise BadInput(f"--lookback: {lookback!r} is not a duration like 15m") from None
    ctx = context()
    identity = ctx.identity()
    built = build_incident_report(ctx.settings, ctx.aws, execution, generated_by=f"{identity.name} ({identity.source})",
                                  lookback=window, pdf=pdf)
    _built(built.folder, built.files, dict(built.evidence), as_json)


@report_app.command("self-assessment")
def self_assessment(
    since: SinceOpt,
    until: UntilOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder to write into (default: "
                                                              "<runs>/self-assessment-<date>).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compile the annual self-assessment: the service, its tolerance and resources, every scenario tested in the
    period with its result, vulnerabilities open and closed, lessons and actions.

    Examples:

      tradeops report self-assessment --since 2026-01-01
      tradeops report self-assessment --since 2026-01-01 --until 2027-01-01 --json
    """
    from tradeops.reports.periodic_io import self_assessment as compile_assessment

    start, end = period(since, until)
    settings = load_settings()
    folder = out_dir or Path(settings.runs_dir) / f"self-assessment-{end.date().isoformat()}"
    document, files = compile_assessment(settings, since=start, until=end, out=folder, generated_by=who(settings))
    if as_json:
        print_json({**document, "files": {k: str(v) for k, v in files.items()}})
        return
    s = document["summary"]
    out.print(f"self-assessment {document['since']} to {document['until']}: {s['tests']} tests, {s['passed']} within "
              f"tolerance, {s['failed']} outside; {len(document['vulnerabilities']['open'])} vulnerabilities open",
              markup=False)
    for name, path in files.items():
        out.print(f"  {name}: {path}", markup=False)


@report_app.command("execution-quality")
def execution_quality(
    since: SinceOpt,
    until: UntilOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Also write execution-quality.json/.html/.md "
                                                              "into this folder.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare the brokers on fill latency and slippage against the quote at placement (best execution, COBS 11.2A).

    Examples:

      tradeops report execution-quality --since 2026-11-01
      tradeops report execution-quality --since 2026-11-01 --out reports/2026-11 --json
    """
    from tradeops.reports.periodic_io import execution_quality as quality

    start, end = period(since, until)
    ctx = context()
    identity = ctx.identity()
    document, files = quality(ctx.settings, ctx.aws, since=start, until=end, out=out_dir,
                              generated_by=f"{identity.name} ({identity.source})")
    if as_json:
        print_json({**document, "files": {k: str(v) for k, v in files.items()}})
        return
    rows = [[name, b["fills"], b["latency_ms"]["p50"], b["latency_ms"]["p95"], b["slippage_bps"]["mean"],
             b["slippage_bps"]["p95"], b["slippage_bps"]["improved_share"]] for name, b in document["brokers"].items()]
    print_table([Column("broker"), Column("fills"), Column("latency p50 ms"), Column("latency p95 ms"),
                 Column("slippage mean bps"), Column("slippage p95 bps"), Column("share improved")], rows)
    out.print(document["comparison"]["statement"], markup=False)
