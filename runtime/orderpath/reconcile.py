"""Reconciliation of a set of orders against the brokers' own fill ledgers. Pure.

Load runs and drills end with the same question: of the orders the intake said it took, where is
each one now, and does every broker agree? :func:`reconcile` takes plain values — the ids the
intake answered 2xx for, the ids whose answer never came, the orders as read from the orders
table, and each broker's fills — and returns counts with the offending order ids. The reads are
done by :func:`tradeops.runtime.orderpath.fills.reconcile_orders`.

Every accepted order lands in exactly one outcome:

- ``filled``: FILLED in the table and filled by exactly the broker the order names;
- ``rejected``, ``cancelled``, ``dead_lettered``: that final state;
- ``pending``: still ACCEPTED, SUBMITTING or IN_DOUBT;
- ``lost``: the intake said 2xx but no order exists, or the order claims FILLED and no broker has
  the fill.

Cross-checks, counted on top (an order counted here is also counted above):

- ``filled_twice``: more than one fill across both brokers;
- ``wrong_broker``: filled at a broker other than the one the order records;
- ``unrecorded_fill``: a broker filled it, but the order says REJECTED, CANCELLED or DEAD_LETTERED
  (the customer was told it did not trade);
- ``unchecked``: a broker could not be asked about it (a status query with no answer), so its fills
  are not known: it is never called lost for want of a fill, and never proven filled only once.

The fills are each broker's own fill ledger (the simulated brokers' ``/_sim/fills``) or, where a
broker has none (a real broker, a sandbox), its answer to a status query for each order
(``fills_source``): a broker that filled one order twice under the same id answers once, which only
a ledger would show.

Time to fill is measured from the orders' own timestamps: ``placed_at`` to the history entry
that moved the order to FILLED.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tradeops.runtime.orderpath.states import CANCELLED, DEAD_LETTERED, FILLED, PENDING, REJECTED
from tradeops.runtime.platform.clock import parse_iso

__all__ = ["OUTCOMES", "Reconciliation", "fill_times", "reconcile"]

OUTCOMES = ("filled", "rejected", "cancelled", "dead_lettered", "pending", "lost")
CHECKS = ("filled_twice", "wrong_broker", "unrecorded_fill", "unchecked")
_BY_STATUS = {FILLED: "filled", REJECTED: "rejected", CANCELLED: "cancelled", DEAD_LETTERED: "dead_lettered"}


@dataclass(frozen=True)
class Reconciliation:
    """Where the accepted orders are. ``ids`` holds the order ids of every outcome and check."""

    placed: int
    unanswered: int
    unanswered_found: int
    fills_checked: bool
    counts: dict[str, int]
    ids: dict[str, list[str]]
    by_provider: dict[str, int] = field(default_factory=dict)
    """FILLED orders per broker named by the order."""
    fills_source: str | None = None
    """Where the fills came from: ``ledger`` (the brokers' fill ledgers), ``status`` (status queries), or None."""

    def as_dict(self, *, limit: int | None = None) -> dict[str, Any]:
        """Plain data; ``limit`` caps each id list (the full lists belong in the run folder)."""
        return {
            "placed": self.placed, "unanswered": self.unanswered, "unanswered_found": self.unanswered_found,
            "fills_checked": self.fills_checked, "fills_source": self.fills_source, "counts": dict(self.counts),
            "by_provider": dict(self.by_provider),
            "ids": {k: (v if limit is None else v[:limit]) for k, v in self.ids.items()},
        }


def reconcile(
    accepted: Iterable[str],
    orders: Mapping[str, Mapping[str, Any]],
    fills: Mapping[str, Iterable[Mapping[str, Any]]] | None,
    *,
    unanswered: Iterable[str] = (),
    unchecked: Iterable[str] = (),
) -> Reconciliation:
    """Count the accepted orders by outcome and cross-check them against the brokers' fills.

    ``orders`` maps order id to the order as stored (any ids, extra ones are ignored); ``fills`` maps
    each broker to its fill ledger (``{"order_id", ...}`` entries; other orders' fills are ignored),
    or is None when no ledger can be read: then FILLED orders are taken at their word and the
    cross-checks are not made (``fills_checked`` False). ``unanswered`` ids (no answer came) are
    not placed orders; those that exist anyway are reported as ``unanswered_found``. ``unchecked`` ids are
    orders some broker could not be asked about: their fills are not known.
    """
    placed_ids = list(dict.fromkeys(accepted))
    wanted = set(placed_ids)
    unknown = set(unchecked)
    fills_at: dict[str, list[str]] = {}
    if fills is not None:
        for provider, ledger in fills.items():
            for fill in ledger:
                order_id = str(fill.get("order_id"))
                if order_id in wanted:
                    fills_at.setdefault(order_id, []).append(provider)
    ids: dict[str, list[str]] = {name: [] for name in (*OUTCOMES, *CHECKS)}
    by_provider: Counter[str] = Counter()
    for order_id in placed_ids:
        order = orders.get(order_id)
        if order is None:
            ids["lost"].append(order_id)
            continue
        status = str(order.get("status"))
        at = fills_at.get(order_id, [])
        if order_id in unknown:
            ids["unchecked"].append(order_id)
        if status == FILLED:
            if fills is not None and not at and order_id not in unknown:
                ids["lost"].append(order_id)
                continue
            ids["filled"].append(order_id)
            by_provider[str(order.get("provider"))] += 1
            if len(at) > 1:
                ids["filled_twice"].append(order_id)
            if fills is not None and any(p != order.get("provider") for p in at):
                ids["wrong_broker"].append(order_id)
            continue
        if status in PENDING:
            ids["pending"].append(order_id)
            continue
        outcome = _BY_STATUS.get(status)
        ids[outcome or "pending"].append(order_id)
        if at:
            ids["unrecorded_fill"].append(order_id)
    unanswered_ids = [oid for oid in dict.fromkeys(unanswered) if oid not in wanted]
    found = sum(1 for oid in unanswered_ids if oid in orders)
    return Reconciliation(
        placed=len(placed_ids), unanswered=len(unanswered_ids), unanswered_found=found,
        fills_checked=fills is not None, counts={k: len(v) for k, v in ids.items()}, ids=ids,
        by_provider=dict(sorted(by_provider.items())),
    )


def _moment(value: Any) -> datetime | None:
    try:
        return parse_iso(str(value))
    except ValueError:
        return None


def fill_times(orders: Iterable[Mapping[str, Any]]) -> list[tuple[str, datetime, datetime, str]]:
    """``(order_id, placed_at, filled_at, provider)`` of every FILLED order, from its own history."""
    times = []
    for order in orders:
        if order.get("status") != FILLED:
            continue
        placed = _moment(order.get("placed_at"))
        entry = next((h for h in order.get("history") or [] if h.get("status") == FILLED), None)
        filled = _moment(entry.get("at")) if entry else None
        if placed is None or filled is None:
            continue
        times.append((str(order["order_id"]), placed, filled, str(order.get("provider"))))
    return times
