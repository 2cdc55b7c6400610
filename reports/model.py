"""The evidence model: one document per drill run or incident, from which every format is rendered. Pure.

:mod:`tradeops.reports.build` reads the run folder (or a runbook execution and its orders) and hands
plain values to the functions here; they return the model as plain JSON-ready data (the
:class:`Evidence` shape), which is saved as ``evidence.json`` and rendered to HTML, Markdown and PDF
by :mod:`tradeops.reports.render`. Nothing here reads a clock, a file or AWS: ``generated_at`` and
every time come in as arguments, so the same inputs always give the same model.

Every figure is computed once, into ``figures`` (:mod:`tradeops.reports.measures`: label, unit, value,
the text every format shows, and what it was measured from); every section refers to those records.

Sections (:data:`SECTIONS`, in the order shown) follow SYSC 15A.5 and SYSC 15A.6.1R: an executive
summary (the service, the scenario, the verdict per tolerance metric, open vulnerabilities, the
sign-off state); the important business service and why it is important; the impact tolerance,
each metric measured as stated and judged with its headroom; the engineering targets and the RTO,
apart; the scenario (severe but plausible, test type, assumptions); the third parties; the timeline
(fault injected, detected, failed over, healed, back on the primary); customer impact; the people who
executed and approved each step (an automated drill approval is never shown as human four-eyes);
vulnerabilities; lessons; the RACI of the phase exercised; the sign-off; and the evidence appendix
(every file of the run with its SHA-256).

Secrets never enter the model: :func:`~tradeops.reports.redaction.redact` runs over it, so a bearer
token or broker key planted in a journal or an audit record cannot reach a report. The document's
digest (what a sign-off binds, :func:`tradeops.reports.signoff.document_digest`) is taken after that,
over what is saved.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypedDict

from tradeops.drillresult.figures import FIGURES
from tradeops.reports import incidentfacts as facts
from tradeops.reports import measures
from tradeops.reports.redaction import redact
from tradeops.reports.signoff import DRAFT, Policy, Signature, document_digest, standing
from tradeops.runbooks import eventkinds as ev
from tradeops.runbooks.states import COMPLETED, SUCCEEDED
from tradeops.runtime.orderpath.states import FILLED
from tradeops.runtime.platform.clock import iso, parse_iso

__all__ = [
    "SCHEMA_VERSION",
    "SECTIONS",
    "Evidence",
    "FileDigest",
    "document_id",
    "drill_evidence",
    "headline",
    "incident_evidence",
    "plan_entry",
    "signoff_of",
    "timeline_of_drill",
]

SCHEMA_VERSION = 2

SECTIONS = ("summary", "service", "tolerance", "results", "scenario", "third_parties", "timeline",
            "customer_impact", "people", "vulnerabilities", "lessons", "raci", "signoff", "evidence")
"""Every section a report has, in the order it is shown (a test checks each one is rendered)."""

PEOPLE_ACTIONS = {ev.EXECUTION_STARTED: "started the runbook", ev.STEP_STARTED: "executed",
                  ev.APPROVAL_APPROVED: "approved", ev.APPROVAL_REJECTED: "rejected",
                  ev.APPROVAL_WITHDRAWN: "withdrew approval",
                  ev.EXECUTION_ABORTED: "aborted"}
"""Audit record kinds that show a person acting, and how the report words each."""

FAILOVER_FIGURE = "time_to_99pct_secondary"
"""What the index trends as "time to fail over": from the fault until new orders flow at the secondary."""

MONEY_FIGURES = ("max_exposure_gbp", "reimbursements_owed_gbp", "reimbursements_approved_gbp")
OWED_NOTE = ("Exposure is the adverse price move of orders still waiting, sampled each second; reimbursements "
             "are owed for each fill at a worse price than the quote the customer was shown. An order that "
             "waits less than a second is rarely seen by a sample, yet may be owed money: the two measure "
             "different things and both are shown.")


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
    verdict: str  # "within tolerance" / "outside tolerance" / "not judged in full"
    verdict_text: str
    passed: bool | None  # the impact tolerance's verdict (None: not judged in full)
    drill_passed: bool  # a drill's own verdict: its engineering targets and its journal
    summary: dict[str, Any]
    service: dict[str, Any]
    figures: dict[str, dict[str, Any]]
    tolerance: list[dict[str, Any]]
    engineering: dict[str, Any]
    results: list[dict[str, Any]]
    scenario: dict[str, Any]
    third_parties: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    customer_impact: dict[str, Any]
    people: dict[str, Any]
    vulnerabilities: list[dict[str, Any]]
    lessons: list[dict[str, Any]]
    raci: dict[str, Any]
    signoff: dict[str, Any]
    evidence: list[FileDigest]
    fault: dict[str, Any]
    headline: dict[str, Any]
    document: dict[str, Any]


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


def _result_row(record: Mapping[str, Any], tolerance: str | None, passed: bool | None) -> dict[str, Any]:
    return {"figure": record["name"], "label": record["label"], "unit": record["unit"], "measured": record["value"],
            "tolerance": tolerance, "passed": passed}


def _phase(catalogue: Mapping[str, Any], scenario: str) -> tuple[dict[str, Any], dict[str, Any]]:
    scenarios = catalogue.get("scenarios") or {}
    facts = {**(scenarios.get("default") or {}), **(scenarios.get(scenario) or {})}
    phase_name = str(facts.get("phase", "automated"))
    phase = dict((catalogue.get("phases") or {}).get(phase_name) or {})
    return facts, {"phase": phase_name, **phase}


def plan_entry(catalogue: Mapping[str, Any], scenario: str) -> dict[str, Any] | None:
    """The testing plan's entry for a drill scenario (by its experiment), or None when the plan has none."""
    for entry in (catalogue.get("testing_plan") or {}).get("scenarios") or []:
        if entry.get("experiment") == scenario or entry.get("name") == scenario:
            return dict(entry)
    return None


_LABEL = re.compile(r"^\s*severe but plausible\s*:\s*", re.I)


def _description(text: Any) -> str:
    """The experiment's description without its leading "Severe but plausible:" label: the report says why the
    scenario is severe but plausible once, from the testing plan."""
    cleaned = _LABEL.sub("", str(text or "").strip())
    return cleaned[:1].upper() + cleaned[1:]


def document_id(kind: str, ident: str) -> str:
    """The id a sign-off names a report by: ``drill:<run id>``, ``incident:<execution id>``."""
    return f"{kind}:{ident}"


def _tolerance_items(catalogue: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(t.get("metric")): dict(t) for t in catalogue.get("impact_tolerance") or []}


def _time_limit(catalogue: Mapping[str, Any]) -> float:
    limit = (_tolerance_items(catalogue).get("time") or {}).get("limit")
    return float(limit) if limit is not None else 1800.0


def _judged_tolerance(catalogue: Mapping[str, Any], figures: Mapping[str, Mapping[str, Any]],
                      judgements: Mapping[str, measures.Judgement]) -> list[dict[str, Any]]:
    measured = {"time": ["longest_wait_seconds"], "customers affected": ["orders_affected"],
                "money at risk": list(MONEY_FIGURES)}
    rows: list[dict[str, Any]] = []
    for metric, item in _tolerance_items(catalogue).items():
        names = [n for n in measured.get(metric, [str(item.get("measure"))]) if n in figures]
        measure = str(item.get("measure") or (names[0] if names else ""))
        rows.append({"metric": metric, "statement": item.get("statement"), "justification": item.get("justification"),
                     "measure": measure, "definition": measures.DEFINITIONS.get(measure, ""), "figures": names,
                     **judgements[metric].as_dict()})
    return rows


def _judge(catalogue: Mapping[str, Any], figures: Mapping[str, Mapping[str, Any]], *,
           thresholds: Mapping[str, Decimal], approvals_recorded: bool) -> dict[str, measures.Judgement]:
    items = _tolerance_items(catalogue)
    limit_orders = (items.get("customers affected") or {}).get("limit")
    money_limit = (items.get("money at risk") or {}).get("limit")
    threshold = Decimal(str(money_limit)) if money_limit is not None else thresholds.get("alert threshold")
    judgements = {
        "time": measures.judge_time(figures["longest_wait_seconds"]["value"], _time_limit(catalogue)),
        "customers affected": measures.judge_orders(figures["orders_affected"]["value"],
                                                    int(limit_orders) if limit_orders is not None else 0),
        "money at risk": measures.judge_money(exposure=figures["max_exposure_gbp"]["value"], threshold=threshold,
                                              owed=figures["reimbursements_owed_gbp"]["value"],
                                              approved=figures["reimbursements_approved_gbp"]["value"],
                                              approvals_recorded=approvals_recorded),
    }
    return {metric: judgements[metric] for metric in items if metric in judgements}


def _rto(phase: Mapping[str, Any], figures: Mapping[str, Mapping[str, Any]], measured_by: str) -> dict[str, Any]:
    """The recovery time objective of the phase exercised, judged against the figure that measures it."""
    rto = dict(phase.get("rto") or {})
    seconds = rto.get("seconds")
    value = (figures.get(measured_by) or {}).get("value")
    within = None if seconds is None or value is None else float(value) <= float(seconds)
    why = ("the RTO of this phase has no number: it depends on the broker's own recovery" if seconds is None else
           "not measured in this run" if value is None else "")
    return {"statement": rto.get("statement"), "seconds": seconds,
            "limit": measures.duration_text(float(seconds)) if seconds is not None else None,
            "figure": measured_by, "within": within, "reason": why}


def _summary(model: Mapping[str, Any]) -> dict[str, Any]:
    open_ = [v for v in model.get("vulnerabilities") or [] if v.get("status") != "closed"]
    scenario = model.get("scenario") or {}
    return {"service": (model.get("service") or {}).get("name"), "scenario": scenario.get("title"),
            "scenario_name": scenario.get("name"), "test_type": scenario.get("test_type"),
            "verdict": model.get("verdict"), "verdict_text": model.get("verdict_text"),
            "tolerance": [{"metric": t["metric"], "verdict": t["verdict"], "within": t["within"],
                           "figure": (t["figures"] or [None])[0], "limit": t["limit"], "headroom": t["headroom"],
                           "reason": t["reason"]} for t in model.get("tolerance") or []],
            "vulnerabilities_open": len(open_),
            "vulnerabilities_open_high": sum(1 for v in open_ if v.get("severity") in ("high", "critical"))}


# ---- sections --------------------------------------------------------------------------------------
def timeline_of_drill(result: Mapping[str, Any], events: Sequence[Mapping[str, Any]],
                      audit: Sequence[Mapping[str, Any]], journal: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The drill's timeline: its milestones (fault injected, detected, failed over, healed, back on the primary)
    and every journal activity, routing event and audit record, oldest first."""
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
    failed_over = _plus(start, figures.get(FAILOVER_FIGURE))
    if failed_over:
        rows.append({"at": failed_over, "milestone": "failed over", "source": "orders",
                     "detail": "99% of new orders went to the secondary from here"})
    if healed:
        rows.append({"at": healed, "milestone": "fault healed", "source": "journal", "detail": "the fault was cleared"})
    back = _plus(healed, figures.get("time_back_on_primary"))
    if back:
        rows.append({"at": back, "milestone": "back on the primary", "source": "orders",
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


def _customer_impact(figures: Mapping[str, Mapping[str, Any]], *, reimbursements: int | None,
                     window: tuple[str | None, str | None]) -> dict[str, Any]:
    """Customer impact: the figures' values (the same records every section shows), the fault window, and why
    owed and exposure differ."""
    names = ("orders_placed", "orders_affected", "orders_delayed", "longest_wait_seconds", "orders_lost",
             "orders_filled_twice", *MONEY_FIGURES)
    return {**{n: figures[n]["value"] for n in names}, "figures": list(names),
            "delayed_after_seconds": measures.DELAYED_AFTER_SECONDS, "reimbursements": reimbursements,
            "fault_window": {"from": window[0], "until": window[1]}, "note": OWED_NOTE}


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


def _third_parties(catalogue: Mapping[str, Any], *, engagement: str, filled: Mapping[str, Any],
                   faulted: str | None) -> list[dict[str, Any]]:
    out = []
    for p in catalogue.get("third_parties") or []:
        provider = p.get("provider")
        out.append({"provider": provider, "kind": p.get("kind"), "role": p.get("role"),
                    "engagement": (p.get("engagement") or {}).get(engagement),
                    "orders_filled": filled.get(provider) if p.get("kind") == "broker" else None,
                    "faulted": None if faulted is None and engagement == "incident" else provider == faulted,
                    "contract": dict(p.get("contract") or {}), "sandbox": dict(p.get("sandbox") or {}),
                    "substitution": dict(p.get("substitution") or {})})
    return out


def headline(model: Mapping[str, Any]) -> dict[str, Any]:
    """The figures the index shows for one report."""
    figures = model.get("figures") or {}

    def value(name: str) -> Any:
        return (figures.get(name) or {}).get("value")

    return {"time_to_detect": value("time_to_detect"), "time_to_fail_over": value(FAILOVER_FIGURE),
            "longest_wait_seconds": value("longest_wait_seconds"), "orders_placed": value("orders_placed"),
            "orders_lost": value("orders_lost"), "orders_filled_twice": value("orders_filled_twice"),
            "max_exposure_gbp": value("max_exposure_gbp")}


def signoff_of(model: Mapping[str, Any], catalogue: Mapping[str, Any],
               signatures: Sequence[Signature] | None) -> dict[str, Any]:
    """Where the document stands; when the signatures were not read (no stack or AWS target at hand), a draft
    that says so."""
    digest = document_digest(model)
    if signatures is None:
        return {"state": DRAFT, "sha256": digest, "signatures": [], "void": [], "read": False}
    return standing(Policy.from_catalogue(catalogue), digest, signatures)


def _finished(model: Evidence, catalogue: Mapping[str, Any], secrets: Iterable[str],
              signatures: Sequence[Signature] | None) -> Evidence:
    """The model with its headline and summary, every secret cut out, its digest and its sign-off state."""
    model["headline"] = headline(model)
    model["summary"] = _summary(model)
    redacted: Evidence = redact(model, secrets)
    redacted["document"] = {"id": document_id(redacted["kind"], redacted["id"]), "sha256": document_digest(redacted)}
    # The sign-off stands beside the document, never in it: what a signature binds cannot depend on it.
    redacted["signoff"] = signoff_of(redacted, catalogue, signatures)
    return redacted


def _annotations(annotations: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return list(annotations.get("vulnerabilities") or []), list(annotations.get("lessons") or [])


def _drill_figures(result: Mapping[str, Any], orders: Sequence[Mapping[str, Any]], load_summary: Mapping[str, Any],
                   limit_seconds: float) -> dict[str, dict[str, Any]]:
    measured = dict(result.get("figures") or {})
    began, ended = _at(result.get("started_at")), _at(result.get("ended_at"))
    span = (ended - began).total_seconds() if began and ended else None
    waits = measures.waits_of_run(orders, placed=measured.get("orders_placed"), filled=measured.get("orders_filled"),
                                  rejected=measured.get("orders_rejected"),
                                  time_to_fill=load_summary.get("time_to_fill"), ended_at=result.get("ended_at"),
                                  limit_seconds=limit_seconds, span_seconds=span)
    figures = {name: measures.figure(name, measured.get(name), "result.json: measured by the drill")
               for name in FIGURES}
    affected, counted = measures.affected_orders(measured, waits.over_limit)
    figures["longest_wait_seconds"] = measures.figure("longest_wait_seconds", waits.longest, waits.source)
    figures["orders_delayed"] = measures.figure("orders_delayed", waits.delayed, waits.delayed_source)
    figures["orders_affected"] = measures.figure("orders_affected", affected, counted)
    figures["reimbursements_approved_gbp"] = measures.figure(
        "reimbursements_approved_gbp", None, "a drill does not record them: its customers are simulated and finance "
                                             "decides nothing for them")
    return figures


def drill_evidence(*, result: Mapping[str, Any], journal: Mapping[str, Any], events: Sequence[Mapping[str, Any]],
                   audit: Sequence[Mapping[str, Any]], orders: Sequence[Mapping[str, Any]],
                   files: Sequence[FileDigest], annotations: Mapping[str, Any], catalogue: Mapping[str, Any],
                   environment: str, generated_at: str, generated_by: str, version: str,
                   load_summary: Mapping[str, Any] | None = None, thresholds: Mapping[str, Decimal] | None = None,
                   signatures: Sequence[Signature] | None = None, secrets: Iterable[str] = ()) -> Evidence:
    """The evidence model of one drill run, from its run folder's contents."""
    scenario_name = str(result.get("scenario"))
    facts, phase = _phase(catalogue, scenario_name)
    plan = plan_entry(catalogue, scenario_name)
    figures = _drill_figures(result, orders, load_summary or {}, _time_limit(catalogue))
    checks = {c["figure"]: c for c in result.get("checks") or []}
    results = [_result_row(figures[name], (checks.get(name) or {}).get("tolerance"),
                           (checks.get(name) or {}).get("passed")) for name in FIGURES]
    results += [{"figure": name, "label": c.get("label") or name, "unit": "", "measured": c.get("measured"),
                 "tolerance": c.get("tolerance"), "passed": c.get("passed")}
                for name, c in checks.items() if name not in FIGURES]
    judgements = _judge(catalogue, figures, thresholds=thresholds or {}, approvals_recorded=False)
    verdict, passed, verdict_text = measures.overall_verdict(judgements)
    fault = dict(result.get("fault") or {})
    load = dict(result.get("load") or {})
    by_provider = (load.get("orders") or {}).get("by_provider") or {}
    vulnerabilities, lessons = _annotations(annotations)
    approvals = (result.get("drill_approvals") or {}).get("approvals") or []
    model: Evidence = {
        "schema_version": SCHEMA_VERSION, "kind": "drill", "id": str(result.get("run_id") or scenario_name),
        "title": f"Scenario test: {result.get('title') or scenario_name}",
        "generated_at": generated_at, "generated_by": generated_by, "tradeops_version": version,
        "verdict": verdict, "verdict_text": verdict_text, "passed": passed,
        "drill_passed": bool(result.get("passed")),
        "service": dict(catalogue.get("service") or {}),
        "figures": figures,
        "tolerance": _judged_tolerance(catalogue, figures, judgements),
        "engineering": {"targets": [{"figure": name, "tolerance": c.get("tolerance"), "passed": c.get("passed")}
                                    for name, c in checks.items()],
                        "drill_passed": bool(result.get("passed")), "failures": list(result.get("failures") or []),
                        "rto": _rto(phase, figures, FAILOVER_FIGURE)},
        "results": results,
        "scenario": {
            "name": scenario_name, "title": result.get("title"),
            "description": _description((journal.get("experiment") or {}).get("description")),
            "plausible": (plan or {}).get("rationale"), "plan": plan,
            "test_type": "simulation" if environment == "local" else "live systems",
            "environment": environment,
            "assumptions": list(facts.get("assumptions") or []),
            "load": {"scenario": load.get("scenario"), "rate": load.get("rate")},
            "started_at": result.get("started_at"), "ended_at": result.get("ended_at"),
            "journal": result.get("journal") or {},
            "stop_conditions": result.get("stop_conditions") or {},
            "fault_backend": _fault_backend(result.get("fault_backend")),
            "not_checked": list((result.get("reconciliation") or {}).get("not_checked") or []),
        },
        "third_parties": _third_parties(catalogue, engagement="drill", filled=by_provider,
                                        faulted=fault.get("provider")),
        "timeline": timeline_of_drill(result, events, audit, journal),
        "fault": fault,
        "customer_impact": _customer_impact(figures, reimbursements=None,
                                            window=(fault.get("started_at"), fault.get("healed_at"))),
        "people": _people(audit, approvals, drill=True),
        "vulnerabilities": vulnerabilities,
        "lessons": lessons,
        "raci": phase,
        "evidence": list(files),
    }
    return _finished(model, catalogue, secrets, signatures)


# How each fault backend broke the path, in the report's words (tradeops.experiments.faultbackends).
FAULT_BACKENDS = {
    "sim": "the simulated brokers' own fault switch",
    "proxy": "a fault proxy between the workers and each broker, on a real network path",
    "fis": "AWS Fault Injection Service, against the worker tasks' network",
}


def _fault_backend(record: Any) -> dict[str, Any] | None:
    """The fault backend a drill injected through (None for a run folder older than backends)."""
    if not isinstance(record, dict) or not record.get("name"):
        return None
    name = str(record["name"])
    return {"name": name, "how": FAULT_BACKENDS.get(name, name), "why": record.get("why")}


def incident_evidence(*, history: Mapping[str, Any], orders: Sequence[Mapping[str, Any]],
                      events: Sequence[Mapping[str, Any]], reimbursements: Sequence[Mapping[str, Any]],
                      exposure: Sequence[Mapping[str, Any]], catalogue: Mapping[str, Any],
                      tolerance_seconds: float, generated_at: str, generated_by: str, version: str,
                      files: Sequence[FileDigest] = (), annotations: Mapping[str, Any] | None = None,
                      thresholds: Mapping[str, Decimal] | None = None,
                      signatures: Sequence[Signature] | None = None, secrets: Iterable[str] = ()) -> Evidence:
    """The evidence model of a real failover: a runbook execution, its audit timeline, and the orders,
    routing events, exposure samples and reimbursements of its window. ``tolerance_seconds`` is the runbook's
    own bound on the outage (its RTO); the impact tolerance is the catalogue's."""
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
        elif kind == ev.STEP_FINISHED and status == SUCCEEDED and facts.switched_broker(data):
            milestone = "failed over"  # the switch of the active broker is the failover itself
        if kind not in (ev.STEP_STARTED, ev.STEP_FINISHED, ev.EXECUTION_STARTED, ev.EXECUTION_FINISHED,
                        ev.APPROVAL_APPROVED, ev.APPROVAL_REJECTED, ev.APPROVAL_REQUESTED, ev.EXECUTION_ABORTED,
                        ev.ACTION_FINISHED):
            continue
        rows.append({"at": record.get("at"), "milestone": milestone, "source": "audit",
                     "detail": f"{kind} {record.get('step_id') or ''} by {record.get('actor') or '-'}"
                               + (f": {status}" if status else "")})
    opened = facts.episode_start(events, str(started or ""))
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
    detected_at = opened[0].get("at") if opened else started
    outage = None
    if _at(detected_at) and _at(ended):
        outage = round(((_at(ended) or datetime.min) - (_at(detected_at) or datetime.min)).total_seconds(), 3)
    figures = facts.incident_figures(orders, reimbursements, exposure, outage=outage, ended=ended,
                                limit_seconds=_time_limit(catalogue))
    longest = figures["longest_wait_seconds"]["value"]
    results = [
        _result_row(figures["incident_duration_seconds"], f"<= {tolerance_seconds:g}",
                    None if outage is None else outage <= tolerance_seconds),
        _result_row(figures["longest_wait_seconds"], f"<= {tolerance_seconds:g}",
                    None if longest is None else longest <= tolerance_seconds),
        _result_row(figures["orders_filled_twice"], "== 0", figures["orders_filled_twice"]["value"] == 0),
    ]
    judgements = _judge(catalogue, figures, thresholds=thresholds or {}, approvals_recorded=True)
    verdict, passed, verdict_text = measures.overall_verdict(judgements)
    outside = [r["label"] for r in results if r["passed"] is False]
    vulnerabilities, lessons = _annotations(annotations or {})
    runbook_verdict = execution.get("status") or execution.get("verdict")
    model: Evidence = {
        "schema_version": SCHEMA_VERSION, "kind": "incident", "id": execution_id,
        "title": f"Incident report: {execution.get('runbook') or 'runbook'} execution {execution_id}",
        "generated_at": generated_at, "generated_by": generated_by, "tradeops_version": version,
        "verdict": verdict, "verdict_text": verdict_text, "passed": passed,
        "service": dict(catalogue.get("service") or {}),
        "figures": figures,
        "tolerance": _judged_tolerance(catalogue, figures, judgements),
        "engineering": {"targets": [{"figure": r["figure"], "tolerance": r["tolerance"], "passed": r["passed"]}
                                    for r in results],
                        "rto": {**_rto(phase, figures, "incident_duration_seconds"),
                                "runbook_bound": f"{tolerance_seconds:g} s"}},
        "results": results,
        "scenario": {"name": "incident", "title": f"A real failover: {execution.get('runbook')}",
                     "description": f"Runbook {execution.get('runbook')} run by {execution.get('executor') or '-'}; "
                                    f"its outcome: {runbook_verdict}.",
                     "plausible": "Not a test: a real disruption handled by operations.", "plan": None,
                     "test_type": "live incident", "environment": "production", "assumptions": [],
                     "params": execution.get("params") or {}, "started_at": started, "ended_at": ended,
                     "outside_tolerance": outside},
        "third_parties": _third_parties(
            catalogue, engagement="incident", faulted=None,
            filled={p.get("provider"): sum(1 for o in orders if o.get("provider") == p.get("provider")
                                           and o.get("status") == FILLED)
                    for p in catalogue.get("third_parties") or []}),
        "timeline": rows,
        "fault": {"started_at": detected_at, "healed_at": ended, "provider": opened[0].get("provider") if opened
                  else None},
        "customer_impact": _customer_impact(figures, reimbursements=len(reimbursements), window=(started, ended)),
        "people": _people(timeline_records, [], drill=False),
        "vulnerabilities": vulnerabilities,
        "lessons": lessons,
        "raci": phase,
        "evidence": list(files),
    }
    return _finished(model, catalogue, secrets, signatures)
