"""The evidence model: one document per drill run or incident, from which every format is rendered. Pure.

:mod:`tradeops.reports.build` reads the run folder (or a runbook execution and its orders) and hands
plain values to the functions here; they return the model as plain JSON-ready data (the
:class:`Evidence` shape), which is saved as ``evidence.json`` and rendered to HTML, Markdown and PDF
by :mod:`tradeops.reports.render`. Nothing here reads a clock, a file or AWS: ``generated_at`` and
every time come in as arguments, so the same inputs always give the same model.

Sections follow SYSC 15A.5/15A.6: the important business service; the impact tolerance by time,
customers and money; the scenario (severe but plausible, test type, assumptions); the third parties;
the timeline (fault injected, detected, failed over, healed, recovered); results against tolerance;
customer impact; the people who executed and approved each step (an automated drill approval is
never shown as human four-eyes); vulnerabilities; lessons; the RACI of the phase exercised; and the
evidence appendix (every file of the run with its SHA-256).

Secrets never enter the model: :func:`redact` runs over it last, so a bearer token or broker key
planted in a journal or an audit record cannot reach a report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypedDict

from tradeops.experiments.drillfigures import FIGURES
from tradeops.runbooks import eventkinds as ev
from tradeops.runbooks.catalogue import SET_ACTIVE_BROKER
from tradeops.runbooks.states import COMPLETED, SUCCEEDED
from tradeops.runtime.platform.clock import iso, parse_iso

__all__ = [
    "SCHEMA_VERSION",
    "SECTIONS",
    "Evidence",
    "FileDigest",
    "customer_impact",
    "drill_evidence",
    "headline",
    "incident_evidence",
    "redact",
    "timeline_of_drill",
]

SCHEMA_VERSION = 1

SECTIONS = ("service", "tolerance", "scenario", "third_parties", "timeline", "results", "customer_impact",
            "people", "vulnerabilities", "lessons", "raci", "evidence")
"""Every section a report has, in the order it is shown (a test checks each one is rendered)."""

FIGURE_LABELS: dict[str, tuple[str, str]] = {
    **FIGURES,
    # Where the report's reader needs more words than the drill's table: what "recover" and "double fill" mean.
    "time_to_99pct_secondary": ("time to recover: 99% of new orders at the secondary", "s"),
    "orders_filled_twice": ("orders filled twice (double fills)", ""),
    "max_oldest_pending_seconds": ("longest wait of a pending order", "s"),
}

PEOPLE_ACTIONS = {ev.EXECUTION_STARTED: "started the runbook", ev.STEP_STARTED: "executed",
                  ev.APPROVAL_APPROVED: "approved", ev.APPROVAL_REJECTED: "rejected",
                  ev.APPROVAL_WITHDRAWN: "withdrew approval",
                  ev.EXECUTION_ABORTED: "aborted"}
"""Audit record kinds that show a person acting, and how the report words each."""

RECOVERY_FIGURE = "time_to_99pct_secondary"
"""What the index trends as "time to recover": from the fault until new orders flow again."""


class FileDigest(TypedDict):
    path: str
    sha256: str
    bytes: int


class Evidence(TypedDict, total=False):
    """The evidence model (``evidence.json``). Money is a decimal string in GBP; times are ``clock.iso``."""

    schema_version: int
    kind: str  # "drill" or "incident"
    id: str
    title: str
    generated_at: str
    generated_by: str
    tradeops_version: str
    verdict: str  # "within tolerance" / "outside tolerance"
    passed: bool
    service: dict[str, Any]
    tolerance: list[dict[str, Any]]
    scenario: dict[str, Any]
    third_parties: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    results: list[dict[str, Any]]
    figures: dict[str, Any]
    customer_impact: dict[str, Any]
    people: dict[str, Any]
    vulnerabilities: list[dict[str, Any]]
    lessons: list[dict[str, Any]]
    raci: dict[str, Any]
    evidence: list[FileDigest]
    fault: dict[str, Any]
    headline: dict[str, Any]


# ---- secrets ---------------------------------------------------------------------------------------
_SECRET_KEY = re.compile(r"(token|secret|password|passwd|api[_-]?key|authorization|credential)", re.I)
_SECRET_TEXT = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{4,}")
REDACTED = "[redacted]"


def redact(value: Any, known: Iterable[str] = ()) -> Any:
    """``value`` with every secret-looking field, bearer token and known secret value replaced.

    ``known`` are the secret values themselves (intake token, broker keys): any string holding one
    has it cut out, wherever the string came from."""
    secrets = sorted({s for s in known if s and len(s) >= 4}, key=len, reverse=True)

    def walk(v: Any, key: str | None = None) -> Any:
        if key is not None and _SECRET_KEY.search(key) and v not in (None, "", [], {}):
            return REDACTED
        if isinstance(v, Mapping):
            return {k: walk(x, str(k)) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x) for x in v]
        if isinstance(v, str):
            for s in secrets:
                v = v.replace(s, REDACTED)
            return _SECRET_TEXT.sub(r"\1 " + REDACTED, v)
        return v

    return walk(value)


# ---- helpers ---------------------------------------------------------------------------------------
def _at(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        return parse_iso(str(text))
    except ValueError:
        return None


def _plus(start: str | None, seconds: Any) -> str | None:
    when = _at(start)
    if when is None or seconds is None:
        return None
    return iso(when + timedelta(seconds=float(seconds)))


def _money(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return str(Decimal(str(value)).quantize(Decimal("0.01")))
    except (InvalidOperation, ValueError):
        return None


def _result_row(name: str, measured: Any, tolerance: str | None, passed: bool | None) -> dict[str, Any]:
    label, unit = FIGURE_LABELS.get(name, (name.replace("_", " "), ""))
    return {"figure": name, "label": label, "unit": unit, "measured": measured, "tolerance": tolerance,
            "passed": passed}


def _phase(catalogue: Mapping[str, Any], scenario: str) -> tuple[dict[str, Any], dict[str, Any]]:
    scenarios = catalogue.get("scenarios") or {}
    facts = {**(scenarios.get("default") or {}), **(scenarios.get(scenario) or {})}
    phase_name = str(facts.get("phase", "automated"))
    phase = dict((catalogue.get("phases") or {}).get(phase_name) or {})
    return facts, {"phase": phase_name, **phase}


# ---- sections --------------------------------------------------------------------------------------
def timeline_of_drill(result: Mapping[str, Any], events: Sequence[Mapping[str, Any]],
                      audit: Sequence[Mapping[str, Any]], journal: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The drill's timeline: its milestones (fault injected, detected, failed over, healed, recovered) and
    every journal activity, routing event and audit record, oldest first."""
    fault = result.get("fault") or {}
    figures = result.get("figures") or {}
    start, healed = fault.get("started_at"), fault.get("healed_at")
    rows: list[dict[str, Any]] = [{"at": result.get("started_at"), "milestone": "drill started", "source": "runner",
                                   "detail": f"load started ({(result.get('load') or {}).get('scenario')})"}]
    if start:
        rows.append({"at": start, "milestone": "fault injected", "source": "journal",
                     "detail": f"fault at the {fault.get('provider') or 'platform'}"})
    detected = next((e for e in sorted(events, key=lambda e: str(e.get("at")))
                     if e.get("kind") in ("breaker_opened", "broker_suspect") and start
                     and str(e.get("at")) >= str(start) and e.get("provider") == fault.get("provider")), None)
    if detected:
        rows.append({"at": detected.get("at"), "milestone": "detected", "source": "events",
                     "detail": f"{detected.get('kind')} at {detected.get('source')}: {detected.get('reason') or ''}"})
    failed_over = _plus(start, figures.get(RECOVERY_FIGURE))
    if failed_over:
        rows.append({"at": failed_over, "milestone": "failed over", "source": "orders",
                     "detail": "99% of new orders went to the secondary from here"})
    if healed:
        rows.append({"at": healed, "milestone": "fault healed", "source": "journal", "detail": "the fault was cleared"})
    recovered = _plus(healed, figures.get("time_back_on_primary"))
    if recovered:
        rows.append({"at": recovered, "milestone": "recovered", "source": "orders",
                     "detail": "new orders back on the primary"})
    for run in journal.get("run") or []:
        activity = run.get("activity") or {}
        if run.get("end"):
            end = _at(str(run["end"]).replace("+00:00", "Z"))
            rows.append({"at": iso(end) if end else run["end"], "milestone": None, "source": "journal",
                         "detail": f"{activity.get('type', 'activity')} {activity.get('name')}: {run.get('status')}"})
    for event in events:
        if event is detected:
            continue
        rows.append({"at": event.get("at"), "milestone": None, "source": "events",
                     "detail": f"{event.get('kind')} {event.get('provider') or ''} ({event.get('source') or ''})"})
    for record in audit:
        rows.append({"at": record.get("at"), "milestone": None, "source": "audit",
                     "detail": f"{record.get('kind')} {record.get('step_id') or ''} by {record.get('actor') or '-'}"})
    rows.append({"at": result.get("ended_at"), "milestone": "drill ended", "source": "runner",
                 "detail": f"verdict {result.get('verdict')}"})
    return sorted((r for r in rows if r.get("at")), key=lambda r: str(r["at"]))


def customer_impact(figures: Mapping[str, Any], orders: Sequence[Mapping[str, Any]],
                    reimbursements: Sequence[Mapping[str, Any]], *, delayed_after: float,
                    window: tuple[str | None, str | None] = (None, None)) -> dict[str, Any]:
    """Orders delayed (waited longer than ``delayed_after`` seconds to fill, or placed in the fault window and not
    filled), the longest wait, exposure, and reimbursements owed and approved."""
    waits: list[float] = []
    delayed = 0
    for order in orders:
        history = order.get("history") or []
        accepted = next((_at(h.get("at")) for h in history if h.get("status") == "ACCEPTED"), None)
        final = next((_at(h.get("at")) for h in history if h.get("status") in ("FILLED", "REJECTED")), None)
        if accepted and final:
            wait = (final - accepted).total_seconds()
            waits.append(wait)
            if wait > delayed_after:
                delayed += 1
    owed = sum((Decimal(str(r.get("amount") or 0)) for r in reimbursements), Decimal("0"))
    approved = sum((Decimal(str(r.get("amount") or 0)) for r in reimbursements
                    if str(r.get("status", "")).lower() in ("approved", "paid")), Decimal("0"))
    longest = max(waits) if waits else figures.get("max_oldest_pending_seconds")
    return {
        "orders_placed": figures.get("orders_placed", len(orders) or None),
        "orders_delayed": delayed if orders else None,
        "delayed_after_seconds": delayed_after,
        "longest_wait_seconds": round(float(longest), 3) if longest is not None else None,
        "orders_lost": figures.get("orders_lost"),
        "orders_filled_twice": figures.get("orders_filled_twice"),
        "max_exposure_gbp": _money(figures.get("max_exposure_gbp")),
        "reimbursements_owed_gbp": _money(figures.get("reimbursements_owed_gbp")) if not reimbursements
        else _money(owed),
        "reimbursements_approved_gbp": _money(approved),
        "reimbursements": len(reimbursements),
        "fault_window": {"from": window[0], "until": window[1]},
    }


def _people(audit: Sequence[Mapping[str, Any]], drill_approvals: Sequence[Mapping[str, Any]], *,
            drill: bool) -> dict[str, Any]:
    """Who executed and who approved each step, their identity source, and whether it was automated."""
    rows: list[dict[str, Any]] = []
    for record in audit:
        action = PEOPLE_ACTIONS.get(str(record.get("kind") or ""))
        if action is None:
            continue
        data = record.get("data") or {}
        source = record.get("identity_source")
        automated = source == "drill" or "automated in a drill" in str(data)
        rows.append({"at": record.get("at"), "step": record.get("step_id"), "action": action,
                     "identity": record.get("actor"), "identity_source": source, "automated": automated,
                     "reason": data.get("reason") if isinstance(data, Mapping) else None})
    if not any(r["action"] == "approved" for r in rows):
        # A drill's audit excerpt can be empty (a scenario without a runbook); its approvals list still counts.
        for approval in drill_approvals:
            rows.append({"at": approval.get("at"), "step": approval.get("step") or approval.get("step_id"),
                         "action": "approved", "identity": approval.get("identity"),
                         "identity_source": approval.get("source"), "automated": True,
                         "reason": approval.get("reason")})
    rows = [r for r in rows if r.get("identity")]
    rows.sort(key=lambda r: str(r.get("at") or ""))
    approvals = [r for r in rows if r["action"] == "approved"]
    human = bool(approvals) and not drill and all(not r["automated"] for r in approvals)
    return {"rows": rows, "human_four_eyes": human,
            "automated_approvals": sum(1 for r in approvals if r["automated"]),
            "note": ("Approvals in a drill are automated drill approvals (identity source 'drill'): they exercise the "
                     "runbook's four-eyes rule but are not human four-eyes.") if drill else
                    "Approvals are decisions of the named people, checked against the roster."}


def _tolerance(catalogue: Mapping[str, Any], results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    by_name = {r["figure"]: r for r in results}
    out: list[dict[str, Any]] = []
    for item in catalogue.get("impact_tolerance") or []:
        rows = [by_name[f] for f in item.get("figures") or [] if f in by_name]
        judged = [r for r in rows if r.get("passed") is not None]
        out.append({"metric": item.get("metric"), "statement": item.get("statement"), "figures": rows,
                    "within": all(r["passed"] for r in judged) if judged else None})
    return out


def headline(model: Mapping[str, Any]) -> dict[str, Any]:
    """The figures the index shows for one report."""
    figures = model.get("figures") or {}
    return {"time_to_detect": figures.get("time_to_detect"), "time_to_recover": figures.get(RECOVERY_FIGURE),
            "orders_placed": figures.get("orders_placed"), "orders_lost": figures.get("orders_lost"),
            "orders_filled_twice": figures.get("orders_filled_twice"),
            "max_exposure_gbp": figures.get("max_exposure_gbp")}


def _finished(model: Evidence, secrets: Iterable[str]) -> Evidence:
    """The model with its headline, every secret cut out."""
    model["headline"] = headline(model)
    redacted: Evidence = redact(model, secrets)
    return redacted


def _annotations(annotations: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return list(annotations.get("vulnerabilities") or []), list(annotations.get("lessons") or [])


def drill_evidence(*, result: Mapping[str, Any], journal: Mapping[str, Any], events: Sequence[Mapping[str, Any]],
                   audit: Sequence[Mapping[str, Any]], orders: Sequence[Mapping[str, Any]],
                   files: Sequence[FileDigest], annotations: Mapping[str, Any], catalogue: Mapping[str, Any],
                   environment: str, generated_at: str, generated_by: str, version: str,
                   secrets: Iterable[str] = ()) -> Evidence:
    """The evidence model of one drill run, from its run folder's contents."""
    scenario_name = str(result.get("scenario"))
    facts, phase = _phase(catalogue, scenario_name)
    figures = dict(result.get("figures") or {})
    checks = {c["figure"]: c for c in result.get("checks") or []}
    results = [_result_row(name, figures.get(name), (checks.get(name) or {}).get("tolerance"),
                           (checks.get(name) or {}).get("passed")) for name in FIGURE_LABELS]
    results += [_result_row(name, c.get("measured"), c.get("tolerance"), c.get("passed"))
                for name, c in checks.items() if name not in FIGURE_LABELS]
    fault = dict(result.get("fault") or {})
    load = dict(result.get("load") or {})
    by_provider = (load.get("orders") or {}).get("by_provider") or {}
    vulnerabilities, lessons = _annotations(annotations)
    approvals = (result.get("drill_approvals") or {}).get("approvals") or []
    model: Evidence = {
        "schema_version": SCHEMA_VERSION, "kind": "drill", "id": str(result.get("run_id") or scenario_name),
        "title": f"Scenario test: {result.get('title') or scenario_name}",
        "generated_at": generated_at, "generated_by": generated_by, "tradeops_version": version,
        "passed": bool(result.get("passed")),
        "verdict": "within tolerance" if result.get("passed") else "outside tolerance",
        "service": dict(catalogue.get("service") or {}),
        "tolerance": _tolerance(catalogue, results),
        "scenario": {
            "name": scenario_name, "title": result.get("title"),
            "description": str((journal.get("experiment") or {}).get("description") or "").strip(),
            "plausible": facts.get("plausible"),
            "test_type": "simulation" if environment == "local" else "live systems",
            "environment": environment,
            "assumptions": list(facts.get("assumptions") or []),
            "load": {"scenario": load.get("scenario"), "rate": load.get("rate")},
            "started_at": result.get("started_at"), "ended_at": result.get("ended_at"),
            "journal": result.get("journal") or {},
            "stop_conditions": result.get("stop_conditions") or {},
        },
        "third_parties": [{"provider": p.get("provider"), "role": p.get("role"),
                           "engagement": p.get("engagement_drill"), "orders_filled": by_provider.get(p.get("provider")),
                           "faulted": p.get("provider") == fault.get("provider")}
                          for p in catalogue.get("third_parties") or []],
        "timeline": timeline_of_drill(result, events, audit, journal),
        "results": results,
        "figures": figures,
        "fault": fault,
        "customer_impact": customer_impact(figures, orders, [], delayed_after=_delay_bound(result),
                                           window=(fault.get("started_at"), fault.get("healed_at"))),
        "people": _people(audit, approvals, drill=True),
        "vulnerabilities": vulnerabilities,
        "lessons": lessons,
        "raci": phase,
        "evidence": list(files),
    }
    return _finished(model, secrets)


def _delay_bound(result: Mapping[str, Any]) -> float:
    """An order counts as delayed when it took longer than 2 s from acceptance to its outcome: ten times a
    normal fill on the local stack, well inside what a customer notices."""
    return 2.0


DETECT_KINDS = ("breaker_opened", "broker_suspect")


def _episode_start(events: Sequence[Mapping[str, Any]], started: str) -> list[Mapping[str, Any]]:
    """The detections of the outage the runbook answered, oldest first: those after the last time a breaker closed
    before the runbook started (earlier openings in the window belong to an earlier, healed episode)."""
    ordered = sorted(events, key=lambda e: str(e.get("at")))
    before = [e for e in ordered if str(e.get("at")) <= started]
    healed = max((str(e.get("at")) for e in before if e.get("kind") == "breaker_closed"), default="")
    found = [e for e in before if e.get("kind") in DETECT_KINDS and str(e.get("at")) > healed]
    return found or [e for e in ordered if e.get("kind") in DETECT_KINDS]


def _switched_broker(data: Any) -> bool:
    """Whether a finished step's record shows its action moved order execution to the other broker."""
    action = ((data.get("output") or {}).get("action") or {}) if isinstance(data, Mapping) else {}
    moved = action.get("output") or {}
    return bool(action.get("action") == SET_ACTIVE_BROKER and isinstance(moved, Mapping)
                and moved.get("previous") != moved.get("value"))


def incident_evidence(*, history: Mapping[str, Any], orders: Sequence[Mapping[str, Any]],
                      events: Sequence[Mapping[str, Any]], reimbursements: Sequence[Mapping[str, Any]],
                      exposure: Sequence[Mapping[str, Any]], catalogue: Mapping[str, Any],
                      tolerance_seconds: float, generated_at: str, generated_by: str, version: str,
                      files: Sequence[FileDigest] = (), annotations: Mapping[str, Any] | None = None,
                      secrets: Iterable[str] = ()) -> Evidence:
    """The evidence model of a real failover: a runbook execution, its audit timeline, and the orders,
    routing events, exposure samples and reimbursements of its window."""
    execution = dict(history.get("execution") or {})
    timeline_records = list(history.get("timeline") or [])
    execution_id = str(execution.get("execution_id"))
    started = execution.get("created_at") or execution.get("started_at")
    ended = execution.get("finished_at") or execution.get("updated_at")
    _facts, phase = _phase(catalogue, "incident")
    rows: list[dict[str, Any]] = []
    for record in timeline_records:
        kind = str(record.get("kind"))
        data = record.get("data") or {}
        status = data.get("status") if isinstance(data, Mapping) else None
        milestone = {ev.EXECUTION_STARTED: "runbook started", ev.EXECUTION_ABORTED: "runbook aborted"}.get(kind)
        if kind == ev.EXECUTION_FINISHED:
            milestone = "recovered" if status == COMPLETED else f"runbook ended {status}"
        elif kind == ev.STEP_FINISHED and status == SUCCEEDED and _switched_broker(data):
            milestone = "failed over"  # the switch of the active broker is the failover itself
        if kind not in (ev.STEP_STARTED, ev.STEP_FINISHED, ev.EXECUTION_STARTED, ev.EXECUTION_FINISHED,
                        ev.APPROVAL_APPROVED, ev.APPROVAL_REJECTED, ev.APPROVAL_REQUESTED, ev.EXECUTION_ABORTED,
                        ev.ACTION_FINISHED):
            continue
        rows.append({"at": record.get("at"), "milestone": milestone, "source": "audit",
                     "detail": f"{kind} {record.get('step_id') or ''} by {record.get('actor') or '-'}"
                               + (f": {status}" if status else "")})
    opened = _episode_start(events, str(started or ""))
    if opened:
        first = opened[0]
        rows.append({"at": first.get("at"), "milestone": "detected", "source": "events",
                     "detail": f"{first.get('kind')} {first.get('provider')} at {first.get('source')}"})
    for event in events:
        if event is not (opened[0] if opened else None):
            parts = [event.get("kind"), event.get("provider") or event.get("flag"), event.get("after"),
                     f"({event.get('actor') or event.get('source')})" if event.get("actor") or event.get("source")
                     else None]
            rows.append({"at": event.get("at"), "milestone": None, "source": "events",
                         "detail": " ".join(str(p) for p in parts if p not in (None, ""))})
    rows = sorted((r for r in rows if r.get("at")), key=lambda r: str(r["at"]))
    exposures = [Decimal(str(s.get("total_exposure") or s.get("exposure_gbp") or 0)) for s in exposure]
    impact_figures: dict[str, Any] = {"orders_placed": len(orders),
                                      "max_exposure_gbp": str(max(exposures)) if exposures else None,
                                      "orders_lost": None, "orders_filled_twice":
                                          sum(1 for o in orders if o.get("double_execution"))}
    impact = customer_impact(impact_figures, orders, reimbursements, delayed_after=2.0, window=(started, ended))
    detected_at = opened[0].get("at") if opened else started
    outage = None
    if _at(detected_at) and _at(ended):
        outage = round(((_at(ended) or datetime.min) - (_at(detected_at) or datetime.min)).total_seconds(), 3)
    longest = impact.get("longest_wait_seconds")
    results = [
        _result_row("incident_duration_seconds", outage, f"<= {tolerance_seconds:g}",
                    None if outage is None else outage <= tolerance_seconds),
        _result_row("longest_wait_seconds", longest, f"<= {tolerance_seconds:g}",
                    None if longest is None else longest <= tolerance_seconds),
        _result_row("orders_filled_twice", impact_figures["orders_filled_twice"], "== 0",
                    impact_figures["orders_filled_twice"] == 0),
    ]
    results[0]["label"], results[0]["unit"] = "time from detection to the runbook's end", "s"
    results[1]["label"], results[1]["unit"] = "longest wait of an order", "s"
    outside = [r["label"] for r in results if r["passed"] is False]
    vulnerabilities, lessons = _annotations(annotations or {})
    verdict = execution.get("status") or execution.get("verdict")
    model: Evidence = {
        "schema_version": SCHEMA_VERSION, "kind": "incident", "id": execution_id,
        "title": f"Incident report: {execution.get('runbook') or 'runbook'} execution {execution_id}",
        "generated_at": generated_at, "generated_by": generated_by, "tradeops_version": version,
        "passed": not outside, "verdict": "within tolerance" if not outside else "outside tolerance",
        "service": dict(catalogue.get("service") or {}),
        "tolerance": [*_tolerance(catalogue, results),
                      {"metric": "time outside tolerance", "figures": results[:2], "within": not outside,
                       "statement": f"{tolerance_seconds:g} s from detection to recovery"}],
        "scenario": {"name": "incident", "title": f"A real failover: {execution.get('runbook')}",
                     "description": f"Runbook {execution.get('runbook')} run by {execution.get('executor') or '-'}; "
                                    f"its outcome: {verdict}.",
                     "plausible": "Not a test: a real disruption handled by operations.",
                     "test_type": "live incident", "environment": "production" , "assumptions": [],
                     "params": execution.get("params") or {}, "started_at": started, "ended_at": ended,
                     "outside_tolerance": outside},
        "third_parties": [{"provider": p.get("provider"), "role": p.get("role"),
                           "engagement": p.get("engagement_incident"),
                           "orders_filled": sum(1 for o in orders if o.get("provider") == p.get("provider")
                                                and o.get("status") == "FILLED"), "faulted": None}
                          for p in catalogue.get("third_parties") or []],
        "timeline": rows,
        "results": results,
        "figures": {"incident_duration_seconds": outage, "longest_wait_seconds": longest,
                    **impact_figures},
        "fault": {"started_at": detected_at, "healed_at": ended, "provider": opened[0].get("provider") if opened
                  else None},
        "customer_impact": impact,
        "people": _people(timeline_records, [], drill=False),
        "vulnerabilities": vulnerabilities,
        "lessons": lessons,
        "raci": phase,
        "evidence": list(files),
    }
    return _finished(model, secrets)
