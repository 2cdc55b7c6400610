"""The drill schedule file (YAML) and its run record: the I/O beside :mod:`tradeops.experiments.schedule`.

The file (``drills.yaml`` in the working directory unless ``--schedule`` says otherwise)::

    drills:
      - {name: nightly-outage, scenario: primary-outage, cron: "0 2 * * *", environment: local, rate: 10}
    blackouts:          # optional; default: London market hours, weekdays 08:00-16:30 Europe/London
      - {name: London market hours, days: [mon, tue, wed, thu, fri], start: "08:00", end: "16:30",
         timezone: Europe/London}

Each run ``tradeops drill due`` starts (or refuses) is appended to ``<file>.runs.jsonl`` beside it:
entry, when, verdict or refusal, forced-with reason, run folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from tradeops.experiments.schedule import (
    LONDON_MARKET_HOURS,
    BlackoutWindow,
    ScheduleEntry,
    ScheduleError,
    parse_entry,
    parse_window,
)
from tradeops.runtime.platform.clock import iso, parse_iso
from tradeops.runtime.platform.errors import BadInput

__all__ = ["Schedule", "load_schedule", "record_run", "runs_of", "save_schedule"]


@dataclass(frozen=True)
class Schedule:
    path: Path
    entries: list[ScheduleEntry]
    documents: list[dict[str, Any]]
    windows: list[BlackoutWindow]
    window_documents: list[dict[str, Any]] | None


def load_schedule(path: Path, *, scenarios: list[str] | None = None) -> Schedule:
    """The schedule at ``path`` (empty when the file does not exist); BadInput names the file and field."""
    doc: Any = {}
    if path.exists():
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise BadInput(f"schedule {path}: not readable YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise BadInput(f"schedule {path}: must be a mapping with `drills:`")
    documents = [dict(d) for d in doc.get("drills") or []]
    windows_doc = doc.get("blackouts")
    try:
        entries = [parse_entry(d, scenarios=scenarios) for d in documents]
        windows = [parse_window(w) for w in windows_doc] if windows_doc is not None else [LONDON_MARKET_HOURS]
    except ScheduleError as exc:
        raise BadInput(f"schedule {path}: {exc}") from None
    return Schedule(path, entries, documents, windows, windows_doc)


def save_schedule(schedule: Schedule, documents: list[dict[str, Any]]) -> None:
    """Write the entries (and any blackouts the file had) atomically."""
    doc: dict[str, Any] = {"drills": documents}
    if schedule.window_documents is not None:
        doc["blackouts"] = schedule.window_documents
    tmp = schedule.path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    os.replace(tmp, schedule.path)


def _runs_path(path: Path) -> Path:
    return path.with_name(path.name + ".runs.jsonl")


def record_run(path: Path, entry: str, at: datetime, **facts: Any) -> dict[str, Any]:
    line = {"entry": entry, "at": iso(at), **facts}
    with open(_runs_path(path), "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, default=str) + "\n")
    return line


def runs_of(path: Path) -> list[dict[str, Any]]:
    try:
        text = _runs_path(path).read_text(encoding="utf-8")
    except OSError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def last_runs(path: Path) -> Mapping[str, datetime]:
    """Each entry's last run that actually started (refusals do not count)."""
    last: dict[str, datetime] = {}
    for run in runs_of(path):
        if run.get("outcome") in ("passed", "failed", "error"):
            last[run["entry"]] = parse_iso(run["at"])
    return last
