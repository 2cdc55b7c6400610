"""The figures of a load run, from what was read after it. Pure: plain values in, summary out.

:func:`build_summary` assembles ``summary.json`` (schema: ``experiments/load-summary.schema.json``,
``schema_version`` 1) from the scenario, Locust's final request statistics, the reconciliation, the
orders as read back, and the AWS request counters before and after. The drill runner and the
report builder read that file; the I/O that gathers its inputs is :mod:`tradeops.experiments.load`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tradeops.loadtests.scenario import Scenario
from tradeops.loadtests.shapes import Stage
from tradeops.loadtests.thresholds import Threshold, Verdict, evaluate
from tradeops.runtime.orderpath.reconcile import Reconciliation, fill_times
from tradeops.runtime.platform.clock import iso, parse_iso

__all__ = [
    "SCHEMA_VERSION",
    "HttpFigures",
    "aws_per_order",
    "build_summary",
    "http_figures",
    "measured_metrics",
    "percentiles",
    "stage_report",
    "timeline",
]

SCHEMA_VERSION = 1
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0))
SUSTAINED_SHARE = 0.95
"""A stair is sustained when it achieved at least this share of its target (and filled in time, losing nothing)."""


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """Nearest-rank p50/p90/p95/p99, max and mean of ``values`` (all None when there are none)."""
    if not values:
        return {**{name: None for name, _ in PERCENTILES}, "max": None, "mean": None}
    ordered = sorted(values)
    result: dict[str, float | None] = {}
    for name, pct in PERCENTILES:
        rank = max(1, math.ceil(pct / 100 * len(ordered)))
        result[name] = ordered[rank - 1]
    result["max"] = ordered[-1]
    result["mean"] = sum(ordered) / len(ordered)
    return result


@dataclass(frozen=True)
class HttpFigures:
    """Locust's final figures for ``POST /orders`` (response times in milliseconds)."""

    requests: int
    failures: int
    rps: float
    response_ms: dict[str, float | None]
    failure_reasons: list[dict[str, Any]]

    @property
    def failure_rate(self) -> float | None:
        return self.failures / self.requests if self.requests else None

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "failures": self.failures, "failure_rate": self.failure_rate,
                "rps": self.rps, "response_time_ms": self.response_ms, "failure_reasons": self.failure_reasons}


def http_figures(entry: Mapping[str, Any], failure_reasons: list[dict[str, Any]]) -> HttpFigures:
    """HttpFigures from one entry of Locust's ``--json-file`` statistics (its response-time histogram
    holds milliseconds, rounded as Locust rounds them)."""
    histogram = entry.get("response_times") or {}
    samples: list[float] = []
    for rounded, count in histogram.items():
        samples.extend([float(rounded)] * int(count))
    response = percentiles(samples)
    requests = int(entry.get("num_requests", 0))
    if requests:
        response["max"] = float(entry.get("max_response_time", response["max"] or 0.0))
        response["mean"] = float(entry.get("total_response_time", 0.0)) / requests
    start, last = entry.get("start_time"), entry.get("last_request_timestamp")
    seconds = float(last) - float(start) if start is not None and last is not None else 0.0
    return HttpFigures(requests=requests, failures=int(entry.get("num_failures", 0)),
                       rps=requests / seconds if seconds > 0 else 0.0, response_ms=response,
                       failure_reasons=failure_reasons)


def _offset(moment: datetime, start: float) -> float:
    return moment.timestamp() - start


def timeline(orders: Iterable[Mapping[str, Any]], start: float, providers: Sequence[str]) -> list[dict[str, Any]]:
    """Orders placed and filled in each 1 s bucket from ``start`` (epoch), fills per broker."""
    placed: Counter[int] = Counter()
    filled: dict[int, Counter[str]] = defaultdict(Counter)
    listed = list(orders)
    for order in listed:
        try:
            placed[math.floor(_offset(parse_iso(str(order["placed_at"])), start))] += 1
        except (KeyError, ValueError):
            continue
    for _, _, at, provider in fill_times(listed):
        filled[math.floor(_offset(at, start))][provider] += 1
    seconds = set(placed) | set(filled)
    if not seconds:
        return []
    return [{"second": s, "placed": placed.get(s, 0), "filled": {p: filled[s].get(p, 0) for p in providers}}
            for s in range(min(0, min(seconds)), max(seconds) + 1)]


def stage_report(stages: Sequence[Stage], orders: Mapping[str, Mapping[str, Any]], recon: Reconciliation,
                 start: float, *, fill_limit: float) -> list[dict[str, Any]]:
    """Each stretch of the shape judged on its own: the orders placed in it, how fast they filled,
    and whether it was sustained (achieved ≥ 95% of target, time-to-fill p99 under ``fill_limit``,
    nothing lost or left pending)."""
    ttf: dict[str, float] = {oid: (f - p).total_seconds() for oid, p, f, _ in fill_times(orders.values())}
    unsettled = set(recon.ids.get("pending", [])) | set(recon.ids.get("lost", []))
    buckets: list[list[str]] = [[] for _ in stages]
    for order_id in recon.ids.get("filled", []) + recon.ids.get("rejected", []) + list(unsettled) + \
            recon.ids.get("dead_lettered", []) + recon.ids.get("cancelled", []):
        order = orders.get(order_id)
        if order is None:
            continue
        try:
            offset = _offset(parse_iso(str(order["placed_at"])), start)
        except (KeyError, ValueError):
            continue
        for i, stage in enumerate(stages):
            if stage.start <= offset < stage.end or (i == len(stages) - 1 and offset >= stage.end):
                buckets[i].append(order_id)
                break
        else:
            if stages and offset < stages[0].start:
                buckets[0].append(order_id)
    report = []
    for stage, ids in zip(stages, buckets, strict=True):
        times = [ttf[oid] for oid in ids if oid in ttf]
        p99 = percentiles(times)["p99"]
        achieved = len(ids) / stage.seconds if stage.seconds else 0.0
        bad = sum(1 for oid in ids if oid in unsettled)
        sustained = (achieved >= SUSTAINED_SHARE * stage.rate and p99 is not None and p99 < fill_limit and bad == 0)
        report.append({"name": stage.name, "start": stage.start, "end": stage.end, "target_rate": stage.rate,
                       "placed": len(ids), "achieved_rate": achieved, "filled": len(times),
                       "time_to_fill_p99": p99, "lost_or_pending": bad, "sustained": sustained})
    # Orders the table does not hold (lost before they were written) belong to no stage; they make
    # every stage unsustained, since none can be placed in time.
    if recon.counts.get("lost", 0) and not any(oid in orders for oid in recon.ids.get("lost", [])):
        for entry in report:
            entry["sustained"] = False
    return report


def highest_sustained(stages: Sequence[Mapping[str, Any]]) -> float | None:
    """The target of the last stair in the unbroken run of sustained stairs from the start."""
    best = None
    for stage in stages:
        if not stage["sustained"]:
            break
        best = stage["target_rate"]
    return best


def aws_per_order(before: Mapping[str, Mapping[str, int]], after: Mapping[str, Mapping[str, int]],
                  filled: int) -> dict[str, Any]:
    """AWS requests during the run, per component and service, and per filled order.

    A component whose counter went down was restarted: its count after is all it sent since.
    """
    by_component: dict[str, dict[str, int]] = {}
    for component, counts in after.items():
        earlier = before.get(component, {})
        restarted = any(counts.get(k, 0) < v for k, v in earlier.items())
        delta = {k: (n if restarted else n - earlier.get(k, 0)) for k, n in counts.items()}
        by_component[component] = {k: n for k, n in sorted(delta.items()) if n}
    by_service: Counter[str] = Counter()
    by_operation: Counter[str] = Counter()
    for counts in by_component.values():
        for key, n in counts.items():
            by_service[key.split(".", 1)[0]] += n
            by_operation[key] += n
    total = sum(by_service.values())
    return {
        "total": total,
        "by_service": dict(sorted(by_service.items())),
        "by_component": {c: sum(v.values()) for c, v in sorted(by_component.items())},
        "by_operation": dict(by_operation.most_common()),
        "per_filled_order": None if not filled else {
            "total": total / filled, "by_service": {s: n / filled for s, n in sorted(by_service.items())}},
    }


def measured_metrics(*, ttf: Mapping[str, float | None], http: HttpFigures, achieved_rate: float,
                     recon: Reconciliation | None, aws: Mapping[str, Any] | None) -> dict[str, float | None]:
    """Every threshold metric (:data:`tradeops.loadtests.thresholds.METRICS`) as measured."""
    measured: dict[str, float | None] = {f"time_to_fill {k}": v for k, v in ttf.items()}
    for key, value in http.response_ms.items():
        measured[f"http {key}"] = None if value is None else value / 1000
    measured["http failure rate"] = http.failure_rate
    measured["achieved rate"] = achieved_rate
    if recon is not None:
        counts = recon.counts
        measured.update({
            "orders placed": float(recon.placed), "orders filled": float(counts["filled"]),
            "orders rejected": float(counts["rejected"]), "orders pending after drain": float(counts["pending"]),
            "orders dead lettered": float(counts["dead_lettered"]), "orders lost": float(counts["lost"]),
            "orders unanswered": float(recon.unanswered),
        })
        if recon.fills_checked:
            measured.update({"orders filled twice": float(counts["filled_twice"]),
                             "orders wrong broker": float(counts["wrong_broker"]),
                             "orders unrecorded fill": float(counts["unrecorded_fill"])})
    per = (aws or {}).get("per_filled_order")
    measured["aws requests per order"] = None if not per else float(per["total"])
    return measured


def _verdict_json(verdict: Verdict) -> dict[str, Any]:
    t = verdict.threshold
    return {"threshold": t.text, "metric": t.metric, "source": t.source, "measured": verdict.measured,
            "shown": verdict.shown, "passed": verdict.passed}


def build_summary(
    *,
    run_id: str,
    scenario: Scenario,
    parameters: Mapping[str, Any],
    thresholds: Sequence[Threshold],
    started: float,
    ended: float,
    http: HttpFigures,
    recon: Reconciliation | None,
    recon_note: str | None,
    orders: Mapping[str, Mapping[str, Any]],
    aws: Mapping[str, Any] | None,
    aws_note: str | None,
    providers: Sequence[str],
    drain: Mapping[str, Any],
    files: Mapping[str, str],
) -> dict[str, Any]:
    """``summary.json`` of one load run; ``passed`` is decided by the thresholds alone."""
    shape = scenario.shape
    placed = recon.placed if recon is not None else http.requests - http.failures
    achieved = placed / shape.duration
    target = shape.mean_rate
    filled_ids = None if recon is None else set(recon.ids["filled"])
    times = [(f - p).total_seconds() for oid, p, f, _ in fill_times(orders.values())
             if filled_ids is None or oid in filled_ids]
    ttf = percentiles(times)
    measured = measured_metrics(ttf=ttf, http=http, achieved_rate=achieved, recon=recon, aws=aws)
    verdicts = evaluate(thresholds, measured, target_rate=target)
    fill_limit = next((t.value for t in thresholds if t.metric == "time_to_fill p99" and t.op in ("<", "<=")), 2.0)
    stages = stage_report(shape.stages(), orders, recon, started, fill_limit=fill_limit) if recon else []
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "load",
        "run_id": run_id,
        "passed": all(v.passed for v in verdicts),
        "scenario": {"name": scenario.name, "description": scenario.description, "source": scenario.source,
                     "shape": shape.describe(), "user_rate": scenario.user_rate, "document": scenario.document},
        "parameters": dict(parameters),
        "started_at": iso(datetime.fromtimestamp(started, UTC)),
        "ended_at": iso(datetime.fromtimestamp(ended, UTC)),
        "load_seconds": shape.duration,
        "thresholds": [_verdict_json(v) for v in verdicts],
        "breached": [v.line() for v in verdicts if not v.passed],
        "rates": {"target": target, "peak_target": shape.peak_rate, "achieved": achieved,
                  "achieved_share": achieved / target if target else None},
        "timeline": timeline(orders.values(), started, providers),
        "stages": stages,
        "highest_sustained_rate": highest_sustained(stages) if stages else None,
        "time_to_fill": {"count": len(times), **ttf},
        "http": http.as_dict(),
        "orders": None if recon is None else {"placed": recon.placed, "unanswered": recon.unanswered,
                                              "unanswered_found": recon.unanswered_found, **recon.counts,
                                              "by_provider": recon.by_provider},
        "reconciliation": {"available": recon is not None, "note": recon_note,
                           "fills_checked": bool(recon and recon.fills_checked),
                           "fills_source": recon.fills_source if recon is not None else None, **drain,
                           "offending": None if recon is None else {
                               k: recon.ids[k][:20] for k in ("lost", "filled_twice", "wrong_broker",
                                                              "unrecorded_fill", "pending", "dead_lettered")}},
        "aws_requests": {"available": aws is not None, "note": aws_note, **(aws or {})},
        "files": dict(files),
    }
