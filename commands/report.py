"""`tradeops report build|list|annotate|incident|self-assessment|execution-quality|sign|signatures|vulnerabilities|
testing-plan|check-data`: the FCA reports, their sign-off and the vulnerability register.

The work is in tradeops.reports (the evidence model, templates, charts, builders, sign-off and register). The
reports' modules import Jinja2, matplotlib and the AWS SDK, so they are imported inside the command bodies:
`tradeops --version` pays for none of them."""

from __future__ import annotations

import getpass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tradeops.commands.context import context
from tradeops.commands.output import Column, JsonOpt, out, print_json, print_table
from tradeops.runtime.platform.clock import iso, parse_duration, parse_iso, utcnow
from tradeops.runtime.platform.errors import BadInput, NoTarget, Refused, TradeopsError
from tradeops.runtime.platform.settings import Settings, load_settings

if TYPE_CHECKING:
    from tradeops.reports.signoff import Signature

__all__ = ["SinceOpt", "UntilOpt", "moment", "period", "report_app", "report_folder", "who"]

report_app = typer.Typer(help="Scenario-testing, incident and self-assessment reports for the FCA (PS21/3, SYSC 15A), "
                              "their sign-off and the vulnerability register.", no_args_is_help=True)

PdfOpt = Annotated[bool, typer.Option("--pdf", help="Also write report.pdf (WeasyPrint).")]
DataOpt = Annotated[Path | None, typer.Option("--data", metavar="DIR", help="Read the reports' data files "
                                              "(service.yaml, mapping.yaml, testing-plan.yaml, communications.yaml, "
                                              "third-parties.yaml) from DIR where it has them.")]


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
    """A run folder given as a path, or by its name under the runs folder (or its incidents)."""
    path = Path(run)
    if path.is_dir():
        return path
    for under in (Path(settings.runs_dir) / run, Path(settings.runs_dir) / "incidents" / run):
        if under.is_dir():
            return under
    raise BadInput(f"no run folder {run!r} (give its path, or its name under {settings.runs_dir})")


def _signatures(document: str) -> list[Signature] | None:
    """The document's signatures from the audit log, or None when no target is at hand to read them from (the
    report then says it was built without them)."""
    from tradeops.reports.signoff_io import read_signatures

    try:
        return read_signatures(context().aws, document)
    except (NoTarget, TradeopsError):
        return None


def _built(folder: Path, files: dict[str, Path], evidence: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json({"folder": str(folder), "files": {k: str(v) for k, v in files.items()},
                    "verdict": evidence.get("verdict"), "passed": evidence.get("passed"), "kind": evidence.get("kind"),
                    "id": evidence.get("id"), "signoff": (evidence.get("signoff") or {}).get("state"),
                    "sha256": (evidence.get("document") or {}).get("sha256")})
        return
    out.print(f"{evidence.get('title')}: {evidence.get('verdict')} ({evidence.get('verdict_text')}); "
              f"sign-off {(evidence.get('signoff') or {}).get('state')}", markup=False)
    for name, path in files.items():
        out.print(f"  {name}: {path}", markup=False)


@report_app.command("build")
def build(
    run: Annotated[str, typer.Argument(help="A drill's run folder (its path, or its name under the runs folder).")],
    pdf: PdfOpt = False,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build (or rebuild) the scenario-testing report of a drill run: report.html, report.md, evidence.json.

    Every drill builds its report when it ends; run this after `report annotate`, or for --pdf. With a stack
    or AWS at hand the report shows its sign-offs from the audit log.

    Examples:

      tradeops report build runs/20261126T155151Z-drill-primary-outage
      tradeops report build 20261126T155151Z-drill-primary-outage --pdf --json
    """
    from tradeops.reports.build import build_run_report, write_index
    from tradeops.reports.model import document_id

    settings = load_settings()
    folder = report_folder(settings, run)
    built = build_run_report(folder, settings, generated_by=who(settings), pdf=pdf, data_dir=data,
                             signatures=_signatures(document_id("drill", folder.name)))
    if Path(settings.runs_dir).resolve() in folder.resolve().parents:
        write_index(Path(settings.runs_dir))
    _built(built.folder, built.files, dict(built.evidence), as_json)


@report_app.command("list")
def list_(
    as_json: JsonOpt = False,
    root: Annotated[Path | None, typer.Option("--runs", help="The folder to look in (default: the runs folder).")]
    = None,
) -> None:
    """List every report once per run, newest first, and write index.html (with the time-to-fail-over trend) in
    the runs folder.

    Examples:

      tradeops report list
      tradeops report list --json | jq '.reports[0]'
    """
    from tradeops.reports.build import list_reports, write_index

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
    print_table([Column("date (UTC)"), Column("kind"), Column("scenario"), Column("impact tolerance"),
                 Column("sign-off"), Column("detect s"), Column("fail over s"), Column("longest wait s"),
                 Column("lost"), Column("double fills"), Column("max exposure £"), Column("folder")],
                [[r["at"], r["kind"], r["scenario"], r["verdict"], r["signoff"], r["headline"].get("time_to_detect"),
                  r["headline"].get("time_to_fail_over"), r["headline"].get("longest_wait_seconds"),
                  r["headline"].get("orders_lost"), r["headline"].get("orders_filled_twice"),
                  r["headline"].get("max_exposure_gbp"), r["folder"]] for r in rows])
    if index:
        out.print(f"index: {index}", markup=False)


@report_app.command("annotate")
def annotate(
    run: Annotated[str, typer.Argument(help="A run folder or an incident's folder (path or name).")],
    vulnerability: Annotated[str | None, typer.Option(help="A vulnerability the run found.")] = None,
    severity: Annotated[str | None, typer.Option(help="low, medium, high or critical.")] = None,
    metric: Annotated[str | None, typer.Option(help="The tolerance metric it puts at risk: time, "
                                                    "'customers affected' or 'money at risk'.")] = None,
    resource: Annotated[str | None, typer.Option(help="The mapped resource it lives in (a name of "
                                                      "reports/mapping.yaml).")] = None,
    remedy: Annotated[str | None, typer.Option(help="The action that remedies it.")] = None,
    owner: Annotated[str | None, typer.Option(help="Who owns the remedy.")] = None,
    due: Annotated[str | None, typer.Option(metavar="YYYY-MM-DD", help="When the remedy is due.")] = None,
    why_due: Annotated[str | None, typer.Option(help="Why that date is reasonable.")] = None,
    fixed_when: Annotated[str | None, typer.Option(metavar="FIGURE<=VALUE", help="The figure a later run must "
                                                   "show to close it (default: within tolerance on its metric).")]
    = None,
    lesson: Annotated[str | None, typer.Option(help="A lesson learned.")] = None,
    action: Annotated[str | None, typer.Option(help="The action taken on the lesson.")] = None,
    close: Annotated[str | None, typer.Option(metavar="ID", help="Close a vulnerability (e.g. V1).")] = None,
    evidence: Annotated[str | None, typer.Option(metavar="RUN", help="With --close: the later run whose result "
                                                 "shows it fixed.")] = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Record a vulnerability, a lesson (and its action), or close a vulnerability on the evidence of a later run;
    the report is rebuilt.

    Examples:

      tradeops report annotate RUN --vulnerability "breaker opens late under 5% packet loss" --severity high \\
          --metric time --resource router --remedy "trip on the loss rate" --owner sre-team --due 2027-01-31 \\
          --why-due "one release cycle; the loss needs a simulated network first" --fixed-when "time_to_detect<=1"
      tradeops report annotate RUN --lesson "page the duty engineer on the first breaker" --action "paging rule 12"
      tradeops report annotate RUN --close V1 --evidence runs/20270203T020000Z-drill-primary-outage
    """
    from tradeops.reports.build import annotate as annotate_folder
    from tradeops.reports.build import build_run_report

    settings = load_settings()
    folder = report_folder(settings, run)
    proof = report_folder(settings, evidence) if evidence else None
    by = who(settings)
    data_doc = annotate_folder(folder, vulnerability=vulnerability, severity=severity, metric=metric,
                               resource=resource, remedy=remedy, owner=owner, due=due, due_reason=why_due,
                               fixed_when=fixed_when, lesson=lesson, action=action, close=close, evidence=proof,
                               data_dir=data, by=by, at=iso())
    if (folder / "result.json").is_file():
        from tradeops.reports.model import document_id

        build_run_report(folder, settings, generated_by=by, data_dir=data,
                         signatures=_signatures(document_id("drill", folder.name)))
    else:
        out.print("incident folder: run `tradeops report incident EXECUTION` to rebuild its report", markup=False)
    if as_json:
        print_json(data_doc)
    else:
        out.print(f"{len(data_doc.get('vulnerabilities') or [])} vulnerabilities, "
                  f"{len(data_doc.get('lessons') or [])} lessons recorded in {folder}", markup=False)


@report_app.command("incident")
def incident(
    execution: Annotated[str, typer.Argument(help="The runbook execution id (`tradeops runbook list`).")],
    lookback: Annotated[str, typer.Option(help="How long before the execution started the incident window opens.")]
    = "15m",
    pdf: PdfOpt = False,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build the incident report of a real failover (or any runbook execution): timeline, decisions and approvers,
    orders delayed, exposure, reimbursements, and each impact tolerance metric judged.

    Examples:

      tradeops report incident failover-20261126-0915
      tradeops report incident failover-20261126-0915 --lookback 30m --pdf
    """
    from datetime import timedelta

    from tradeops.reports.incident import build_incident_report
    from tradeops.reports.model import document_id
    from tradeops.reports.signoff_io import read_signatures

    try:
        window = timedelta(seconds=parse_duration(lookback))
    except (BadInput, ValueError):
        raise BadInput(f"--lookback: {lookback!r} is not a duration like 15m") from None
    ctx = context()
    identity = ctx.identity()
    built = build_incident_report(ctx.settings, ctx.aws, execution, generated_by=f"{identity.name} ({identity.source})",
                                  lookback=window, pdf=pdf, data_dir=data,
                                  signatures=read_signatures(ctx.aws, document_id("incident", execution)))
    _built(built.folder, built.files, dict(built.evidence), as_json)


@report_app.command("self-assessment")
def self_assessment(
    since: SinceOpt,
    until: UntilOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder of the period's versions (default: "
                                                              "<runs>/self-assessments/<since>_<until>).")] = None,
    upload_to: Annotated[str | None, typer.Option("--upload", metavar="s3://BUCKET/PREFIX",
                                                  help="Also store a new version there under Object Lock "
                                                       "(compliance mode) until the retention date.")] = None,
    retain_years: Annotated[int, typer.Option(help="Years an uploaded version cannot be deleted or overwritten.")]
    = 6,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Compile the self-assessment (the written record of SYSC 15A.6.1R, kept up to date): the service, each
    tolerance and its trend, the mapping, the testing plan and its coverage, the tests run, lessons, the
    vulnerability register, communications, third parties and methodology. A record that says something new is
    kept as a new version (SYSC 15A.6.2R); sign it with `tradeops report sign self-assessment`.

    Examples:

      tradeops report self-assessment --since 2026-01-01
      tradeops report self-assessment --since 2026-01-01 --until 2027-01-01 --upload s3://BUCKET/self-assessments
    """
    from tradeops.reports.evidence import parse_s3_url, require_object_lock, retain_until, upload
    from tradeops.reports.periodic_io import assessment_id, period_folder
    from tradeops.reports.periodic_io import self_assessment as compile_assessment

    start, end = period(since, until)
    if retain_years < 1:
        raise BadInput("--retain-years must be at least 1")
    settings = load_settings()
    store = None
    if upload_to is not None:
        parse_s3_url(upload_to)
        ctx = context()
        ctx.announce(quiet=as_json)
        bucket, prefix = require_object_lock(ctx.aws, upload_to)
        folder_name = period_folder(settings, iso(start), iso(end)).name
        until_date = retain_until(utcnow(), retain_years)

        def store(path: Path, version: int) -> dict[str, Any]:
            where = "/".join(p for p in (prefix, folder_name, f"v{version}") if p)
            return upload(ctx.aws, path, f"s3://{bucket}/{where}", until=until_date,
                          metadata={"self-assessment-version": str(version)})

    made = compile_assessment(settings, since=start, until=end, out=out_dir, generated_by=who(settings),
                              data_dir=data, signatures=_signatures(assessment_id(iso(start), iso(end))),
                              upload=store)
    document = made.document
    if as_json:
        print_json({**document, "files": {k: str(v) for k, v in made.files.items()}, "new_version": made.new,
                    "uploaded": made.uploaded})
        return
    s = document["summary"]
    kept = "new version" if made.new else "unchanged: the latest version says the same"
    out.print(f"self-assessment {document['since']} to {document['until']}, version {made.version} ({kept}): "
              f"{s['tests']} tests, {s['within']} within tolerance, {s['outside']} outside, {s['not_judged']} not "
              f"judged in full; {s['vulnerabilities_open']} vulnerabilities open", markup=False)
    for name, path in made.files.items():
        out.print(f"  {name}: {path}", markup=False)
    for stored in made.uploaded:
        out.print(f"  stored s3://{stored['bucket']}/{stored['key']} (version {stored['version_id']}), Object Lock "
                  f"{stored['mode']} until {stored['retain_until']}", markup=False)


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


# ---- sign-off ------------------------------------------------------------------------------------
TargetArg = Annotated[str, typer.Argument(metavar="RUN|SELF-ASSESSMENT", help="A report folder (path or name under "
                                          "the runs folder), a self-assessment version folder, or `self-assessment` "
                                          "for the latest version.")]


def _state_line(document: Any, state: dict[str, Any]) -> str:
    signed = ", ".join(f"{g['as']} {g['identity']}" for g in state["signatures"]) or "no valid signature"
    void = f"; {len(state['void'])} void" if state["void"] else ""
    return f"{document.id} ({document.title}): {state['state']} ({signed}{void})"


@report_app.command("sign")
def sign(
    target: TargetArg,
    capacity: Annotated[str, typer.Option("--as", metavar="reviewer|approver", help="Sign as the reviewer or the "
                                          "approver (the approver holds an approving roster role, e.g. smf24).")],
    comment: Annotated[str, typer.Option(help="What you reviewed, or why you approve (kept with the signature).")],
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Sign a report or a self-assessment version off, as its reviewer or its approver: the signature binds your
    identity, the time and the SHA-256 of exactly what you signed, and is kept in the audit log. A document that
    changes afterwards loses its signatures. The approver must not be the reviewer and must hold an approving
    role of the roster.

    Examples:

      tradeops report sign 20261126T155151Z-drill-primary-outage --as reviewer --comment "figures checked"
      tradeops report sign self-assessment --as approver --comment "approved for the board, minute 12"
    """
    from tradeops.reports.build import catalogue, rerender
    from tradeops.reports.periodic_io import rerender_version
    from tradeops.reports.signoff import Policy, check_signature
    from tradeops.reports.signoff_io import find_document, read_signatures, record_signature, state_of

    settings = load_settings()
    document = find_document(settings, target)
    policy = Policy.from_catalogue(catalogue(data))
    ctx = context()
    ctx.announce(quiet=as_json)
    if document.changed:
        raise Refused(f"refused: {document.id} changed since it was built ({', '.join(document.changed[:3])}); "
                      "rebuild it and review the new version")
    identity = ctx.identity()
    roster = ctx.operators()
    existing = read_signatures(ctx.aws, document.id)
    check_signature(policy, digest=document.sha256, capacity=capacity, identity=identity.name, source=identity.source,
                    held=roster.roles_of(identity.name), comment=comment,
                    existing=[s for s in existing if s.version in (None, document.version)])
    signature = record_signature(ctx.aws, document, capacity=capacity, identity=identity, roster=roster,
                                 comment=comment)
    signatures = [s for s in [*existing, signature] if s.version in (None, document.version)]
    state = state_of(document, policy, signatures)
    if document.kind == "self-assessment":
        rerender_version(document.folder, state)
    else:
        rerender(document.folder, ctx.settings, state)
    if as_json:
        print_json({"target": ctx.target_json(), "document": document.id, "sha256": document.sha256,
                    "version": document.version, "signed": signature.as_dict(), "signoff": state})
        return
    out.print(f"signed {document.id} as {capacity} ({identity.name}, SHA-256 {document.sha256}, audit record "
              f"{signature.seq})", markup=False)
    out.print(_state_line(document, state), markup=False)


@report_app.command("signatures")
def signatures(target: TargetArg, data: DataOpt = None, as_json: JsonOpt = False) -> None:
    """Where a report or self-assessment version stands: draft, reviewed or approved, with every signature the
    audit log holds for it, and the void ones with why.

    Examples:

      tradeops report signatures 20261126T155151Z-drill-primary-outage
      tradeops report signatures self-assessment --json
    """
    from tradeops.reports.build import catalogue
    from tradeops.reports.signoff import Policy
    from tradeops.reports.signoff_io import find_document, read_signatures, state_of

    settings = load_settings()
    document = find_document(settings, target)
    ctx = context()
    found = [s for s in read_signatures(ctx.aws, document.id) if s.version in (None, document.version)]
    state = state_of(document, Policy.from_catalogue(catalogue(data)), found)
    if as_json:
        print_json({"document": document.id, "sha256": document.sha256, "version": document.version,
                    "folder": str(document.folder), "signoff": state})
        return
    out.print(_state_line(document, state), markup=False)
    for g in state["signatures"]:
        out.print(f"  {g['as']}: {g['identity']} ({', '.join(g['roles'])}) at {g['at']}: {g['comment']}",
                  markup=False)
    for g in state["void"]:
        out.print(f"  void {g['as']} {g['identity']} ({g['at']}): {g['void']}", markup=False)


# ---- the vulnerability register, the testing plan and the data files -------------------------------------
@report_app.command("vulnerabilities")
def vulnerabilities(
    open_only: Annotated[bool, typer.Option("--open", help="Only the vulnerabilities still open.")] = False,
    root: Annotated[Path | None, typer.Option("--runs", help="The folder to look in (default: the runs folder).")]
    = None,
    as_json: JsonOpt = False,
) -> None:
    """The vulnerability register across every run: severity, the tolerance metric at risk, the mapped resource,
    the remedy, owner, due date and why, status, and each later run that retested it.

    Examples:

      tradeops report vulnerabilities --open
      tradeops report vulnerabilities --json | jq '.vulnerabilities[] | select(.overdue)'
    """
    from tradeops.reports.build import vulnerability_register

    settings = load_settings()
    rows = vulnerability_register(root or Path(settings.runs_dir), only_open=open_only)
    if as_json:
        print_json({"vulnerabilities": rows})
        return
    if not rows:
        out.print("no vulnerabilities recorded" + (" open" if open_only else ""), markup=False)
        return
    print_table([Column("vulnerability"), Column("severity"), Column("metric at risk"), Column("resource"),
                 Column("owner"), Column("due"), Column("status"), Column("retests"), Column("description")],
                [[r["key"], r.get("severity"), r.get("metric"), r.get("resource"), r.get("owner"),
                  f"{r.get('due')}{' (overdue)' if r.get('overdue') else ''}", r.get("status"),
                  "; ".join(f"{t['run']}: {t['showed']}" for t in r["retests"]) or "-", r.get("description")]
                 for r in rows])


@report_app.command("testing-plan")
def testing_plan(
    write_schedule: Annotated[Path | None, typer.Option("--write-schedule", metavar="FILE",
                                                        help="Add the plan's scheduled scenarios to this drill "
                                                             "schedule file (`tradeops drill schedule`).")] = None,
    data: DataOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The testing plan (SYSC 15A.5.1R): each scenario's nature, severity, duration, test type, frequency,
    rationale and whether a breach is expected; with --write-schedule, the drill schedule it makes.

    Examples:

      tradeops report testing-plan
      tradeops report testing-plan --write-schedule drills.yaml
    """
    from tradeops.experiments.drill import scenarios
    from tradeops.experiments.schedule import ScheduleError, parse_entry
    from tradeops.experiments.schedulefile import load_schedule, save_schedule
    from tradeops.reports.build import catalogue
    from tradeops.reports.plan import schedule_entries

    plan = catalogue(data)["testing_plan"]
    entries = schedule_entries(plan, added_at=iso())
    written = None
    if write_schedule is not None:
        current = load_schedule(write_schedule, scenarios=scenarios())
        taken = {str(d.get("name")) for d in current.documents}
        clash = next((e["name"] for e in entries if e["name"] in taken), None)
        if clash is not None:
            raise BadInput(f"schedule {write_schedule}: an entry named {clash!r} exists; remove it first")
        try:
            for entry in entries:
                parse_entry(entry, scenarios=scenarios())
        except ScheduleError as exc:
            raise BadInput(f"testing plan: {exc}") from None
        save_schedule(current, [*current.documents, *entries])
        written = str(write_schedule)
    if as_json:
        print_json({"testing_plan": plan, "schedule": entries, "written": written})
        return
    print_table([Column("scenario"), Column("type"), Column("frequency"), Column("expect a breach"),
                 Column("experiment"), Column("nature")],
                [[s["name"], s["test_type"], s["frequency"], "yes" if s["expect_breach"] else "no",
                  s.get("experiment") or "-", s["nature"]] for s in plan["scenarios"]])
    if written:
        out.print(f"{len(entries)} scheduled drills added to {written}", markup=False)


@report_app.command("check-data")
def check_data(
    folder: Annotated[Path | None, typer.Argument(metavar="[DIR]", help="A folder of data files to check (default: "
                                                  "the shipped ones).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the reports' data files against their schemas and rules: one line naming the file, line and field
    of the first problem (exit 2), or nothing wrong.

    Examples:

      tradeops report check-data
      tradeops report check-data ./reports-next
    """
    from tradeops.reports.data import DATA_FILES, load_catalogue, template_resources
    from tradeops.runtime.stack.deploy import load_template

    _text, template = load_template(load_settings().template)
    load_catalogue(folder, resources=template_resources(template))
    if as_json:
        print_json({"checked": list(DATA_FILES.values()), "folder": str(folder) if folder else None, "ok": True})
        return
    out.print(f"{', '.join(DATA_FILES.values())}: checked, nothing wrong", markup=False)
