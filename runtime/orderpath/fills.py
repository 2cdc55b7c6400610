"""Reconciling orders against the brokers' own fill ledgers: the I/O beside the pure :mod:`.reconcile`.

Used by load runs and drills to prove that every accepted order filled exactly once, at the broker
its record names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tradeops.runtime.brokers.control import SimControl
from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.orderpath.reconcile import Reconciliation, reconcile
from tradeops.runtime.orderpath.routing import PROVIDERS
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.settings import Settings

__all__ = ["broker_fills", "reconcile_orders"]


def broker_fills(settings: Settings) -> dict[str, list[dict[str, Any]]] | None:
    """Each broker's own fill ledger (the simulated brokers' ``/_sim/fills``); None when a broker has no
    control address we know (a real broker: its fills are not ours to read)."""
    fills: dict[str, list[dict[str, Any]]] = {}
    for provider in PROVIDERS:
        url = getattr(settings, f"{provider}_control_url")
        if not url:
            return None
        with SimControl(url, timeout=10.0) as control:
            fills[provider] = control.fills()
    return fills


def reconcile_orders(settings: Settings, aws: Aws, accepted: list[str], *, unanswered: Sequence[str] = (),
                     fills: dict[str, list[dict[str, Any]]] | None = None,
                     orders: dict[str, dict[str, Any]] | None = None,
                     ) -> tuple[Reconciliation, dict[str, dict[str, Any]]]:
    """Reconcile orders the intake accepted against the orders table and both brokers' fill ledgers.

    Reads the orders by id (BatchGetItem, never a scan) unless ``orders`` is given, and the fills
    unless ``fills`` is given; returns the reconciliation (:func:`.reconcile.reconcile`) and the
    orders as read. The orders are read first: a broker fills before the order is marked FILLED, so
    every FILLED order read then has its fill in a ledger read after (the other way round, an order
    that fills between the two reads would look lost). Pass ``fills`` only if read after ``orders``.
    """
    if orders is None:
        orders = OrderStore(aws).get_many([*accepted, *unanswered])
    if fills is None:
        fills = broker_fills(settings)
    return reconcile(accepted, orders, fills, unanswered=unanswered), orders
