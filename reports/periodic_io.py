"""Reads what the period reports need and writes them. The I/O shell of :mod:`tradeops.reports.periodic`."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from tradeops import __version__
from tradeops.reports import periodic
from tradeops.reports.build import catalogue, known_secrets
from tradeops.reports.model import redact
from tradeops.reports.render import environment
from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import iso
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.stack.deploy import load_template

__all__ = ["execution_quality", "self_assessment"]


def _reports(root: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(root.rglob("evidence.json")) if root.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("kind") in ("drill", "incident"):
            found.append(data)
    return found


def _write(folder: Path, stem: str, document: dict[str, Any], template: str) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    outputs = {f"{stem}.json": json.dumps(document, indent=2, sort_keys=True, default=str) + "\n"}
    for ext in ("html", "md"):
        outputs[f"{stem}.{ext}"] = environment(ext).get_template(f"{template}.{ext}").render(d=document)
    written = {}
    for name, text in outputs.items():
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)
        written[name] = folder / name
    return written


def self_assessment(settings: Settings, *, since: datetime, until: datetime, out: Path,
                    generated_by: str) -> tuple[dict[str, Any], dict[str, Path]]:
    """The self-assessment of [since, until) from the reports under the runs folder; written into ``out``."""
    _text, template = load_template(settings.template)
    resources = {logical: str(r.get("Type")) for logical, r in (template.get("Resources") or {}).items()}
    config = {"name_prefix": settings.name_prefix, "param_prefix": settings.param_prefix, "region": settings.region,
              "threshold_total_amount_gbp": str(settings.threshold_total_amount),
              "threshold_order_amount_gbp": str(settings.threshold_order_amount),
              "threshold_oldest_age_seconds": settings.threshold_oldest_age_seconds}
    document = periodic.self_assessment(since=iso(since), until=iso(until), catalogue=catalogue(),
                                        resources=resources, settings=config, reports=_reports(Path(settings.runs_dir)))
    document.update(generated_at=iso(), generated_by=generated_by, tradeops_version=__version__)
    document = redact(document, known_secrets(settings))
    return document, _write(out, "self-assessment", document, "assessment")


def execution_quality(settings: Settings, aws: Aws, *, since: datetime, until: datetime, out: Path | None,
                      generated_by: str) -> tuple[dict[str, Any], dict[str, Path]]:
    """Execution quality per broker over the customer orders filled in [since, until)."""
    lo, hi = iso(since), iso(until)
    orders = [o for o in OrderStore(aws).by_status("FILLED") if lo <= str(o.get("placed_at") or "") < hi]
    document = periodic.execution_quality(orders)
    document.update(kind="execution-quality", since=lo, until=hi, orders=len(orders), generated_at=iso(),
                    generated_by=generated_by, tradeops_version=__version__)
    written = _write(out, "execution-quality", document, "quality") if out else {}
    return document, written
