"""The router: brokers behind one interface, a circuit breaker and an in-flight watch per broker, a health monitor.

The routing *decision* is pure (:func:`.routing.choose_provider`, :mod:`.breaker`, :mod:`.suspicion`);
this module owns the I/O around it: calling the adapters, feeding outcomes and health probes into
the breakers, registering every call while it is in flight, and publishing every breaker state
change and every suspicion as an event (table, metric).

A silent broker (:mod:`.suspicion`) is caught before any call to it finishes: the router asks the
watch on every routing choice and every ``suspect_check_ms`` in a thread of its own. A suspect
broker's breaker is tripped open and the broker is kept away from every order, in manual mode too
(the orders wait in the queue, not in doubt). It comes back only when its breaker closes again,
through the breaker's own half-open probes: a ``broker_cleared`` event then says so.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from tradeops.runtime.orderpath.answers import Execution
from tradeops.runtime.orderpath.breaker import BreakerConfig, CircuitBreaker, Transition
from tradeops.runtime.orderpath.providers import BrokerCallError, BrokerOrder, NotConnected, Provider, make_provider
from tradeops.runtime.orderpath.routing import PROVIDERS, choose_provider
from tradeops.runtime.orderpath.suspicion import CallWatch, SuspicionConfig, Verdict
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
            fault_proxy=settings.fault_proxy,
        )
    return providers


class Router:
    """Calls brokers on behalf of the worker and keeps their breakers and in-flight watches."""

    def __init__(self, settings: Settings, providers: dict[str, Provider], events: EventLog | None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.providers = providers
        self.events = events
        self.clock = clock
        config = BreakerConfig.from_settings(settings)
        self.breakers = {name: CircuitBreaker(name, config) for name in providers}
        suspicion = SuspicionConfig.from_settings(settings)
        self.watches = {name: CallWatch(suspicion) for name in providers}
        self.mode: str | None = None  # the routing mode of the last choice, for the suspicion event
        self._suspects: dict[str, tuple[Verdict, float]] = {}  # provider -> (verdict, when), until closed
        self._suspect_lock = threading.Lock()
        self._stop = threading.Event()
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
        self.mode = mode
        self.watch_silence()
        return choose_provider(order_id=order_id, mode=mode, active=active, trickle=trickle,
                               healthy=self.healthy(), exclude=exclude, suspect=self.suspect_names())

    def suspect_names(self) -> frozenset[str]:
        with self._suspect_lock:
            return frozenset(self._suspects)

    def suspects(self) -> dict[str, dict[str, Any]]:
        """Suspect brokers with the evidence that made them so (for heartbeats and `tradeops status`)."""
        with self._suspect_lock:
            return {name: {**verdict.evidence(), "suspect_for_s": round(self.clock() - since, 1)}
                    for name, (verdict, since) in self._suspects.items()}

    def watch_silence(self) -> None:
        """Ask the in-flight watch about every broker not already suspect; act on a new suspicion."""
        if not self.settings.broker_suspicion:
            return
        now = self.clock()
        for name, watch in self.watches.items():
            verdict = watch.verdict(now)
            if not verdict.suspect:
                continue
            with self._suspect_lock:
                if name in self._suspects:
                    continue
                self._suspects[name] = (verdict, now)
            why = (f"suspect: a call unanswered for {verdict.oldest_age_ms:.0f} ms "
                   f"> {verdict.threshold_ms:.0f} ms")
            # Act first (the suspect set above already keeps orders away; the breaker follows), then tell.
            tripped = self.breakers[name].trip(now, reason=why)
            if self.events is not None:
                action = ("orders wait in the queue (manual mode)" if self.mode == "manual"
                          else "orders go to the other broker if it is healthy")
                self.events.emit("broker_suspect", metric=("BrokerSuspect", 1.0), dimensions={"Provider": name},
                                 provider=name, mode=self.mode, action=action, **verdict.evidence())
            self._publish(tripped)

    # ---- calls -------------------------------------------------------------------------------
    def _timed(self, provider: str, call: Callable[[], Any]) -> Any:
        watch = self.watches[provider]
        start = self.clock()
        token = watch.started(start)
        try:
            result = call()
        except BrokerCallError as exc:
            now = self.clock()
            if exc.answered:
                watch.answered(token, now)
            else:
                watch.ended(token)
            self._publish(self.breakers[provider].record_failure(now, reason=type(exc).__name__,
                                                                 refused=isinstance(exc, NotConnected)))
            raise
        except BaseException:
            watch.ended(token)
            raise
        now = self.clock()
        latency = (now - start) * 1000
        watch.answered(token, now, latency)
        self._publish(self.breakers[provider].record_success(latency, now))
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

    def answers(self, provider: str) -> bool:
        """Whether the last health probe of ``provider`` was answered (the broker is reachable now)."""
        return bool(self.last_probe.get(provider, {}).get("healthy"))

    # ---- health monitor ----------------------------------------------------------------------
    def probe(self, provider: str) -> None:
        """One health probe, recorded into the breaker and the in-flight watch like any call."""
        watch = self.watches[provider]
        start = self.clock()
        token = watch.started(start)
        try:
            latency = self.providers[provider].health()
        except BrokerCallError as exc:
            now = self.clock()
            if exc.answered:
                watch.answered(token, now)
            else:
                watch.ended(token)
            self.last_probe[provider] = {"healthy": False, "error": str(exc)[:200]}
            self._publish(self.breakers[provider].record_failure(now, reason=f"health probe: {exc}",
                                                                 refused=isinstance(exc, NotConnected)))
            return
        except BaseException:
            watch.ended(token)
            raise
        now = self.clock()
        latency = max(latency, (now - start) * 1000)
        watch.answered(token, now, latency)
        self.last_probe[provider] = {"healthy": True, "latency_ms": round(latency, 1)}
        self._publish(self.breakers[provider].record_success(latency, now))

    def start_monitor(self) -> None:
        """Probe every broker every ``health_probe_seconds``, each in its own thread (a blackholed
        broker must not delay the other's probe), and watch for silence every ``suspect_check_ms``."""
        def loop(provider: str) -> None:
            while not self._stop.wait(self.settings.health_probe_seconds):
                try:
                    self.probe(provider)
                except RuntimeError:
                    if self._stop.is_set():
                        return  # stop() closed the client between the wait and the probe: shutting down
                    raise

        def watch() -> None:
            while not self._stop.wait(self.settings.suspect_check_ms / 1000):
                self.watch_silence()
                self.healthy()  # publishes time-based breaker moves (open → half_open) as they fall due

        for name in self.providers:
            threading.Thread(target=loop, args=(name,), name=f"health-{name}", daemon=True).start()
        threading.Thread(target=watch, name="in-flight-watch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        for provider in self.providers.values():
            provider.close()

    def _publish(self, transition: Transition | None) -> None:
        if transition is None:
            return
        cleared = None
        if transition.to_state == "closed":
            with self._suspect_lock:
                cleared = self._suspects.pop(transition.provider, None)
        if self.events is None:
            return
        kind = {"open": "breaker_opened", "closed": "breaker_closed", "half_open": "breaker_half_open"}[
            transition.to_state]
        self.events.emit(kind, metric=("BreakerOpen", 1.0 if transition.to_state == "open" else 0.0),
                         dimensions={"Provider": transition.provider}, provider=transition.provider,
                         from_state=transition.from_state, to_state=transition.to_state, reason=transition.reason)
        if cleared is not None:
            _, since = cleared
            now = self.clock()
            self.events.emit("broker_cleared", metric=("BrokerSuspect", 0.0),
                             dimensions={"Provider": transition.provider}, provider=transition.provider,
                             reason=transition.reason, suspect_for_s=round(now - since, 1),
                             **self.watches[transition.provider].verdict(now).evidence())
