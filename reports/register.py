"""The vulnerability register across runs: what a vulnerability records, when it may be closed, and the
register of every run's vulnerabilities with how each later run bore on it. Pure.

SYSC 15A.6.1R(7) asks for the vulnerabilities that threaten the firm's ability to stay within its
impact tolerances, the actions taken or planned, and why their completion dates are reasonable. A
vulnerability is opened from the drill or incident that found it (``tradeops report annotate RUN
--vulnerability ...``) and records: its severity, the tolerance metric it puts at risk, the mapped
resource it lives in (a name of ``mapping.yaml``), the remedy, the owner, the due date and why that
date is reasonable, and optionally the figure that shows it fixed (``--fixed-when
"time_to_detect<=1"``). It is **closed only with evidence**: a later run of the scenario that exposes
it (the one that found it, unless it came from an incident) whose result shows it fixed: the figure
holds, or, with none named, the run is within tolerance on the metric at risk.

The register (:func:`register`) lists every vulnerability of every report, each with the later runs
that retested it and what each showed, and flags those past their due date.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from tradeops.runtime.platform.errors import BadInput, Refused

__all__ = ["METRICS", "SEVERITIES", "close", "open_vulnerability", "parse_fixed_when", "register", "retests"]

SEVERITIES = ("low", "medium", "high", "critical")
METRICS = ("time", "customers affected", "money at risk")
OPEN, CLOSED = "open", "closed"
_FIXED = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*(<=|>=|==|<|>)\s*(-?\d+(?:\.\d+)?)\s*$")


def parse_fixed_when(text: str, figures: Iterable[str]) -> tuple[str, str, float]:
    """``"time_to_detect<=1"`` → (figure, op, bound); BadInput naming the problem."""
    match = _FIXED.match(text or "")
    if not match:
        raise BadInput(f"--fixed-when {text!r}: write FIGURE<=VALUE, e.g. time_to_detect<=1")
    name, op, bound = match.group(1), match.group(2), float(match.group(3))
    known = set(figures)
    if name not in known:
        raise BadInput(f"--fixed-when: unknown figure {name!r} (one of {', '.join(sorted(known))})")
    return name, op, bound


def _holds(value: float, op: str, bound: float) -> bool:
    return {"<=": value <= bound, ">=": value >= bound, "==": value == bound, "<": value < bound,
            ">": value > bound}[op]


def open_vulnerability(existing: Sequence[Mapping[str, Any]], *, description: str, severity: str | None,
                       metric: str | None, resource: str | None, remedy: str | None, owner: str | None,
                       due: str | None, due_reason: str | None, fixed_when: str | None, resources: Iterable[str],
                       figures: Iterable[str], by: str, at: str) -> dict[str, Any]:
    """A new vulnerability record (id V1, V2, ... within its run); BadInput naming the first field that is
    missing or wrong, before anything is written."""
    if not due:
        raise BadInput("a vulnerability needs --due (YYYY-MM-DD)")
    try:
        if len(due) != 10:
            raise ValueError
        date.fromisoformat(due)
    except ValueError:
        raise BadInput(f"--due must be a date YYYY-MM-DD, got {due!r}") from None
    needed = {"--severity": severity, "--metric": metric, "--resource": resource, "--remedy": remedy,
              "--owner": owner, "--why-due": due_reason}
    missing = [flag for flag, value in needed.items() if not (value and str(value).strip())]
    if missing:
        raise BadInput(f"a vulnerability needs {missing[0]} (and {', '.join(missing[1:])})" if len(missing) > 1
                       else f"a vulnerability needs {missing[0]}")
    if severity not in SEVERITIES:
        raise BadInput(f"--severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    if metric not in METRICS:
        raise BadInput(f"--metric must be one of {', '.join(METRICS)}, got {metric!r}")
    known = set(resources)
    if resource not in known:
        raise BadInput(f"--resource {resource!r} is not a name of mapping.yaml (people, processes, technology, "
                       "facilities, information)")
    rule = None
    if fixed_when:
        name, op, bound = parse_fixed_when(fixed_when, figures)
        rule = f"{name} {op} {bound:g}"
    return {"id": f"V{len(existing) + 1}", "description": description, "severity": severity, "metric": metric,
            "resource": resource, "remedy": remedy, "owner": owner, "due": due, "due_reason": due_reason,
            "fixed_when": rule, "status": OPEN, "recorded_by": by, "recorded_at": at}


def _shows(vulnerability: Mapping[str, Any], later: Mapping[str, Any]) -> tuple[bool | None, str]:
    """Whether a later run's report shows the vulnerability fixed, and what it showed."""
    figures = later.get("figures") or {}
    rule = vulnerability.get("fixed_when")
    if rule:
        name, op, bound = parse_fixed_when(str(rule).replace(" ", ""), figures)
        record = figures.get(name) or {}
        value = record.get("value") if isinstance(record, Mapping) else record
        if value is None:
            return None, f"{name} not measured"
        shown = record.get("shown", value) if isinstance(record, Mapping) else value
        return _holds(float(value), op, bound), f"{name} {shown} ({rule})"
    metric = vulnerability.get("metric")
    row = next((t for t in later.get("tolerance") or [] if t.get("metric") == metric), None)
    if row is None or row.get("within") is None:
        return None, f"{metric}: not judged"
    return bool(row["within"]), f"{metric}: {row.get('verdict')}"


def _started(report: Mapping[str, Any]) -> str:
    return str((report.get("scenario") or {}).get("started_at") or report.get("generated_at") or "")


def _retest_scenario(vulnerability: Mapping[str, Any], found: Mapping[str, Any]) -> str | None:
    if found.get("kind") == "incident":
        return None  # an incident cannot be run again: any later drill may show the fix
    return str((found.get("scenario") or {}).get("name") or "") or None


def close(vulnerability: Mapping[str, Any], *, found: Mapping[str, Any], evidence: Mapping[str, Any] | None,
          evidence_sha256: str | None, by: str, at: str) -> dict[str, Any]:
    """The vulnerability closed on ``evidence`` (the later run's report), or refused: BadInput without
    evidence, Refused when the evidence does not show it fixed."""
    vid = vulnerability.get("id")
    if evidence is None:
        raise BadInput(f"closing {vid} needs --evidence RUN: a later run whose result shows it fixed")
    if vulnerability.get("status") == CLOSED:
        raise Refused(f"refused: {vid} is closed already (by {vulnerability.get('closed_by')}, "
                      f"{vulnerability.get('closed_at')})")
    run = str(evidence.get("id"))
    if run == str(found.get("id")):
        raise Refused(f"refused: {run} is the run that found {vid}; the evidence must be a later run")
    if _started(evidence) <= str(vulnerability.get("recorded_at") or _started(found)):
        raise Refused(f"refused: {run} ran at {_started(evidence)}, before {vid} was recorded "
                      f"({vulnerability.get('recorded_at')}); the evidence must be a later run")
    wanted = _retest_scenario(vulnerability, found)
    scenario = (evidence.get("scenario") or {}).get("name")
    if wanted is not None and scenario != wanted:
        raise Refused(f"refused: {run} ran {scenario}; {vid} is shown fixed only by the scenario that exposed it "
                      f"({wanted})")
    if evidence.get("kind") != "drill":
        raise Refused(f"refused: {run} is an {evidence.get('kind')}, not a drill; a fix is shown by a test run")
    fixed, showed = _shows(vulnerability, evidence)
    if not fixed:
        raise Refused(f"refused: {run} does not show {vid} fixed ({showed})")
    return {**vulnerability, "status": CLOSED, "closed_by": by, "closed_at": at,
            "evidence": {"run": run, "scenario": scenario, "started_at": _started(evidence), "showed": showed,
                         "sha256": evidence_sha256}}


def retests(vulnerability: Mapping[str, Any], found: Mapping[str, Any],
            reports: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The later runs that retested the vulnerability (its scenario, after it was recorded), oldest first."""
    wanted = _retest_scenario(vulnerability, found)
    since = str(vulnerability.get("recorded_at") or _started(found))
    out = []
    for report in sorted(reports, key=_started):
        if report.get("kind") != "drill" or report.get("id") == found.get("id") or _started(report) <= since:
            continue
        if wanted is not None and (report.get("scenario") or {}).get("name") != wanted:
            continue
        fixed, showed = _shows(vulnerability, report)
        out.append({"run": report.get("id"), "at": _started(report), "fixed": fixed, "showed": showed})
    return out


def register(reports: Sequence[Mapping[str, Any]], *, today: date) -> list[dict[str, Any]]:
    """Every vulnerability of every report (each report's ``vulnerabilities``), open first, most severe first,
    with its retests and whether it is past due."""
    rows: list[dict[str, Any]] = []
    for report in reports:
        for v in report.get("vulnerabilities") or []:
            due = str(v.get("due") or "")
            overdue = v.get("status") != CLOSED and bool(due) and due < today.isoformat()
            rows.append({**v, "key": f"{report.get('id')}/{v.get('id')}", "found_in": report.get("id"),
                         "found_kind": report.get("kind"), "scenario": (report.get("scenario") or {}).get("name"),
                         "overdue": overdue, "retests": retests(v, report, reports)})
    rank = {s: i for i, s in enumerate(reversed(SEVERITIES))}
    rows.sort(key=lambda r: (r.get("status") == CLOSED, rank.get(str(r.get("severity")), len(rank)),
                             str(r.get("due") or ""), r["key"]))
    return rows
