"""Metrics as CloudWatch Embedded Metric Format (EMF) log lines, and reading them back.

A long-running process publishes a metric by logging one EMF record (:func:`publish`): a JSON line
whose ``_aws`` block tells CloudWatch which of its fields are metrics, in which namespace and with
which dimensions. In production the log stream carries it (ECS with the CloudWatch agent, or Lambda)
and CloudWatch turns it into metric data: no ``PutMetricData`` call, no request on any caller's path.

Why a small writer and not aws-embedded-metrics or Powertools Metrics: both flush a batch at the end
of a unit of work (a Lambda invocation, a decorated function; aws-embedded-metrics through asyncio
and an agent it detects at start), while our workers and monitor are long-running threads that
publish single points as they happen. The format itself is a dozen lines (:func:`emf_record`), and
the lines go through the process's one log configuration (:mod:`.logs`).

Each record carries the metric with its dimensions *and* without them (two dimension sets), so the
template's alarms, which watch the fleet-wide figure (``BreakerOpen`` with no dimension), read the
same records that per-broker dashboards do.

On the local stack, moto does not ingest EMF from logs: ``tradeops metrics`` reads the latest figure of
every metric back from the stack's log files (:func:`latest_figures`) and prints them, or renders them
in Prometheus text format (:func:`prometheus_text`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from tradeops.runtime.platform.clock import iso, utcnow

__all__ = ["Figure", "emf_record", "latest_figures", "prometheus_text", "publish"]

log = logging.getLogger("tradeops.metrics")

Figure = dict[str, Any]
"""One metric's latest point: namespace, name, dimensions, value, unit, at, component."""


def emf_record(namespace: str, metrics: Iterable[tuple[str, float, str]], *,
               dimensions: Mapping[str, str] | None = None, at: datetime | None = None) -> dict[str, Any]:
    """The EMF record of ``metrics`` ((name, value, unit) each) at ``at`` with ``dimensions`` (pure)."""
    at = at or utcnow()
    dims = dict(sorted((dimensions or {}).items()))
    points = list(metrics)
    record: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(at.timestamp() * 1000),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [list(dims), []] if dims else [[]],
                "Metrics": [{"Name": name, "Unit": unit} for name, _, unit in points],
            }],
        },
        **dims,
    }
    for name, value, _ in points:
        record[name] = float(value)
    return record


def publish(namespace: str, metrics: Iterable[tuple[str, float, str]], *,
            dimensions: Mapping[str, str] | None = None, at: datetime | None = None) -> dict[str, Any]:
    """Log one EMF record (a JSON line in the default log format); returns it."""
    record = emf_record(namespace, metrics, dimensions=dimensions, at=at)
    names = ", ".join(f"{m['Name']}={record[m['Name']]:g}" for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"])
    log.info("metric %s%s", names, "".join(f" {k}={v}" for k, v in (dimensions or {}).items()), extra=record)
    return record


def _figures_of(line: dict[str, Any]) -> list[Figure]:
    aws = line.get("_aws")
    if not isinstance(aws, dict):
        return []
    out = []
    for block in aws.get("CloudWatchMetrics") or []:
        dims = {d: str(line[d]) for d in (block.get("Dimensions") or [[]])[0] if d in line}
        for metric in block.get("Metrics") or []:
            name = metric.get("Name")
            if name in line:
                out.append({"namespace": block.get("Namespace"), "name": name, "dimensions": dims,
                            "value": line[name], "unit": metric.get("Unit", "None"),
                            "at": line.get("at") or iso(datetime.fromtimestamp(aws.get("Timestamp", 0) / 1000,
                                                                                 tz=utcnow().tzinfo)),
                            "component": line.get("component")})
    return out


def latest_figures(log_files: Iterable[Path]) -> list[Figure]:
    """The latest point of every (namespace, metric, dimensions) in the EMF lines of ``log_files``."""
    latest: dict[tuple[str, str, tuple[tuple[str, str], ...]], Figure] = {}
    for path in log_files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for raw in text.splitlines():
            if '"_aws"' not in raw:
                continue
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(line, dict):
                continue
            for figure in _figures_of(line):
                key = (figure["namespace"], figure["name"], tuple(sorted(figure["dimensions"].items())))
                if key not in latest or str(figure["at"]) >= str(latest[key]["at"]):
                    latest[key] = figure
    return [latest[k] for k in sorted(latest)]


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(figures: Iterable[Figure]) -> str:
    """The figures in Prometheus text exposition format: ``tradeops_breaker_open{provider="x"} 1 <ms>``."""
    lines: list[str] = []
    seen: set[str] = set()
    for figure in sorted(figures, key=lambda f: (_snake(f["namespace"]), f["name"])):
        metric = f"{_snake(figure['namespace'])}_{_snake(figure['name'])}"
        if metric not in seen:
            seen.add(metric)
            lines.append(f"# HELP {metric} {figure['namespace']}/{figure['name']} ({figure['unit']}), latest point")
            lines.append(f"# TYPE {metric} gauge")
        labels = ",".join(f'{_snake(k)}="{_label(v)}"' for k, v in sorted(figure["dimensions"].items()))
        try:
            stamp = f" {int(datetime.fromisoformat(str(figure['at']).replace('Z', '+00:00')).timestamp() * 1000)}"
        except ValueError:
            stamp = ""
        lines.append(f"{metric}{'{' + labels + '}' if labels else ''} {float(figure['value']):g}{stamp}")
    return "\n".join(lines) + ("\n" if lines else "")
