"""Helpers for drills, benches and tests that drive runbooks without people at terminals.

``ScriptedApprover`` plays the second (and third) pair of eyes: handed to
``engine.run_execution(on_approval_wait=...)``, it approves each waiting step as identities
from the roster that hold an allowed role — through the same ``decide`` an approver's
terminal uses, so every four-eyes rule still applies and every decision is audited.

``install_roster`` writes a roster straight into a *private* test or drill environment (its own
parameter prefix); a shared roster changes only through `tradeops operators apply`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from tradeops.runbooks import engine
from tradeops.runbooks.identity import Identity, Operators, load_operators
from tradeops.runbooks.roster import Roster
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import BadInput, Refused
from tradeops.runtime.platform.settings import Settings

__all__ = ["ScriptedApprover", "install_roster", "isolated_flags", "write_operators"]

FLAG_DEFAULTS = {"processing": "running", "routing/mode": "manual", "routing/active": "primary",
                 "routing/trickle": "0.05"}


def isolated_flags(settings: Settings, param_prefix: str, *, aws: Aws | None = None) -> Settings:
    """Settings whose control flags live under ``param_prefix`` (created with safe defaults).

    Lets a drill or a test flip flags without touching the ones a running stack obeys.
    """
    isolated = settings.model_copy(update={"param_prefix": param_prefix})
    ssm = (aws or Aws(isolated)).ssm
    for name, value in FLAG_DEFAULTS.items():
        ssm.put_parameter(Name=f"{param_prefix}/{name}", Value=value, Type="String", Overwrite=True)
    return isolated


def write_operators(path: Path, roles: Mapping[str, Sequence[str]], *,
                    break_glass: Sequence[str] = ()) -> Operators:
    """Write an operators file (identity → roles, and the break-glass roles) and return it loaded."""
    doc: dict[str, object] = {"operators": {k: list(v) for k, v in roles.items()}}
    if break_glass:
        doc["break_glass"] = list(break_glass)
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_operators(path)


def install_roster(aws: Aws, operators: Operators) -> Operators:
    """Make ``operators`` the roster of a private test or drill environment, whatever was there (no four-eyes).

    Returns it as the shared roster now reads (with its version and source)."""
    roster = Roster(aws)
    aws.ssm.put_parameter(Name=roster.param, Type="String", Overwrite=True, Tier="Intelligent-Tiering",
                          Value=json.dumps({"roster": operators.as_document(), "set_by": "install_roster",
                                            "how": "installed for a test or drill"}))
    return roster.require()


class ScriptedApprover:
    """Approves waiting steps as the first eligible identities among ``identities``."""

    def __init__(self, settings: Settings, *, aws: Aws, operators: Operators, identities: Sequence[Identity],
                 reason: str = "scripted approval (drill)") -> None:
        self.settings, self.aws, self.operators = settings, aws, operators
        self.identities = list(identities)
        self.reason = reason
        self.decisions: list[tuple[str, str, str]] = []  # (execution_id, step_id, identity)

    def __call__(self, wait: engine.ApprovalWait) -> None:
        already = set(wait.decision.approved_by) | {i for i, _ in wait.decision.refused}
        needed = wait.decision.missing
        for identity in self.identities:
            if needed <= 0:
                return
            if identity.name in already or not self.operators.roles_of(identity.name) & set(wait.rule.roles):
                continue
            try:
                engine.decide(self.settings, wait.execution_id, wait.step_id, "approve", aws=self.aws,
                              identity=identity, operators=self.operators, reason=self.reason)
            except (BadInput, Refused):
                continue  # e.g. this identity executes the run: the rules refuse it, try the next one
            self.decisions.append((wait.execution_id, wait.step_id, identity.name))
            needed -= 1
