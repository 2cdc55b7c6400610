"""A drill's figures and verdict, from what was recorded. Pure.

The drill runner (:mod:`tradeops.experiments.drill`) records; this module judges, and the reports
(:mod:`tradeops.reports.model`) word its :data:`FIGURES`. Inputs are plain values: the Chaos Toolkit
journal, the events of the drill window, the drill's orders as stored (with their ``history``), the
metrics timeline the runner sampled, and the load's reconciliation counts. Out come the figures of
``result.json`` and pass or fail per figure against the scenario's impact tolerance. Nothing here
reads a clock: every time comes from the records.

Times:

- the **fault** starts when the method's first fault action started (``inject_fault`` with a mode
  other than ``none``, or ``kill_worker``): it takes hold somewhere within that call, and a router can see it
  before the call returns (on a busy box, by hundreds of milliseconds). Counted from the call's start, a time to
  detect is at most the call's length too long and never too short, and no detection is lost. The fault is
  **healed** when its ``clear_fault(s)`` action ended (the time back on the primary is counted from then: too
  long, never too short, by the same reasoning);
- **time to detect**: fault start to the first ``breaker_opened`` or ``broker_suspect`` event for
  the faulted broker (the router marking it unhealthy);
- **time to first fill at the secondary**: fault start to the first fill recorded there after it;
- **time to 99 % at the secondary**: fault start to the earliest submission from which, until the
  heal, at least 99 % of orders submitted went to the secondary;
- **time back on the primary**: heal to the earliest submission from which at least
  ``primary_share`` of the orders submitted went to the primary. Orders the trickle sends to the
  standby on purpose (their :func:`trickle_bucket` is below the routing ``trickle`` flag) are left
  out: they say nothing about recovery, and at a 5 % trickle one window of 20 in thirteen would
  hold three of them by chance. "From which" means every later run of 20 consecutive submissions
  holds the share (:func:`share_from`), so a few early orders cannot be diluted away.

The verdict comes from the journal (the steady state met before and after, not deviated, every
activity succeeded, the run not interrupted) and the tolerances, never from ``chaos run``'s exit code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tradeops.runtime.orderpath.routing import trickle_bucket
from tradeops.runtime.orderpath.states import FILLED, IN_DOUBT, SUBMITTING
from tradeops.runtime.platform.clock import parse_iso

__all__ = [
    "FIGURES",
    "FaultWindow",
    "Judgement",
    "compute_figures",
    "fault_window",
    "journal_findings",
    "judge",
    "measured_text",
    "parse_tolerance",
    "share_from",
]

FAULT_FUNCS = frozenset({"inject_fault", "kill_worker"})
HEAL_FUNCS = frozenset({"clear_fault", "clear_faults"})
DETECT_KINDS = frozenset({"breaker_opened", "broker_suspect"})

# figure name → (label a person reads, unit): the one label of each figure, in the drill's table and its report
FIGURES: dict[str, tuple[str, str]] = {
    "time_to_detect": ("time to detect", "s"),
    "time_to_first_secondary_fill": ("time to first fill at the secondary", "s"),
    "time_to_99pct_secondary": ("time to fail over: 99% of new orders at the secondary", "s"),
    "time_back_on_primary": ("time back on the primary after it healed", "s"),
    "orders_placed": ("orders placed", ""),
    "orders_filled": ("orders filled", ""),
    "orders_rejected": ("orders rejected", ""),
    "orders_lost": ("orders lost", ""),
    "orders_filled_twice": ("orders filled twice (double fills)", ""),
    "orders_dead_lettered": ("orders dead-lettered", ""),
    "orders_pending": ("orders pending after the drain", ""),
    "orders_in_doubt_unresolved": ("orders in doubt and unresolved", ""),
    # Sampled once a second: a lower bound of the longest wait, so never called a wait.
    "max_oldest_pending_seconds": ("oldest pending order's age at a sample (peak)", "s"),
    "max_exposure_gbp": ("maximum exposure", "GBP"),
    "reimbursements_owed_gbp": ("reimbursements owed", "GBP"),
    "exposure_alerts": ("exposure alerts", ""),
}


@dataclass(frozen=True)
class FaultWindow:
    """When the fault started and was healed (epoch seconds), and which broker it hit (None: not a broker)."""

    start: float | None
    healed: float | None
    provider: str | None


@dataclass(frozen=True)
class Judgement:
    """Pass or fail per figure and for the drill, with one line per failure naming the figure."""

    passed: bool
    checks: list[dict[str, Any]]
    failures: list[str]


def _epoch(text: str) -> float:
    return parse_iso(text).timestamp()


def _activities(journal: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [r for r in journal.get("run") or [] if isinstance(r, Mapping)]


def fault_window(journal: Mapping[str, Any]) -> FaultWindow:
    """The fault's start, heal and broker, from the method's activity runs in the journal."""
    start = healed = None
    provider = None
    for run in _activities(journal):
        activity = run.get("activity") or {}
        func = (activity.get("provider") or {}).get("func")
        args = (activity.get("provider") or {}).get("arguments") or {}
        end = run.get("end")
        if not end:
            continue
        if func in FAULT_FUNCS and start is None and args.get("mode", "down") != "none":
            start = _epoch(str(run.get("start") or end))
            provider = str(args["provider"]) if func == "inject_fault" else None
        elif func in HEAL_FUNCS and start is not None and healed is None:
            healed = _epoch(str(end))
    return FaultWindow(start, healed, provider)


def _history_at(order: Mapping[str, Any], status: str, *, last: bool) -> float | None:
    times = [_epoch(str(h["at"])) for h in order.get("history") or [] if h.get("status") == status and h.get("at")]
    if not times:
        return None
    return max(times) if last else min(times)


def share_from(submissions: Sequence[tuple[float, str]], provider: str, share: float, *,
               window: int = 20) -> float | None:
    """The earliest submission time from which every run of ``window`` consecutive submissions (all of them,
    when fewer) sent at least ``share`` to ``provider``; None when even the last run did not.

    ``submissions`` are ``(time, provider)`` pairs in any order. Runs of a fixed length, not the whole
    rest: many good orders late must not hide bad ones early."""
    ordered = sorted(submissions)
    if not ordered:
        return None
    size = min(window, len(ordered))
    hits = [where == provider for _, where in ordered]
    in_window = sum(hits[len(ordered) - size:])
    best: float | None = None
    for start in range(len(ordered) - size, -1, -1):
        if start < len(ordered) - size:  # slide the window one submission earlier
            in_window += hits[start] - hits[start + size]
        if in_window < share * size:
            break
        best = ordered[start][0]
    return best


def _submissions(orders: Iterable[Mapping[str, Any]], since: float, until: float | None) -> list[tuple[float, str]]:
    out: list[tuple[float, str]] = []
    for order in orders:
        if order.get("status") != FILLED or not order.get("provider"):
            continue
        at = _history_at(order, SUBMITTING, last=True)
        if at is not None and at >= since and (until is None or at < until):
            out.append((at, str(order["provider"])))
    return out


def _max(values: Iterable[Any]) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def compute_figures(*, journal: Mapping[str, Any], events: Sequence[Mapping[str, Any]],
                    orders: Mapping[str, Mapping[str, Any]], timeline: Sequence[Mapping[str, Any]],
                    counts: Mapping[str, int], reimbursements_owed: Decimal | None = None,
                    primary_share: float = 0.9, trickle: float = 0.0) -> dict[str, Any]:
    """Every figure of ``result.json`` (None where it cannot be measured in this drill).

    ``trickle`` is the routing flag of the drill: orders it keeps on the standby by design are not
    counted against the time back on the primary."""
    window = fault_window(journal)
    figures: dict[str, Any] = {k: None for k in FIGURES}
    if window.start is not None and window.provider is not None:
        detected = sorted(_epoch(str(e["at"])) for e in events
                          if e.get("kind") in DETECT_KINDS and e.get("provider") == window.provider
                          and _epoch(str(e["at"])) >= window.start)
        if detected:
            figures["time_to_detect"] = round(detected[0] - window.start, 3)
    if window.start is not None:
        other = "secondary" if window.provider in (None, "primary") else "primary"
        fills = sorted(at for o in orders.values() if o.get("provider") == other and o.get("status") == FILLED
                       and (at := _history_at(o, FILLED, last=False)) is not None and at >= window.start)
        if fills and window.provider is not None:
            figures["time_to_first_secondary_fill"] = round(fills[0] - window.start, 3)
        during = _submissions(orders.values(), window.start, window.healed)
        if during and window.provider is not None:
            at = share_from(during, other, 0.99)
            if at is not None:
                figures["time_to_99pct_secondary"] = round(max(0.0, at - window.start), 3)
    if window.healed is not None and window.provider == "primary":
        chosen = [o for order_id, o in orders.items() if trickle_bucket(str(order_id)) >= trickle]
        after = _submissions(chosen, window.healed, None)
        at = share_from(after, "primary", primary_share) if after else None
        if at is not None:
            figures["time_back_on_primary"] = round(max(0.0, at - window.healed), 3)
    for name in ("placed", "filled", "rejected", "lost", "filled_twice", "dead_lettered", "pending"):
        if name in counts:
            figures[f"orders_{name}"] = int(counts[name])
    figures["orders_in_doubt_unresolved"] = sum(1 for o in orders.values() if o.get("status") == IN_DOUBT)
    figures["max_oldest_pending_seconds"] = _max(s.get("oldest_pending_seconds") for s in timeline)
    exposures = [Decimal(str(s["exposure_gbp"])) for s in timeline if s.get("exposure_gbp") is not None]
    figures["max_exposure_gbp"] = str(max(exposures)) if exposures else None
    figures["reimbursements_owed_gbp"] = None if reimbursements_owed is None else str(reimbursements_owed)
    figures["exposure_alerts"] = sum(1 for e in events if e.get("kind") == "exposure_breach")
    return figures


def journal_findings(journal: Mapping[str, Any]) -> list[str]:
    """What the journal says went wrong (empty: the experiment ran clean)."""
    found: list[str] = []
    states = journal.get("steady_states") or {}
    for when in ("before", "after"):
        state = states.get(when)
        if state is None:
            found.append(f"steady state {when} the method: not checked")
        elif not state.get("steady_state_met"):
            failing = [p.get("activity", {}).get("name") for p in state.get("probes") or []
                       if not p.get("tolerance_met", True)]
            found.append(f"steady state {when} the method: not met ({', '.join(str(f) for f in failing) or '?'})")
    if journal.get("deviated"):
        found.append("the experiment deviated from its steady state")
    status = journal.get("status")
    if status != "completed":
        found.append(f"the experiment ended {status}")
    for kind in ("run", "rollbacks"):
        for run in journal.get(kind) or []:
            if isinstance(run, Mapping) and run.get("status") != "succeeded":
                name = (run.get("activity") or {}).get("name")
                found.append(f"{'rollback' if kind == 'rollbacks' else 'activity'} {name} {run.get('status')}: "
                             f"{str(run.get('exception') or '').strip()[-200:]}".rstrip(": "))
    return found


def parse_tolerance(spec: Mapping[str, Any]) -> dict[str, tuple[str, float]]:
    """``{figure: "<= 2"}`` / ``{figure: 0}`` (means ``== 0``) / ``{figure: ">= 1"}`` → figure → (op, value).

    Raises ValueError naming the figure on an unknown figure or a bad bound."""
    out: dict[str, tuple[str, float]] = {}
    for name, bound in spec.items():
        if name not in FIGURES:
            raise ValueError(f"unknown figure {name!r} in the tolerance (one of {', '.join(FIGURES)})")
        text = str(bound).strip()
        op = "=="
        for candidate in ("<=", ">=", "==", "<", ">"):
            if text.startswith(candidate):
                op, text = candidate, text[len(candidate):].strip()
                break
        try:
            out[name] = (op, float(text))
        except ValueError:
            raise ValueError(f"tolerance for {name}: {bound!r} is not a bound like '<= 2' or 0") from None
    return out


def measured_text(name: str, value: Any) -> str:
    """A measured figure as a person reads it, with its unit (``1.32 s``, ``£12.50``, ``0``, ``not measured``)."""
    if value is None:
        return "not measured"
    unit = FIGURES[name][1] if name in FIGURES else ""
    if unit == "s":
        return f"{float(value):.2f} s"
    if unit == "GBP":
        return f"£{value}"
    return str(value)


def _holds(value: float, op: str, bound: float) -> bool:
    return {"<=": value <= bound, ">=": value >= bound, "==": value == bound, "<": value < bound,
            ">": value > bound}[op]


def _show(name: str, value: Any) -> str:
    unit = FIGURES[name][1]
    if value is None:
        return "not measured"
    return f"{value}{unit if unit == 's' else (' ' + unit if unit else '')}"


def judge(figures: Mapping[str, Any], tolerance: Mapping[str, tuple[str, float]],
          findings: Sequence[str]) -> Judgement:
    """Pass or fail each toleranced figure (a figure that could not be measured fails), then the drill."""
    checks: list[dict[str, Any]] = []
    failures: list[str] = list(findings)
    for name, (op, bound) in tolerance.items():
        value = figures.get(name)
        passed = value is not None and _holds(float(value), op, bound)
        label = FIGURES[name][0]
        checks.append({"figure": name, "label": label, "tolerance": f"{op} {bound:g}", "measured": value,
                       "passed": passed})
        if not passed:
            failures.append(f"{label} ({name}) {_show(name, value)}, tolerance {op} {bound:g}")
    return Judgement(passed=not failures, checks=checks, failures=failures)
