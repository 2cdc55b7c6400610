"""What a local stack starts after the AWS emulator: its components, their ports and commands, and their order.

A component starts once every component of an earlier :data:`STAGES` entry answers its health check; the
components of one stage start together, so a stage holds what needs nothing of the others in it. The simulated
brokers start first; then the fault proxies in front of them and the price feed, which pins the brokers' fill
prices through their control APIs; then everything that calls them (the approval gate, the intake, the monitor,
which reads the feed's prices, the audit anchorer, the workers); then the canary, which places its orders
through the intake.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from tradeops.runtime.platform.errors import StackError
from tradeops.runtime.stack.processes import HOST, Component, free_port, port_free

__all__ = ["MODULES", "SERVICES", "STAGES", "Simulated", "on_free_ports", "plan", "proxy_component", "python_command",
           "stages"]

STAGES = ("brokers", "proxies and prices", "callers", "canary")
"""The start stages, in order (module docstring): a component's ``stage`` indexes this."""

# What the other components call. They stop last, once every caller has stopped: a worker finishing
# its last order can still record it, and no component's last act is a burst of connection errors,
# opened breakers and unpublished events against an emulator that has already gone.
SERVICES = frozenset({"aws", "broker-primary", "broker-secondary", "proxy-primary", "proxy-secondary", "prices"})


def python_command(*args: str) -> list[str]:
    """``python ARGS`` with the interpreter running this process (the venv or image the stack was started from)."""
    return [sys.executable, *args]


# The process of each component: an installed module, so a container or a systemd unit can run it too.
MODULES = {
    "aws": "tradeops.runtime.stack.emulator",
    "broker": "tradeops.runtime.brokers.sim",
    "proxy": "tradeops.runtime.brokers.proxy",
    "intake": "tradeops.runtime.orderpath.intake",
    "prices": "tradeops.runtime.liability.prices",
    "monitor": "tradeops.runtime.liability.monitor",
    "canary": "tradeops.runtime.orderpath.canary",
    "audit-anchor": "tradeops.runbooks.anchor",  # by name only: the runtime imports nothing of runbooks
    "gate": "tradeops.runbooks.gateservice",
    "worker": "tradeops.runtime.orderpath.worker",
    "supervisor": "tradeops.runtime.stack.supervisor",
}


def _http_component(name: str, port: int | None, *, stage: int, restart: bool = False) -> Component:
    """A runtime service ``python -m <module> --host --port`` with a ``/health`` endpoint, on ``port`` or a free
    one."""
    chosen = port or free_port()
    url = f"http://{HOST}:{chosen}"
    return Component(name=name, argv=python_command("-m", MODULES[name], "--host", HOST, "--port", str(chosen)),
                     health_url=f"{url}/health", restart=restart, info={"url": url, "ports": [chosen]}, stage=stage,
                     replan=lambda: _http_component(name, port, stage=stage, restart=restart))


@dataclass(frozen=True)
class Simulated:
    """What the stack simulates. The local stack simulates both; on AWS only what a sandbox asks for."""

    brokers: bool = True
    prices: bool = True

    def flags(self) -> list[str]:
        """The supervisor's command-line options that say so."""
        return [flag for flag, on in (("--sim-brokers", self.brokers), ("--sim-prices", self.prices)) if on]


def on_free_ports(comp: Component, attempts: int = 5) -> Component:
    """``comp``, or the same component on other free ports if another process took one of its ports since it
    was planned (a second stack starting beside this one); StackError naming the component when a port is taken
    that nobody may change (one the operator fixed with ``--port``) or no free ports turn up."""
    for _ in range(attempts):
        taken = [port for port in comp.info.get("ports", []) if not port_free(port)]
        if not taken:
            return comp
        if comp.replan is None:
            break
        again = comp.replan()
        if set(taken) & set(again.info["ports"]):  # free_port picks free ports only: this one is fixed
            break
        comp = again
    raise StackError(f"{comp.name}: port {taken[0]} on {HOST} is already in use")


def proxy_component(provider: str, upstream: str, seed: int) -> Component:
    """The fault proxy in front of ``provider``'s order API at ``upstream``; the workers call it instead."""
    port, control_port = free_port(), free_port()
    url, control = f"http://{HOST}:{port}", f"http://{HOST}:{control_port}"
    return Component(
        name=f"proxy-{provider}",
        argv=python_command("-m", MODULES["proxy"], "--name", provider, "--upstream", upstream, "--host", HOST,
                     "--port", str(port), "--control-port", str(control_port), "--seed", str(seed)),
        health_url=f"{control}/_proxy/health",
        info={"proxy_for": provider, "url": url, "proxy": control, "upstream": upstream,
              "ports": [port, control_port], "seed": seed}, stage=STAGES.index("proxies and prices"),
        replan=lambda: proxy_component(provider, upstream, seed),
    )


def _broker_component(name: str, wire: str, seed: int, order_port: int | None) -> Component:
    """A simulated broker: its order API on ``order_port`` or a free one, its control API on a free one."""
    chosen, control_port = order_port or free_port(), free_port()
    url, control = f"http://{HOST}:{chosen}", f"http://{HOST}:{control_port}"
    return Component(
        name=f"broker-{name}",
        argv=python_command("-m", MODULES["broker"], "--name", name, "--wire", wire, "--host", HOST,
                     "--order-port", str(chosen), "--control-port", str(control_port), "--seed", str(seed)),
        health_url=f"{control}/_sim/health",
        info={"provider": name, "wire": wire, "url": url, "control": control, "simulated": True,
              "ports": [chosen, control_port]}, stage=STAGES.index("brokers"),
        replan=lambda: _broker_component(name, wire, seed, order_port),
    )


def plan(ports: dict[str, int | None], *, workers: int, simulate: Simulated = Simulated(),
         fault_proxy: bool = False, real_brokers: dict[str, str] | None = None, gate: bool = False) -> list[Component]:
    """Every component after the AWS emulator, in start order, each with its stage (module docstring). No simulator
    that ``simulate`` leaves out; a fault proxy in front of each broker, the simulated ones or ``real_brokers``'
    endpoints, when ``fault_proxy``; the approval gate, which asks the brokers about orders before releasing them,
    when ``gate``."""
    fronts, callers = STAGES.index("proxies and prices"), STAGES.index("callers")
    comps: list[Component] = []
    brokers = [_broker_component(name, wire, seed, ports.get(name))
               for name, wire, seed in (("primary", "alpha", 1), ("secondary", "beta", 2)) if simulate.brokers]
    comps += brokers
    if simulate.prices:
        comps.append(_http_component("prices", None, stage=fronts, restart=True))
    if fault_proxy:
        upstreams = [(b.info["provider"], b.info["url"]) for b in brokers] + sorted((real_brokers or {}).items())
        comps += [proxy_component(name, url, seed) for seed, (name, url) in enumerate(upstreams, start=1)]
    if gate:
        # Restarted if it dies, as its ECS service would be: a run stopped meanwhile resumes once it is back.
        comps.append(_http_component("gate", None, stage=callers, restart=True))
    # The intake comes back on the same port if it dies: orders it recorded but never enqueued are the
    # workers' sweeper's to finish, the platform's retries need somewhere to land.
    comps.append(_http_component("intake", ports.get("intake"), stage=callers, restart=True))
    comps.append(_http_component("monitor", None, stage=callers, restart=True))
    comps.append(Component(name="audit-anchor", argv=python_command("-m", MODULES["audit-anchor"]), health_url=None,
                           restart=True, stage=callers))
    comps += [Component(name=f"worker-{n}", argv=python_command("-m", MODULES["worker"], "--id", f"worker-{n}"),
                        health_url=None, restart=True, info={"worker_id": f"worker-{n}"}, stage=callers)
              for n in range(1, workers + 1)]
    comps.append(Component(name="canary", argv=python_command("-m", MODULES["canary"]), health_url=None,
                           restart=True, stage=STAGES.index("canary")))
    return comps


def stages(comps: list[Component]) -> list[list[Component]]:
    """``comps`` grouped by stage, the stages in order and each group in plan order (empty stages left out)."""
    return [group for n in range(len(STAGES)) if (group := [c for c in comps if c.stage == n])]
