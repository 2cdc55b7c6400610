"""The router: brokers behind one interface, a circuit breaker per broker, and a health monitor.

The routing *decision* is pure (:func:`.routing.choose_provider`, :mod:`.breaker`); this module owns
the I/O around it: calling the adapters, feeding outcomes and health probes into the breakers, and
publishing every breaker state change as an event (table, metric, alert).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from tradeops.runtime.orderpath.breaker import BreakerConfig, CircuitBreaker, Transition
from tradeops.runtime.orderpath.providers import BrokerCallError, BrokerOrder, Execution, Provider, make_provider
from tradeops.runtime.orderpath.routing import PROVIDERS, choose_provider
from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.errors import ConfigError
from tradeops.runtime.platform.events import EventLog
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import Settings

__all__ = ["Router", "broker_api_key", "open_providers"]


def broker_api_key(settings: Settings, aws: Aws, provider: str) -> str | None:
    """The broker's API key: a setting if given, else Secrets Manager. Never logged."""
    explicit = getattr(settings, f"{provider}_api_key")
    if explicit:
        return explicit
    with aws_errors(f"read the {provider} broker credentials"):
        return aws.secrets.get_secret_value(SecretId=names_for(settings).broker_secret(provider))["SecretString"]


def open_providers(settings: Settings, aws: Aws) -> dict[str, Provider]:
    """One adapter per configured broker."""
    providers: dict[str, Provider] = {}
    for name in PROVIDERS:
        url = settings.broker_url(name)
        if not url:
            raise ConfigError(f"no URL for the {name} broker (TRADEOPS_{name.upper()}_URL, or start the stack)")
        providers[name] = make_provider(
            name, settings.broker_wire(name), url, api_key=broker_api_key(settings, aws, name),
            connect_timeout=settings.broker_connect_timeout, read_timeout=settings.broker_read_timeout,
        )
    return providers


class Router:
    """Calls brokers on behalf of the worker and keeps their breakers."""

    def __init__(self, settings: Settings, providers: dict[str, Provider], events: EventLog | None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.providers = providers
        self.events = events
        self.clock = clock
        config = BreakerConfig.from_settings(settings)
        self.breakers = {name: CircuitBreaker(name, config) for name in providers}
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None
        self.last_probe: dict[str, dict[str, Any]] = {}

    # ---- decisions ---------------------------------------------------------------------------
    def healthy(self) -> dict[str, bool]:
        """Closed breakers are healthy. A half-open broker is proven by health probes, not orders."""
        now = self.clock()
        states = {}
        for name, breaker in self.breakers.items():
            self._publish(breaker.poll(now))
            states[name] = breaker.snapshot(now)["state"] == "closed"
        return states

    def choose(self, order_id: str, *, mode: str, active: str, trickle: float,
               exclude: tuple[str, ...] | set[str] = ()) -> str | None:
        return choose_provider(order_id=order_id, mode=mode, active=active, trickle=trickle,
                               healthy=self.healthy(), exclude=exclude)

    # ---- calls -------------------------------------------------------------------------------
    def _timed(self, provider: str, call: Callable[[], Any]) -> Any:
        start = self.clock()
        try:
            result = call()
        except BrokerCallError as exc:
            self._publish(self.breakers[provider].record_failure(self.clock(), reason=type(exc).__name__))
            raise
        self._publish(self.breakers[provider].record_success((self.clock() - start) * 1000, self.clock()))
        return result

    def submit(self, provider: str, order: BrokerOrder) -> Execution:
        return self._timed(provider, lambda: self.providers[provider].submit(order))

    def status(self, provider: str, order_id: str) -> Execution | None:
        return self._timed(provider, lambda: self.providers[provider].status(order_id))

    def cancel(self, provider: str, order_id: str) -> Execution | None:
        return self._timed(provider, lambda: self.providers[provider].cancel(order_id))

    def snapshot(self) -> dict[str, dict[str, Any]]:
        now = self.clock()
        return {name: breaker.snapshot(now) for name, breaker in self.breakers.items()}

    # ---- health monitor ----------------------------------------------------------------------
    def probe(self, provider: str) -> None:
        """One health probe, recorded into the breaker like any call."""
        start = self.clock()
        try:
            latency = self.providers[provider].health()
        except BrokerCallError as exc:
            self.last_probe[provider] = {"healthy": False, "error": str(exc)[:200]}
            self._publish(self.breakers[provider].record_failure(self.clock(), reason=f"health probe: {exc}"))
            return
        self.last_probe[provider] = {"healthy": True, "latency_ms": round(latency, 1)}
        self._publish(self.breakers[provider].record_success(max(latency, (self.clock() - start) * 1000),
                                                             self.clock()))

    def start_monitor(self) -> None:
        """Probe every broker every ``health_probe_seconds``, each in its own thread (a blackholed
        broker must not delay the other's probe)."""
        def loop(provider: str) -> None:
            while not self._stop.wait(self.settings.health_probe_seconds):
                self.probe(provider)

        for name in self.providers:
            threading.Thread(target=loop, args=(name,), name=f"health-{name}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        for provider in self.providers.values():
            provider.close()

    def _publish(self, transition: Transition | None) -> None:
        if transition is None or self.events is None:
            return
        kind = {"open": "breaker_opened", "closed": "breaker_closed", "half_open": "breaker_half_open"}[
            transition.to_state]
        self.events.emit(kind, metric=("BreakerOpen", 1.0 if transition.to_state == "open" else 0.0),
                         dimensions={"Provider": transition.provider}, provider=transition.provider,
                         from_state=transition.from_state, to_state=transition.to_state, reason=transition.reason)
