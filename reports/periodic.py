"""The period reports: execution quality per broker (COBS 11.2A) and the self-assessment. Pure.

:mod:`tradeops.reports.periodic_io` reads the orders, the report folders, the template and the
settings, and hands plain values here.

- **Execution quality** compares the brokers on fill latency (from the order's last submission to its
  fill, from the order's own history) and on slippage against the quote the customer was shown at
  placement, in basis points, signed so that a positive figure is worse for the client (a buy filled
  above the quote, a sell below it). The firm can show whether the secondary is worse for clients.
- **The self-assessment** is the written record SYSC 15A.6.1R asks the firm to make and keep up to
  date, one part per paragraph of the rule: (1) the service and why it is important; (2) each impact
  tolerance, why it is set there, how it is measured and its trend across the period's runs; (3) the
  mapping in its five categories and the third parties, with what it showed; (4) the testing plan,
  its justification and its coverage (planned against executed); (5) the tests run, with their
  assumptions and the risks they found; (6) the lessons; (7) the vulnerability register, each with its
  remedy, due date and why that date; (8) the communication strategy; (9) the methodology. Each
  version is kept (SYSC 15A.6.2R) and signed off (:mod:`tradeops.reports.signoff`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from tradeops.reports.measures import DEFINITIONS, LABELS
from tradeops.reports.plan import coverage
from tradeops.runtime.orderpath.states import FILLED, SUBMITTING
from tradeops.runtime.platform.clock import parse_iso

__all__ = ["METHODOLOGY", "execution_quality", "self_assessment", "slippage_bps", "tolerance_trend"]

BPS = Decimal("10000")


def slippage_bps(side: str, quote: Decimal, fill: Decimal) -> Decimal:
    """Slippage against the quote in basis points; positive is worse for the client."""
    if quote <= 0:
        raise ValueError("quote must be above 0")
    move = (fill - quote) if side.upper() == "BUY" else (quote - fill)
    return (move / quote * BPS).quantize(Decimal("0.01"))


def _percentile(values: Sequence[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _at(history: Sequence[Mapping[str, Any]], status: str, *, last: bool) -> Any:
    times = [parse_iso(str(h["at"])) for h in history if h.get("status") == status and h.get("at")]
    if not times:
        return None
    return max(times) if last else min(times)


def execution_quality(orders: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per broker: fills, latency (ms: p50, p95, max) and slippage (bps: mean, p50, p95, share improved), and the
    secondary's difference from the primary."""
    per: dict[str, dict[str, list[Any]]] = {}
    for order in orders:
        if order.get("status") != FILLED or order.get("synthetic") or not order.get("provider"):
            continue
        row = per.setdefault(str(order["provider"]), {"latency": [], "slippage": []})
        history = order.get("history") or []
        sent, filled = _at(history, SUBMITTING, last=True), _at(history, FILLED, last=False)
        if sent is not None and filled is not None:
            row["latency"].append((filled - sent).total_seconds() * 1000)
        try:
            quote, fill = Decimal(str(order["quote_price"])), Decimal(str(order["fill_price"]))
            row["slippage"].append(slippage_bps(str(order.get("side", "BUY")), quote, fill))
        except (KeyError, InvalidOperation, ValueError):
            pass
    brokers: dict[str, dict[str, Any]] = {}
    for provider, row in sorted(per.items()):
        lat = [float(x) for x in row["latency"]]
        slip = row["slippage"]
        brokers[provider] = {
            "fills": max(len(lat), len(slip)),
            "latency_ms": {"p50": _round(_percentile(lat, 0.5)), "p95": _round(_percentile(lat, 0.95)),
                           "max": _round(max(lat) if lat else None)},
            "slippage_bps": {"mean": str((sum(slip, Decimal(0)) / len(slip)).quantize(Decimal("0.01")))
                             if slip else None,
                             "p50": str(_percentile(slip, 0.5)) if slip else None,
                             "p95": str(_percentile(slip, 0.95)) if slip else None,
                             "improved_share": round(sum(1 for s in slip if s < 0) / len(slip), 4) if slip else None},
        }
    comparison: dict[str, Any] = {"secondary_not_worse": None, "statement": "Both brokers need fills to compare."}
    if "primary" in brokers and "secondary" in brokers:
        p, s = brokers["primary"], brokers["secondary"]
        mean_p = Decimal(p["slippage_bps"]["mean"] or 0)
        mean_s = Decimal(s["slippage_bps"]["mean"] or 0)
        lat_p, lat_s = p["latency_ms"]["p50"], s["latency_ms"]["p50"]
        not_worse = mean_s <= mean_p
        comparison = {
            "slippage_difference_bps": str(mean_s - mean_p),
            "latency_p50_difference_ms": _round(lat_s - lat_p) if lat_p is not None and lat_s is not None else None,
            "secondary_not_worse": not_worse,
            "statement": (f"The secondary's mean slippage is {mean_s} bps against the primary's {mean_p} bps: "
                          + ("not worse for clients." if not_worse else "worse for clients; review the arrangement.")),
        }
    return {"brokers": brokers, "comparison": comparison}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# ---- the self-assessment ---------------------------------------------------------------------------
METHODOLOGY = [
    {"activity": "Identifying the service",
     "how": "The service and the justification of its importance are data (reports/service.yaml), judged against "
            "the factors of SYSC 15A.2.4G and reviewed with every version of this record."},
    {"activity": "Measuring the impact tolerance",
     "how": "Each metric is measured from the run's own orders and records as the tolerance states it (the "
            "longest wait against the time limit, orders affected against none, money at risk against the alert "
            "threshold and the approvals); a figure is never taken from an excerpt, and one that could not be "
            "measured leaves its metric not judged, never passed."},
    {"activity": "Mapping",
     "how": "People are the roles of the shared roster, processes the shipped runbooks, technology the resources "
            "of the deployed template and the processes of the stack, facilities and information as listed in "
            "reports/mapping.yaml; every vulnerability names the mapped resource it lives in."},
    {"activity": "Scenario testing",
     "how": "Simulation tests are Chaos Toolkit drills under load on the local stack or a test account, judged "
            "from their journal and measurements, never from the tool's exit code; paper tests are recorded by "
            "the firm. The plan's frequencies give the coverage: tests planned in the period against tests run."},
    {"activity": "Vulnerabilities and lessons",
     "how": "A vulnerability is opened from the run that found it and closed only on the evidence of a later run "
            "of the scenario that exposed it, whose result shows it fixed."},
    {"activity": "Keeping the record",
     "how": "Every version of this record is kept, with its SHA-256, and under S3 Object Lock in compliance mode "
            "when uploaded; reviews and approvals are records of the hash-chained, anchored audit log bound to "
            "that digest, so a changed record loses its sign-off."},
]
"""SYSC 15A.6.1R(9): the methodologies used."""


def _within(period_since: str, period_until: str, at: str) -> bool:
    return period_since <= at < period_until


def tolerance_trend(reports: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per impact tolerance metric, oldest run first: the run, its scenario, the measured figures and the verdict."""
    metrics: dict[str, list[dict[str, Any]]] = {}
    for ev in sorted(reports, key=lambda r: str((r.get("scenario") or {}).get("started_at") or "")):
        figures = ev.get("figures") or {}
        for row in ev.get("tolerance") or []:
            values = [{"name": n, "label": (figures.get(n) or {}).get("label", LABELS.get(n, (n, ""))[0]),
                       "shown": (figures.get(n) or {}).get("shown", "not measured")}
                      for n in row.get("figures") or [] if isinstance(figures.get(n), Mapping)]
            metrics.setdefault(str(row.get("metric")), []).append(
                {"run": ev.get("id"), "kind": ev.get("kind"), "scenario": (ev.get("scenario") or {}).get("name"),
                 "at": (ev.get("scenario") or {}).get("started_at"), "values": values, "verdict": row.get("verdict")})
    return [{"metric": m, "runs": runs} for m, runs in metrics.items()]


def _technology(mapping: Mapping[str, Any], resources: Mapping[str, str]) -> list[dict[str, Any]]:
    described = {str(t["name"]): t for t in mapping.get("technology") or []}
    rows = [{"name": name, "type": kind, "does": (described.get(name) or {}).get("does"),
             "described": name in described} for name, kind in sorted(resources.items())]
    rows += [{"name": t["name"], "type": "process of the stack", "does": t.get("does"), "described": True}
             for t in mapping.get("technology") or [] if not t.get("resource")]
    return rows


def self_assessment(*, since: str, until: str, catalogue: Mapping[str, Any], resources: Mapping[str, str],
                    settings: Mapping[str, Any], reports: Sequence[Mapping[str, Any]],
                    vulnerabilities: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The self-assessment of [since, until) (see the module docstring), from the reports (evidence models, one
    per run) and the vulnerability register."""
    period = [ev for ev in reports
              if _within(since, until, str((ev.get("scenario") or {}).get("started_at") or ev.get("generated_at")))]
    period.sort(key=lambda r: str((r.get("scenario") or {}).get("started_at") or ""))
    tested, lessons, risks_found = [], [], []
    for ev in period:
        scenario = ev.get("scenario") or {}
        at = str(scenario.get("started_at") or ev.get("generated_at") or "")
        tested.append({"at": at, "kind": ev.get("kind"), "id": ev.get("id"), "scenario": scenario.get("name"),
                       "title": scenario.get("title"), "test_type": scenario.get("test_type"),
                       "verdict": ev.get("verdict"), "passed": ev.get("passed"),
                       "assumptions": list(scenario.get("assumptions") or []),
                       "signoff": (ev.get("signoff") or {}).get("state", "draft"),
                       "sha256": (ev.get("document") or {}).get("sha256")})
        for row in ev.get("tolerance") or []:
            if row.get("within") is not True:
                risks_found.append({"run": ev.get("id"), "scenario": scenario.get("name"), "metric": row.get("metric"),
                                    "verdict": row.get("verdict"), "reason": row.get("reason")})
        for lesson in ev.get("lessons") or []:
            lessons.append({**lesson, "from": ev.get("id"), "scenario": scenario.get("name")})
    mapping = dict(catalogue.get("mapping") or {})
    open_ = [v for v in vulnerabilities if v.get("status") != "closed"]
    by_resource: dict[str, int] = {}
    for v in open_:
        by_resource[str(v.get("resource"))] = by_resource.get(str(v.get("resource")), 0) + 1
    tolerance = [{**t, "definition": DEFINITIONS.get(str(t.get("measure")), "")}
                 for t in catalogue.get("impact_tolerance") or []]
    plan = dict(catalogue.get("testing_plan") or {})
    return {
        "kind": "self-assessment", "since": since, "until": until,
        "service": dict(catalogue.get("service") or {}),
        "tolerance": tolerance,
        "trend": tolerance_trend(period),
        "mapping": {"people": list(mapping.get("people") or []), "processes": list(mapping.get("processes") or []),
                    "technology": _technology(mapping, resources), "facilities": list(mapping.get("facilities") or []),
                    "information": list(mapping.get("information") or []),
                    "vulnerabilities_by_resource": dict(sorted(by_resource.items()))},
        "resources": dict(sorted(resources.items())),
        "settings": dict(settings),
        "third_parties": [dict(p) for p in catalogue.get("third_parties") or []],
        "testing_plan": {"justification": plan.get("justification"), "scenarios": list(plan.get("scenarios") or []),
                         "coverage": coverage(plan, tested, since=since, until=until)},
        "scenarios_tested": tested,
        "risks_found": risks_found,
        "summary": {"tests": len(tested), "within": sum(1 for t in tested if t["passed"] is True),
                    "outside": sum(1 for t in tested if t["passed"] is False),
                    "not_judged": sum(1 for t in tested if t["passed"] is None),
                    "scenarios": sorted({str(t["scenario"]) for t in tested}),
                    "vulnerabilities_open": len(open_)},
        "vulnerabilities": {"open": open_, "closed": [v for v in vulnerabilities if v.get("status") == "closed"]},
        "lessons": lessons,
        "communications": dict(catalogue.get("communications") or {}),
        "methodology": {"activities": list(METHODOLOGY),
                        "figures": [{"name": n, "label": LABELS[n][0], "definition": d}
                                    for n, d in DEFINITIONS.items() if n in LABELS]},
        "risks": list(catalogue.get("risks") or []),
        "phases": {name: {"title": p.get("title"), "rto": p.get("rto"), "rpo": p.get("rpo")}
                   for name, p in (catalogue.get("phases") or {}).items()},
    }
