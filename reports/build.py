"""Builds a drill run's report from its run folder, records annotations, and keeps the index. The I/O shell.

A run folder (written by :mod:`tradeops.experiments.drill`) gets, beside what the drill wrote::

    evidence.json     the evidence model (:mod:`tradeops.reports.model`), the one source of every format
    report.html       self-contained: inline styles and SVG charts, no script, nothing fetched
    report.md         the same report in Markdown
    report.pdf        with ``pdf=True``, through WeasyPrint
    annotations.json  vulnerabilities and lessons entered with ``tradeops report annotate``

The evidence appendix lists every other file of the folder with its SHA-256, so the report itself
proves what it was built from. ``index.html`` in the runs folder lists every report, once per run id
(an unzipped evidence pack under the runs folder holds copies of run folders).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradeops import __version__
from tradeops.reports import measures, model, register
from tradeops.reports.data import Catalogue, load_catalogue
from tradeops.reports.render import render_html, render_index, render_markdown, render_pdf
from tradeops.reports.signoff import Signature
from tradeops.runtime.platform.clock import iso, utcnow
from tradeops.runtime.platform.errors import BadInput, NotFound
from tradeops.runtime.platform.settings import Settings

__all__ = [
    "OUTPUTS",
    "BuiltReport",
    "annotate",
    "build_run_report",
    "catalogue",
    "digests",
    "known_secrets",
    "list_reports",
    "mapped_names",
    "read_reports",
    "rerender",
    "thresholds",
    "vulnerability_register",
    "write_index",
    "write_report",
]

OUTPUTS = ("evidence.json", "report.html", "report.md", "report.pdf")
"""What a report writes into its folder (left out of its own evidence appendix)."""

ANNOTATIONS = "annotations.json"


@dataclass(frozen=True)
class BuiltReport:
    folder: Path
    files: dict[str, Path]
    evidence: model.Evidence


def catalogue(data_dir: Path | None = None) -> Catalogue:
    """The reports' data (service, tolerance, phases and RACI, mapping, testing plan, communications, third
    parties), checked: :func:`tradeops.reports.data.load_catalogue`."""
    return load_catalogue(data_dir)


def mapped_names(data: Catalogue) -> list[str]:
    """Every name of the mapping (people, processes, technology, facilities, information)."""
    mapping = data.get("mapping") or {}
    return [str(item["name"]) for part in ("people", "processes", "technology", "facilities", "information")
            for item in mapping.get(part) or []]


def known_secrets(settings: Settings) -> list[str]:
    """The secret values this process knows (intake token, broker keys): cut out of anything a report shows."""
    return [s for s in (settings.intake_token, settings.primary_api_key, settings.secondary_api_key) if s]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def digests(folder: Path, *, exclude: Iterable[str] = ()) -> list[model.FileDigest]:
    """Every file under ``folder`` (paths relative to it, sorted) with its SHA-256 and size."""
    skip = set(exclude)
    found: list[model.FileDigest] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel in skip:
            continue
        found.append({"path": rel, "sha256": _sha256(path), "bytes": path.stat().st_size})
    return found


def _json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except ValueError as exc:
        raise BadInput(f"{path}: not readable JSON ({exc})") from None


def _run_folder(run_dir: Path) -> Path:
    if not (run_dir / "result.json").is_file():
        raise NotFound(f"{run_dir} is not a drill run folder (no result.json)")
    return run_dir


def thresholds(settings: Settings) -> dict[str, Decimal]:
    """The exposure thresholds the monitor runs with: what money at risk is judged and charted against."""
    total = Decimal(settings.threshold_total_amount)
    return {"alert threshold": total, "immediate page": total * Decimal(settings.paging_immediate_multiple)}


def drill_charts(evidence: Mapping[str, Any], timeline: Mapping[str, Any], started_at: str,
                 thresholds: Mapping[str, Decimal]) -> dict[str, str | None]:
    """The three charts of a drill report."""
    from tradeops.reports import charts  # matplotlib takes most of a second to import: only when drawing

    milestones = {row["milestone"]: row["at"] for row in evidence.get("timeline") or [] if row.get("milestone")}
    fault = evidence.get("fault") or {}
    samples = timeline.get("samples") or []
    return {
        "throughput": charts.throughput_chart(timeline.get("orders_per_second") or [], load_started=started_at,
                                              fault=fault, marks={k: milestones.get(k) for k in
                                                                  ("detected", "failed over", "back on the primary")}),
        "queue": charts.queue_chart(samples, load_started=started_at, fault=fault),
        "exposure": charts.exposure_chart(samples, load_started=started_at, fault=fault, thresholds=thresholds),
    }


def write_report(folder: Path, evidence: model.Evidence, chart_svgs: Mapping[str, str | None], *,
                 pdf: bool = False) -> dict[str, Path]:
    """Writes evidence.json, report.html, report.md (and report.pdf) into ``folder``; each file whole or not at all."""
    html = render_html(evidence, chart_svgs)
    outputs: dict[str, bytes] = {
        "evidence.json": (json.dumps(evidence, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8"),
        "report.html": html.encode("utf-8"),
        "report.md": render_markdown(evidence).encode("utf-8"),
    }
    if pdf:
        outputs["report.pdf"] = render_pdf(html)
    written: dict[str, Path] = {}
    for name, data in outputs.items():
        path = folder / name
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        written[name] = path
    return written


def _load_started(folder: Path, result: Mapping[str, Any]) -> str:
    # Orders per second count from the load's start; the samples are placed on the same clock.
    return str(_json(folder / "load" / "summary.json", {}).get("started_at") or result.get("started_at"))


def build_run_report(run_dir: Path, settings: Settings, *, generated_by: str, pdf: bool = False,
                     signatures: Sequence[Signature] | None = None, data_dir: Path | None = None) -> BuiltReport:
    """The report of one drill run, written into its run folder (see the module docstring). ``signatures``
    are the document's sign-offs as the audit log holds them (None: not read, the report says so)."""
    folder = _run_folder(Path(run_dir))
    data = catalogue(data_dir)
    result = _json(folder / "result.json", {})
    timeline = _json(folder / "timeline.json", {})
    journal = _json(folder / "journal.json", {})
    evidence = model.drill_evidence(
        result={**result, "run_id": folder.name}, journal=journal, events=_json(folder / "events.json", []),
        audit=_json(folder / "audit.json", []), orders=_json(folder / "orders.json", []),
        files=digests(folder, exclude=OUTPUTS), annotations=_json(folder / ANNOTATIONS, {}),
        catalogue=data, environment=_environment(result),
        generated_at=iso(), generated_by=generated_by, version=__version__,
        load_summary=_json(folder / "load" / "summary.json", {}), thresholds=thresholds(settings),
        signatures=signatures, secrets=known_secrets(settings))
    svgs = drill_charts(evidence, timeline, _load_started(folder, result), thresholds(settings))
    files = write_report(folder, evidence, svgs, pdf=pdf)
    return BuiltReport(folder=folder, files=files, evidence=evidence)


def rerender(folder: Path, settings: Settings, signoff: Mapping[str, Any]) -> dict[str, Path]:
    """The report of ``folder`` rendered again from its evidence.json with a new sign-off state; the document (and
    so its digest) is unchanged."""
    evidence: model.Evidence = _json(folder / "evidence.json", None)
    if not isinstance(evidence, dict):
        raise NotFound(f"{folder} has no evidence.json to render")
    evidence["signoff"] = dict(signoff)
    svgs: Mapping[str, str | None] = {}
    if evidence.get("kind") == "drill" and (folder / "result.json").is_file():
        result = _json(folder / "result.json", {})
        svgs = drill_charts(evidence, _json(folder / "timeline.json", {}), _load_started(folder, result),
                            thresholds(settings))
    return write_report(folder, evidence, svgs, pdf=(folder / "report.pdf").is_file())


# ---- annotations ---------------------------------------------------------------------------------
def _report_of(folder: Path) -> dict[str, Any]:
    evidence = _json(folder / "evidence.json", None)
    if not isinstance(evidence, dict) or "kind" not in evidence:
        raise BadInput(f"{folder} has no report (evidence.json): build it first (`tradeops report build`)")
    return evidence


def annotate(folder: Path, *, by: str, at: str, vulnerability: str | None = None, severity: str | None = None,
             metric: str | None = None, resource: str | None = None, remedy: str | None = None,
             owner: str | None = None, due: str | None = None, due_reason: str | None = None,
             fixed_when: str | None = None, lesson: str | None = None, action: str | None = None,
             close: str | None = None, evidence: Path | None = None, data_dir: Path | None = None) -> dict[str, Any]:
    """Opens a vulnerability (:mod:`tradeops.reports.register`: severity, metric at risk, mapped resource, remedy,
    owner, due date and why), records a lesson (with the action taken), or closes a vulnerability on the evidence
    of a later run, in the report folder's ``annotations.json``. Every refusal comes before anything is written."""
    if not (folder / "result.json").is_file() and not (folder / "evidence.json").is_file():
        raise NotFound(f"{folder} is not a report folder (no result.json or evidence.json)")
    if not (vulnerability or lesson or close):
        raise BadInput("give --vulnerability (with its details), --lesson, or --close ID --evidence RUN")
    data = _json(folder / ANNOTATIONS, {"vulnerabilities": [], "lessons": []})
    vulns: list[dict[str, Any]] = data.setdefault("vulnerabilities", [])
    if vulnerability:
        mapped = catalogue(data_dir)
        vulns.append(register.open_vulnerability(
            vulns, description=vulnerability, severity=severity, metric=metric, resource=resource, remedy=remedy,
            owner=owner, due=due, due_reason=due_reason, fixed_when=fixed_when, resources=mapped_names(mapped),
            figures=measures.LABELS, by=by, at=at))
    if close:
        where = next((i for i, v in enumerate(vulns) if v.get("id") == close), None)
        if where is None:
            raise NotFound(f"no vulnerability {close!r} in {folder.name} (ids: "
                           f"{', '.join(str(v.get('id')) for v in vulns) or 'none'})")
        later = _report_of(evidence) if evidence is not None else None
        vulns[where] = register.close(vulns[where], found=_report_of(folder), evidence=later,
                                      evidence_sha256=((later or {}).get("document") or {}).get("sha256"),
                                      by=by, at=at)
    if lesson:
        data.setdefault("lessons", []).append({"lesson": lesson, "action": action, "recorded_by": by,
                                               "recorded_at": at})
    tmp = folder / f".{ANNOTATIONS}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / ANNOTATIONS)
    return data


# ---- every report, once --------------------------------------------------------------------------
def read_reports(root: Path, *, kinds: Iterable[str] = ("drill", "incident")) -> list[tuple[Path, dict[str, Any]]]:
    """Every report (``evidence.json``) under ``root``, once per (kind, id): an evidence pack unzipped under the
    runs folder holds copies of run folders, and the copy nearest the root (the run folder itself) is the one."""
    wanted = set(kinds)
    chosen: dict[tuple[str, str], tuple[Path, dict[str, Any]]] = {}
    if not root.is_dir():
        return []
    for path in sorted(root.rglob("evidence.json"), key=lambda p: (len(p.relative_to(root).parts), str(p))):
        try:
            ev = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(ev, dict) or ev.get("kind") not in wanted:
            continue
        chosen.setdefault((str(ev.get("kind")), str(ev.get("id"))), (path.parent, ev))
    return list(chosen.values())


def list_reports(root: Path) -> list[dict[str, Any]]:
    """Every report under ``root`` (once per run id), newest first: date, kind, scenario, result, headline."""
    rows: list[dict[str, Any]] = []
    for folder, ev in read_reports(root):
        scenario = ev.get("scenario") or {}
        head = dict(ev.get("headline") or {})
        head.setdefault("time_to_fail_over", head.get("time_to_recover"))  # reports built before schema 2
        rows.append({"at": scenario.get("started_at") or ev.get("generated_at"), "kind": ev.get("kind"),
                     "id": ev.get("id"), "scenario": scenario.get("name"), "passed": ev.get("passed"),
                     "verdict": ev.get("verdict"), "signoff": (ev.get("signoff") or {}).get("state", "draft"),
                     "headline": head, "folder": str(folder),
                     "href": folder.relative_to(root).joinpath("report.html").as_posix()})
    rows.sort(key=lambda r: str(r["at"]), reverse=True)
    return rows


def failover_trend(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per scenario, oldest first: when it ran, its time to fail over and its longest wait."""
    trend: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: str(r["at"])):
        head = row.get("headline") or {}
        trend.setdefault(str(row["scenario"]), []).append(
            {"at": row["at"], "time_to_fail_over": head.get("time_to_fail_over"),
             "longest_wait_seconds": head.get("longest_wait_seconds")})
    return dict(sorted(trend.items()))


def write_index(root: Path) -> Path:
    """``index.html`` in ``root``: every report and the time-to-fail-over trend per scenario."""
    rows = list_reports(root)
    trend = failover_trend(rows)
    from tradeops.reports import charts  # see drill_charts

    chart = charts.trend_chart(trend)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "index.html"
    tmp = root / ".index.html.tmp"
    tmp.write_text(render_index(rows, trend, chart), encoding="utf-8")
    os.replace(tmp, path)
    return path


def vulnerability_register(root: Path, *, only_open: bool = False) -> list[dict[str, Any]]:
    """The vulnerability register across every report under ``root`` (:func:`tradeops.reports.register.register`),
    each report's vulnerabilities read from its annotations, so a closure shows before the report is rebuilt."""
    reports = []
    for folder, ev in read_reports(root):
        annotations = _json(folder / ANNOTATIONS, {})
        reports.append({**ev, "vulnerabilities": annotations.get("vulnerabilities") or ev.get("vulnerabilities")})
    rows = register.register(reports, today=utcnow().date())
    return [r for r in rows if r.get("status") != "closed"] if only_open else rows


def _environment(result: dict[str, Any]) -> str:
    """Where the drill ran: its recorded target (``local`` or ``aws``), else, for a run folder older than
    drills of other platforms, local when it ran on a stack."""
    target = result.get("target") or {}
    if target.get("kind"):
        return str(target["kind"])
    return "local" if (result.get("stack") or {}).get("state_dir") else "aws"
