"""What an incident's own records say: when the outage began, its figures, whether a step failed over. Pure.

:func:`tradeops.reports.model.incident_evidence` builds a real failover's report from a runbook execution
and the orders, routing events, exposure samples and reimbursements of its window; these are the facts
it reads from them. An incident has no load run, so what only a load knows (orders lost) is not counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from tradeops.reports import measures
from tradeops.runbooks.catalogue import SET_ACTIVE_BROKER
from tradeops.runtime.orderpath.states import DEAD_LETTERED, FINAL

__all__ = ["DETECT_KINDS", "episode_start", "incident_figures", "switched_broker"]

DETECT_KINDS = ("breaker_opened", "broker_suspect")


def episode_start(events: Sequence[Mapping[str, Any]], started: str) -> list[Mapping[str, Any]]:
    """The detections of the outage the runbook answered, oldest first: those after the last time a breaker closed
    before the runbook started (earlier openings in the window belong to an earlier, healed episode)."""
    ordered = sorted(events, key=lambda e: str(e.get("at")))
    before = [e for e in ordered if str(e.get("at")) <= started]
    healed = max((str(e.get("at")) for e in before if e.get("kind") == "breaker_closed"), default="")
    found = [e for e in before if e.get("kind") in DETECT_KINDS and str(e.get("at")) > healed]
    return found or [e for e in ordered if e.get("kind") in DETECT_KINDS]


def incident_figures(orders: Sequence[Mapping[str, Any]], reimbursements: Sequence[Mapping[str, Any]],
                      exposure: Sequence[Mapping[str, Any]], *, outage: float | None, ended: str | None,
                      limit_seconds: float) -> dict[str, dict[str, Any]]:
    waits = measures.waits_of_run(orders, placed=None, filled=None, rejected=None, time_to_fill=None,
                                  ended_at=ended, limit_seconds=limit_seconds)
    exposures = [Decimal(str(s.get("total_exposure") or s.get("exposure_gbp") or 0)) for s in exposure]
    owed = sum((Decimal(str(r.get("amount") or 0)) for r in reimbursements), Decimal("0"))
    approved = sum((Decimal(str(r.get("amount") or 0)) for r in reimbursements
                    if str(r.get("status", "")).lower() in ("approved", "paid")), Decimal("0"))
    window = f"the {len(orders)} customer orders placed in the incident's window"
    counts = {"orders_placed": len(orders), "orders_lost": None,
              "orders_filled_twice": sum(1 for o in orders if o.get("double_execution")),
              "orders_dead_lettered": sum(1 for o in orders if o.get("status") == DEAD_LETTERED),
              "orders_pending": sum(1 for o in orders if o.get("status") not in FINAL)}
    affected, counted = measures.affected_orders(counts, waits.over_limit)
    figures = {
        "incident_duration_seconds": measures.figure("incident_duration_seconds", outage,
                                                     "the routing events and the runbook's audit timeline"),
        "longest_wait_seconds": measures.figure("longest_wait_seconds", waits.longest, waits.source),
        "orders_delayed": measures.figure("orders_delayed", waits.delayed, waits.delayed_source),
        "orders_affected": measures.figure("orders_affected", affected,
                                           counted + " (an incident's lost orders are not reconciled: the intake's "
                                                     "answers are not recorded)"),
        "max_exposure_gbp": measures.figure("max_exposure_gbp", str(max(exposures)) if exposures else None,
                                            "the exposure events of the window"),
        "reimbursements_owed_gbp": measures.figure("reimbursements_owed_gbp", owed,
                                                   f"the ledger's {len(reimbursements)} entries for those orders"),
        "reimbursements_approved_gbp": measures.figure("reimbursements_approved_gbp", approved,
                                                       "the ledger entries approved or paid"),
    }
    for name, value in counts.items():
        figures[name] = measures.figure(name, value, window if value is not None else
                                        "the intake's answers are not recorded for an incident")
    return figures


def switched_broker(data: Any) -> bool:
    """Whether a finished step's record shows its action moved order execution to the other broker."""
    action = ((data.get("output") or {}).get("action") or {}) if isinstance(data, Mapping) else {}
    moved = action.get("output") or {}
    return bool(action.get("action") == SET_ACTIVE_BROKER and isinstance(moved, Mapping)
                and moved.get("previous") != moved.get("value"))
