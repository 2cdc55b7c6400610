"""Where a drill runs and how its faults reach the brokers' path: the fault plan :func:`plan_faults` checks before
anything starts (the backend for the target, the experiment's fault steps, another platform's intake and token),
what ``chaos run``'s environment gets (:func:`chaos_exports`), and what the reconciliation of a drill's orders
could not check (:func:`reconciliation_checked`). Used by :mod:`.drill`; the backends are :mod:`.faultbackends`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tradeops.experiments import faultbackends
from tradeops.runtime.orderpath.routing import PROVIDERS
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import BadInput, TradeopsError, reason_of
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.platform.statefile import read_state, resolve_settings, stack_exports

if TYPE_CHECKING:
    from tradeops.experiments.drill import DrillRequest

__all__ = ["FAULT_FUNCS", "FaultPlan", "chaos_exports", "plan_faults", "reconciliation_checked"]


@dataclass(frozen=True)
class FaultPlan:
    """How the drill's faults reach the brokers' path (:mod:`.faultbackends`) and where the drill runs: the local
    stack, or another platform (``remote``: AWS, its intake ``intake``). Checked by :func:`plan_faults`."""

    choice: faultbackends.Choice
    steps: tuple[faultbackends.FaultStep, ...]
    remote: bool = False
    intake: str | None = None
    token: str | None = field(default=None, repr=False)
    checked: dict[str, Any] = field(default_factory=dict)
    """What the backend's preflight found (the proxies and their brokers, the FIS templates), for result.json."""

    def settings(self, settings: Settings, run_dir: Path) -> Settings:
        """What the drill acts with: the local stack's settings; for another platform its intake, and a state
        folder of the drill's own, so that its chaos run never reads a local stack's brokers or faults."""
        if not self.remote:
            return resolve_settings(settings)
        state_dir = run_dir / "chaos-state"
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return settings.model_copy(update={"intake_url": self.intake, "intake_token": self.token,
                                           "state_dir": state_dir})

    def backend(self, settings: Settings) -> faultbackends.FaultBackend:
        return faultbackends.make_backend(self.choice.name, settings)

    def preflight(self, settings: Settings, run_dir: Path) -> None:
        """Prove the backend can inject the steps, before any load starts (an empty run folder is removed)."""
        try:
            self.checked.update(self.backend(settings).preflight(list(self.steps)))
        except TradeopsError:
            with contextlib.suppress(OSError):
                run_dir.rmdir()
            raise

    def heal(self, settings: Settings) -> dict[str, Any]:
        """Take every fault off both brokers' paths after chaos, whatever became of its rollbacks (a chaos run
        stopped at its time limit leaves no fault, and no FIS experiment, behind)."""
        backend = self.backend(settings)
        healed: dict[str, Any] = {}
        for provider in PROVIDERS:
            try:
                healed[provider] = backend.clear(provider)
            except TradeopsError as exc:
                healed[provider] = {"error": reason_of(exc)}
        return healed

    def observed(self, settings: Settings, journal: Mapping[str, Any], healed: Mapping[str, Any], *,
                 since: str) -> dict[str, Any]:
        """The backend's record for result.json, and what it found that fails the drill (a proxy that could not
        reach its broker: the figures then measure that, not the injected fault)."""
        try:
            seen = self.backend(settings).observe(since)
        except TradeopsError as exc:
            seen = {"error": reason_of(exc)}
        injections = [{"activity": (run.get("activity") or {}).get("name"), "output": run.get("output")}
                      for kind in ("run", "rollbacks") for run in journal.get(kind) or []
                      if ((run.get("activity") or {}).get("provider") or {}).get("func") in FAULT_FUNCS]
        record = {"name": self.choice.name, "why": self.choice.why, "checked": self.checked,
                  "injections": injections, "observed": seen, "healed_after_chaos": dict(healed)}
        return {"record": record, "findings": faultbackends.unreached_upstream(seen)}

    def target_record(self, settings: Settings) -> dict[str, Any]:
        """Where the drill ran, for result.json and the report."""
        if not self.remote:
            return {"kind": "local", "intake": settings.intake_url}
        return {"kind": "aws", "intake": self.intake, "region": settings.region,
                "brokers": {p: settings.broker_url(p) for p in PROVIDERS}}


FAULT_FUNCS = frozenset({"inject_fault", "clear_fault", "clear_faults"})


def plan_faults(request: DrillRequest, settings: Settings, experiment: Mapping[str, Any],
                configuration: Mapping[str, Any], *, stack_up: bool) -> FaultPlan:
    """The backend for the target and the experiment's fault steps, checked before anything starts: BadInput (exit
    2) for an unknown backend, one the target cannot use (``sim`` on AWS, ``fis`` on the local stack), a step the
    backend cannot show, an FIS template the platform lacks; for another platform its intake and token too."""
    remote = request.target is not None or settings.target == "aws"
    if request.target is not None and settings.target != "aws":
        raise BadInput("--target drills a platform on AWS: add --aws (its orders table, flags and workers are read "
                       "there)")
    if request.token_file is not None and not remote:
        raise BadInput("--token-file goes with a drill of another platform (--aws, --target URL)")
    steps = faultbackends.faults_in(experiment, configuration)
    if remote:
        proxies = all(settings.broker_proxy_url(p) for p in PROVIDERS)
    else:  # a stack the drill starts itself gets the proxies the backend needs
        state = read_state(settings.state_file) if stack_up else None
        proxies = state is None or all(b.get("proxy") for b in (state.get("brokers") or {}).values())
    choice = faultbackends.choose(request.backend or settings.fault_backend, local=not remote, proxies=proxies)
    faultbackends.check_faults(choice.name, steps)
    if not remote:
        return FaultPlan(choice, tuple(steps))
    if request.token_file is None:
        raise BadInput("a drill of another platform needs --token-file FILE (its intake's bearer token)")
    try:
        token = request.token_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise BadInput(f"token file {request.token_file}: {exc.strerror}") from None
    if not token:
        raise BadInput(f"token file {request.token_file} is empty")
    plan = FaultPlan(choice, tuple(steps), remote=True, intake=request.target or _deployed_intake(settings),
                     token=token)
    plan.checked.update(plan.backend(settings).preflight(steps))
    return plan


def _deployed_intake(settings: Settings) -> str:
    from tradeops.runtime.stack.deploy import runtime_stack_name, stack_outputs

    stack = runtime_stack_name(settings.stack_name)
    intake = stack_outputs(Aws(settings), stack).get("IntakeUrl")
    if not intake:
        raise BadInput(f"the runtime stack {stack} has no IntakeUrl output: pass --target URL (the intake to load)")
    return intake


def chaos_exports(faults: FaultPlan | None, settings: Settings, run_dir: Path) -> dict[str, str]:
    """What ``chaos run``'s environment needs: the local stack's exports, or, for another platform, its region,
    names, intake and brokers (never a local stack's state); and the fault backend chosen."""
    if faults is None or not faults.remote:
        exports = stack_exports(settings)
    else:
        region = settings.region
        exports = {"TRADEOPS_TARGET": "aws", "TRADEOPS_STATE_DIR": str(settings.state_dir), "AWS_REGION": region,
                   "AWS_DEFAULT_REGION": region, "TRADEOPS_REGION": region,
                   "TRADEOPS_NAME_PREFIX": settings.name_prefix, "TRADEOPS_PARAM_PREFIX": settings.param_prefix,
                   "TRADEOPS_INTAKE_URL": str(settings.intake_url), "TRADEOPS_INTAKE_TOKEN": str(settings.intake_token),
                   "TRADEOPS_DRILL_ORDERS": str(run_dir / "load" / "orders")}
        for provider in PROVIDERS:
            name = f"TRADEOPS_{provider.upper()}"
            for suffix, value in (("_URL", settings.broker_url(provider)), ("_WIRE", settings.broker_wire(provider)),
                                  ("_PROXY_URL", settings.broker_proxy_url(provider))):
                if value:
                    exports[name + suffix] = value
        if settings.fault_proxy:
            exports["TRADEOPS_FAULT_PROXY"] = "true"
    if faults is not None:
        exports["TRADEOPS_FAULT_BACKEND"] = faults.choice.name
    return exports


# Figures the reconciliation proves (a count it could not make is not measured: the tolerance fails).
_FILL_FIGURES = ("orders_filled_twice",)
_ORDER_FIGURES = ("orders_lost", "orders_filled_twice")


def reconciliation_checked(summary: Mapping[str, Any], *, remote: bool) -> dict[str, Any]:
    """How the drill's orders were reconciled and what that could not check (said in result.json), and the
    figures that are therefore not measured."""
    rec = summary.get("reconciliation") or {}
    orders = summary.get("orders") or {}
    not_checked: list[str] = []
    unmeasured: list[str] = []
    method = {"ledger": "the brokers' fill ledgers", "status": "each broker's status query"}.get(
        str(rec.get("fills_source")), "none")
    if not rec.get("available"):
        not_checked.append(f"the orders were not reconciled: {rec.get('note')}")
    elif not rec.get("fills_checked"):
        not_checked.append("no broker could be asked about its fills: an order filled twice or at another broker "
                           "than recorded would not be seen")
        unmeasured += _FILL_FIGURES
    elif rec.get("fills_source") == "status":
        not_checked.append("fills were checked by each broker's status query, not a fill ledger: a broker that "
                           "filled one order twice under the same id answers once")
        if orders.get("unchecked"):
            not_checked.append(f"{orders['unchecked']} orders could not be checked: a broker gave no answer to "
                               "their status query")
            unmeasured += _ORDER_FIGURES
    if remote:
        not_checked.append("the brokers' own fill prices and times are not compared with the orders table")
    return {"record": {"method": method, "note": rec.get("note"), "not_checked": not_checked},
            "unmeasured": sorted(set(unmeasured))}
