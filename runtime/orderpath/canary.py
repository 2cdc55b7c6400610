"""Canary orders: a synthetic order through each broker on a schedule, measuring its latency, and
one through the whole order path on demand.

The scheduled canary (:func:`send_canary`, :func:`run_canary`) bypasses routing on purpose — it
proves each broker's path, the standby's included, whatever the flags say. The on-demand one
(:func:`intake_canary`, the runbooks' ``canary`` step and the drills' probe) posts to the intake and
waits for a worker to fill it, wherever routing sends it. Canary orders are recorded like any other
(so the history shows them) but carry ``synthetic: true``, which the exposure and reimbursement
code skip.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import threading
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx

from tradeops.runtime.orderpath.answers import Answer, Call, decide
from tradeops.runtime.orderpath.orders import OrderRequest, OrderStore, StaleOrder, new_order
from tradeops.runtime.orderpath.providers import Provider, ask
from tradeops.runtime.orderpath.router import open_providers
from tradeops.runtime.orderpath.routing import PROVIDERS
from tradeops.runtime.orderpath.states import FILLED, FINAL, REJECTED, SUBMITTING
from tradeops.runtime.orderpath.worker import broker_order
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import utcnow
from tradeops.runtime.platform.errors import CheckFailed, OperationFailed, TradeopsError
from tradeops.runtime.platform.events import EventLog
from tradeops.runtime.platform.logs import FORMATS, configure
from tradeops.runtime.platform.settings import Settings, load_settings

log = logging.getLogger("tradeops.canary")

__all__ = ["intake_canary", "run_canary", "send_canary"]


def send_canary(store: OrderStore, events: EventLog, provider: Provider, *, salt: str) -> dict[str, Any]:
    """One synthetic MARKET order straight to ``provider``; returns what happened and how long it took.

    The answer is recorded as the worker records it (:func:`.answers.decide`), except that an order the
    broker did not take is REJECTED: a canary proves one broker's path, so it goes to no other.
    """
    req = OrderRequest(order_id=f"canary-{provider.name}-{time.time_ns()}", account_id="canary", symbol="CANARY",
                       side="BUY", quantity=1, quote_price=Decimal("100"), synthetic=True)
    order, _ = store.create(new_order(req, actor="canary"))
    order = store.transition(order, SUBMITTING, actor="canary", set_fields={"provider": provider.name})
    start = time.monotonic()
    result: dict[str, Any] = {"order_id": order["order_id"], "provider": provider.name}
    reply = ask(Call.SUBMIT, provider.name, lambda: provider.submit(broker_order(order, salt)))
    decision = decide(order, reply, now=utcnow())
    if decision.may_send_elsewhere:
        decision = replace(decision, status=REJECTED, set_fields={"reject_reason": f"canary: {decision.note}"[:300]})
    with contextlib.suppress(StaleOrder):
        store.apply(order, decision, actor="canary")
    if reply.execution is None:
        result.update(ok=False, error=reply.error or decision.note)
    else:
        latency_ms = (time.monotonic() - start) * 1000
        result.update(ok=reply.answer is Answer.FILLED, latency_ms=round(latency_ms, 1), status=reply.execution.status)
        events.metric("CanaryLatencyMs", latency_ms, unit="Milliseconds", dimensions={"Provider": provider.name})
    if not result["ok"]:
        events.emit("canary_failed", metric=("CanaryFailed", 1.0), dimensions={"Provider": provider.name},
                    provider=provider.name, order_id=order["order_id"], error=result.get("error"))
    return result


def intake_canary(
    settings: Settings, *, expect_provider: str | None = None, timeout: float = 10.0, symbol: str = "CANARY"
) -> dict[str, Any]:
    """Post a synthetic order through the intake API and wait for it to fill; check the broker."""
    if not settings.intake_url or not settings.intake_token:
        raise OperationFailed("no intake API known (is the stack up?)")
    headers = {"Authorization": f"Bearer {settings.intake_token}"}
    order_id = f"canary-{int(time.time() * 1000)}"
    body = {
        "order_id": order_id,
        "account_id": "canary",
        "symbol": symbol,
        "side": "BUY",
        "quantity": 1,
        "quote_price": "100",
        "synthetic": True,
    }
    start = time.monotonic()
    try:
        posted = httpx.post(f"{settings.intake_url}/orders", json=body, headers=headers, timeout=5)
    except httpx.HTTPError as exc:
        raise OperationFailed(f"canary: intake API unreachable: {exc}") from None
    if posted.status_code not in (200, 202):
        raise OperationFailed(f"canary: intake refused the order: {posted.status_code} {posted.text[:200]}")
    order: dict[str, Any] = posted.json()
    while time.monotonic() - start < timeout:
        order = httpx.get(f"{settings.intake_url}/orders/{order_id}", headers=headers, timeout=5).json()
        if order.get("status") in FINAL:
            break
        time.sleep(0.2)
    result = {
        "order_id": order_id,
        "provider": order.get("provider"),
        "status": order.get("status"),
        "seconds": round(time.monotonic() - start, 3),
    }
    if result["status"] != FILLED:
        raise CheckFailed(f"canary {order_id} did not fill within {timeout:.0f}s (status {result['status']})")
    if expect_provider and result["provider"] != expect_provider:
        raise CheckFailed(f"canary {order_id} filled at {result['provider']}, expected {expect_provider}")
    return result


def run_canary(settings: Settings, stop: threading.Event) -> None:
    """Every ``canary_seconds``, one canary per broker (returns at once when canaries are off)."""
    if settings.canary_seconds <= 0:
        stop.wait()
        return
    aws = Aws(settings)
    store, events = OrderStore(aws), EventLog(aws, source="canary", background=True)
    providers = open_providers(settings, aws)
    while not stop.wait(settings.canary_seconds):
        for name in PROVIDERS:
            try:
                send_canary(store, events, providers[name], salt=settings.name_prefix)
            except TradeopsError as exc:
                log.warning("canary %s failed: %s", name, exc, extra={"provider": name})


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tradeops.runtime.orderpath.canary")
    parser.add_argument("--log-format", choices=FORMATS, default=None,
                        help="json (default; or TRADEOPS_LOG_FORMAT) or text for a terminal")
    configure("canary", fmt=parser.parse_args(argv).log_format)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        run_canary(load_settings(), stop)
    except TradeopsError as exc:
        log.error("canary failed to start: %s", exc)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
