"""The drill schedule's rules (pure: tradeops.experiments.schedule) and its commands on a schedule file."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.commandline import parse
from tests.support.stack import run_cli
from tradeops.experiments.schedule import (
    LONDON_MARKET_HOURS,
    DrillTarget,
    ScheduleError,
    blackout_at,
    blackout_firing,
    drill_target,
    eventbridge_schedule,
    is_due,
    next_run,
    parse_entry,
    parse_window,
)

LONDON = ZoneInfo("Europe/London")


def entry(cron: str = "0 2 * * *", tz: str = "UTC", added: str = "2026-01-01T00:00:00Z"):
    return parse_entry({"name": "nightly", "scenario": "primary-outage", "cron": cron, "timezone": tz,
                        "added_at": added})


def test_an_entry_is_due_once_per_firing_and_a_missed_firing_runs_once():
    """Due after its cron fired since the last run; not again until the next firing."""
    e = entry()
    now = datetime(2026, 3, 10, 2, 0, 30, tzinfo=UTC)
    assert is_due(e, None, now)
    assert not is_due(e, now, now + timedelta(hours=5))
    assert is_due(e, now, datetime(2026, 3, 12, 9, 0, tzinfo=UTC))  # two missed firings: due (once)
    assert not is_due(entry(added="2026-03-10T02:00:31Z"), None, now + timedelta(seconds=5))


def test_london_market_hours_follow_bst_not_a_fixed_offset():
    """07:30 UTC is 07:30 in London before the clocks go forward (open) and 08:30 after (blacked out)."""
    assert blackout_at(datetime(2026, 3, 27, 7, 30, tzinfo=UTC), [LONDON_MARKET_HOURS]) is None  # Fri, GMT
    assert blackout_at(datetime(2026, 3, 30, 7, 30, tzinfo=UTC), [LONDON_MARKET_HOURS]) is LONDON_MARKET_HOURS
    assert blackout_at(datetime(2026, 10, 23, 15, 45, tzinfo=UTC), [LONDON_MARKET_HOURS]) is None  # 16:45 BST
    assert blackout_at(datetime(2026, 10, 26, 15, 45, tzinfo=UTC), [LONDON_MARKET_HOURS]) is LONDON_MARKET_HOURS
    assert blackout_at(datetime(2026, 3, 28, 12, 0, tzinfo=UTC), [LONDON_MARKET_HOURS]) is None  # Saturday


@given(st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)))
def test_blackout_is_exactly_weekday_london_local_08_00_to_16_30(now):
    """For any instant, blacked out iff London local time is Mon-Fri, 08:00 <= t < 16:30 (across every DST change)."""
    local = now.astimezone(LONDON)
    expected = local.weekday() < 5 and (8, 0) <= (local.hour, local.minute) < (16, 30)
    assert (blackout_at(now, [LONDON_MARKET_HOURS]) is not None) == expected


@given(st.datetimes(min_value=datetime(2026, 3, 20), max_value=datetime(2026, 11, 5), timezones=st.just(UTC)),
       st.sampled_from(["30 1 * * *", "0 2 * * 1-5", "*/15 * * * *", "0 8 * * 0"]))
def test_next_run_is_after_now_and_due_when_it_comes_in_london_time_across_dst(now, cron):
    """In Europe/London, across both 2026 clock changes: the next run is after now, due once reached, and not
    due again right after running."""
    e = entry(cron, "Europe/London", added="2026-01-01T00:00:00Z")
    nxt = next_run(e, now)
    assert nxt > now
    assert is_due(e, now, nxt + timedelta(seconds=1))
    assert not is_due(e, nxt + timedelta(seconds=1), nxt + timedelta(seconds=2))


TARGET = DrillTarget(cluster_arn="arn:aws:ecs:eu-west-2:123456789012:cluster/tradeops",
                     task_family="tradeops-drill",
                     role_arn="arn:aws:iam::123456789012:role/tradeops-runtime-DrillSchedulerRole-1ABC",
                     subnets=("subnet-0aaa1111bbbb2222c", "subnet-0ddd3333eeee4444f"),
                     security_groups=("sg-0123456789abcdef0",))


def _validation_errors(service: str, operation: str, params: dict) -> str:
    """What botocore's own parameter validation says of a request, against the service's model ("" when valid)."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model(service).operation_model(operation)
    report = ParamValidator().validate(params, model.input_shape)
    return report.generate_report() if report.has_errors() else ""


def test_eventbridge_export_uses_six_fields_a_question_mark_and_sunday_as_1():
    """cron "0 2 * * 1-5" → cron(0 2 ? * 2-6 *); "0 2 1 * *" → cron(0 2 1 * ? *); the zone is kept."""
    rule = eventbridge_schedule(entry("0 2 * * 1-5", "Europe/London"), TARGET)
    assert rule["ScheduleExpression"] == "cron(0 2 ? * 2-6 *)" and rule["ScheduleExpressionTimezone"] == "Europe/London"
    assert eventbridge_schedule(entry("0 2 1 * *"), TARGET)["ScheduleExpression"] == "cron(0 2 1 * ? *)"


def test_an_eventbridge_schedule_passes_botocores_validation_of_create_schedule_and_runs_the_drill_task():
    """The export is a CreateSchedule request botocore's model accepts (FlexibleTimeWindow, Target.Arn and RoleArn
    present, Input a string), aimed at ECS RunTask; its Input is a RunTask request ECS's model accepts, running the
    drill task in the target's cluster and network with the entry's drill as the container's command."""
    doc = parse_entry({"name": "nightly", "scenario": "primary-blackhole", "cron": "0 2 * * 1-5", "rate": 10,
                       "duration": "10s"})
    request = eventbridge_schedule(doc, TARGET)
    assert _validation_errors("scheduler", "CreateSchedule", request) == ""
    assert request["FlexibleTimeWindow"] == {"Mode": "OFF"} and request["Target"]["RoleArn"] == TARGET.role_arn
    assert request["Target"]["Arn"] == "arn:aws:scheduler:::aws-sdk:ecs:runTask"
    run_task = json.loads(request["Target"]["Input"])
    assert _validation_errors("ecs", "RunTask", run_task) == ""
    assert (run_task["cluster"], run_task["taskDefinition"]) == (TARGET.cluster_arn, "tradeops-drill")
    assert run_task["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == list(TARGET.subnets)
    (override,) = run_task["overrides"]["containerOverrides"]
    assert override == {"name": "drill", "command": ["tradeops", "--aws", "drill", "run", "primary-blackhole",
                                                     "--rate", "10", "--duration", "10s", "--json"]}
    assert parse(override["command"]).command.name == "run"  # a command line the CLI takes


def test_the_drill_target_comes_from_the_runtime_stacks_outputs_or_says_what_is_missing():
    """The runtime stack's outputs make the target (comma-separated subnets and groups, the task definition's family:
    its latest revision runs); a stack deployed without a drill image lacks them, and the error names them and how
    to deploy one."""
    outputs = {"ClusterArn": TARGET.cluster_arn,
               "DrillTaskDefinitionArn": "arn:aws:ecs:eu-west-2:123456789012:task-definition/tradeops-drill:3",
               "DrillSchedulerRoleArn": TARGET.role_arn, "DrillSubnetIds": ",".join(TARGET.subnets),
               "DrillSecurityGroupIds": "sg-0123456789abcdef0"}
    assert drill_target(outputs, "tradeops-runtime") == TARGET
    with pytest.raises(ScheduleError, match=r"no output DrillTaskDefinitionArn, DrillSchedulerRoleArn.*--drill-image"):
        drill_target({"ClusterArn": TARGET.cluster_arn, "DrillSubnetIds": "subnet-1", "DrillSecurityGroupIds": "sg-1"},
                     "tradeops-runtime")


def test_an_entry_that_would_fire_inside_a_blackout_window_is_found_before_it_is_exported():
    """EventBridge fires without `drill due`: an entry firing at 09:00 London on weekdays is inside market hours,
    one at 02:00 never is, and one at 09:00 on Sundays only is not either."""
    now = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
    firing, window = blackout_firing(entry("0 9 * * 1-5", "Europe/London"), [LONDON_MARKET_HOURS], now)
    assert window == LONDON_MARKET_HOURS and firing.astimezone(LONDON).hour == 9 and firing > now
    assert blackout_firing(entry("0 2 * * *", "Europe/London"), [LONDON_MARKET_HOURS], now) is None
    assert blackout_firing(entry("0 9 * * 0", "Europe/London"), [LONDON_MARKET_HOURS], now) is None


@pytest.mark.parametrize("doc,needle", [
    ({"name": "x", "scenario": "primary-outage", "cron": "every night"}, "not a five-field cron"),
    ({"name": "x", "scenario": "primary-outage", "cron": "0 2 * * *", "timezone": "Mars/Base"}, "unknown time zone"),
    ({"name": "bad name", "scenario": "primary-outage", "cron": "0 2 * * *"}, "use letters"),
])
def test_a_bad_entry_is_refused_naming_the_field(doc, needle):
    """A malformed cron, zone or name raises ScheduleError saying which."""
    with pytest.raises(ScheduleError, match=needle):
        parse_entry(doc)
    with pytest.raises(ScheduleError, match="must be after start"):
        parse_window({"name": "w", "start": "17:00", "end": "08:00"})


def test_schedule_commands_add_list_export_and_remove(processes, tmp_path):
    """add writes the YAML file; list shows the next run; export prints a crontab (EventBridge needs AWS); remove."""
    env = {"PATH": os.environ["PATH"], "TRADEOPS_STATE_DIR": str(tmp_path / "state")}
    path = str(tmp_path / "drills.yaml")
    added = run_cli("drill", "schedule", "add", "nightly", "--scenario", "primary-outage", "--cron", "0 2 * * 1-5",
                    "--rate", "10", "--schedule", path, env=env)
    assert added.returncode == 0, added.stderr
    bad = run_cli("drill", "schedule", "add", "x", "--scenario", "nope", "--cron", "0 2 * * *", "--schedule", path,
                  env=env)
    assert bad.returncode == 2 and "unknown scenario 'nope'" in bad.stderr and bad.stderr.count("\n") == 1
    listed = json.loads(run_cli("drill", "schedule", "list", "--schedule", path, "--json", env=env).stdout)
    assert [d["name"] for d in listed["drills"]] == ["nightly"] and listed["drills"][0]["next_run"]
    assert listed["blackouts"] == ["London market hours"]
    cron = run_cli("drill", "schedule", "export", "--format", "cron", "--schedule", path, env=env).stdout
    assert "CRON_TZ=UTC" in cron and f"0 2 * * 1-5 tradeops drill due --schedule {path} --entry nightly" in cron
    # EventBridge's export reads its target from the deployed runtime stack (tests/test_aws_templates.py); with no
    # stack and no AWS chosen it stops in one line.
    eb = run_cli("drill", "schedule", "export", "--format", "eventbridge", "--schedule", path, env=env)
    assert eb.returncode == 1 and "no target was chosen" in eb.stderr and eb.stderr.count("\n") == 1
    removed = run_cli("drill", "schedule", "remove", "nightly", "--schedule", path, "--json", env=env)
    assert removed.returncode == 0 and json.loads(removed.stdout)["removed"] == "nightly"
    assert run_cli("drill", "schedule", "remove", "nightly", "--schedule", path, env=env).returncode == 1
