"""The built-in actions runbooks can name: plain functions ``action(ctx, **args)`` returning a JSON-able output.

Each is a thin call into the runtime: :mod:`tradeops.runtime.orderpath.flags` for the flags,
:mod:`tradeops.runtime.orderpath.inflight` for the brokers and the orders in flight there,
:mod:`~tradeops.runtime.orderpath.canary` for the canary order. What each takes, whether it is
idempotent and what restores it are in :mod:`.catalogue`, which names them by module and name.
"""

from __future__ import annotations

from typing import Any

from tradeops.runbooks.registry import OperationContext
from tradeops.runbooks.roster import Roster
from tradeops.runtime.orderpath import alert_topic, inflight
from tradeops.runtime.orderpath.canary import intake_canary
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.orderpath.states import FILLED
from tradeops.runtime.platform.errors import CheckFailed, OperationFailed

__all__ = ["apply_roster", "canary", "declare_void", "notify", "resolve_in_flight", "set_active_broker",
           "set_processing", "set_routing_mode"]


def _set(ctx: OperationContext, flag: str, value: str) -> dict[str, Any]:
    flags = Flags(ctx.aws)
    previous = getattr(flags.read(), flag)
    # The flag_set event names the executor and the execution, so the timeline shows who changed routing.
    actor = f"{ctx.actor}" if ctx.actor else None
    return {"flag": flag, "previous": previous, "value": flags.set(flag, value, actor=actor)}


def set_processing(ctx: OperationContext, state: str) -> dict[str, Any]:
    return _set(ctx, "processing", state)


def set_active_broker(ctx: OperationContext, provider: str) -> dict[str, Any]:
    return _set(ctx, "active", provider)


def set_routing_mode(ctx: OperationContext, mode: str) -> dict[str, Any]:
    return _set(ctx, "mode", mode)


def resolve_in_flight(ctx: OperationContext, provider: str) -> dict[str, Any]:
    result = inflight.resolve_in_flight(ctx.settings, ctx.aws, provider)
    return {"resolved": list(result.get("resolved", [])), "in_doubt": list(result.get("in_doubt", []))}


def declare_void(ctx: OperationContext, provider: str, reason: str) -> dict[str, Any]:
    approvers = ", ".join(ctx.approvers) or "none"
    result = inflight.void_in_flight(
        ctx.aws, provider, actor=ctx.actor or "runbook",
        reason=f"{reason} (execution {ctx.execution_id}, step {ctx.step_id}, approved by {approvers})",
        execution_id=ctx.execution_id)
    return {"released": list(result["released"]), "settled": list(result["settled"]),
            "approvers": list(ctx.approvers), "execution_id": ctx.execution_id}


def apply_roster(ctx: OperationContext, proposal: str) -> dict[str, Any]:
    applied = Roster(ctx.aws).apply(proposal, actor=ctx.actor or "runbook", execution_id=ctx.execution_id)
    return {"version": applied.version, "digest": applied.digest, "operators": len(applied.roles),
            "approvers": list(ctx.approvers)}


def notify(ctx: OperationContext, subject: str, message: str, audience: list[str]) -> dict[str, Any]:
    body = f"To: {', '.join(audience)}\n\n{message}\n\n(runbook execution {ctx.execution_id}, by {ctx.actor})"
    message_id = alert_topic.notify(ctx.aws, subject, body)
    return {"message_id": message_id, "audience": list(audience)}


def canary(ctx: OperationContext, expect_provider: str, timeout: float) -> dict[str, Any]:
    result = intake_canary(ctx.settings, expect_provider=expect_provider, timeout=float(timeout))
    if result.get("status") != FILLED:
        raise CheckFailed(f"canary order {result.get('order_id')} is {result.get('status')} after "
                          f"{result.get('seconds')} s, not FILLED")
    if result.get("provider") != expect_provider:
        raise OperationFailed(f"canary order {result.get('order_id')} filled at {result.get('provider')}, "
                              f"not {expect_provider}")
    return dict(result)
