"""Canary orders: a synthetic order through each broker on a schedule, measuring its latency.

The canary bypasses routing on purpose — it proves each broker's path, the standby's included,
whatever the flags say. Its orders are recorded like any other (so the history shows them) but
carry ``synthetic: true``, which the exposure and reimbursement code skip.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from decimal import Decimal
from typing import Any

from tradeops.runtime.orderpath.orders import OrderRequest, OrderStore, StaleOrder, new_order
from tradeops.runtime.orderpath.providers import BrokerCallError, NotAccepted, NotReceived, Provider
from tradeops.runtime.orderpath.router import open_providers
from tradeops.runtime.orderpath.routing import PROVIDERS
from tradeops.runtime.orderpath.worker import broker_order
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import TradeopsError
from tradeops.runtime.platform.events import EventLog
from tradeops.runtime.platform.logs import FORMATS, configure
from tradeops.runtime.platform.settings import Settings, load_settings

log = logging.getLogger("tradeops.canary")

__all__ = ["run_canary", "send_canary"]


def send_canary(store: OrderStore, events: EventLog, provider: Provider, *, salt: str) -> dict[str, Any]:
    """One synthetic MARKET order straight to ``provider``; returns what happened and how long it took."""
    req = OrderRequest(order_id=f"canary-{provider.name}-{time.time_ns()}", account_id="canary", symbol="CANARY",
                       side="BUY", quantity=1, quote_price=Decimal("100"), synthetic=True)
    order, _ = store.create(new_order(req, actor="canary"))
    order = store.transition(order, "SUBMITTING", actor="canary", set_fields={"provider": provider.name})
    start = time.monotonic()
    result: dict[str, Any] = {"order_id": order["order_id"], "provider": provider.name}
    try:
        ex = provider.submit(broker_order(order, salt))
    except (NotReceived, NotAccepted) as exc:
        store.transition(order, "REJECTED", actor="canary", set_fields={"reject_reason": f"canary: {exc}"[:300]})
        result.update(ok=False, error=str(exc))
    except BrokerCallError as exc:
        store.transition(order, "IN_DOUBT", actor="canary", note=f"canary: {exc}"[:300])
        result.update(ok=False, error=str(exc))
    else:
        latency_ms = (time.monotonic() - start) * 1000
        fields = {"fill_price": ex.price, "filled_quantity": ex.quantity} if ex.status == "FILLED" else {}
        try:
            store.transition(order, ex.status if ex.status in ("FILLED", "REJECTED") else "REJECTED",
                             actor="canary", set_fields={k: v for k, v in fields.items() if v is not None})
        except StaleOrder:
            pass
        result.update(ok=ex.status == "FILLED", latency_ms=round(latency_ms, 1), status=ex.status)
        events.metric("CanaryLatencyMs", latency_ms, unit="Milliseconds", dimensions={"Provider": provider.name})
    if not result["ok"]:
        events.emit("canary_failed", metric=("CanaryFailed", 1.0), dimensions={"Provider": provider.name},
                    provider=provider.name, order_id=order["order_id"], error=result.get("error"))
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
