"""The testing plan's decisions: how often each scenario is due, the coverage of a period (planned against
executed), and the drill schedule the plan makes. Pure.

The plan is data (``reports/testing-plan.yaml``, SYSC 15A.5.1R): each scenario's nature, severity and
duration, its test type, frequency and rationale, and whether the firm expects to breach its
tolerance in it. A scenario with an experiment is a drill: its runs are counted against its
frequency, and a ``schedule`` makes a drill schedule entry (``tradeops report testing-plan
--write-schedule``; the schedule's own rules, :mod:`tradeops.experiments.schedule`, check it there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tradeops.runtime.platform.clock import parse_iso

__all__ = ["FREQUENCY_DAYS", "coverage", "schedule_entries"]

FREQUENCY_DAYS = {"weekly": 7.0, "monthly": 365.25 / 12, "quarterly": 365.25 / 4, "half-yearly": 365.25 / 2,
                  "annually": 365.25}
"""How many days apart a plan's frequency puts its tests: how many a period should hold."""


def _days(since: str, until: str) -> float:
    return max((parse_iso(until) - parse_iso(since)).total_seconds() / 86400, 0.0)


def coverage(plan: Mapping[str, Any], tested: Sequence[Mapping[str, Any]], *, since: str,
             until: str) -> dict[str, Any]:
    """Planned against executed: per plan scenario, the tests its frequency asks of the period and those run,
    and the drills run that the plan does not hold."""
    days = _days(since, until)
    rows: list[dict[str, Any]] = []
    planned_names = set()
    for entry in plan.get("scenarios") or []:
        experiment = entry.get("experiment")
        planned_names.add(experiment or entry.get("name"))
        # A calendar year is 365 days, a quarter of it 91: a hundredth of a period's slack counts them whole.
        expected = int(days / FREQUENCY_DAYS.get(str(entry.get("frequency")), 365.25) + 0.01)
        runs = [t for t in tested if experiment and t.get("scenario") == experiment and t.get("kind") == "drill"]
        if experiment is None:
            status = "not seen by tradeops (a paper or live test the firm records)"
        elif expected == 0:
            status = "not due in a period this short" if not runs else "run, though not yet due"
        elif len(runs) >= expected:
            status = "covered"
        else:
            status = f"short by {expected - len(runs)}"
        rows.append({"scenario": entry.get("name"), "experiment": experiment, "test_type": entry.get("test_type"),
                     "frequency": entry.get("frequency"), "expected": expected if experiment else None,
                     "executed": len(runs) if experiment else None, "status": status,
                     "expect_breach": entry.get("expect_breach"),
                     "last": max((str(t.get("at")) for t in runs), default=None),
                     "verdicts": sorted({str(t.get("verdict")) for t in runs})})
    unplanned = sorted({str(t.get("scenario")) for t in tested
                        if t.get("kind") == "drill" and t.get("scenario") not in planned_names})
    automated = [r for r in rows if r["experiment"]]
    return {"rows": rows, "unplanned": unplanned, "planned": len(rows),
            "executed_scenarios": sum(1 for r in automated if r["executed"]),
            "automated": len(automated), "covered": sum(1 for r in automated if r["status"] == "covered"),
            "days": round(days, 1)}


def schedule_entries(plan: Mapping[str, Any], *, added_at: str) -> list[dict[str, Any]]:
    """The drill schedule entries of the plan's scheduled scenarios (``plan-<name>``), in the schedule file's form."""
    entries = []
    for entry in plan.get("scenarios") or []:
        schedule = entry.get("schedule")
        if not schedule or not entry.get("experiment"):
            continue
        doc: dict[str, Any] = {"name": f"plan-{entry['name']}", "scenario": entry["experiment"],
                               "cron": schedule["cron"], "environment": "local",
                               "timezone": schedule.get("timezone", "UTC"), "added_at": added_at}
        for key in ("rate", "duration"):
            if schedule.get(key) is not None:
                doc[key] = schedule[key]
        entries.append(doc)
    return entries
