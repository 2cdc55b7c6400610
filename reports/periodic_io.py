"""Reads what the period reports need and writes them. The I/O shell of :mod:`tradeops.reports.periodic`.

The self-assessment is kept in versions (SYSC 15A.6.2R asks for each version, for at least six years):
``<runs>/self-assessments/<since>_<until>/v<N>/self-assessment.{json,html,md}``. Compiling again writes
a new version only when the record says something new (its digest differs from the latest
version's); a version is never rewritten, only rendered again with its sign-off state. ``--upload``
stores each new version's files in the evidence bucket under Object Lock in compliance mode.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tradeops import __version__
from tradeops.reports import periodic
from tradeops.reports.build import known_secrets, read_reports, vulnerability_register
from tradeops.reports.data import load_catalogue, template_resources
from tradeops.reports.redaction import redact
from tradeops.reports.render import environment
from tradeops.reports.signoff import Policy, Signature, document_digest, standing
from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.orderpath.states import FILLED
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import iso
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.stack.deploy import load_template

__all__ = ["ASSESSMENT", "Assessment", "assessment_id", "execution_quality", "period_folder", "rerender_version",
           "self_assessment", "versions"]

ASSESSMENT = "self-assessment"
_VERSION = re.compile(r"^v(\d+)$")


@dataclass(frozen=True)
class Assessment:
    """One version of the self-assessment: its document, files, number, and whether this run wrote it."""

    document: dict[str, Any]
    files: dict[str, Path]
    version: int
    new: bool
    uploaded: list[dict[str, Any]]


def assessment_id(since: str, until: str) -> str:
    """The id a sign-off names a self-assessment by: its period."""
    return f"{ASSESSMENT}:{since}..{until}"


def period_folder(settings: Settings, since: str, until: str) -> Path:
    """Where a period's versions live under the runs folder."""
    compact = "_".join(re.sub(r"[^0-9TZ]", "", t) for t in (since, until))
    return Path(settings.runs_dir) / "self-assessments" / compact


def versions(folder: Path) -> list[tuple[int, Path]]:
    """The versions kept in ``folder``, oldest first."""
    found = []
    for child in folder.iterdir() if folder.is_dir() else []:
        match = _VERSION.match(child.name)
        if match and (child / f"{ASSESSMENT}.json").is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def _render(folder: Path, document: Mapping[str, Any], template: str, stem: str) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    outputs = {f"{stem}.{ext}": environment(ext).get_template(f"{template}.{ext}").render(d=document)
               for ext in ("html", "md")}
    return _write_all(folder, outputs)


def _write_all(folder: Path, outputs: Mapping[str, str]) -> dict[str, Path]:
    written = {}
    for name, text in outputs.items():
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)
        written[name] = folder / name
    return written


def _json_text(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, default=str) + "\n"


def rerender_version(folder: Path, signoff: Mapping[str, Any]) -> dict[str, Path]:
    """A kept version rendered again with its sign-off state; its JSON, what was signed, is not touched."""
    document = json.loads((folder / f"{ASSESSMENT}.json").read_text(encoding="utf-8"))
    document["signoff"] = dict(signoff)
    return _render(folder, document, "assessment", ASSESSMENT)


def self_assessment(settings: Settings, *, since: datetime, until: datetime, out: Path | None, generated_by: str,
                    data_dir: Path | None = None, signatures: Sequence[Signature] | None = None,
                    upload: Callable[[Path, int], dict[str, Any]] | None = None) -> Assessment:
    """The self-assessment of [since, until) from the reports under the runs folder, kept as a new version in
    ``out`` (default: :func:`period_folder`) unless the latest version already says the same.

    ``signatures`` are the period's sign-offs as the audit log holds them (None: not read, the record says so);
    ``upload(path, version)`` stores a new version's file under Object Lock and returns where."""
    _text, template = load_template(settings.template)
    resources = template_resources(template)
    data = load_catalogue(data_dir, resources=resources)  # the mapping's technology checked against the template
    config = {"name_prefix": settings.name_prefix, "param_prefix": settings.param_prefix, "region": settings.region,
              "threshold_total_amount_gbp": str(settings.threshold_total_amount),
              "threshold_order_amount_gbp": str(settings.threshold_order_amount),
              "threshold_oldest_age_seconds": settings.threshold_oldest_age_seconds}
    root = Path(settings.runs_dir)
    lo, hi = iso(since), iso(until)
    document = periodic.self_assessment(since=lo, until=hi, catalogue=data, resources=resources, settings=config,
                                        reports=[ev for _folder, ev in read_reports(root)],
                                        vulnerabilities=vulnerability_register(root))
    document = redact(document, known_secrets(settings))
    document["tradeops_version"] = __version__
    document = json.loads(_json_text(document))  # the digest is of what the file holds
    digest = document_digest(document)
    folder = out or period_folder(settings, lo, hi)
    kept = versions(folder)

    def state(version: int) -> dict[str, Any]:
        if signatures is None:
            return {"state": "draft", "sha256": digest, "signatures": [], "void": [], "read": False}
        return standing(Policy.from_catalogue(data), digest, [s for s in signatures if s.version in (None, version)])

    if kept:
        latest_number, latest = kept[-1]
        previous = json.loads((latest / f"{ASSESSMENT}.json").read_text(encoding="utf-8"))
        if document_digest(previous) == digest:
            previous["signoff"] = state(latest_number)
            files = {f"{ASSESSMENT}.json": latest / f"{ASSESSMENT}.json",
                     **rerender_version(latest, previous["signoff"])}
            return Assessment(previous, files, latest_number, False, [])
    number = (kept[-1][0] + 1) if kept else 1
    document.update(version=number, generated_at=iso(), generated_by=generated_by,
                    document={"id": assessment_id(lo, hi), "sha256": digest})
    version_folder = folder / f"v{number}"
    version_folder.mkdir(parents=True, exist_ok=False)  # a kept version is never written over
    files = _write_all(version_folder, {f"{ASSESSMENT}.json": _json_text(document)})
    files.update(rerender_version(version_folder, state(number)))
    uploaded = [upload(path, number) for path in files.values()] if upload is not None else []
    return Assessment({**document, "signoff": state(number)}, files, number, True, uploaded)


def execution_quality(settings: Settings, aws: Aws, *, since: datetime, until: datetime, out: Path | None,
                      generated_by: str) -> tuple[dict[str, Any], dict[str, Path]]:
    """Execution quality per broker over the customer orders filled in [since, until)."""
    lo, hi = iso(since), iso(until)
    orders = [o for o in OrderStore(aws).by_status(FILLED) if lo <= str(o.get("placed_at") or "") < hi]
    document = periodic.execution_quality(orders)
    document.update(kind="execution-quality", since=lo, until=hi, orders=len(orders), generated_at=iso(),
                    generated_by=generated_by, tradeops_version=__version__)
    written = _render(out, document, "quality", "execution-quality") if out else {}
    if out:
        written.update(_write_all(out, {"execution-quality.json": _json_text(document)}))
    return document, written
