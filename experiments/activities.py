"""tradeops's Chaos Toolkit extension: the probes and actions the drill experiments are made of.

Every activity is a plain function taking ``configuration=None, secrets=None`` last, as Chaos
Toolkit extensions do (chaostoolkit-aws's ``chaosaws/ec2/probes.py`` is the model), so an
experiment names it with ``provider: {type: python, module: tradeops.experiments.activities,
func: NAME, arguments: {...}}``. They find the stack the way every tradeops command does: the
stack state file in ``TRADEOPS_STATE_DIR`` (``eval "$(tradeops env)"`` exports it), or the
configuration key ``tradeops_state_dir``. ``chaos discover tradeops --no-install`` lists them
(:func:`discover`); docs/drills.md says how to write a new experiment from them, and what each returns.

The routing flags are set with :func:`set_routing_flag`, never with chaostoolkit-aws's
``chaosaws.ssm.actions.put_parameter``: that one writes no audit record and no ``flag_set`` event, and
rewrites the parameter's description, allowed pattern and tier along with its value.

The fault actions (:func:`inject_fault`, :func:`clear_fault`, :func:`clear_faults`) say what fault, at
which broker; the fault backend decides how (:mod:`tradeops.experiments.faultbackends`: ``sim``, the
simulated brokers, the local stack's default; ``proxy``, the fault proxies in front of the brokers;
``fis``, AWS Fault Injection Service). The configuration key ``fault_backend`` or
``TRADEOPS_FAULT_BACKEND`` chooses it; ``tradeops drill run --backend`` sets the latter.

Safeguard probes (:func:`total_exposure_below`, :func:`oldest_pending_below`) are what the
experiments' stop conditions run under ``chaosaddons.controls.safeguards``: each answers True
while customer harm is inside the limit, and a False ends the method and runs the rollbacks.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import types
import typing
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

from tradeops.experiments import loadproc
from tradeops.experiments.loadproc import LOAD_OUT_ENV, LOAD_RATE_ENV
from tradeops.runbooks.identity import Identity
from tradeops.runtime.orderpath import figures, heartbeats, inflight
from tradeops.runtime.orderpath.canary import intake_canary
from tradeops.runtime.orderpath.fills import broker_fills, fills_by_status, reconcile_orders
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.orderpath.routing import PROVIDERS
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import BadInput, OperationFailed, StackError, TradeopsError
from tradeops.runtime.platform.settings import Settings, load_settings
from tradeops.runtime.platform.statefile import read_state, resolve_settings

__all__ = [
    "breaker_states",
    "breakers_closed",
    "broker_health",
    "broker_healthy",
    "clear_fault",
    "clear_faults",
    "discover",
    "exposure",
    "fills_reconciled",
    "inject_fault",
    "kill_worker",
    "move_prices",
    "no_order_filled_twice",
    "nothing_lost",
    "oldest_pending_age",
    "oldest_pending_below",
    "orders_by_state",
    "orders_filling",
    "pause_processing",
    "queue_depth",
    "resume_processing",
    "routing_state",
    "run_runbook",
    "set_routing_flag",
    "start_load",
    "stop_load",
    "total_exposure_below",
    "wait_for_breakers_closed",
]

ACTIONS = frozenset({"inject_fault", "clear_fault", "clear_faults", "pause_processing", "resume_processing",
                     "kill_worker", "move_prices", "run_runbook", "start_load", "stop_load",
                     "set_routing_flag"})
"""The activities that change something; every other one is a probe (discovery types them so)."""
FAULT_MODES = ("none", "down", "error", "latency", "blackhole", "fill_after_timeout", "reset", "bandwidth", "loss")
"""Every mode some fault backend can show (which backend shows which: ``faultbackends.MODES``)."""
ACTOR = "drill"
DRILL_IDENTITY = Identity(ACTOR, "drill")
"""Who a drill's own flag changes are recorded as (approvals in a drill's runbooks are ``drill-*`` identities)."""


# ---- finding the stack ----------------------------------------------------------------------------
def _settings(configuration: dict[str, Any] | None) -> Settings:
    overrides: dict[str, Any] = {}
    state_dir = (configuration or {}).get("tradeops_state_dir")
    if state_dir:
        overrides["state_dir"] = Path(state_dir)
    settings = resolve_settings(load_settings(**overrides))
    if not settings.intake_url:
        raise StackError(f"no tradeops stack is up in {settings.state_dir} (run `tradeops up`, then "
                         "eval \"$(tradeops env)\")")
    return settings


def _aws(configuration: dict[str, Any] | None) -> Aws:
    return Aws(_settings(configuration))


def _backend(configuration: dict[str, Any] | None) -> Any:
    """The fault backend this experiment injects through (``fault_backend``, else the target's default)."""
    from tradeops.experiments import faultbackends

    settings = _settings(configuration)
    requested = (configuration or {}).get("fault_backend") or settings.fault_backend
    proxies = all(settings.broker_proxy_url(p) for p in PROVIDERS)
    choice = faultbackends.choose(requested or None, local=faultbackends.on_local_stack(settings), proxies=proxies)
    return faultbackends.make_backend(choice.name, settings, configuration)


# ---- probes -------------------------------------------------------------------------------------
def broker_health(provider: str, configuration: dict[str, Any] | None = None,
                  secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """One health probe of a broker's order API: ``{"provider", "healthy", "latency_ms", "error"}``.

    Example: ``{func: broker_health, arguments: {provider: primary}}``."""
    settings = _settings(configuration)
    return inflight.broker_health(settings, Aws(settings), provider)


def broker_healthy(provider: str, configuration: dict[str, Any] | None = None,
                   secrets: dict[str, Any] | None = None) -> bool:
    """True when the broker's order API answers its health check (tolerance: ``true``)."""
    return bool(broker_health(provider, configuration)["healthy"])


def routing_state(configuration: dict[str, Any] | None = None,
                  secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """The routing flags the workers obey: ``{"mode", "active", "trickle", "processing"}``."""
    values = Flags(_aws(configuration)).read()
    return {"mode": values.mode, "active": values.active, "trickle": values.trickle,
            "processing": values.processing}


def breaker_states(configuration: dict[str, Any] | None = None,
                   secrets: dict[str, Any] | None = None) -> dict[str, str]:
    """Each broker's breaker, the worst state any live worker reports: ``{"primary": "closed", ...}``
    (``closed`` < ``half_open`` < ``open``)."""
    rank = {"closed": 0, "half_open": 1, "open": 2}
    worst: dict[str, str] = {}
    for worker in heartbeats.fleet(_aws(configuration))["workers"]:
        for provider, state in worker["breakers"].items():
            if rank.get(state, 0) >= rank.get(worst.get(provider, "closed"), 0):
                worst[provider] = state
    return worst


def breakers_closed(configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None) -> bool:
    """True when at least one worker is live and every live worker has every breaker closed, and no
    worker suspects a broker (tolerance: ``true``)."""
    fleet = heartbeats.fleet(_aws(configuration))
    return bool(fleet["workers"]) and all(
        set(w["breakers"].values()) <= {"closed"} and not w["suspect"] for w in fleet["workers"])


def wait_for_breakers_closed(timeout: float = 30.0, configuration: dict[str, Any] | None = None,
                             secrets: dict[str, Any] | None = None) -> bool:
    """A probe: :func:`breakers_closed`, asked again every half second for up to ``timeout`` seconds until it is
    True; its last answer (tolerance: ``true``). The shipped experiments' hypotheses use it, so that a drill
    starts, and ends, only with a healed fleet."""
    deadline = time.monotonic() + float(timeout)
    while True:
        if breakers_closed(configuration):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)


def queue_depth(configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """The order queue and dead-letter queue: ``{"queue": {"visible", "in_flight"}, "dlq": {...},
    "oldest_pending_age_seconds"}``."""
    aws = _aws(configuration)
    return {**figures.queue_figures(aws), "oldest_pending_age_seconds": figures.oldest_pending_age(aws)}


def oldest_pending_age(configuration: dict[str, Any] | None = None,
                       secrets: dict[str, Any] | None = None) -> float:
    """Seconds since the oldest pending customer order was placed (0 when none is pending)."""
    return figures.oldest_pending_age(_aws(configuration)) or 0.0


def oldest_pending_below(seconds: float, configuration: dict[str, Any] | None = None,
                         secrets: dict[str, Any] | None = None) -> bool:
    """True while the oldest pending customer order is younger than ``seconds``. A steady-state probe
    (tolerance ``true``) and a stop condition (a safeguard with ``frequency: 1``)."""
    return oldest_pending_age(configuration) < float(seconds)


def exposure(configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """The divergence monitor's last summary: ``total_exposure`` (GBP, a string), ``pending_orders``,
    ``oldest_pending_seconds``, ``max_divergence_pct``, thresholds; ``{}`` before the monitor's first."""
    from tradeops.runtime.liability.exposuretable import read_summary

    return read_summary(_aws(configuration)) or {}


def total_exposure_below(limit_gbp: float | str, configuration: dict[str, Any] | None = None,
                         secrets: dict[str, Any] | None = None) -> bool:
    """True while the total exposure of pending orders is under ``limit_gbp`` (a stop condition)."""
    summary = exposure(configuration)
    return Decimal(str(summary.get("total_exposure", "0"))) < Decimal(str(limit_gbp))


def orders_by_state(configuration: dict[str, Any] | None = None,
                    secrets: dict[str, Any] | None = None) -> dict[str, int]:
    """How many orders are in each state: ``{"FILLED": 120, "IN_DOUBT": 0, ...}``."""
    return OrderStore(_aws(configuration)).count_by_status()


def orders_filling(timeout: float = 10.0, configuration: dict[str, Any] | None = None,
                   secrets: dict[str, Any] | None = None) -> bool:
    """Place one synthetic order through the intake and say whether it filled within ``timeout`` s.

    Synthetic orders are never customer exposure or reimbursements (the canary's kind)."""
    settings = _settings(configuration)
    try:
        intake_canary(settings, timeout=float(timeout), symbol="DRILL")
    except TradeopsError:  # the intake refused it, or it did not fill in time
        return False
    return True


def _drill_orders(settings: Settings) -> list[str]:
    """The order ids of this drill's load: ``TRADEOPS_DRILL_ORDERS`` (``tradeops drill run`` sets it), else the
    load :func:`start_load` started."""
    from tradeops.experiments.load import read_ids

    folder = os.environ.get("TRADEOPS_DRILL_ORDERS")
    if not folder:
        load = _experiment_load(settings, None)
        folder = str(Path(load.run_dir) / "orders") if load is not None else None
    if not folder:
        raise OperationFailed("the brokers keep no fill ledger we can read, and no drill load is known to check by "
                              "status query (run it under `tradeops drill run`, or start the load with start_load)")
    accepted, unanswered = read_ids(Path(folder))
    return [*accepted, *unanswered]


def _fills(settings: Settings, ids: list[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Each broker's fills: its own ledger (the simulated brokers), else, for ``ids`` (by default this drill's
    orders), its answers to status queries; an order a broker gave no answer about fails the check."""
    fills = broker_fills(settings)
    if fills is not None:
        return fills
    asked = _drill_orders(settings) if ids is None else ids
    fills, unchecked = fills_by_status(settings, Aws(settings), asked)
    if unchecked:
        raise OperationFailed(f"{len(unchecked)} of {len(asked)} orders could not be checked (a broker gave no "
                              f"answer to its status query), {unchecked[0]} first")
    return fills


def no_order_filled_twice(configuration: dict[str, Any] | None = None,
                          secrets: dict[str, Any] | None = None) -> bool:
    """True when no order id appears twice across both brokers' own fill ledgers. Where the brokers keep none
    (real brokers, a sandbox), the orders of this drill's load are checked by each broker's status query, and
    an order a broker gives no answer about fails the probe rather than pass unseen."""
    fills = _fills(_settings(configuration))
    counts = Counter(f["order_id"] for provider in fills for f in fills[provider])
    return all(n == 1 for n in counts.values())


def fills_reconciled(prefix: str = "", configuration: dict[str, Any] | None = None,
                     secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Reconcile the brokers' fills (of order ids starting with ``prefix``) against the orders table:
    ``{"filled_twice", "wrong_broker", "unrecorded_fill", "fills"}`` (counts; the first three should be 0).
    Without fill ledgers, the orders of this drill's load are asked about as :func:`no_order_filled_twice` does."""
    settings = _settings(configuration)
    ledger = broker_fills(settings)
    if ledger is not None:
        ids = sorted({f["order_id"] for p in ledger for f in ledger[p] if f["order_id"].startswith(prefix)})
    else:
        ids = [order_id for order_id in _drill_orders(settings) if order_id.startswith(prefix)]
    recon, _ = reconcile_orders(settings, Aws(settings), ids, fills=None)
    if recon.counts.get("unchecked"):
        raise OperationFailed(f"{recon.counts['unchecked']} of {len(ids)} orders could not be checked (a broker gave "
                              "no answer to its status query)")
    fills = len(ids) if ledger is not None else recon.counts["filled"] + recon.counts["unrecorded_fill"]
    return {"fills": fills, **{k: recon.counts.get(k, 0) for k in ("filled_twice", "wrong_broker", "unrecorded_fill")}}


# ---- actions ------------------------------------------------------------------------------------
def inject_fault(provider: str, mode: str, rate: float | None = None, ms: float | None = None,
                 jitter_ms: float | None = None, status: int | None = None, bytes_per_second: float | None = None,
                 template: str | None = None, configuration: dict[str, Any] | None = None,
                 secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Break the path to a broker through the fault backend; answers ``{"backend", "provider", ...}``: the fault
    now in force (``fault``), or for FIS the experiment started (``experiment_id``, ``template``, ``state``).

    ``mode``: ``down`` (connection refused), ``blackhole`` (requests read, never answered), ``latency``
    (every request ``ms`` late; through a proxy ± ``jitter_ms``, through FIS the template's), ``error`` (an
    error answer for a share ``rate`` of requests: 503 "not accepted" from a simulator, ``status`` from a
    proxy), ``fill_after_timeout`` (the broker acts at once, its answer comes ``ms`` late: the dual-execution
    trap), ``reset`` (a share ``rate`` of requests forwarded, then the connection reset; proxy), ``bandwidth``
    (``bytes_per_second``; proxy), ``loss`` (a share ``rate`` of packets dropped; FIS), ``none``. ``template``
    names the FIS experiment template when it is not ``<prefix>-<provider>-<mode>``. A mode the backend
    cannot show is refused. Example: ``{func: inject_fault, arguments: {provider: primary, mode: error,
    rate: 0.5}}``."""
    from tradeops.experiments.faultbackends import FaultStep, check_faults

    if mode not in FAULT_MODES:
        raise BadInput(f"unknown fault mode {mode!r} (one of {', '.join(FAULT_MODES)})")
    step = FaultStep.of({"provider": provider, "mode": mode, "rate": rate, "ms": ms, "jitter_ms": jitter_ms,
                         "status": status, "bytes_per_second": bytes_per_second, "template": template})
    backend = _backend(configuration)
    check_faults(backend.name, [step])
    answer: dict[str, Any] = backend.inject(step)
    return answer


def clear_fault(provider: str, configuration: dict[str, Any] | None = None,
                secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Heal one broker's path (fault ``none``; through FIS, the experiment stopped)."""
    if provider not in PROVIDERS:
        raise BadInput(f"unknown provider {provider!r} (one of {', '.join(PROVIDERS)})")
    answer: dict[str, Any] = _backend(configuration).clear(provider)
    return answer


def clear_faults(configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Heal both brokers' paths: the rollback every experiment has."""
    backend = _backend(configuration)
    return {provider: backend.clear(provider) for provider in PROVIDERS}


def move_prices(pct: float = 5.0, over_seconds: float = 0.0, symbols: list[str] | None = None,
                configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Move the price feed's symbols (all of them unless ``symbols``) by ``pct`` percent over ``over_seconds``
    (the feed's scripted spike): a market shock. Answers ``{"moved": [symbol, ...], "pct"}``."""
    import httpx

    settings = _settings(configuration)
    if not settings.prices_url:
        raise OperationFailed("the price feed's address is unknown (is the stack up?)")
    base = settings.prices_url.rstrip("/")
    with httpx.Client(timeout=5.0) as http:
        names = symbols or sorted(http.get(f"{base}/prices").json().get("prices", {}))
        for symbol in names:
            answer = http.post(f"{base}/spike", json={"symbol": symbol, "pct": str(pct),
                                                      "over_seconds": float(over_seconds)})
            if answer.status_code != 200:
                raise OperationFailed(f"the price feed refused the move of {symbol}: {answer.text[:200]}")
    return {"moved": names, "pct": pct}


def pause_processing(configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None) -> str:
    """Set ``processing`` to ``paused`` (workers take nothing new), recorded as a ``flag_set`` by ``drill``."""
    return Flags(_aws(configuration)).set("processing", "paused", actor=ACTOR)


def resume_processing(configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None) -> str:
    """Set ``processing`` back to ``running``."""
    return Flags(_aws(configuration)).set("processing", "running", actor=ACTOR)


def set_routing_flag(flag: str, value: str, reason: str = "drill step", configuration: dict[str, Any] | None = None,
                     secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Set a control flag (``processing``, ``mode``, ``active`` or ``trickle``) as the drill identity.

    Through tradeops's audited path (:func:`tradeops.runbooks.breakglass.drill_set_flag`): an audit record naming
    the identity ``drill`` (source ``drill``) and ``reason``, then a ``flag_set`` event; only the value changes
    (the parameter's description, allowed pattern, type and tier stay the template's). Answers ``{"flag",
    "before", "after", "reason", "target"}``. Example: ``{func: set_routing_flag, arguments: {flag: mode,
    value: auto}}``."""
    from tradeops.runbooks.breakglass import drill_set_flag

    settings = _settings(configuration)
    return drill_set_flag(Aws(settings), identity=DRILL_IDENTITY, flag=flag, value=value, reason=reason,
                          target=settings.aws_endpoint_url or f"AWS ({settings.region})")


def kill_worker(worker: str = "worker-1", configuration: dict[str, Any] | None = None,
                secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """SIGKILL one worker process of the local stack mid-batch (the supervisor starts a new one);
    answers ``{"worker", "pid"}``."""
    settings = _settings(configuration)
    state = read_state(settings.state_file) or {}
    comp = state.get("components", {}).get(worker)
    if not comp or not comp.get("pid"):
        known = ", ".join(sorted(n for n in state.get("components", {}) if n.startswith("worker-")))
        raise BadInput(f"no worker {worker!r} in the local stack (workers: {known or 'none'})")
    pid = int(comp["pid"])
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        raise OperationFailed(f"{worker} (pid {pid}) is not running") from None
    return {"worker": worker, "pid": pid}


def run_runbook(runbook: str, params: dict[str, Any] | None = None, executor: str = "drill-executor",
                approvers: list[str] | None = None, configuration: dict[str, Any] | None = None,
                secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a runbook unattended, its four-eyes steps approved by drill identities from the roster.

    The approvals go through the engine's own ``decide`` (every four-eyes rule applies); the
    identities carry the source ``drill`` and the reason says the approval was automated in a
    drill, so the audit log and reports never count them as human four-eyes. Raises when the
    runbook does not complete. Answers ``{"execution_id", "status", "approvals"}``.
    Example: ``{func: run_runbook, arguments: {runbook: failover, params: {verify_canary: false},
    approvers: [drill-ops-manager, drill-risk]}}``."""
    from tradeops.experiments.drillrunbooks import run_unattended

    settings = _settings(configuration)
    return run_unattended(settings, runbook, params=params or {}, executor=executor, approvers=approvers or [])


def start_load(scenario: str = "steady", rate: float = 5.0, duration: str = "60s", out: str | None = None,
               configuration: dict[str, Any] | None = None, secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Start ``tradeops load run`` in the background (Locust in its own process) and answer once it is placing
    orders: ``{"run_id", "pid", "run_dir", "started_at"}``. Every order of the run carries ``run_id``;
    :func:`stop_load` and :func:`nothing_lost` take it.

    Under ``tradeops drill run`` this is the drill's one load: the drill starts none of its own, has it write
    into the drill's run folder (``load/``, from ``TRADEOPS_DRILL_LOAD_OUT``), reads its summary, and the
    drill's ``--rate`` (``TRADEOPS_DRILL_LOAD_RATE``) replaces ``rate``.
    Example: ``{func: start_load, arguments: {scenario: steady, rate: 5, duration: 60s}}``."""
    settings = _settings(configuration)
    folder = os.environ.get(LOAD_OUT_ENV) or out or settings.runs_dir / f"{_stamp()}-load-{scenario}"
    load = loadproc.start(settings, scenario=scenario, rate=float(os.environ.get(LOAD_RATE_ENV) or rate),
                          duration=str(duration), out=Path(folder))
    return load.as_dict()


def _experiment_load(settings: Settings, run_id: str | None) -> loadproc.BackgroundLoad | None:
    return loadproc.find(settings, run_id) if run_id else loadproc.started_here(settings)


def stop_load(run_id: str | None = None, timeout: float = 120.0, configuration: dict[str, Any] | None = None,
              secrets: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stop the load :func:`start_load` started (``run_id``; left out, the last one this experiment started) and
    answer its summary once written: Locust stops placing orders, the run's orders drain and are reconciled,
    then ``{"run_id", "run_dir", "stopped", "passed", "breached", "orders"}`` (``orders``: placed, filled,
    rejected, pending, dead_lettered, lost, filled_twice, ...; None where they cannot be reconciled).
    ``stopped`` is false when the load had already ended by itself, or when the experiment started none (then
    every other value is None: a rollback after a method that failed before ``start_load`` has nothing to stop).
    Waits up to ``timeout`` seconds."""
    settings = _settings(configuration)
    load = _experiment_load(settings, run_id)
    if load is None:
        return {"run_id": None, "run_dir": None, "stopped": False, "passed": None, "breached": None, "orders": None}
    stopped = loadproc.stop(load)
    summary = loadproc.wait_summary(load, float(timeout))
    return {"run_id": load.run_id, "run_dir": str(load.run_dir), "stopped": stopped, "passed": summary["passed"],
            "breached": summary["breached"], "orders": summary.get("orders")}


def nothing_lost(run_id: str | None = None, timeout: float = 120.0, configuration: dict[str, Any] | None = None,
                 secrets: dict[str, Any] | None = None) -> bool:
    """True when no order of the load run ``run_id`` was lost (left out: the last load this experiment started):
    every order the intake took is in the orders table, and none claims a fill no broker holds (tolerance:
    ``true``). It waits up to ``timeout`` seconds for that run's summary, which the load writes after its drain,
    so stop the load first (:func:`stop_load`). Before the experiment has started a load it answers True:
    nothing has been placed, so nothing can be lost (the hypothesis is checked before the method too).
    Raises, never answers True, when the run's orders could not be reconciled (not the local stack)."""
    load = _experiment_load(_settings(configuration), run_id)
    if load is None:
        return True
    orders = loadproc.wait_summary(load, float(timeout)).get("orders")
    if orders is None:
        raise OperationFailed(f"load run {load.run_id}: its orders were not reconciled, so nothing lost cannot "
                              "be checked")
    return int(orders.get("lost", 0)) == 0


def _stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


# ---- discovery ------------------------------------------------------------------------------------
def _portable(annotation: Any) -> str:
    """An annotation in chaoslib's portable type names (``number``, ``mapping``, ...). Optional (``X | None``)
    is ``X``; a union of several is its first member, as an experiment usually writes it."""
    from chaoslib.discovery.discover import portable_type_name

    if typing.get_origin(annotation) in (types.UnionType, typing.Union):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _portable(members[0]) if members else "null"
    return str(portable_type_name(typing.get_origin(annotation) or annotation))


def typed_activities() -> list[dict[str, Any]]:
    """This module's probes and actions as chaoslib discovers them, each argument and return value typed.

    chaoslib reads the signatures as written, and this module's annotations are strings (``from __future__
    import annotations``) that it types ``object``; they are resolved here first."""
    from chaoslib.discovery.discover import discover_activities

    module = sys.modules[__name__]
    found = []
    for activity in discover_activities(__name__, "probe"):
        if activity["name"] == "discover":
            continue
        hints = typing.get_type_hints(getattr(module, activity["name"]))
        if activity["name"] in ACTIONS:
            activity["type"] = "action"
        for argument in activity["arguments"]:
            argument["type"] = _portable(hints[argument["name"]])
        activity["return_type"] = _portable(hints["return"])
        found.append(activity)
    return found


def discover(discover_system: bool = True) -> dict[str, Any]:
    """What ``chaos discover tradeops --no-install`` reports: every probe and action of this module, each argument
    with its type and default, and each return type (:func:`typed_activities`); with ``discover_system``, the
    running local stack's addresses."""
    from chaoslib.discovery.discover import initialize_discovery_result

    from tradeops import __version__

    discovery = initialize_discovery_result("tradeops", __version__, "tradeops")
    discovery["activities"] = typed_activities()
    if discover_system and (state := read_state(load_settings().state_file)):
        discovery["system"] = {"stack": {k: state.get(k) for k in ("intake", "aws_endpoint", "region", "brokers")}}
    return discovery
