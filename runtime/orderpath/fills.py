"""Reconciling orders against the brokers' own answers: the I/O beside the pure :mod:`.reconcile`.

Used by load runs and drills to prove that every accepted order filled exactly once, at the broker
its record names. The simulated brokers keep a fill ledger (``/_sim/fills``); a real broker, or its
sandbox, does not give us one, so there each broker is asked about each order with the adapters'
own status query (:func:`fills_by_status`), and an order a broker gave no answer about is left
unchecked rather than assumed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tradeops.runtime.brokers.control import SimControl
from tradeops.runtime.orderpath.answers import Answer, Call
from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.orderpath.providers import ask
from tradeops.runtime.orderpath.reconcile import Reconciliation, reconcile
from tradeops.runtime.orderpath.router import open_providers
from tradeops.runtime.orderpath.routing import PROVIDERS
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.settings import Settings

__all__ = ["broker_fills", "fills_by_status", "reconcile_orders"]


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


def fills_by_status(settings: Settings, aws: Aws, ids: Sequence[str], *, threads: int = 8
                    ) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """Each broker's fills among ``ids`` as its own status query answers them (every broker asked about every
    order), and the ids some broker gave no answer about. None of these calls feeds a breaker."""
    providers = open_providers(settings, aws)
    fills: dict[str, list[dict[str, Any]]] = {provider: [] for provider in providers}
    unchecked: set[str] = set()

    def one(provider: str, order_id: str) -> tuple[str, str, Answer]:
        client = providers[provider]
        return provider, order_id, ask(Call.STATUS, provider, lambda: client.status(order_id)).answer

    try:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="status-fills") as pool:
            for provider, order_id, answer in pool.map(lambda pair: one(*pair),
                                                       [(p, oid) for oid in ids for p in providers]):
                if answer is Answer.FILLED:
                    fills[provider].append({"order_id": order_id})
                elif answer is Answer.OUTCOME_UNKNOWN:
                    unchecked.add(order_id)
    finally:
        for client in providers.values():
            client.close()
    return fills, sorted(unchecked)


def reconcile_orders(settings: Settings, aws: Aws, accepted: list[str], *, unanswered: Sequence[str] = (),
                     fills: dict[str, list[dict[str, Any]]] | None = None,
                     orders: dict[str, dict[str, Any]] | None = None,
                     ) -> tuple[Reconciliation, dict[str, dict[str, Any]]]:
    """Reconcile orders the intake accepted against the orders table and both brokers' fill ledgers (their
    status queries where they keep none, when their endpoints are known).

    Reads the orders by id (BatchGetItem, never a scan) unless ``orders`` is given, and the fills
    unless ``fills`` is given; returns the reconciliation (:func:`.reconcile.reconcile`) and the
    orders as read. The orders are read first: a broker fills before the order is marked FILLED, so
    every FILLED order read then has its fill in a ledger read after (the other way round, an order
    that fills between the two reads would look lost). Pass ``fills`` only if read after ``orders``.
    """
    if orders is None:
        orders = OrderStore(aws).get_many([*accepted, *unanswered])
    source, unchecked = "ledger", list[str]()
    if fills is None:
        fills = broker_fills(settings)
    if fills is None and all(settings.broker_url(p) for p in PROVIDERS):
        source = "status"
        fills, unchecked = fills_by_status(settings, aws, [*accepted, *unanswered])
    recon = reconcile(accepted, orders, fills, unanswered=unanswered, unchecked=unchecked)
    return dataclasses.replace(recon, fills_source=source if fills is not None else None), orders
