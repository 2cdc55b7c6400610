"""The drill schedule's decisions: is an entry due, is now blacked out, when does it next run. Pure.

Plain values and ``now`` (timezone-aware) in, decisions out; the schedule file and the runs it
records are read and written by :mod:`tradeops.experiments.schedulefile`. Cron expressions are
read by croniter (a maintained parser, not ours), in the entry's time zone (UTC by default).

An entry is **due** when its cron expression has fired since it last ran (or, never run, since it
was added): a missed firing is run once, late, never several times over.

A **blackout window** is a weekly span of local time in a named zone (``zoneinfo``, so DST moves
with the law, not with a fixed offset): by default London market hours, 08:00 to 16:30
Europe/London, Monday to Friday. A drill inside a window is refused unless forced with a reason.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

__all__ = [
    "DAYS",
    "LONDON_MARKET_HOURS",
    "TARGET_OUTPUTS",
    "BlackoutWindow",
    "DrillTarget",
    "ScheduleEntry",
    "ScheduleError",
    "blackout_at",
    "blackout_firing",
    "cron_line",
    "drill_command",
    "drill_target",
    "eventbridge_schedule",
    "is_due",
    "next_run",
    "parse_entry",
    "parse_window",
]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ScheduleError(ValueError):
    """An entry or window that cannot be used; the message names the field."""


@dataclass(frozen=True)
class BlackoutWindow:
    name: str
    days: tuple[str, ...]
    start: time
    end: time
    zone: str


@dataclass(frozen=True)
class ScheduleEntry:
    name: str
    scenario: str
    cron: str
    environment: str
    rate: float | None
    duration: str | None
    timezone: str
    added_at: datetime


LONDON_MARKET_HOURS = BlackoutWindow("London market hours", DAYS[:5], time(8, 0), time(16, 30), "Europe/London")


def _zone(name: str, what: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"{what}: unknown time zone {name!r} (an IANA name like Europe/London)") from None


def _hhmm(text: Any, what: str) -> time:
    try:
        hours, minutes = str(text).split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise ScheduleError(f"{what}: {text!r} is not a time like 08:00") from None


def parse_window(doc: Mapping[str, Any]) -> BlackoutWindow:
    """``{name, days: [mon, ...], start: "08:00", end: "16:30", timezone: Europe/London}`` → a window."""
    name = str(doc.get("name") or "blackout")
    days = tuple(str(d).lower()[:3] for d in doc.get("days") or DAYS[:5])
    bad = [d for d in days if d not in DAYS]
    if bad:
        raise ScheduleError(f"blackout {name}: unknown day(s) {', '.join(bad)} (mon..sun)")
    zone = str(doc.get("timezone") or "Europe/London")
    _zone(zone, f"blackout {name}")
    start, end = _hhmm(doc.get("start", "08:00"), f"blackout {name} start"), _hhmm(doc.get("end", "16:30"),
                                                                                   f"blackout {name} end")
    if end <= start:
        raise ScheduleError(f"blackout {name}: end {end:%H:%M} must be after start {start:%H:%M}")
    return BlackoutWindow(name, days, start, end, zone)


def parse_entry(doc: Mapping[str, Any], *, scenarios: Sequence[str] | None = None) -> ScheduleEntry:
    """A schedule entry from its YAML mapping; ScheduleError names the field that is wrong."""
    name = str(doc.get("name") or "")
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ScheduleError(f"entry name {name!r}: use letters, digits and -_.")
    scenario = str(doc.get("scenario") or "")
    if scenarios is not None and scenario not in scenarios:
        raise ScheduleError(f"entry {name}: unknown scenario {scenario!r} (one of {', '.join(scenarios)})")
    cron = str(doc.get("cron") or "")
    if not croniter.is_valid(cron) or len(cron.split()) != 5:
        raise ScheduleError(f"entry {name}: {cron!r} is not a five-field cron expression like '0 2 * * 1-5'")
    timezone = str(doc.get("timezone") or "UTC")
    _zone(timezone, f"entry {name}")
    rate = doc.get("rate")
    try:
        rate = None if rate is None else float(rate)
    except (TypeError, ValueError):
        raise ScheduleError(f"entry {name}: rate {rate!r} is not a number") from None
    if rate is not None and rate <= 0:
        raise ScheduleError(f"entry {name}: rate must be above 0")
    added = doc.get("added_at")
    added_at = datetime.fromisoformat(str(added).replace("Z", "+00:00")) if added else datetime.min.replace(
        tzinfo=ZoneInfo("UTC"))
    return ScheduleEntry(name, scenario, cron, str(doc.get("environment") or "local"), rate,
                         None if doc.get("duration") is None else str(doc["duration"]), timezone, added_at)


def _previous(entry: ScheduleEntry, now: datetime) -> datetime | None:
    local = now.astimezone(ZoneInfo(entry.timezone))
    try:
        prev: datetime = croniter(entry.cron, local).get_prev(datetime)
    except (CroniterBadCronError, CroniterBadDateError):
        return None
    return prev


def is_due(entry: ScheduleEntry, last_run: datetime | None, now: datetime) -> bool:
    """True when the entry's cron has fired since it last ran (never run: since it was added), up to ``now``."""
    prev = _previous(entry, now)
    since = last_run or entry.added_at
    return prev is not None and prev > since


def next_run(entry: ScheduleEntry, now: datetime) -> datetime:
    """The next firing after ``now`` (timezone-aware, in the entry's zone)."""
    local = now.astimezone(ZoneInfo(entry.timezone))
    nxt: datetime = croniter(entry.cron, local).get_next(datetime)
    return nxt


def blackout_at(now: datetime, windows: Sequence[BlackoutWindow]) -> BlackoutWindow | None:
    """The window ``now`` falls in, or None. Each window is judged in its own zone's local time."""
    for window in windows:
        local = now.astimezone(ZoneInfo(window.zone))
        if DAYS[local.weekday()] in window.days and window.start <= local.time() < window.end:
            return window
    return None


def cron_line(entry: ScheduleEntry, command: str) -> str:
    """One crontab line; cron reads its expression in ``CRON_TZ`` (set per line group by the exporter)."""
    return f"{entry.cron} {command}"


_EB_DAYS = {str(n): str(n + 1) for n in range(7)} | {"7": "1"}


def _eventbridge_dow(field: str) -> str:
    """Cron's day of week (0 or 7 = Sunday) → EventBridge's (1 = Sunday); names pass through."""
    out = []
    for part in field.split(","):
        step = ""
        if "/" in part:
            part, step = part.split("/", 1)
            step = "/" + step
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.append(f"{_EB_DAYS.get(lo, lo)}-{_EB_DAYS.get(hi, hi)}{step}")
        else:
            out.append(f"{_EB_DAYS.get(part, part)}{step}")
    return ",".join(out)


@dataclass(frozen=True)
class DrillTarget:
    """Where a scheduled drill runs on AWS: a Fargate task of the drill image, from the runtime stack's outputs
    (``deploy/runtime.yaml``, deployed with a ``DrillImage``), started by EventBridge Scheduler's role."""

    cluster_arn: str
    task_family: str
    """The drill task definition's family: RunTask runs its latest revision, so a schedule made once runs each
    release's drill image (a pinned revision would be deregistered by the next release)."""
    role_arn: str
    subnets: tuple[str, ...]
    security_groups: tuple[str, ...]
    container: str = "drill"


TARGET_OUTPUTS = {"cluster_arn": "ClusterArn", "task_family": "DrillTaskDefinitionArn",
                  "role_arn": "DrillSchedulerRoleArn", "subnets": "DrillSubnetIds",
                  "security_groups": "DrillSecurityGroupIds"}
"""The runtime stack's outputs a :class:`DrillTarget` is made of."""


def drill_target(outputs: Mapping[str, str], stack: str) -> DrillTarget:
    """The scheduled-drill target from the runtime stack's outputs; ScheduleError naming what is missing."""
    missing = [name for name in TARGET_OUTPUTS.values() if not outputs.get(name)]
    if missing:
        raise ScheduleError(f"stack {stack} has no scheduled-drill target (no output {', '.join(missing)}): "
                            "deploy it with a drill image (`tradeops deploy --aws --drill-image URI`)")
    values: dict[str, Any] = {field: outputs[name] for field, name in TARGET_OUTPUTS.items()}
    for field in ("subnets", "security_groups"):
        values[field] = tuple(v.strip() for v in str(values[field]).split(",") if v.strip())
    # arn:aws:ecs:REGION:ACCOUNT:task-definition/FAMILY:REVISION
    values["task_family"] = str(values["task_family"]).rsplit("/", 1)[-1].split(":")[0]
    return DrillTarget(**values)


def drill_command(entry: ScheduleEntry) -> list[str]:
    """What the scheduled task runs: the entry's drill, on AWS, printing its result as JSON into the task's log."""
    command = ["tradeops", "--aws", "drill", "run", entry.scenario]
    if entry.rate is not None:
        command += ["--rate", f"{entry.rate:g}"]
    if entry.duration is not None:
        command += ["--duration", entry.duration]
    return [*command, "--json"]


def blackout_firing(entry: ScheduleEntry, windows: Sequence[BlackoutWindow], now: datetime, *,
                    days: int = 366, limit: int = 100_000) -> tuple[datetime, BlackoutWindow] | None:
    """The entry's first firing within ``days`` of ``now`` that falls inside a blackout window, and the window
    (None: none does). A schedule exported to EventBridge fires on its own, with no `drill due` to refuse it, so
    the export refuses such an entry instead. At most ``limit`` firings are looked at."""
    local = now.astimezone(ZoneInfo(entry.timezone))
    firings = croniter(entry.cron, local)
    horizon = now.timestamp() + days * 86400
    for _ in range(limit):
        firing: datetime = firings.get_next(datetime)
        if firing.timestamp() > horizon:
            return None
        window = blackout_at(firing, windows)
        if window is not None:
            return firing, window
    return None


def eventbridge_schedule(entry: ScheduleEntry, target: DrillTarget) -> dict[str, Any]:
    """The entry as an EventBridge Scheduler ``CreateSchedule`` request: six-field ``cron()`` read in the entry's
    time zone (one of day-of-month and day-of-week ``?``, Sunday 1), no flexible window, and as its target
    ECS ``RunTask`` of the drill task (Scheduler's universal target, the only one that can override the
    container's command) with the entry's drill as the command. ``Input`` is that RunTask request as JSON text.
    A drill is not retried: a failed one is a result, and a second run would overlap the first's effects."""
    minute, hour, dom, month, dow = entry.cron.split()
    if dow == "*":
        dow = "?"
    else:
        dom, dow = "?", _eventbridge_dow(dow)
    partition = target.role_arn.split(":")[1]
    run_task = {
        "cluster": target.cluster_arn, "taskDefinition": target.task_family, "launchType": "FARGATE",
        "count": 1, "startedBy": f"tradeops-drill-{entry.name}",
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": list(target.subnets),
                                                         "securityGroups": list(target.security_groups),
                                                         "assignPublicIp": "DISABLED"}},
        "overrides": {"containerOverrides": [{"name": target.container, "command": drill_command(entry)}]},
    }
    return {"Name": f"tradeops-drill-{entry.name}",
            "ScheduleExpression": f"cron({minute} {hour} {dom} {month} {dow} *)",
            "ScheduleExpressionTimezone": entry.timezone, "State": "ENABLED",
            "Description": f"tradeops drill {entry.scenario} ({entry.environment})",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "Target": {"Arn": f"arn:{partition}:scheduler:::aws-sdk:ecs:runTask", "RoleArn": target.role_arn,
                       "Input": json.dumps(run_task, sort_keys=True),
                       "RetryPolicy": {"MaximumRetryAttempts": 0}}}
