"""Builds a drill run's report from its run folder, records annotations, and keeps the index. The I/O shell.

A run folder (written by :mod:`tradeops.experiments.drill`) gets, beside what the drill wrote::

    evidence.json     the evidence model (:mod:`tradeops.reports.model`), the one source of every format
    report.html       self-contained: inline styles and SVG charts, no script, nothing fetched
    report.md         the same report in Markdown
    report.pdf        with ``pdf=True``, through WeasyPrint
    annotations.json  vulnerabilities and lessons entered with ``tradeops report annotate``

The evidence appendix lists every other file of the folder with its SHA-256, so the report itself
proves what it was built from. ``index.html`` in the runs folder lists every report.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from tradeops import __version__
from tradeops.reports import model
from tradeops.reports.render import render_html, render_index, render_markdown, render_pdf
from tradeops.runtime.platform.clock import iso
from tradeops.runtime.platform.errors import BadInput, NotFound
from tradeops.runtime.platform.packagedata import package_file
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


def catalogue() -> dict[str, Any]:
    """The service catalogue (service, tolerance, scenarios, phases and their RACI): ``reports/service.yaml``."""
    data = yaml.safe_load(package_file("reports", "service.yaml").read_text(encoding="utf-8"))
    return dict(data)


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


def _thresholds(settings: Settings) -> dict[str, Decimal]:
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
                                                                  ("detected", "failed over", "recovered")}),
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


def build_run_report(run_dir: Path, settings: Settings, *, generated_by: str, pdf: bool = False) -> BuiltReport:
    """The report of one drill run, written into its run folder (see the module docstring)."""
    folder = _run_folder(Path(run_dir))
    result = _json(folder / "result.json", {})
    timeline = _json(folder / "timeline.json", {})
    journal = _json(folder / "journal.json", {})
    evidence = model.drill_evidence(
        result={**result, "run_id": folder.name}, journal=journal, events=_json(folder / "events.json", []),
        audit=_json(folder / "audit.json", []), orders=_json(folder / "orders.json", []),
        files=digests(folder, exclude=OUTPUTS), annotations=_json(folder / ANNOTATIONS, {}),
        catalogue=catalogue(), environment="local" if (result.get("stack") or {}).get("state_dir") else "aws",
        generated_at=iso(), generated_by=generated_by, version=__version__, secrets=known_secrets(settings))
    # Orders per second count from the load's start; the samples are placed on the same clock.
    load_started = _json(folder / "load" / "summary.json", {}).get("started_at") or result.get("started_at")
    svgs = drill_charts(evidence, timeline, str(load_started), _thresholds(settings))
    files = write_report(folder, evidence, svgs, pdf=pdf)
    return BuiltReport(folder=folder, files=files, evidence=evidence)


# ---- annotations ---------------------------------------------------------------------------------
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def annotate(folder: Path, *, vulnerability: str | None = None, owner: str | None = None, due: str | None = None,
             lesson: str | None = None, action: str | None = None, close: str | None = None,
             by: str, at: str) -> dict[str, Any]:
    """Adds a vulnerability (with its owner and due date), a lesson (with the action taken), or closes a
    vulnerability, in the report folder's ``annotations.json``. BadInput before anything is written."""
    if not (folder / "result.json").is_file() and not (folder / "evidence.json").is_file():
        raise NotFound(f"{folder} is not a report folder (no result.json or evidence.json)")
    if not (vulnerability or lesson or close):
        raise BadInput("give --vulnerability (with --owner and --due), --lesson, or --close ID")
    if vulnerability:
        if not owner or not due:
            raise BadInput("a vulnerability needs --owner and --due (YYYY-MM-DD)")
        if not _DATE.match(due):
            raise BadInput(f"--due must be a date YYYY-MM-DD, got {due!r}")
        try:
            date.fromisoformat(due)
        except ValueError:
            raise BadInput(f"--due must be a date YYYY-MM-DD, got {due!r}") from None
    data = _json(folder / ANNOTATIONS, {"vulnerabilities": [], "lessons": []})
    vulns: list[dict[str, Any]] = data.setdefault("vulnerabilities", [])
    if close and not any(v.get("id") == close for v in vulns):
        raise NotFound(f"no vulnerability {close!r} in {folder.name} (ids: "
                       f"{', '.join(str(v.get('id')) for v in vulns) or 'none'})")
    if vulnerability:
        vulns.append({"id": f"V{len(vulns) + 1}", "description": vulnerability, "owner": owner, "due": due,
                      "status": "open", "recorded_by": by, "recorded_at": at})
    if lesson:
        data.setdefault("lessons", []).append({"lesson": lesson, "action": action, "recorded_by": by,
                                               "recorded_at": at})
    for v in vulns:
        if close and v.get("id") == close:
            v.update(status="closed", closed_by=by, closed_at=at)
    tmp = folder / f".{ANNOTATIONS}.tmp"
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / ANNOTATIONS)
    return data


# ---- the index -----------------------------------------------------------------------------------
def list_reports(root: Path) -> list[dict[str, Any]]:
    """Every report (``evidence.json``) under ``root``, newest first: date, kind, scenario, result, headline."""
    rows: list[dict[str, Any]] = []
    if not root.is_dir():
        return rows
    for path in sorted(root.rglob("evidence.json")):
        try:
            ev = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(ev, dict) or "kind" not in ev:
            continue
        scenario = ev.get("scenario") or {}
        rows.append({"at": scenario.get("started_at") or ev.get("generated_at"), "kind": ev.get("kind"),
                     "id": ev.get("id"), "scenario": scenario.get("name"), "passed": ev.get("passed"),
                     "verdict": ev.get("verdict"), "headline": ev.get("headline") or {},
                     "folder": str(path.parent), "href": path.parent.relative_to(root).joinpath("report.html")
                     .as_posix()})
    rows.sort(key=lambda r: str(r["at"]), reverse=True)
    return rows


def recovery_trend(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per scenario, oldest first: when it ran and its time to recover."""
    trend: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: str(r["at"])):
        trend.setdefault(str(row["scenario"]), []).append(
            {"at": row["at"], "time_to_recover": (row.get("headline") or {}).get("time_to_recover")})
    return dict(sorted(trend.items()))


def write_index(root: Path) -> Path:
    """``index.html`` in ``root``: every report and the time-to-recover trend per scenario."""
    rows = list_reports(root)
    trend = recovery_trend(rows)
    from tradeops.reports import charts  # see drill_charts

    chart = charts.trend_chart(trend)
    root.mkdir(parents=True, exist_ok=True)
    path = root / "index.html"
    tmp = root / ".index.html.tmp"
    tmp.write_text(render_index(rows, trend, chart), encoding="utf-8")
    os.replace(tmp, path)
    return path
