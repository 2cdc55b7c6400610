"""Every figure a report shows: its one label, unit and definition, how it is measured, and how the
impact tolerance is judged from it. Pure.

A figure is computed once, in the evidence model (:mod:`tradeops.reports.model`), as
``{name, label, unit, value, shown, source}``; every section and every format renders that one
record (``shown`` is the text), so a figure cannot read differently in two places. ``source`` says
what it was measured from. A figure is never computed from an excerpt: when the run folder's
``orders.json`` holds fewer orders than were placed (a recorded run kept as a fixture), the waits
come from the load's reconciliation of every filled order, or are not measured, and ``source`` says so.

The impact tolerance (SYSC 15A.2.5R) is judged metric by metric, as the firm states it, from the
run's own orders:

- **time**: the longest a customer's order waited, from placement to its outcome (filled,
  rejected, cancelled or dead-lettered; an order still waiting at the end waited until then),
  against the stated limit (30 minutes), with the headroom left;
- **customers affected**: orders lost, filled twice, dead-lettered or left unfinished, and
  orders that waited longer than the time limit, against the number tolerated (none);
- **money at risk**: the peak exposure against the alert threshold, and the reimbursements owed
  against those approved; when approvals are not recorded (a drill) or not yet made, the verdict
  says so instead of passing.

Engineering targets (detect, fail over, back on the primary) and the recovery time objective of
the phase exercised are judged apart: they are how the firm stays within tolerance, not the
tolerance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from tradeops.drillresult.figures import FIGURES as DRILL_FIGURES
from tradeops.runtime.orderpath.states import FINAL
from tradeops.runtime.platform.clock import parse_iso

__all__ = [
    "DEFINITIONS",
    "LABELS",
    "WITHIN",
    "Judgement",
    "affected_orders",
    "duration_text",
    "figure",
    "judge_money",
    "judge_orders",
    "judge_time",
    "money",
    "order_waits",
    "overall_verdict",
    "shown",
    "waits_of_run",
]

WITHIN, OUTSIDE, NOT_JUDGED = "within tolerance", "outside tolerance", "not judged"

# name → (label a person reads, unit). The drill's own figures keep their labels (one label everywhere:
# the drill's table and the report); the rest are the report's.
LABELS: dict[str, tuple[str, str]] = {
    **DRILL_FIGURES,
    "longest_wait_seconds": ("longest wait of a customer's order", "s"),
    "orders_affected": ("orders affected (lost, filled twice, unfinished or over the time limit)", ""),
    "orders_delayed": ("orders that waited over 2 s", ""),
    "reimbursements_approved_gbp": ("reimbursements approved", "GBP"),
    "incident_duration_seconds": ("time from detection to the runbook's end", "s"),
}

DEFINITIONS: dict[str, str] = {
    "time_to_detect": "From the fault's start to the first breaker opening or suspicion of the faulted broker.",
    "time_to_first_secondary_fill": "From the fault's start to the first fill recorded at the other broker.",
    "time_to_99pct_secondary": "From the fault's start to the earliest submission from which every run of 20 "
                               "consecutive submissions sent at least 99% to the other broker, until the heal.",
    "time_back_on_primary": "From the heal to the earliest submission from which the primary took its share again "
                            "(orders the trickle keeps on the standby left out).",
    "orders_placed": "Orders the intake accepted during the run (the load's reconciliation).",
    "orders_filled": "Orders filled by exactly the broker each names (the load's reconciliation).",
    "orders_rejected": "Orders a broker rejected.",
    "orders_lost": "Orders the intake accepted that no table holds, or that claim a fill no broker has.",
    "orders_filled_twice": "Orders more than one fill across both brokers' ledgers holds.",
    "orders_dead_lettered": "Orders whose message went to the dead-letter queue.",
    "orders_pending": "Orders still accepted, submitting or in doubt after the drain.",
    "orders_in_doubt_unresolved": "Orders still in doubt at the end.",
    "max_oldest_pending_seconds": "The age of the oldest order still waiting, sampled each second; the peak of "
                                  "the samples (a lower bound of the longest wait, never the longest wait).",
    "max_exposure_gbp": "The total adverse price move of orders still waiting, sampled each second; the peak.",
    "reimbursements_owed_gbp": "The ledger's reimbursements for the run's orders: each fill at a worse price than "
                               "the quote the customer was shown, to the penny in the customer's favour.",
    "reimbursements_approved_gbp": "Of those, the reimbursements finance has approved (or were approved "
                                   "automatically under the limit).",
    "exposure_alerts": "Threshold crossings of the exposure monitor (exposure_breach events).",
    "longest_wait_seconds": "The longest any of the run's orders waited, from placement to its outcome (filled, "
                            "rejected, cancelled or dead-lettered); an order with no outcome waited until the end.",
    "orders_affected": "Orders lost, filled twice, dead-lettered or left unfinished, plus orders that waited "
                       "longer than the time limit of the impact tolerance.",
    "orders_delayed": "Orders that waited longer than 2 s from placement to their outcome (ten times a normal "
                      "fill on the local stack, well inside what a customer notices).",
    "incident_duration_seconds": "From the first detection of the outage the runbook answered to the runbook's end.",
}

DELAYED_AFTER_SECONDS = 2.0


def money(value: Any) -> str | None:
    """A GBP amount as a decimal string to the penny; None when absent or unreadable."""
    if value is None:
        return None
    try:
        return str(Decimal(str(value)).quantize(Decimal("0.01")))
    except (InvalidOperation, ValueError):
        return None


def duration_text(seconds: float) -> str:
    """A limit or a headroom as a person says it: ``30 min``, ``29 min 59.6 s``, ``0.421 s``, ``2 h``."""
    if seconds < 60:
        return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    parts = [f"{hours} h"] if hours else []
    if minutes:
        parts.append(f"{minutes} min")
    if rest >= 0.05:
        parts.append(f"{rest:.1f} s")
    return " ".join(parts)


def shown(value: Any, unit: str = "") -> str:
    """A measured value as every format shows it: seconds to the millisecond, money in pounds, counts as they
    are, an unmeasured figure as 'not measured'."""
    if value is None:
        return "not measured"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if unit == "s":
        return f"{float(value):.3f} s"
    if unit == "GBP":
        try:
            return f"£{Decimal(str(value)):,.2f}"
        except InvalidOperation:
            return str(value)
    return str(value)


def figure(name: str, value: Any, source: str) -> dict[str, Any]:
    """The one record of a figure: what every section and format shows."""
    label, unit = LABELS.get(name, (name.replace("_", " "), ""))
    if unit == "GBP":
        value = money(value)
    elif unit == "s" and value is not None:
        value = round(float(value), 3)
    return {"name": name, "label": label, "unit": unit, "value": value, "shown": shown(value, unit),
            "source": source}


# ---- waits -----------------------------------------------------------------------------------------
def _at(text: Any) -> datetime | None:
    try:
        return parse_iso(str(text)) if text else None
    except ValueError:
        return None


def order_waits(orders: Sequence[Mapping[str, Any]], *, ended_at: str | None) -> list[float]:
    """Seconds each order waited, from placement (``placed_at``, else its first history entry) to its first
    final state; an order with none waited until ``ended_at`` (left out when that is unknown)."""
    end = _at(ended_at)
    waits: list[float] = []
    for order in orders:
        history = order.get("history") or []
        placed = _at(order.get("placed_at")) or (_at(history[0].get("at")) if history else None)
        outcome = next((_at(h.get("at")) for h in history if h.get("status") in FINAL), None) or end
        if placed is not None and outcome is not None:
            waits.append(max(0.0, (outcome - placed).total_seconds()))
    return waits


@dataclass(frozen=True)
class Waits:
    """The run's waits: the longest, how many waited over 2 s and over the time limit, and what they came from.
    A count is None when the orders at hand are not all of the run's."""

    longest: float | None
    delayed: int | None
    over_limit: int | None
    source: str
    delayed_source: str


def waits_of_run(orders: Sequence[Mapping[str, Any]], *, placed: int | None, filled: int | None,
                 rejected: int | None, time_to_fill: Mapping[str, Any] | None, ended_at: str | None,
                 limit_seconds: float, span_seconds: float | None = None) -> Waits:
    """The run's waits from all its orders; never from an excerpt (see the module docstring). ``span_seconds`` is
    how long the run lasted: no order of it can have waited longer."""
    complete = bool(orders) and (placed is None or len(orders) >= placed)
    if complete:
        waits = order_waits(orders, ended_at=ended_at)
        source = f"the {len(orders)} orders of the run, from placement to outcome"
        return Waits(max(waits) if waits else None, sum(1 for w in waits if w > DELAYED_AFTER_SECONDS),
                     sum(1 for w in waits if w > limit_seconds), source, source)
    excerpt = (f"orders.json holds {len(orders)} of the {placed} orders placed (an excerpt), and nothing is "
               "counted from an excerpt" if orders else "the run recorded no orders")
    short = span_seconds is not None and span_seconds <= limit_seconds
    over = 0 if short else None
    ttf = dict(time_to_fill or {})
    if ttf.get("max") is not None and filled is not None and ttf.get("count") == filled:
        longest = float(ttf["max"])
        untimed = (f"; the {rejected} rejected {'order is' if rejected == 1 else 'orders are'} not timed there"
                   if rejected else "")
        source = (f"the load's reconciliation of every filled order ({filled}, placement to fill, "
                  f"load/summary.json){untimed}; {excerpt}")
        if over is None and longest <= limit_seconds and not rejected:
            over = 0
        return Waits(longest, None, over, source, f"{excerpt}; the load times only fills")
    return Waits(None, None, over, excerpt, excerpt)


def affected_orders(figures: Mapping[str, Any], over_limit: int | None) -> tuple[int | None, str]:
    """Orders affected (lost, filled twice, dead-lettered, unfinished, over the time limit) and what was counted.

    ``orders_pending`` already holds the orders in doubt; an order filled twice is also counted as filled, never
    as lost, so no order counts twice."""
    parts = {"lost": figures.get("orders_lost"), "filled twice": figures.get("orders_filled_twice"),
             "dead-lettered": figures.get("orders_dead_lettered"), "unfinished": figures.get("orders_pending"),
             "over the time limit": over_limit}
    measured = {k: int(v) for k, v in parts.items() if v is not None}
    missing = [k for k, v in parts.items() if v is None]
    if not measured:
        return None, "none of its parts was measured"
    counted = ", ".join(f"{k} {v}" for k, v in measured.items())
    return sum(measured.values()), counted + (f"; not measured: {', '.join(missing)}" if missing else "")


# ---- judging the impact tolerance --------------------------------------------------------------------
@dataclass(frozen=True)
class Judgement:
    """One impact tolerance metric judged: within / outside / not judged, and why."""

    verdict: str
    limit: str
    headroom: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "within": None if self.verdict == NOT_JUDGED else self.verdict == WITHIN,
                "limit": self.limit, "headroom": self.headroom, "reason": self.reason}


def judge_time(longest: float | None, limit_seconds: float) -> Judgement:
    """The longest wait against the time limit, with the headroom left."""
    limit = duration_text(limit_seconds)
    if longest is None:
        return Judgement(NOT_JUDGED, limit, None, "the longest wait could not be measured")
    if longest <= limit_seconds:
        return Judgement(WITHIN, limit, duration_text(limit_seconds - longest), "")
    return Judgement(OUTSIDE, limit, None, f"over the limit by {duration_text(longest - limit_seconds)}")


def judge_orders(affected: int | None, limit: int) -> Judgement:
    """Orders affected against the number tolerated."""
    text = f"{limit} order{'' if limit == 1 else 's'}"
    if affected is None:
        return Judgement(NOT_JUDGED, text, None, "the orders affected could not be counted")
    if affected <= limit:
        return Judgement(WITHIN, text, str(limit - affected) if limit else None, "")
    return Judgement(OUTSIDE, text, None, f"{affected - limit} more than tolerated")


def judge_money(*, exposure: str | None, threshold: Decimal | None, owed: str | None, approved: str | None,
                approvals_recorded: bool) -> Judgement:
    """Peak exposure against the alert threshold, and what is owed against what is approved."""
    limit = f"£{threshold:,.2f} alert threshold; every amount owed approved" if threshold is not None else \
        "every amount owed approved"
    if exposure is None:
        return Judgement(NOT_JUDGED, limit, None, "the exposure was not measured")
    if threshold is not None and Decimal(exposure) > threshold:
        return Judgement(OUTSIDE, limit, None, "the peak exposure went over the alert threshold")
    headroom = f"£{threshold - Decimal(exposure):,.2f}" if threshold is not None else None
    if owed is None:
        return Judgement(NOT_JUDGED, limit, headroom, "the reimbursements owed were not measured")
    if Decimal(owed) == 0:
        return Judgement(WITHIN, limit, headroom, "")
    if not approvals_recorded:
        return Judgement(NOT_JUDGED, limit, headroom,
                         "customers are owed reimbursements, and a drill does not record finance's decisions on them "
                         "(its customers are simulated), so whether they were made whole cannot be judged here")
    if approved is None or Decimal(approved) < Decimal(owed):
        return Judgement(NOT_JUDGED, limit, headroom,
                         "not all that is owed is approved yet; judged once finance has decided "
                         "(tradeops reimbursements list)")
    return Judgement(WITHIN, limit, headroom, "")


def overall_verdict(judgements: Mapping[str, Judgement]) -> tuple[str, bool | None, str]:
    """The headline: outside if any metric is, within only if every metric is; else not judged in full, naming
    the metrics and why. Returns (verdict, passed, sentence)."""
    outside = [m for m, j in judgements.items() if j.verdict == OUTSIDE]
    open_ = [m for m, j in judgements.items() if j.verdict == NOT_JUDGED]
    if outside:
        return OUTSIDE, False, f"outside tolerance on {', '.join(outside)}"
    if open_:
        done = [m for m in judgements if m not in open_]
        head = f"within tolerance on {', '.join(done)}; " if done else ""
        return "not judged in full", None, head + "; ".join(f"{m} not judged: {judgements[m].reason}" for m in open_)
    return WITHIN, True, "within tolerance on every metric"
