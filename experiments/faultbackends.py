"""Fault backends: how a drill's fault reaches the path between the workers and a broker.

An experiment says what fault, at which broker, for how long: ``inject_fault(provider, mode, ...)``, a
pause, ``clear_fault(provider)`` (:mod:`tradeops.experiments.activities`). The backend decides how:

=======  ===================================================  ================================================
backend  injects through                                      where
=======  ===================================================  ================================================
sim      the simulated brokers' ``/_sim/fault``               the local stack (its default)
proxy    the fault proxies in front of the brokers            a stack whose workers call the brokers through
         (``/_proxy/fault``, :mod:`tradeops.runtime.brokers.  them: the local stack started with
         proxy`)                                              ``TRADEOPS_FAULT_PROXY=true``; staging, in front
                                                              of a broker's sandbox (the default elsewhere when
                                                              the proxies are known)
fis      AWS Fault Injection Service: the runtime template's  AWS (the default there without proxies)
         experiment templates against the worker tasks,
         started, watched and stopped with chaostoolkit-aws's
         ``chaosaws.fis`` activities
=======  ===================================================  ================================================

What each can show (:data:`MODES`, the experiment's ``mode`` and the parameters it takes) differs: only a
simulator can fill an order and answer 503 "not accepted"; only the proxy resets connections or limits
bandwidth; FIS drops packets (``loss``) but cannot refuse a connection (``down``). Everything an
experiment asks of its backend is checked before any load starts: :func:`faults_in` reads the fault
steps, :func:`choose` picks the backend for the target, :func:`check_faults` holds each step to what
the backend can show, and the backend's ``preflight`` proves it can act (simulators and proxies answer,
each proxy reaches its broker, each FIS template the experiment needs is deployed with the delay or
loss the experiment asks for).

A proxy that cannot reach its broker is never taken for the broker: ``preflight`` refuses to start on
it, and ``observe`` reports every stretch of the drill when it could not, for the drill's result.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tradeops.runtime.brokers.control import ProxyControl, SimControl
from tradeops.runtime.brokers.proxyfaults import UPSTREAM_UNREACHABLE
from tradeops.runtime.orderpath.routing import PROVIDERS
from tradeops.runtime.platform.aws import aws_errors
from tradeops.runtime.platform.errors import BadInput, OperationFailed
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.platform.statefile import read_state

__all__ = ["BACKENDS", "FIS_ACTIONS", "MODES", "Choice", "FaultBackend", "FaultStep", "FisBackend", "ProxyBackend",
           "SimBackend", "check_faults", "choose", "faults_in", "fis_template_name", "make_backend",
           "on_local_stack", "unreached_upstream"]

BACKENDS = ("sim", "proxy", "fis")
_NONE: frozenset[str] = frozenset()
MODES: dict[str, dict[str, frozenset[str]]] = {
    "sim": {"none": _NONE, "down": _NONE, "blackhole": _NONE, "error": frozenset({"rate"}),
            "latency": frozenset({"ms"}), "fill_after_timeout": frozenset({"ms"})},
    "proxy": {"none": _NONE, "down": _NONE, "blackhole": _NONE, "error": frozenset({"rate", "status"}),
              "latency": frozenset({"ms", "jitter_ms"}), "fill_after_timeout": frozenset({"ms"}),
              "reset": frozenset({"rate"}), "bandwidth": frozenset({"bytes_per_second"})},
    "fis": {"none": _NONE, "blackhole": _NONE, "latency": frozenset({"ms", "jitter_ms"}),
            "loss": frozenset({"rate"})},
}
"""Each backend's fault modes and the parameters each mode takes."""
PARAMETERS = ("rate", "ms", "jitter_ms", "status", "bytes_per_second")

FIS_ACTIONS = {"blackhole": "aws:ecs:task-network-blackhole-port", "latency": "aws:ecs:task-network-latency",
               "loss": "aws:ecs:task-network-packet-loss"}
"""The FIS action behind each mode the fis backend can show (deploy/runtime.yaml's experiment templates)."""
_FIS_SUFFIX = {"blackhole": "blackhole", "latency": "latency", "loss": "packet-loss"}
_FIS_ACTIVE = frozenset({"pending", "initiating", "running"})
_FIS_FINAL = frozenset({"completed", "stopped", "failed", "cancelled"})
ACTIVITIES = "tradeops.experiments.activities"


# ---- what an experiment asks for, and which backend gives it ------------------------------------------
@dataclass(frozen=True)
class FaultStep:
    """One ``inject_fault`` of an experiment: the broker, the mode and its parameters (``where``: the step)."""

    provider: str
    mode: str
    params: Mapping[str, float] = field(default_factory=dict)
    template: str | None = None
    where: str = "inject_fault"

    @classmethod
    def of(cls, arguments: Mapping[str, Any], *, where: str = "inject_fault") -> FaultStep:
        """The step from ``inject_fault``'s arguments; BadInput naming the step when they are not a fault."""
        unknown = sorted(set(arguments) - {"provider", "mode", "template", *PARAMETERS})
        if unknown:
            raise BadInput(f"experiment step {where}: inject_fault takes no {', '.join(unknown)}")
        provider, mode = arguments.get("provider"), arguments.get("mode")
        if provider not in PROVIDERS:
            raise BadInput(f"experiment step {where}: unknown provider {provider!r} (one of {', '.join(PROVIDERS)})")
        if not isinstance(mode, str):
            raise BadInput(f"experiment step {where}: inject_fault needs a mode")
        params: dict[str, float] = {}
        for key in PARAMETERS:
            if arguments.get(key) is None:
                continue
            try:
                params[key] = float(arguments[key])
            except (TypeError, ValueError):
                raise BadInput(f"experiment step {where}: {key} must be a number, got {arguments[key]!r}") from None
        template = arguments.get("template")
        return cls(provider=provider, mode=mode, params=params, template=str(template) if template else None,
                   where=where)


def _resolved(value: Any, configuration: Mapping[str, Any]) -> Any:
    """``"${name}"`` read from the experiment's configuration, as chaos run substitutes it."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        return configuration.get(value[2:-1], value)
    return value


def faults_in(experiment: Mapping[str, Any], configuration: Mapping[str, Any]) -> list[FaultStep]:
    """Every ``inject_fault`` step of the experiment's method and rollbacks, its arguments resolved."""
    found: list[FaultStep] = []
    for section in ("method", "rollbacks"):
        for activity in experiment.get(section) or []:
            provider = (activity or {}).get("provider") or {}
            if provider.get("module") != ACTIVITIES or provider.get("func") != "inject_fault":
                continue
            arguments = {k: _resolved(v, configuration) for k, v in (provider.get("arguments") or {}).items()}
            found.append(FaultStep.of(arguments, where=str(activity.get("name") or "inject_fault")))
    return found


@dataclass(frozen=True)
class Choice:
    """The backend a drill injects through, and why that one (recorded in ``result.json``)."""

    name: str
    why: str


def choose(requested: str | None, *, local: bool, proxies: bool) -> Choice:
    """The backend for a drill on the local stack (``local``) or elsewhere; BadInput for one it cannot use.

    ``proxies``: a fault proxy is known in front of each broker."""
    if requested is not None and requested not in BACKENDS:
        raise BadInput(f"unknown fault backend {requested!r} (one of {', '.join(BACKENDS)})")
    if requested is None:
        if local:
            return Choice("sim", "the local stack's default")
        if proxies:
            return Choice("proxy", "the default where fault proxies stand in front of the brokers")
        return Choice("fis", "the default on AWS without fault proxies")
    if requested == "sim" and not local:
        raise BadInput("the sim backend injects through the simulated brokers' /_sim/fault, which only the local "
                       "stack has: choose proxy or fis")
    if requested == "fis" and local:
        raise BadInput("the fis backend needs AWS (the local stack's emulator cannot run FIS experiments): choose "
                       "sim or proxy")
    if requested == "proxy" and not proxies:
        raise BadInput("no fault proxy in front of the brokers: start the local stack with TRADEOPS_FAULT_PROXY=true, "
                       "or set TRADEOPS_PRIMARY_PROXY_URL and TRADEOPS_SECONDARY_PROXY_URL to the proxies' control "
                       "addresses")
    return Choice(requested, "asked for")


def check_faults(backend: str, steps: Iterable[FaultStep]) -> None:
    """Each step is a mode ``backend`` can show, with parameters that mode takes; BadInput naming the step."""
    modes = MODES[backend]
    for step in steps:
        if step.mode not in modes:
            raise BadInput(f"experiment step {step.where}: the {backend} backend cannot inject mode {step.mode!r} "
                           f"(it can: {', '.join(m for m in modes if m != 'none')})")
        extra = sorted(set(step.params) - modes[step.mode])
        if extra:
            takes = ", ".join(sorted(modes[step.mode])) or "no parameters"
            raise BadInput(f"experiment step {step.where}: mode {step.mode} through {backend} takes {takes}; "
                           f"not {', '.join(extra)}")
        if step.template is not None and backend != "fis":
            raise BadInput(f"experiment step {step.where}: template names an FIS experiment template; the "
                           f"{backend} backend has none")


def fis_template_name(name_prefix: str, provider: str, mode: str) -> str:
    """The runtime template's FIS experiment template for ``mode`` at ``provider`` (its ``Name`` tag)."""
    return f"{name_prefix}-{provider}-{_FIS_SUFFIX[mode]}"


def on_local_stack(settings: Settings) -> bool:
    """Whether ``settings`` act on a running local stack (not AWS, not a platform reached by its endpoints)."""
    if settings.target == "aws":
        return False
    state = read_state(settings.state_file)
    return bool(state and state.get("status") == "ready" and state.get("local"))


def unreached_upstream(observed: Mapping[str, Any]) -> list[str]:
    """One line per proxy that could not reach its broker in the drill: a fault of the proxy's path, never the
    broker's (:meth:`ProxyBackend.observe`'s answer in; empty for another backend or a clean path)."""
    lines = []
    for provider, seen in (observed.get("proxies") or {}).items():
        for lost in seen.get("upstream_lost") or []:
            if lost.get("state") == UPSTREAM_UNREACHABLE:
                lines.append(f"the fault proxy in front of {provider} could not reach it from {lost.get('since')} "
                             f"to {lost.get('until') or 'the end of the drill'} ({lost.get('error')}): a fault of "
                             "the proxy's path, not the broker's; the figures do not measure the injected fault")
    return lines


# ---- the backends -------------------------------------------------------------------------------------
class FaultBackend(Protocol):
    name: str

    def preflight(self, steps: list[FaultStep]) -> dict[str, Any]:
        """Prove the backend can inject ``steps`` (before any load starts); what result.json records of it."""
        ...

    def inject(self, step: FaultStep) -> dict[str, Any]:
        """Put the fault in force; answers what is in force now."""
        ...

    def clear(self, provider: str) -> dict[str, Any]:
        """Take any fault off the path to ``provider``."""
        ...

    def observe(self, since: str) -> dict[str, Any]:
        """What the backend saw of the path since ``since`` (UTC ISO time), for result.json."""
        ...


class SimBackend:
    """Today's faults: the simulated brokers' own ``/_sim/fault``."""

    name = "sim"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _control(self, provider: str) -> SimControl:
        url = getattr(self.settings, f"{provider}_control_url")
        if not url:
            raise OperationFailed(f"the {provider} broker has no fault-injection control (not a simulated broker)")
        return SimControl(url, timeout=10.0)

    def preflight(self, steps: list[FaultStep]) -> dict[str, Any]:
        brokers = {}
        for provider in PROVIDERS:
            with self._control(provider) as control:
                control.health()
                brokers[provider] = control.base_url
        return {"controls": brokers}

    def inject(self, step: FaultStep) -> dict[str, Any]:
        with self._control(step.provider) as control:
            shown = control.set_fault(step.mode, **step.params)
        return {"backend": self.name, "provider": step.provider, "fault": shown}

    def clear(self, provider: str) -> dict[str, Any]:
        return self.inject(FaultStep(provider, "none"))

    def observe(self, since: str) -> dict[str, Any]:
        return {}


class ProxyBackend:
    """The fault proxies in front of the brokers (``/_proxy/fault``): a real network path, any broker behind it."""

    name = "proxy"
    # The experiment's modes in the proxy's words; the rest are the same.
    _AS_PROXY = {"fill_after_timeout": "answer_delay"}

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _control(self, provider: str) -> ProxyControl:
        url = self.settings.broker_proxy_url(provider)
        if not url:
            raise OperationFailed(f"no fault proxy is known in front of the {provider} broker "
                                  f"(TRADEOPS_{provider.upper()}_PROXY_URL)")
        return ProxyControl(url, timeout=10.0)

    def preflight(self, steps: list[FaultStep]) -> dict[str, Any]:
        proxies = {}
        for provider in PROVIDERS:
            with self._control(provider) as control:
                health = control.health()
                proxies[provider] = {"control": control.base_url, "upstream": health["upstream"],
                                     "counters": health.get("counters") or {}}
            upstream = health.get("upstream_state") or {}
            if not upstream.get("reachable"):
                raise OperationFailed(f"the fault proxy in front of {provider} cannot reach {health['upstream']} "
                                      f"({upstream.get('error')}): a fault of the proxy's path, not the broker's; "
                                      "fix it before the drill")
        return {"proxies": proxies}

    def inject(self, step: FaultStep) -> dict[str, Any]:
        with self._control(step.provider) as control:
            shown = control.set_fault(self._AS_PROXY.get(step.mode, step.mode), **step.params)
        return {"backend": self.name, "provider": step.provider, "fault": shown}

    def clear(self, provider: str) -> dict[str, Any]:
        return self.inject(FaultStep(provider, "none"))

    def observe(self, since: str) -> dict[str, Any]:
        seen = {}
        for provider in PROVIDERS:
            with self._control(provider) as control:
                health = control.health()
            lost = [episode for episode in health.get("upstream_lost") or []
                    if episode.get("until") is None or str(episode["until"]) >= since]
            seen[provider] = {"upstream": health["upstream"], "counters": health.get("counters") or {},
                              "upstream_lost": lost}
        return {"proxies": seen}


class FisBackend:
    """AWS Fault Injection Service: the runtime template's experiment templates against the worker tasks.

    Experiments are started, watched and stopped with chaostoolkit-aws's ``chaosaws.fis`` activities; the
    templates are found by their ``Name`` tag (:func:`fis_template_name`, or a step's own ``template``).
    A template's delay and loss are fixed when it is deployed, so a step asking for others is refused
    before anything starts. The experiments started are kept in ``ledger`` (a file beside the stack state)
    until they are stopped, so a rollback in another process, or the drill after a chaos run that died,
    can still stop them.
    """

    name = "fis"

    def __init__(self, settings: Settings, configuration: Mapping[str, Any] | None = None, *, client: Any = None,
                 ledger: Path | None = None, poll_seconds: float = 2.0, watch_seconds: float = 120.0) -> None:
        self.settings = settings
        self.configuration = {"aws_region": settings.region, **(configuration or {})}
        self._client = client
        self.ledger = ledger or settings.state_dir / "fis-experiments.json"
        self.poll_seconds = poll_seconds
        self.watch_seconds = watch_seconds

    @property
    def client(self) -> Any:
        if self._client is None:
            from chaosaws import aws_client

            self._client = aws_client("fis", dict(self.configuration))
        return self._client

    def template_name(self, step: FaultStep) -> str:
        return step.template or fis_template_name(self.settings.name_prefix, step.provider, step.mode)

    def templates(self) -> dict[str, str]:
        """Every experiment template of this account and region with a ``Name`` tag: name → id."""
        found: dict[str, str] = {}
        with aws_errors("list the FIS experiment templates"):
            token: str | None = None
            while True:
                page = self.client.list_experiment_templates(**({"nextToken": token} if token else {}))
                for template in page.get("experimentTemplates") or []:
                    name = (template.get("tags") or {}).get("Name")
                    if name:
                        found[name] = template["id"]
                token = page.get("nextToken")
                if not token:
                    return found

    def preflight(self, steps: list[FaultStep]) -> dict[str, Any]:
        deployed = self.templates()
        used: dict[str, str] = {}
        for step in steps:
            if step.mode == "none":
                continue
            name = self.template_name(step)
            if name not in deployed:
                raise BadInput(f"experiment step {step.where}: no FIS experiment template {name} is deployed here "
                               f"(the runtime stack creates them with FaultInjection=enabled; deployed: "
                               f"{', '.join(sorted(deployed)) or 'none'})")
            with aws_errors(f"read the FIS experiment template {name}"):
                template = self.client.get_experiment_template(id=deployed[name])["experimentTemplate"]
            _holds_to(step, name, template)
            used[name] = deployed[name]
        return {"templates": used}

    def inject(self, step: FaultStep) -> dict[str, Any]:
        if step.mode == "none":
            return self.clear(step.provider)
        from chaosaws.fis.actions import start_experiment

        name = self.template_name(step)
        template_id = self.templates().get(name)
        if template_id is None:
            raise BadInput(f"no FIS experiment template {name} is deployed here")
        started = _chaosaws(start_experiment, experiment_template_id=template_id, client_token=uuid.uuid4().hex,
                            tags={"tradeops:provider": step.provider, "tradeops:mode": step.mode},
                            configuration=dict(self.configuration))
        experiment_id = started["experiment"]["id"]
        self._remember(step.provider, experiment_id)
        state = self._watch(experiment_id, until=frozenset({"running"}))
        return {"backend": self.name, "provider": step.provider, "template": name, "experiment_id": experiment_id,
                "state": state}

    def clear(self, provider: str) -> dict[str, Any]:
        from chaosaws.fis.actions import stop_experiment

        experiment_id = self._remembered().get(provider)
        if experiment_id is None:
            return {"backend": self.name, "provider": provider, "experiment_id": None}
        if self._state(experiment_id)["status"] in _FIS_ACTIVE:
            _chaosaws(stop_experiment, experiment_id=experiment_id, configuration=dict(self.configuration))
        state = self._watch(experiment_id, until=_FIS_FINAL)
        self._forget(provider)
        return {"backend": self.name, "provider": provider, "experiment_id": experiment_id, "state": state}

    def observe(self, since: str) -> dict[str, Any]:
        return {"running": self._remembered()}

    # ---- watching ---------------------------------------------------------------------------------------
    def _state(self, experiment_id: str) -> dict[str, Any]:
        from chaosaws.fis.probes import get_experiment

        answer = _chaosaws(get_experiment, experiment_id=experiment_id, configuration=dict(self.configuration))
        return dict(answer["experiment"]["state"])

    def _watch(self, experiment_id: str, *, until: frozenset[str]) -> dict[str, Any]:
        """Until the experiment's status is one of ``until``; OperationFailed when it ends otherwise (a stop
        condition's alarm, a target FIS could not reach) or takes longer than ``watch_seconds``."""
        deadline = time.monotonic() + self.watch_seconds
        while True:
            state = self._state(experiment_id)
            status = state.get("status")
            if status in until:
                return state
            if status in _FIS_FINAL:
                reason = state.get("reason") or "no reason given"
                raise OperationFailed(f"FIS experiment {experiment_id} is {status}: {reason}")
            if time.monotonic() > deadline:
                raise OperationFailed(f"FIS experiment {experiment_id} is still {status} after "
                                      f"{self.watch_seconds:g}s")
            time.sleep(self.poll_seconds)

    # ---- the ledger of started experiments ---------------------------------------------------------------
    def _remembered(self) -> dict[str, str]:
        try:
            data = json.loads(self.ledger.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def _save(self, running: Mapping[str, str]) -> None:
        self.ledger.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.ledger.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(running), sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.ledger)

    def _remember(self, provider: str, experiment_id: str) -> None:
        self._save({**self._remembered(), provider: experiment_id})

    def _forget(self, provider: str) -> None:
        running = self._remembered()
        running.pop(provider, None)
        if running:
            self._save(running)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.ledger.unlink()


def _holds_to(step: FaultStep, name: str, template: Mapping[str, Any]) -> None:
    """BadInput when the deployed template injects another delay or loss than the step asks for."""
    actions = list((template.get("actions") or {}).values())
    params = dict((actions[0].get("parameters") or {}) if actions else {})
    wanted = {"latency": {"ms": "delayMilliseconds", "jitter_ms": "jitterMilliseconds"},
              "loss": {"rate": "lossPercent"}}.get(step.mode, {})
    for key, parameter in wanted.items():
        if key not in step.params:
            continue
        asked = step.params[key] * (100 if key == "rate" else 1)
        deployed = params.get(parameter)
        if deployed is None or abs(float(deployed) - asked) > 1e-9:
            raise BadInput(f"experiment step {step.where}: the FIS template {name} injects {parameter} "
                           f"{deployed if deployed is not None else 'unset'}; the experiment asks {asked:g}: change "
                           "the experiment or the template's parameter")


def _chaosaws(activity: Any, **arguments: Any) -> dict[str, Any]:
    """A chaosaws.fis activity; its FailedActivity (any AWS error, worded by chaosaws) as ours."""
    from chaoslib.exceptions import FailedActivity

    try:
        return dict(activity(**arguments))
    except FailedActivity as exc:
        raise OperationFailed(str(exc).splitlines()[0][:300]) from None


def make_backend(name: str, settings: Settings, configuration: Mapping[str, Any] | None = None) -> FaultBackend:
    """The backend called ``name`` (one of :data:`BACKENDS`), acting with ``settings``."""
    if name == "sim":
        return SimBackend(settings)
    if name == "proxy":
        return ProxyBackend(settings)
    if name == "fis":
        return FisBackend(settings, configuration)
    raise BadInput(f"unknown fault backend {name!r} (one of {', '.join(BACKENDS)})")
