"""The built-in probes and actions runbooks can name.

Each is a thin call into the runtime: :mod:`tradeops.runtime.orderpath.flags` for the flags,
:mod:`tradeops.runtime.orderpath.heartbeats` for the fleet, :mod:`~tradeops.runtime.orderpath.inflight` for
the brokers and the orders in flight there, :mod:`~tradeops.runtime.orderpath.figures` for the queue.
"""

from __future__ import annotations

import time
from typing import Any

from tradeops.runbooks.registry import OperationContext, Reading, action, probe
from tradeops.runbooks.roster import Roster
from tradeops.runtime.orderpath import alert_topic, figures, heartbeats, inflight
from tradeops.runtime.orderpath.canary import intake_canary
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.platform.errors import CheckFailed, OperationFailed

__all__: list[str] = []  # operations are reached through tradeops.runbooks.registry, by name

_PROVIDER = {"type": "string", "enum": ["primary", "secondary"]}


def _flags(ctx: OperationContext) -> Flags:
    return Flags(ctx.aws)


# ---- probes -------------------------------------------------------------------------------

@probe("broker_healthy", args={"provider": _PROVIDER},
       description="Whether the broker's order API answers its health check now.")
def broker_healthy(ctx: OperationContext, provider: str) -> Reading:
    health = inflight.broker_health(ctx.settings, ctx.aws, provider)
    return Reading(bool(health.get("healthy")),
                   {"latency_ms": health.get("latency_ms"), "error": health.get("error")})


@probe("broker_healthy_for",
       args={"provider": _PROVIDER, "seconds": {"type": "number", "minimum": 0, "maximum": 3600}},
       description="Whether the broker stays healthy at every sample over a period (about one a second).",
       sampling=True)
def broker_healthy_for(ctx: OperationContext, provider: str, seconds: float) -> Reading:
    deadline = time.monotonic() + (0 if ctx.instant else float(seconds))
    interval = min(1.0, max(float(seconds) / 5, 0.05))
    samples = 0
    while True:
        health = inflight.broker_health(ctx.settings, ctx.aws, provider)
        samples += 1
        if not health.get("healthy"):
            # One failed sample is enough: "sustained" health means no sample failed.
            return Reading(False, {"samples": samples, "error": health.get("error")})
        if time.monotonic() >= deadline:
            return Reading(True, {"samples": samples, "sampled_seconds": 0 if ctx.instant else seconds})
        time.sleep(min(interval, max(deadline - time.monotonic(), 0)))


@probe("processing", description="The processing flag: running or paused.")
def processing(ctx: OperationContext) -> str:
    return _flags(ctx).read().processing


@probe("routing_mode", description="The routing mode flag: manual or auto.")
def routing_mode(ctx: OperationContext) -> str:
    return _flags(ctx).read().mode


@probe("active_broker", description="The active broker flag (manual mode): primary or secondary.")
def active_broker(ctx: OperationContext) -> str:
    return _flags(ctx).read().active


@probe("workers_drained", description="Whether no worker holds an order in flight (from their heartbeats).")
def workers_drained(ctx: OperationContext) -> Reading:
    fleet = heartbeats.fleet(ctx.aws)
    return Reading(bool(fleet.get("drained")),
                   {"workers": len(fleet.get("workers", [])), "in_flight": fleet.get("in_flight")})


@probe("in_flight_at", args={"provider": _PROVIDER},
       description="How many orders are SUBMITTING or IN_DOUBT at the broker.")
def in_flight_at(ctx: OperationContext, provider: str) -> Reading:
    orders = inflight.in_flight_orders(ctx.aws, provider)
    return Reading(len(orders), {"order_ids": [o.get("order_id") for o in orders[:20]]})


@probe("oldest_pending_age_seconds", description="Age in seconds of the oldest order not yet final (0 if none).")
def oldest_pending_age_seconds(ctx: OperationContext) -> float:
    age = figures.oldest_pending_age(ctx.aws)
    return round(float(age), 3) if age is not None else 0.0


# ---- actions ------------------------------------------------------------------------------

def _set(ctx: OperationContext, flag: str, value: str) -> dict[str, Any]:
    flags = _flags(ctx)
    previous = getattr(flags.read(), flag)
    # The flag_set event names the executor and the execution, so the timeline shows who changed routing.
    actor = f"{ctx.actor}" if ctx.actor else None
    return {"flag": flag, "previous": previous, "value": flags.set(flag, value, actor=actor)}


@action("set_processing", args={"state": {"type": "string", "enum": ["running", "paused"]}},
        description="Set the processing flag (paused = quiesce the workers).", idempotent=True,
        restore_arg="state")
def set_processing(ctx: OperationContext, state: str) -> dict[str, Any]:
    return _set(ctx, "processing", state)


@action("set_active_broker", args={"provider": _PROVIDER},
        description="Set the active broker flag (which broker workers send to in manual mode).",
        idempotent=True, restore_arg="provider")
def set_active_broker(ctx: OperationContext, provider: str) -> dict[str, Any]:
    return _set(ctx, "active", provider)


@action("set_routing_mode", args={"mode": {"type": "string", "enum": ["manual", "auto"]}},
        description="Set the routing mode flag (auto = the router picks the broker).", idempotent=True,
        restore_arg="mode")
def set_routing_mode(ctx: OperationContext, mode: str) -> dict[str, Any]:
    return _set(ctx, "mode", mode)


@action("resolve_in_flight", args={"provider": _PROVIDER},
        description="Ask the broker about every order in flight there and settle the ones it answers for.",
        idempotent=True)  # asking again only settles what is still open
def resolve_in_flight(ctx: OperationContext, provider: str) -> dict[str, Any]:
    result = inflight.resolve_in_flight(ctx.settings, ctx.aws, provider)
    return {"resolved": list(result.get("resolved", [])), "in_doubt": list(result.get("in_doubt", []))}


@action("declare_void", args={"provider": _PROVIDER, "reason": {"type": "string", "minLength": 3}},
        description="Declare the broker's in-flight orders void so they may go to the other broker.")
def declare_void(ctx: OperationContext, provider: str, reason: str) -> dict[str, Any]:
    approvers = ", ".join(ctx.approvers) or "none"
    result = inflight.void_in_flight(
        ctx.aws, provider, actor=ctx.actor or "runbook",
        reason=f"{reason} (execution {ctx.execution_id}, step {ctx.step_id}, approved by {approvers})",
        execution_id=ctx.execution_id)
    return {"released": list(result["released"]), "settled": list(result["settled"]),
            "approvers": list(ctx.approvers), "execution_id": ctx.execution_id}


_DIGEST = {"type": "string", "pattern": "^[0-9a-f]{16,64}$"}


@probe("roster_proposal_current", args={"proposal": _DIGEST},
       description="Whether a proposed roster exists and was made against the roster in force now.")
def roster_proposal_current(ctx: OperationContext, proposal: str) -> Reading:
    roster = Roster(ctx.aws)
    operators, record = roster.proposal(proposal)
    current = roster.require()
    return Reading(record.get("base_digest") == current.digest,
                   {"operators": len(operators.roles), "base_version": record.get("base_version"),
                    "current_version": current.version, "proposed_by": record.get("proposed_by")})


@action("apply_roster", args={"proposal": _DIGEST},
        description="Make a proposed roster the shared roster (refused if the roster changed since the proposal).")
def apply_roster(ctx: OperationContext, proposal: str) -> dict[str, Any]:
    applied = Roster(ctx.aws).apply(proposal, actor=ctx.actor or "runbook", execution_id=ctx.execution_id)
    return {"version": applied.version, "digest": applied.digest, "operators": len(applied.roles),
            "approvers": list(ctx.approvers)}


@action("notify",
        args={"subject": {"type": "string", "minLength": 1, "maxLength": 100},
              "message": {"type": "string", "minLength": 1},
              "audience": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}},
        description="Publish a notice on the alert topic for the named audiences.",
        idempotent=True)  # a repeated notice is harmless; a missing one is not
def notify(ctx: OperationContext, subject: str, message: str, audience: list[str]) -> dict[str, Any]:
    body = f"To: {', '.join(audience)}\n\n{message}\n\n(runbook execution {ctx.execution_id}, by {ctx.actor})"
    message_id = alert_topic.notify(ctx.aws, subject, body)
    return {"message_id": message_id, "audience": list(audience)}


@action("canary",
        args={"expect_provider": _PROVIDER, "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 600}},
        description="Post a synthetic order and require it to fill at the expected broker within the timeout.",
        idempotent=True)  # a second synthetic order touches no customer
def canary(ctx: OperationContext, expect_provider: str, timeout: float) -> dict[str, Any]:
    result = intake_canary(ctx.settings, expect_provider=expect_provider, timeout=float(timeout))
    if result.get("status") != "FILLED":
        raise CheckFailed(f"canary order {result.get('order_id')} is {result.get('status')} after "
                          f"{result.get('seconds')} s, not FILLED")
    if result.get("provider") != expect_provider:
        raise OperationFailed(f"canary order {result.get('order_id')} filled at {result.get('provider')}, "
                              f"not {expect_provider}")
    return dict(result)
