"""The order queue's message: the one place it is built and the one place it is read. Pure.

A message carries only the order's id (``{"order_id": "..."}``); the order itself lives in the
orders table, where every state change is a conditional write. So a duplicate, late or replayed
message can never carry a stale copy of an order.
"""

from __future__ import annotations

import json

__all__ = ["order_message", "parse_order_message"]


def order_message(order_id: str) -> str:
    """The SQS message body that asks a worker to take ``order_id``."""
    if not isinstance(order_id, str) or not order_id:
        raise ValueError("an order message needs a non-empty order id")
    return json.dumps({"order_id": order_id}, separators=(",", ":"))


def parse_order_message(body: object) -> str | None:
    """The order id a message body names, or None when the body is not an order message."""
    if not isinstance(body, str | bytes):
        return None
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    order_id = data.get("order_id") if isinstance(data, dict) else None
    return order_id if isinstance(order_id, str) and order_id else None
