"""The built-in actions runbooks can name: plain functions ``action(ctx, **args)`` returning a JSON-able output.

The guarded ones (:data:`~tradeops.runbooks.gate.GUARDED_ACTIONS`: the routing flags, the roster,
declare-void) go through the approval gate when one is configured (``TRADEOPS_GATE_URL``): the
run asks the gate to act on its step, and the gate, having checked the step's approvals itself,
calls :func:`perform` with its own credentials. So does :func:`resolve_in_flight` (the gate's op
``resolve``: settling from a broker's answers needs no four-eyes, but a broker's key and order
writes). Without a gate they act here, as before.

Each is a thin call into the runtime: :mod:`tradeops.runtime.orderpath.flags` for the flags,
:mod:`tradeops.runtime.orderpath.inflight` for the brokers and the orders in flight there,
:mod:`~tradeops.runtime.orderpath.canary` for the canary order. What each takes, whether it is
idempotent and what restores it are in :mod:`.catalogue`, which names them by module and name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tradeops.runbooks.gate import GUARDED_ACTIONS
from tradeops.runbooks.gateclient import ask_gate
from tradeops.runbooks.gateledger import GateLedger
from tradeops.runbooks.registry import OperationContext
from tradeops.runbooks.roster import Roster
from tradeops.runtime.orderpath import alert_topic, inflight
from tradeops.runtime.orderpath.canary import intake_canary
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.orderpath.states import FILLED
from tradeops.runtime.platform.errors import CheckFailed, OperationFailed

__all__ = ["apply_roster", "canary", "declare_void", "notify", "perform", "resolve_in_flight", "set_active_broker",
           "set_processing", "set_routing_mode"]


def _set(ctx: OperationContext, flag: str, value: str) -> dict[str, Any]:
    flags = Flags(ctx.aws)
    previous = getattr(flags.read(), flag)
    # The flag_set event names the executor and the execution, so the timeline shows who changed routing.
    actor = f"{ctx.actor}" if ctx.actor else None
    return {"flag": flag, "previous": previous, "value": flags.set(flag, value, actor=actor)}


def _gated(ctx: OperationContext, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """The guarded action ``name``: asked of the gate when one is configured (and a run's step names it), else
    made here."""
    if ctx.settings.gate_url and ctx.execution_id and ctx.step_id:
        if ctx.restoring:
            return _restore_at_gate(ctx, name, args)
        # A run resumed after the gate made this very change (it died before recording it): asking again would
        # only be refused, so the gate's own record of it is the action's output. Other arguments are asked of the
        # gate, which refuses a second change of one step.
        acted = GateLedger(ctx.aws).read(ctx.execution_id, ctx.step_id).acted or {}
        if acted.get("args") == args and "output" in (acted.get("outcome") or {}):
            return dict(acted["outcome"]["output"])
        return dict(ask_gate(ctx.aws, "act", ctx.execution_id, ctx.step_id)["output"])
    return perform(ctx, name, args)


def _restore_at_gate(ctx: OperationContext, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """A rollback's restore of a step the gate changed, asked of the gate as its own change (op ``restore``); a
    rollback run again after the gate restored it takes the gate's record instead of asking twice."""
    assert ctx.execution_id and ctx.step_id
    (value,) = args.values()
    done = GateLedger(ctx.aws).restored(ctx.execution_id, ctx.step_id) or {}
    if done.get("args") == args and "output" in (done.get("outcome") or {}):
        return dict(done["outcome"]["output"])
    return dict(ask_gate(ctx.aws, "restore", ctx.execution_id, ctx.step_id, value=str(value))["output"])


def perform(ctx: OperationContext, name: str, args: dict[str, Any]) -> dict[str, Any]:
    """Make the guarded change ``name`` with ``ctx``'s credentials: the gate's, or a run's without a gate."""
    if name not in GUARDED_ACTIONS:
        raise ValueError(f"{name} is not a guarded action")
    return _GUARDED[name](ctx, **args)


def set_processing(ctx: OperationContext, state: str) -> dict[str, Any]:
    return _gated(ctx, "set_processing", {"state": state})


def set_active_broker(ctx: OperationContext, provider: str) -> dict[str, Any]:
    return _gated(ctx, "set_active_broker", {"provider": provider})


def set_routing_mode(ctx: OperationContext, mode: str) -> dict[str, Any]:
    return _gated(ctx, "set_routing_mode", {"mode": mode})


def resolve_in_flight(ctx: OperationContext, provider: str) -> dict[str, Any]:
    """Settle the orders in flight at ``provider`` from its answers: by the gate when one is configured (people's
    roles may not read a broker's key nor write an order), else here; what it cannot settle stays in doubt."""
    if ctx.settings.gate_url and ctx.execution_id and ctx.step_id:
        return _resolve_at_gate(ctx, provider)
    result = inflight.resolve_in_flight(ctx.settings, ctx.aws, provider)
    return {"resolved": list(result.get("resolved", [])), "in_doubt": list(result.get("in_doubt", []))}


def _resolve_at_gate(ctx: OperationContext, provider: str) -> dict[str, Any]:
    """The gate settles the step's orders (op ``resolve``, once per step); a run resumed after it did takes the gate's
    record instead of asking twice."""
    assert ctx.execution_id and ctx.step_id
    acted = GateLedger(ctx.aws).read(ctx.execution_id, ctx.step_id).acted or {}
    if acted.get("args") == {"provider": provider} and "output" in (acted.get("outcome") or {}):
        return dict(acted["outcome"]["output"])
    return dict(ask_gate(ctx.aws, "resolve", ctx.execution_id, ctx.step_id, value=provider)["output"])


def declare_void(ctx: OperationContext, provider: str, reason: str) -> dict[str, Any]:
    return _gated(ctx, "declare_void", {"provider": provider, "reason": reason})


def _declare_void(ctx: OperationContext, provider: str, reason: str) -> dict[str, Any]:
    approvers = ", ".join(ctx.approvers) or "none"
    result = inflight.void_in_flight(
        ctx.aws, provider, actor=ctx.actor or "runbook",
        reason=f"{reason} (execution {ctx.execution_id}, step {ctx.step_id}, approved by {approvers})",
        execution_id=ctx.execution_id)
    return {"released": list(result["released"]), "settled": list(result["settled"]),
            "approvers": list(ctx.approvers), "execution_id": ctx.execution_id}


def apply_roster(ctx: OperationContext, proposal: str) -> dict[str, Any]:
    return _gated(ctx, "apply_roster", {"proposal": proposal})


def _apply_roster(ctx: OperationContext, proposal: str) -> dict[str, Any]:
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


_GUARDED: dict[str, Callable[..., dict[str, Any]]] = {
    "set_processing": lambda ctx, state: _set(ctx, "processing", state),
    "set_active_broker": lambda ctx, provider: _set(ctx, "active", provider),
    "set_routing_mode": lambda ctx, mode: _set(ctx, "mode", mode),
    "declare_void": _declare_void,
    "apply_roster": _apply_roster,
}
