"""One roster per execution (issue 15): the shared, versioned roster, seeded from the local file once, and
changed afterwards only by the four-eyes change-operators runbook (`tradeops operators show|diff|apply`)."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest

from tradeops.runbooks import engine
from tradeops.runbooks.identity import Identity
from tradeops.runbooks.roster import Roster
from tradeops.runbooks.store import ExecutionStore
from tradeops.runbooks.testing import write_operators
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import Refused

ROSTER = {"alice": ["duty-engineer"], "bob": ["ops-manager"], "carol": ["risk"]}


@pytest.fixture
def env(aws_settings, tmp_path):
    prefix = f"/ro{uuid.uuid4().hex[:8]}"
    settings = aws_settings.model_copy(update={"param_prefix": prefix})
    cli = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))}
    cli.update({"TRADEOPS_AWS_ENDPOINT_URL": settings.aws_endpoint_url, "TRADEOPS_NAME_PREFIX": settings.name_prefix,
                "TRADEOPS_PARAM_PREFIX": prefix, "TRADEOPS_STATE_DIR": str(tmp_path / "state"),
                "TRADEOPS_OPERATOR": "alice", "TRADEOPS_OPERATORS_FILE": str(tmp_path / "operators.yaml")})
    return {"settings": settings, "aws": Aws(settings), "cli": cli, "dir": tmp_path}


def _cli(env, *args, operator="alice"):
    return subprocess.run(["tradeops", *args], env=dict(env["cli"], TRADEOPS_OPERATOR=operator), capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_apply_seeds_then_changes_only_with_two_approvals(env):
    """The first apply seeds v1; a changed file is a proposal that becomes v2 only after two approvers (under
    the roster in force) approve the change-operators run; show, diff and the history say so."""
    write_operators(env["dir"] / "operators.yaml", ROSTER, break_glass=["ops-manager"])
    assert _cli(env, "operators", "show").returncode == 1  # nothing yet: not found
    seeded = _cli(env, "operators", "apply", "--yes", "--json")
    assert seeded.returncode == 0, seeded.stderr
    assert json.loads(seeded.stdout)["version"] == 1
    write_operators(env["dir"] / "operators.yaml", {**ROSTER, "dan": ["risk"]}, break_glass=["ops-manager"])
    diff = _cli(env, "operators", "diff")
    assert diff.returncode == 0 and "+ dan: risk" in diff.stdout
    applying = subprocess.Popen(["tradeops", "operators", "apply", "--yes", "--poll", "0.1"], env=env["cli"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        store, approved = ExecutionStore(env["aws"]), set()
        deadline = time.monotonic() + 60
        while len(approved) < 2 and time.monotonic() < deadline:
            waiting = [r for r in store.list_executions() if r.get("runbook") == "change-operators"
                       and r.get("status") == "waiting_approval" and r.get("executor") == "alice"]
            for run in waiting:
                for who in {"bob", "carol"} - approved:
                    # Each approver's own decision, under the roster in force (v1).
                    engine.decide(env["settings"], run["execution_id"], "apply", "approve", aws=env["aws"],
                                  identity=Identity(who, "test"), reason="checked the diff")
                    approved.add(who)
            time.sleep(0.1)
        out, err = applying.communicate(timeout=60)
    finally:
        if applying.poll() is None:
            applying.kill()
    assert applying.returncode == 0, out + err
    assert approved == {"bob", "carol"}
    shown = json.loads(_cli(env, "operators", "show", "--json").stdout)
    assert shown["version"] == 2 and shown["operators"]["dan"] == ["risk"]
    history = json.loads(_cli(env, "operators", "show", "--history", "--json").stdout)
    assert [(h["version"], h["how"]) for h in history] == [(1, "seeded"), (2, "four-eyes")]
    assert history[1]["execution_id"].startswith("change-operators-")


def test_seeding_twice_is_refused(env):
    """Once a roster exists it cannot be seeded again: changes go through four-eyes."""
    roster = Roster(env["aws"])
    operators = write_operators(env["dir"] / "operators.yaml", ROSTER)
    roster.seed(operators, actor=Identity("alice", "test"))
    with pytest.raises(Refused, match="four-eyes"):
        roster.seed(operators, actor=Identity("alice", "test"))


def test_a_stale_proposal_is_refused(env):
    """A proposal made against v1 is refused once the roster has moved on (make it again)."""
    roster = Roster(env["aws"])
    alice = Identity("alice", "test")
    roster.seed(write_operators(env["dir"] / "a.yaml", ROSTER), actor=alice)
    first = roster.propose(write_operators(env["dir"] / "b.yaml", {**ROSTER, "dan": ["risk"]}), actor=alice)
    second = roster.propose(write_operators(env["dir"] / "c.yaml", {**ROSTER, "erin": ["risk"]}), actor=alice)
    roster.apply(second["digest"], actor="alice", execution_id="e-1")
    with pytest.raises(Refused, match="make the proposal again"):
        roster.apply(first["digest"], actor="alice", execution_id="e-2")


def test_break_glass_users_are_the_rosters_break_glass_holders_by_iam_user_name():
    """The template's BreakGlassUsers is every IAM user holding a break-glass role, by user name (no path); local
    names, Identity Center users and people without a break-glass role are not in it."""
    from tradeops.runbooks.identity import Operators, break_glass_users

    roster = Operators(roles={"arn:aws:iam::123456789012:user/olga": frozenset({"ops-manager"}),
                              "arn:aws:iam::123456789012:user/bob": frozenset({"duty-engineer"}),
                              "identity-center:carol@example.com": frozenset({"ops-manager"}),
                              "dave": frozenset({"ops-manager"})},
                       break_glass=frozenset({"ops-manager"}))
    assert break_glass_users(roster) == ["olga"]
