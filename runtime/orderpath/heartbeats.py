"""Worker heartbeats: what each worker says about itself every ``heartbeat_seconds``, and the fleet read back.

One item per worker in the heartbeats table, replaced at each beat (every ``heartbeat_seconds``, and at once
when the worker sees a flag change, stops taking orders, or lets go of its last order while paused) and
expiring after an hour: how
many orders it holds and whether it takes new ones (a runbook proves the fleet drained before it
switches brokers), the processing and routing flags it last saw (a flag change has reached the fleet
when every live worker reports it), its breakers, last probes and suspect brokers
with their evidence, its counters and the AWS requests it has sent. `tradeops status`, the runbooks
and the drills read the live ones through :func:`fleet`.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from typing import Any

from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.clock import utcnow
from tradeops.runtime.platform.names import names_for

__all__ = ["EXPIRES_AFTER_SECONDS", "fleet", "heartbeat_item"]

EXPIRES_AFTER_SECONDS = 3600
"""A worker gone for this long drops out of the table (DynamoDB's TTL on ``expires_at``)."""


def heartbeat_item(worker_id: str, *, at: float, in_flight: int, taking: bool, processing: str,
                   routing: tuple[str, str], breakers: Mapping[str, str], probes: Mapping[str, Any],
                   suspect: Mapping[str, Any], counters: Mapping[str, int],
                   aws_requests: Mapping[str, int]) -> dict[str, Any]:
    """One worker's heartbeat as a DynamoDB item; ``at`` in seconds since the epoch, ``routing`` the
    (mode, active broker) it last read."""
    return {
        "worker_id": {"S": worker_id}, "host": {"S": socket.gethostname()}, "pid": {"N": str(os.getpid())},
        "at_epoch": {"N": f"{at:.3f}"}, "expires_at": {"N": str(int(at) + EXPIRES_AFTER_SECONDS)},
        "in_flight": {"N": str(in_flight)}, "taking": {"BOOL": taking}, "processing": {"S": processing},
        "mode": {"S": routing[0]}, "active": {"S": routing[1]},
        "breakers": {"S": json.dumps(breakers)}, "probes": {"S": json.dumps(probes)},
        "suspect": {"S": json.dumps(suspect)}, "counters": {"S": json.dumps(counters)},
        "aws_requests": {"S": json.dumps(aws_requests)},
    }


def fleet(aws: Aws, *, max_age: float | None = None) -> dict[str, Any]:
    """Live workers from their heartbeats, with the total in flight. Drained = live and none in flight."""
    names = names_for(aws.settings)
    max_age = max_age if max_age is not None else 3 * aws.settings.heartbeat_seconds + 1
    with aws_errors("read worker heartbeats"):
        items = aws.dynamodb.scan(TableName=names.heartbeats_table).get("Items", [])
    now = utcnow().timestamp()
    workers = []
    for item in items:
        age = now - float(item["at_epoch"]["N"])
        if age > max_age:
            continue
        workers.append(
            {
                "worker_id": item["worker_id"]["S"],
                "in_flight": int(item["in_flight"]["N"]),
                "taking": item.get("taking", {}).get("BOOL", False),
                "processing": item.get("processing", {}).get("S"),
                "mode": item.get("mode", {}).get("S"),
                "active": item.get("active", {}).get("S"),
                "age_seconds": round(age, 2),
                "breakers": json.loads(item.get("breakers", {}).get("S", "{}")),
                "suspect": json.loads(item.get("suspect", {}).get("S", "{}")),
                "counters": json.loads(item.get("counters", {}).get("S", "{}")),
                "aws_requests": json.loads(item.get("aws_requests", {}).get("S", "{}")),
            }
        )
    workers.sort(key=lambda w: w["worker_id"])
    in_flight = sum(w["in_flight"] for w in workers)
    return {
        "workers": workers,
        "in_flight": in_flight,
        "drained": in_flight == 0 and not any(w["taking"] for w in workers),
        # Events the workers' bounded queues dropped rather than delay an order (platform/events.py).
        "events_dropped": sum(int(w["counters"].get("events_dropped", 0)) for w in workers),
    }
