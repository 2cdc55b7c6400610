"""What a plan concludes from the live values of a runbook's checks. Pure: plain step dicts in, a verdict out.

A plan reads every check once, now. Only some of those readings decide anything:

- a ``check``, or a ``precondition`` that fails the step (``if_not_met: fail``), *blocks* when it
  sits before the runbook's first change (an action or a manual step): nothing the run does can
  change its value before it is evaluated;
- the same after the first change is *after earlier actions*: the run evaluates it once those
  actions took effect, so today's value only informs;
- a precondition with ``if_not_met: skip`` never blocks (the step is skipped);
- a ``verify`` is what the action must achieve: *after the action*, never a failure now.

The verdict is the first blocking check that does not hold ("a run would stop at step N"), or
"a run would pass its checks up to step N" where N is the first step that changes something.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tradeops.runtime.platform.text import human

__all__ = ["check_roles", "plan_verdict"]

BLOCKING = "blocking"
AFTER_ACTION = "after the action"
AFTER_EARLIER = "after earlier actions"
SKIPS_STEP = "skips the step if not met"


def check_roles(steps: Sequence[Mapping[str, Any]]) -> list[list[str]]:
    """For each step, the role of each of its checks (see the module docstring)."""
    roles: list[list[str]] = []
    changed = False
    for step in steps:
        mine = []
        for chk in step.get("checks") or []:
            what = chk.get("what")
            if what == "verify":
                mine.append(AFTER_ACTION)
            elif what == "precondition" and step.get("if_not_met") == "skip":
                mine.append(SKIPS_STEP)
            else:
                mine.append(AFTER_EARLIER if changed else BLOCKING)
        roles.append(mine)
        if step.get("runs", True) and ("action" in step or "manual" in step):
            changed = True
    return roles


def plan_verdict(steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{"passes", "step", "step_id", "text", ...}``: where a run would stop, or how far its checks pass."""
    roles = check_roles(steps)
    for n, (step, step_roles) in enumerate(zip(steps, roles, strict=True), 1):
        if not step.get("runs", True):
            continue
        for chk, role in zip(step.get("checks") or [], step_roles, strict=True):
            if role != BLOCKING or chk.get("met"):
                continue
            value = "unreadable" if chk.get("error") else human(chk.get("value"))
            wait = chk.get("timeout")
            waits = f" (the run would wait up to {human(wait)} s for it to change)" if wait else ""
            return {"passes": False, "step": n, "step_id": step["id"], "check": chk.get("probe"),
                    "value": chk.get("value"), "expect": chk.get("expect_text"),
                    "text": f"a run would stop at step {n} ({step['id']}): {chk.get('probe')} now {value}, "
                            f"expected {chk.get('expect_text')}{waits}"}
    first_change = next((n for n, s in enumerate(steps, 1)
                         if s.get("runs", True) and ("action" in s or "manual" in s)), len(steps))
    later = any(role == AFTER_EARLIER for step_roles in roles for role in step_roles)
    step = steps[first_change - 1] if steps else {"id": "none"}
    text = f"a run would pass its checks up to step {first_change} ({step['id']})"
    if later:
        text += "; later checks depend on what its actions change"
    return {"passes": True, "step": first_change, "step_id": step["id"], "text": text}
