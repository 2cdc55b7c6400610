"""The period reports: execution quality per broker (COBS 11.2A) and the annual self-assessment. Pure.

:mod:`tradeops.reports.periodic_io` reads the orders, the report folders, the template and the
settings, and hands plain values here.

- **Execution quality** compares the brokers on fill latency (from the order's last submission to its
  fill, from the order's own history) and on slippage against the quote the customer was shown at
  placement, in basis points, signed so that a positive figure is worse for the client (a buy filled
  above the quote, a sell below it). The firm can show whether the secondary is worse for clients.
- **The self-assessment** gathers what SYSC 15A.2/15A.5 asks the firm to keep for this service: the
  service, its tolerance, the resources it maps to, every scenario tested in the period with its
  result, vulnerabilities open and closed, and lessons with the actions taken.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from tradeops.runtime.platform.clock import parse_iso

__all__ = ["execution_quality", "self_assessment", "slippage_bps"]

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
        if order.get("status") != "FILLED" or order.get("synthetic") or not order.get("provider"):
            continue
        row = per.setdefault(str(order["provider"]), {"latency": [], "slippage": []})
        history = order.get("history") or []
        sent, filled = _at(history, "SUBMITTING", last=True), _at(history, "FILLED", last=False)
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


def self_assessment(*, since: str, until: str, catalogue: Mapping[str, Any], resources: Mapping[str, str],
                    settings: Mapping[str, Any], reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What the annual self-assessment needs for this service, from the reports (evidence models) of the period."""
    tested, vulnerabilities, lessons = [], [], []
    for ev in sorted(reports, key=lambda r: str((r.get("scenario") or {}).get("started_at") or "")):
        scenario = ev.get("scenario") or {}
        at = str(scenario.get("started_at") or ev.get("generated_at") or "")
        if not (since <= at < until):
            continue
        tested.append({"at": at, "kind": ev.get("kind"), "id": ev.get("id"), "scenario": scenario.get("name"),
                       "title": scenario.get("title"), "test_type": scenario.get("test_type"),
                       "verdict": ev.get("verdict"), "passed": ev.get("passed"),
                       "failed": [r["label"] for r in ev.get("results") or [] if r.get("passed") is False]})
        for v in ev.get("vulnerabilities") or []:
            vulnerabilities.append({**v, "found_in": ev.get("id"), "scenario": scenario.get("name")})
        for lesson in ev.get("lessons") or []:
            lessons.append({**lesson, "from": ev.get("id"), "scenario": scenario.get("name")})
    return {
        "kind": "self-assessment", "since": since, "until": until,
        "service": dict(catalogue.get("service") or {}),
        "tolerance": list(catalogue.get("impact_tolerance") or []),
        "resources": dict(sorted(resources.items())),
        "settings": dict(settings),
        "third_parties": [{"provider": p.get("provider"), "role": p.get("role")}
                          for p in catalogue.get("third_parties") or []],
        "scenarios_tested": tested,
        "summary": {"tests": len(tested), "passed": sum(1 for t in tested if t["passed"]),
                    "failed": sum(1 for t in tested if not t["passed"]),
                    "scenarios": sorted({str(t["scenario"]) for t in tested})},
        "vulnerabilities": {"open": [v for v in vulnerabilities if v.get("status") != "closed"],
                            "closed": [v for v in vulnerabilities if v.get("status") == "closed"]},
        "lessons": lessons,
        "risks": list(catalogue.get("risks") or []),
    }
