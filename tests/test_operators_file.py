"""The operators file and role lookup (issue 13, item 7): identities compare ignoring case and surrounding
spaces, in the file, in role lookups and in four-eyes; a repeated identity is refused with its line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeops.runbooks.approvals import (
    Approval,
    ApprovalContext,
    ApprovalRule,
    check_new_decision,
    evaluate,
    identity_key,
    roles_held,
)
from tradeops.runbooks.identity import parse_operators
from tradeops.runtime.platform.errors import ConfigError, Refused

RULE = ApprovalRule(count=2, roles=("ops-manager", "risk"))
ROLES = {"alice": frozenset({"ops-manager"}), "Bob": frozenset({"ops-manager"}), "carol": frozenset({"risk"})}


def _ctx() -> ApprovalContext:
    return ApprovalContext(execution_id="e-1", step_id="toggle", runbook_sha256="a" * 64,
                           executors=frozenset({"alice"}), roles_of=ROLES)


@pytest.mark.parametrize("asked", ["bob", "BOB", "Bob", " bob "])
def test_role_lookup_ignores_case_of_the_identity(asked):
    """An operator listed as `Bob` holds their roles when they act as bob, BOB or ` bob `."""
    roster = parse_operators("operators:\n  Bob: [ops-manager]\n  carol: [risk]\n", "ops.yaml")
    assert roster.roles_of(asked) == frozenset({"ops-manager"})
    assert roster.roles_of("mallory") == frozenset()


@pytest.mark.parametrize(("entry", "first"), [("BOB", "bob"), ('"Bob"', "bob"), ('" bob "', "bob")])
def test_duplicate_identity_differing_in_case_or_spaces_is_refused_with_its_line(entry, first):
    """A second entry for the same person, cased or spaced differently, is a ConfigError naming both lines."""
    text = f"operators:\n  bob: [ops-manager]\n  carol: [risk]\n  {entry}: [risk]\n"
    with pytest.raises(ConfigError, match=rf"^ops\.yaml:4: operator .* is listed twice \(first as '{first}' on line 2"):
        parse_operators(text, "ops.yaml")


def test_exact_duplicate_key_is_refused_with_its_line():
    """The same key written twice (YAML would silently keep the last) is refused at the second one's line."""
    with pytest.raises(ConfigError, match=r"^ops\.yaml:3: operator 'bob' is listed twice"):
        parse_operators("operators:\n  bob: [ops-manager]\n  bob: [risk]\n", "ops.yaml")


def test_duplicate_identity_in_the_cli_is_one_line_and_exit_2(processes, tmp_path: Path):
    """`tradeops operators diff FILE` with a repeated identity exits 2 with one line naming file and line."""
    path = tmp_path / "operators.yaml"
    path.write_text("operators:\n  alice: [duty-engineer]\n  ALICE: [risk]\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")}
    env["TRADEOPS_STATE_DIR"] = str(tmp_path / "state")
    done = subprocess.run(["tradeops", "operators", "diff", str(path)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert f"{path}:3: operator 'ALICE' is listed twice" in done.stderr


def test_approver_cased_differently_holds_their_roles():
    """An approval by `BOB` counts with Bob's role, and the approval records that role."""
    decision = evaluate(RULE, _ctx(), [Approval.make(_ctx(), "BOB", "test", "approve"),
                                       Approval.make(_ctx(), "carol", "test", "approve")])
    assert decision.state == "granted"
    assert Approval.make(_ctx(), "bob", "test", "approve").roles == ("ops-manager",)


def test_executor_cased_differently_cannot_approve_own_step():
    """The executor alice approving as `ALICE` is still the executor: refused."""
    with pytest.raises(Refused, match="cannot approve its own step"):
        check_new_decision(RULE, _ctx(), "ALICE", "test", [])
    decision = evaluate(RULE, _ctx(), [Approval.make(_ctx(), "Alice", "test", "approve"),
                                       Approval.make(_ctx(), "carol", "test", "approve")])
    assert decision.state == "pending"


def test_one_person_cased_twice_counts_once():
    """`bob` and `BOB` approving the same step are one identity: the second is refused and does not count."""
    first = Approval.make(_ctx(), "bob", "test", "approve", at="1")
    with pytest.raises(Refused, match="has already approved"):
        check_new_decision(RULE, _ctx(), "BOB", "test", [first])
    decision = evaluate(RULE, _ctx(), [first, Approval.make(_ctx(), "BOB", "test", "approve", at="2")])
    assert decision.state == "pending" and decision.approved_by == ("bob",)


@given(st.text(alphabet="abcXYZ ._", min_size=1, max_size=12))
def test_identity_key_is_case_and_space_blind(name):
    """identity_key folds case and strips spaces; a roster lookup by any such variant finds the same roles."""
    roster = {name.strip() or "x": frozenset({"r"})}
    stored = next(iter(roster))
    assert identity_key(f"  {stored.upper()} ") == identity_key(stored.lower())
    assert roles_held(roster, f" {stored.swapcase()} ") == frozenset({"r"})
