"""Incident reports: the same report as a drill's, built from a real runbook execution. The I/O shell.

A real failover is not a drill, but the FCA may still expect a report. The execution's history
(:func:`tradeops.runbooks.engine.execution_history`: its meta, steps and audit timeline, chosen by the
records' hashed bodies) gives the decisions and the people; the routing events, the orders placed in
the incident's window, the exposure events and the reimbursement ledger give the customer impact. The
window opens ``lookback`` before the execution started (the outage began before anyone ran a runbook)
and closes when it finished. Written to ``<runs>/incidents/<execution_id>/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tradeops import __version__
from tradeops.reports import model
from tradeops.reports.build import ANNOTATIONS, BuiltReport, catalogue, known_secrets, thresholds, write_report
from tradeops.reports.redaction import redact
from tradeops.reports.signoff import Signature
from tradeops.runbooks.engine import execution_history
from tradeops.runtime.liability.ledger import Ledger
from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.orderpath.states import STATES
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import iso, parse_iso, utcnow
from tradeops.runtime.platform.events import read_events
from tradeops.runtime.platform.settings import Settings

__all__ = ["DEFAULT_LOOKBACK", "build_incident_report", "incident_folder"]

DEFAULT_LOOKBACK = timedelta(minutes=15)


def incident_folder(settings: Settings, execution_id: str) -> Path:
    return Path(settings.runs_dir) / "incidents" / execution_id


def _orders(aws: Aws, since: str, until: str) -> list[dict[str, Any]]:
    """Customer orders placed in [since, until] (canary orders are no customer's)."""
    store = OrderStore(aws)
    found: list[dict[str, Any]] = []
    for status in STATES:
        for order in store.by_status(status):
            placed = str(order.get("placed_at") or (order.get("history") or [{}])[0].get("at") or "")
            if since <= placed <= until and not order.get("synthetic"):
                found.append(order)
    return found


def _money(values: Iterable[Any]) -> list[Decimal]:
    out = []
    for v in values:
        try:
            out.append(Decimal(str(v)))
        except (InvalidOperation, ValueError):
            continue
    return out


def build_incident_report(settings: Settings, aws: Aws, execution_id: str, *, generated_by: str,
                          lookback: timedelta = DEFAULT_LOOKBACK, pdf: bool = False,
                          signatures: Sequence[Signature] | None = None, data_dir: Path | None = None) -> BuiltReport:
    """The incident report of one runbook execution (see the module docstring); ``signatures`` are its
    sign-offs as the audit log holds them."""
    facts = catalogue(data_dir)  # checked first: a bad data file writes nothing
    history = execution_history(settings, execution_id, aws=aws)  # NotFound for an unknown id
    meta = history["execution"]
    started = parse_iso(str(meta.get("created_at")))
    finished_text = meta.get("finished_at") or meta.get("updated_at")
    finished = parse_iso(str(finished_text)) if finished_text else utcnow()
    since, until = started - lookback, finished + timedelta(seconds=1)
    events = sorted((e for stream in ("routing",) for e in read_events(aws, stream=stream, since=since, until=until)),
                    key=lambda e: str(e.get("at")))
    exposure_events = read_events(aws, stream="exposure", since=since, until=until)
    peaks = _money(e.get(k) for e in exposure_events for k in ("total_exposure", "value", "exposure") if e.get(k))
    orders = _orders(aws, iso(since), iso(until))
    ids = {str(o["order_id"]) for o in orders}
    reimbursements = [e for e in Ledger(aws).entries() if str(e.get("order_id")) in ids]
    tolerance = meta.get("impact_tolerance") or {}
    tolerance_seconds = float(tolerance.get("max_outage_minutes", 30)) * 60
    folder = incident_folder(settings, execution_id)
    folder.mkdir(parents=True, exist_ok=True)
    # The incident's own records, kept beside its report so an evidence pack carries them.
    records = {"execution.json": history, "events.json": events, "orders.json": orders,
               "reimbursements.json": reimbursements, "exposure-events.json": exposure_events}
    for name, data in records.items():
        (folder / name).write_text(json.dumps(redact(data, known_secrets(settings)), indent=2, sort_keys=True,
                                              default=str) + "\n", encoding="utf-8")
    try:
        annotations = json.loads((folder / ANNOTATIONS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        annotations = {}
    evidence = model.incident_evidence(
        history=history, orders=orders, events=events, reimbursements=reimbursements,
        exposure=[{"total_exposure": str(p)} for p in peaks], catalogue=facts,
        tolerance_seconds=tolerance_seconds, generated_at=iso(), generated_by=generated_by, version=__version__,
        files=_digests(folder), annotations=annotations, thresholds=thresholds(settings), signatures=signatures,
        secrets=known_secrets(settings))
    files = write_report(folder, evidence, {}, pdf=pdf)
    return BuiltReport(folder=folder, files=files, evidence=evidence)


def _digests(folder: Path) -> list[model.FileDigest]:
    from tradeops.reports.build import OUTPUTS, digests

    return digests(folder, exclude=OUTPUTS)
