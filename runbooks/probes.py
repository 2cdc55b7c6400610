"""The built-in probes runbooks can name: plain functions ``probe(ctx, **args)`` returning a value or a Reading.

Each is a thin call into the runtime: :mod:`tradeops.runtime.orderpath.flags` for the flags,
:mod:`tradeops.runtime.orderpath.heartbeats` for the fleet, :mod:`~tradeops.runtime.orderpath.inflight`
for the brokers and the orders in flight there, :mod:`~tradeops.runtime.orderpath.figures` for the queue. What
each takes is in :mod:`.catalogue`, which names them by module and name (nothing here registers itself).
"""

from __future__ import annotations

import time

from tradeops.runbooks.registry import OperationContext, Reading
from tradeops.runbooks.roster import Roster
from tradeops.runtime.orderpath import figures, heartbeats, inflight
from tradeops.runtime.orderpath.flags import Flags

__all__ = ["active_broker", "broker_healthy", "broker_healthy_for", "in_flight_at", "oldest_pending_age_seconds",
           "processing", "roster_proposal_current", "routing_mode", "workers_drained"]


def broker_healthy(ctx: OperationContext, provider: str) -> Reading:
    health = inflight.broker_health(ctx.settings, ctx.aws, provider)
    return Reading(bool(health.get("healthy")),
                   {"latency_ms": health.get("latency_ms"), "error": health.get("error")})


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


def processing(ctx: OperationContext) -> str:
    return Flags(ctx.aws).read().processing


def routing_mode(ctx: OperationContext) -> str:
    return Flags(ctx.aws).read().mode


def active_broker(ctx: OperationContext) -> str:
    return Flags(ctx.aws).read().active


def workers_drained(ctx: OperationContext) -> Reading:
    fleet = heartbeats.fleet(ctx.aws)
    return Reading(bool(fleet.get("drained")),
                   {"workers": len(fleet.get("workers", [])), "in_flight": fleet.get("in_flight")})


def in_flight_at(ctx: OperationContext, provider: str) -> Reading:
    orders = inflight.in_flight_orders(ctx.aws, provider)
    return Reading(len(orders), {"order_ids": [o.get("order_id") for o in orders[:20]]})


def oldest_pending_age_seconds(ctx: OperationContext) -> float:
    age = figures.oldest_pending_age(ctx.aws)
    return round(float(age), 3) if age is not None else 0.0


def roster_proposal_current(ctx: OperationContext, proposal: str) -> Reading:
    roster = Roster(ctx.aws)
    operators, record = roster.proposal(proposal)
    current = roster.require()
    return Reading(record.get("base_digest") == current.digest,
                   {"operators": len(operators.roles), "base_version": record.get("base_version"),
                    "current_version": current.version, "proposed_by": record.get("proposed_by")})
