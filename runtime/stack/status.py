"""The health of the running stack: each component's process and health check, plus the runtime figures.

What `tradeops status` shows. A component is healthy when its process is alive and its health
check answers; a broker's order API is probed through its adapter (one place knows each wire), so
a broker whose order port is down on purpose (fault injection) shows as such.
"""

from __future__ import annotations

from typing import Any

import httpx

from tradeops.runtime.orderpath.figures import runtime_status
from tradeops.runtime.orderpath.heartbeats import fleet
from tradeops.runtime.orderpath.providers import BrokerCallError, make_provider
from tradeops.runtime.orderpath.routing import PROVIDERS
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import StackError
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.platform.statefile import StackState, pid_alive, read_state

__all__ = ["aws_requests", "full_status", "sources", "stack_status"]


def _http_ok(url: str | None, timeout: float) -> bool:
    if not url:
        return False
    try:
        return httpx.get(url, timeout=timeout).status_code < 500
    except httpx.HTTPError:
        return False


def _broker_answers(provider: str, wire: str, url: str, timeout: float) -> bool:
    """The broker's order API answers its own health check (through its adapter: one place knows the wire)."""
    with make_provider(provider, wire, url, api_key=None, connect_timeout=timeout, read_timeout=timeout) as client:
        try:
            client.health()
        except BrokerCallError:
            return False
    return True


def sources(settings: Settings, state: StackState | None = None) -> dict[str, dict[str, Any]]:
    """Where orders and prices go and come from: each broker and the price feed, real or simulated, with its endpoint.

    From the running stack's state when there is one; otherwise (AWS with the runtime elsewhere, on ECS) from
    the settings, where real brokers are configured. A real feed's endpoint is the price stream it writes to.
    """
    stream = (state or {}).get("price_stream") or names_for(settings).price_stream
    found: dict[str, dict[str, Any]] = {}
    for provider in PROVIDERS:
        broker = (state or {}).get("brokers", {}).get(provider)
        if broker is None:
            found[provider] = {"simulated": False, "endpoint": settings.broker_url(provider),
                               "wire": settings.broker_wire(provider)}
        else:  # a state written before brokers could be real held only simulated ones
            found[provider] = {"simulated": bool(broker.get("simulated", True)),
                               "endpoint": broker.get("upstream") or broker["url"], "wire": broker["wire"]}
            if broker.get("control"):
                found[provider]["control"] = broker["control"]
            if broker.get("proxy"):  # the workers reach it through a fault proxy
                found[provider]["proxy"] = {"url": broker["url"], "control": broker["proxy"]}
    feed = (state or {}).get("prices")
    found["prices"] = {"simulated": bool(feed), "endpoint": feed or f"kinesis:{stream}", "stream": stream}
    return found


def stack_status(settings: Settings, *, timeout: float = 1.0) -> StackState:
    """The running stack as `status --json` shows it: addresses plus live health of each component."""
    state = read_state(settings.state_file)
    if not state or not pid_alive(state.get("supervisor_pid")):
        raise StackError("the stack is not up (run `tradeops up`)")
    if state.get("status") != "ready":
        raise StackError(f"the stack is {state.get('status')}: {state.get('error') or 'not ready yet'}")
    components: dict[str, bool] = {}
    details: dict[str, Any] = {}
    for name, comp in sorted(state.get("components", {}).items()):
        alive = pid_alive(comp.get("pid"))
        healthy = alive and (comp.get("health_url") is None or _http_ok(comp.get("health_url"), timeout))
        detail: dict[str, Any] = {"pid": comp.get("pid"), "alive": alive}
        if comp.get("provider"):
            # A broker's own order API may be down on purpose (fault injection); report both.
            detail["order_api"] = _broker_answers(comp["provider"], comp["wire"], comp["url"], timeout)
            detail["control"] = healthy
            healthy = healthy and detail["order_api"]
        if comp.get("restarts"):
            detail["restarts"] = comp["restarts"]
        components[name] = bool(healthy)
        details[name] = detail
    return {
        "status": "up",
        "local": state.get("local", True),
        "started_at": state.get("started_at"),
        "aws_endpoint": state.get("aws_endpoint"),
        "region": state.get("region"),
        "brokers": state.get("brokers", {}),
        "intake": state.get("intake"),
        "prices": state.get("prices"),
        "sources": sources(settings, state),
        "components": components,
        "details": details,
        "log_dir": state.get("log_dir"),
    }


def full_status(settings: Settings) -> dict[str, Any]:
    """`tradeops status`: every component's health plus routing, queue and order figures.

    A worker counts as healthy only while its heartbeat is fresh: a live process that stopped
    beating (stuck, or cut off from AWS) is not serving the queue.
    """
    info = stack_status(settings)
    info.update(runtime_status(Aws(settings)))
    beating = {w["worker_id"] for w in info["workers"]["workers"]}
    for name, detail in info["details"].items():
        if name.startswith("worker-"):
            detail["heartbeat"] = name in beating
            info["components"][name] = info["components"][name] and name in beating
    return info


# The stack's processes that publish their AWS request counters (workers do so in their heartbeats).
_COUNTING = ("intake", "monitor", "prices")


def aws_requests(settings: Settings, *, timeout: float = 2.0) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Each running component's AWS request counters (``service.Operation`` → requests since it started),
    and the components that could not be read. The canary and the supervisor do not publish theirs."""
    state = read_state(settings.state_file) or {}
    counts: dict[str, dict[str, int]] = {}
    unreadable: list[str] = []
    for name in _COUNTING:
        url = state.get("components", {}).get(name, {}).get("health_url")
        try:
            answer = httpx.get(url, timeout=timeout).json() if url else None
        except (httpx.HTTPError, ValueError):
            answer = None
        if isinstance(answer, dict) and isinstance(answer.get("aws_requests"), dict):
            counts[name] = {str(k): int(v) for k, v in answer["aws_requests"].items()}
        else:
            unreadable.append(name)
    for worker in fleet(Aws(settings))["workers"]:
        counts[worker["worker_id"]] = {str(k): int(v) for k, v in worker["aws_requests"].items()}
    return counts, unreadable
