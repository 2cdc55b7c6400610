"""One drill: load, a Chaos Toolkit experiment, a metrics timeline, reconciliation, figures and a verdict.

``tradeops drill run`` and ``tradeops demo`` are thin shells over :func:`run_drill`; they pass in the
report builder (:func:`tradeops.reports.build.build_run_report`), so drills and reports stay
independent of each other. Everything is checked before anything starts (:func:`prepare`: scenario,
tolerance, durations, run folder), so bad input changes nothing. Then:

1. the stack is reused, or started (and stopped at the end) when none is up; a drill of a platform that
   is not the local stack (``--aws``, ``--target URL`` for a staging intake) starts nothing;
2. the scenario's load starts (:func:`tradeops.experiments.load.run_load`: Locust in its own process), unless the
   experiment starts its own (``start_load``), which is then the drill's one load
   (:mod:`tradeops.experiments.drillload`);
3. ``chaos run`` runs the experiment in its own process, writing its journal into the run folder; its
   faults go through the fault backend chosen for the target (:mod:`.faultbackends`: ``sim``, ``proxy``,
   ``fis``), checked before anything starts; meanwhile a sampler records the metrics timeline once a
   second from what the stack publishes;
4. the load stops, its orders drain and are reconciled against the orders table and both brokers' fill
   ledgers, or, where the brokers keep none we can read, each broker's status query (what that cannot
   check is said in ``result.json``, and a figure it cannot measure fails its tolerance);
5. :mod:`tradeops.drillresult.figures` turns the journal, events, orders and timeline into the
   figures and the verdict, which never comes from ``chaos run``'s exit code;
6. the report builder writes the run's report into the run folder.

The run folder (``runs/<UTC time>-drill-<scenario>/`` unless ``out`` is given)::

    result.json      figures, pass/fail per figure, the verdict, run_dir (what --json prints)
    journal.json     the Chaos Toolkit journal            experiment.yaml  the experiment as run
    vars.json        the configuration chaos ran with     chaostoolkit.log chaos's own log
    timeline.json    the metrics sampled each second, with orders/s per broker from the load
    events.json      the routing, order and exposure events of the drill window
    audit.json       the audit log records of runbook executions the drill ran
    orders.json      the drill's orders as stored (status, broker, prices, history): for the report
    evidence.json, report.html, report.md   the scenario-testing report (from the report builder)
    load/            the load run folder (summary.json, reconciliation.json, Locust's files)
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from tradeops.drillresult import figures as drillfigures
from tradeops.experiments.drillload import DrillLoad, ExperimentLoad, starts_own_load
from tradeops.experiments.drilltarget import FaultPlan, chaos_exports, plan_faults, reconciliation_checked
from tradeops.experiments.load import LoadResult, read_ids
from tradeops.runbooks.audit import AuditLog
from tradeops.runbooks.identity import current_identity
from tradeops.runtime.liability.exposuretable import read_summary
from tradeops.runtime.liability.ledger import Ledger
from tradeops.runtime.orderpath import heartbeats
from tradeops.runtime.orderpath.figures import queue_figures
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.orderpath.routing import PROVIDERS
from tradeops.runtime.orderpath.states import IN_DOUBT
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import iso, utcnow
from tradeops.runtime.platform.errors import BadInput, OperationFailed, TradeopsError, reason_of
from tradeops.runtime.platform.events import read_events
from tradeops.runtime.platform.packagedata import package_file
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.platform.statefile import pid_alive, read_state, resolve_settings
from tradeops.runtime.stack import supervisor

__all__ = ["DrillRequest", "DrillResult", "Prepared", "ReportBuilder", "describe", "history", "prepare", "run_drill",
           "scenarios"]

EXTENSION = "tradeops"
HISTORY = "drill-history.jsonl"
CHAOS_GRACE = 120.0
"""How long ``chaos run`` may take beyond the experiment's own pauses before it is stopped."""

ReportBuilder = Callable[[Path, Settings, str], object]
"""Writes a run folder's report: ``(run folder, the stack's settings, who generated it)``."""


@dataclass(frozen=True)
class DrillRequest:
    """What to run. ``duration`` is how long the fault lasts; ``tolerance`` adds or replaces figure bounds."""

    scenario: str
    rate: float | None = None
    duration: float | None = None
    recover: float | None = None
    tolerance: Mapping[str, str] = field(default_factory=dict)
    stop_exposure_gbp: str | None = None
    stop_oldest_pending: float | None = None
    out: Path | None = None
    drain: float | None = None
    workers: int = 2
    backend: str | None = None
    target: str | None = None
    token_file: Path | None = None


@dataclass(frozen=True)
class Prepared:
    request: DrillRequest
    name: str
    path: Path
    experiment: dict[str, Any]
    tolerance: dict[str, tuple[str, float]]
    configuration: dict[str, Any]
    load: dict[str, Any]
    run_dir: Path
    activity_seconds: float = 0.0
    faults: FaultPlan | None = None


@dataclass(frozen=True)
class DrillResult:
    run_dir: Path
    result: dict[str, Any]

    @property
    def passed(self) -> bool:
        return bool(self.result["passed"])


@dataclass(frozen=True)
class Progress:
    """A phase of the drill starting; ``seconds``: about how long it lasts (None: not known)."""

    phase: str
    detail: str
    seconds: float | None = None


def scenarios() -> list[str]:
    """The shipped experiments' names (``experiments/<name>.yaml``)."""
    folder = package_file("experiments")
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _experiment_file(scenario: str) -> Path:
    if scenario.endswith((".yaml", ".yml")) or os.sep in scenario:
        path = Path(scenario)
        if not path.is_file():
            raise BadInput(f"experiment file {scenario} not found")
        return path
    if scenario not in scenarios():
        raise BadInput(f"unknown scenario {scenario!r} (one of {', '.join(scenarios())}, or an experiment file)")
    return package_file("experiments", f"{scenario}.yaml")


def _extension(experiment: Mapping[str, Any], path: Path) -> dict[str, Any]:
    for ext in experiment.get("extensions") or []:
        if isinstance(ext, Mapping) and ext.get("name") == EXTENSION:
            return dict(ext)
    raise BadInput(f"{path}: no `extensions: [{{name: {EXTENSION}, ...}}]` entry with the drill's load and tolerance")


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def describe(scenario: str) -> dict[str, Any]:
    """A scenario's name, title, load and tolerance, as its experiment file says."""
    path = _experiment_file(scenario)
    experiment = yaml.safe_load(path.read_text(encoding="utf-8"))
    ext = _extension(experiment, path)
    return {"scenario": path.stem, "title": experiment.get("title"), "load": ext.get("load"),
            "tolerance": ext.get("tolerance") or {}}


def prepare(request: DrillRequest, settings: Settings) -> Prepared:
    """Check the scenario, its tolerance and the overrides before anything starts; BadInput says what is wrong."""
    path = _experiment_file(request.scenario)
    try:
        experiment = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise BadInput(f"{path}: not a readable experiment: {exc}") from None
    if not isinstance(experiment, dict) or not experiment.get("method"):
        raise BadInput(f"{path}: not a Chaos Toolkit experiment (no method)")
    ext = _extension(experiment, path)
    try:
        tolerance = drillfigures.parse_tolerance({**(ext.get("tolerance") or {}), **request.tolerance})
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    for name, value in (("--rate", request.rate), ("--duration", request.duration), ("--recover", request.recover),
                        ("--stop-oldest-pending", request.stop_oldest_pending)):
        if value is not None and value <= 0:
            raise BadInput(f"{name} must be above 0")
    if request.stop_exposure_gbp is not None:
        try:
            if Decimal(request.stop_exposure_gbp) <= 0:
                raise BadInput("--stop-exposure must be above 0")
        except ArithmeticError:
            raise BadInput(f"--stop-exposure must be an amount in GBP, got {request.stop_exposure_gbp!r}") from None
    config = {k: v for k, v in (experiment.get("configuration") or {}).items() if not isinstance(v, dict)}
    if request.duration is not None:
        config["fault_seconds"] = request.duration
    if request.recover is not None:
        config["recover_seconds"] = request.recover
    if request.stop_exposure_gbp is not None:
        config["stop_exposure_gbp"] = request.stop_exposure_gbp
    if request.stop_oldest_pending is not None:
        config["stop_oldest_pending_seconds"] = request.stop_oldest_pending
    activity_seconds = ext.get("activity_seconds", 0)
    if isinstance(activity_seconds, bool) or not isinstance(activity_seconds, int | float) or activity_seconds < 0:
        raise BadInput(f"{path}: activity_seconds must be a number of seconds ≥ 0, got {activity_seconds!r}")
    load = dict(ext.get("load") or {"scenario": "steady", "rate": 5})
    if request.rate is not None:
        load["rate"] = request.rate
    name = path.stem
    run_dir = (request.out or settings.runs_dir / f"{_stamp()}-drill-{name}").resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise BadInput(f"run folder {run_dir} exists and is not empty; choose another --out")
    faults = plan_faults(request, settings, experiment, config, stack_up=_stack_up(settings))
    return Prepared(request=request, name=name, path=path, experiment=experiment, tolerance=tolerance,
                    configuration=config, load=load, run_dir=run_dir, activity_seconds=float(activity_seconds),
                    faults=faults)


# ---- the stack ------------------------------------------------------------------------------------
def _stack_up(settings: Settings) -> bool:
    state = read_state(settings.state_file)
    return bool(state and state.get("status") == "ready" and state.get("local")
                and pid_alive(state.get("supervisor_pid")))


@contextlib.contextmanager
def _stack(settings: Settings, workers: int, progress: Callable[[Progress], None], faults: FaultPlan | None = None):
    """The running local stack, or one started here and stopped on the way out (with fault proxies in front of
    its brokers for the proxy backend); nothing for a platform that is not the local stack."""
    if _stack_up(settings) or (faults is not None and faults.remote):
        yield False
        return
    if faults is not None and faults.choice.name == "proxy":
        settings = settings.model_copy(update={"fault_proxy": True})
    progress(Progress("stack", f"starting the local stack in {settings.state_dir}"))
    supervisor.launch(settings, workers=workers, local=True, ports={})
    try:
        yield True
    finally:
        progress(Progress("stack", "stopping the stack this drill started"))
        supervisor.stop(settings)


# ---- sampling ----------------------------------------------------------------------------------
class _Sampler(threading.Thread):
    """Samples what the stack publishes once a second into ``samples`` (and ``timeline.partial.jsonl``)."""

    def __init__(self, settings: Settings, path: Path, every: float = 1.0,
                 on_sample: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__(name="drill-sampler", daemon=True)
        self.aws = Aws(settings)
        self.path = path
        self.every = every
        self.on_sample = on_sample
        self.samples: list[dict[str, Any]] = []
        self.halt = threading.Event()

    def sample(self) -> dict[str, Any]:
        row: dict[str, Any] = {"at": iso()}
        try:
            fleet = heartbeats.fleet(self.aws)
            row["workers"] = {w["worker_id"]: {"in_flight": w["in_flight"], "breakers": w["breakers"],
                                               "suspect": sorted(w["suspect"]),
                                               "filled": w["counters"].get("filled"),
                                               "filled_at": {p: w["counters"].get(f"filled_{p}", 0)
                                                             for p in PROVIDERS}} for w in fleet["workers"]}
            row["in_flight"] = fleet["in_flight"]
            flags = Flags(self.aws).read()
            row["flags"] = {"mode": flags.mode, "active": flags.active, "trickle": flags.trickle,
                            "processing": flags.processing}
            row["queue"] = queue_figures(self.aws)
            summary = read_summary(self.aws) or {}
            row["exposure_gbp"] = summary.get("total_exposure")
            row["oldest_pending_seconds"] = summary.get("oldest_pending_seconds")
            row["pending_orders"] = summary.get("pending_orders")
            row["in_doubt"] = OrderStore(self.aws).count_status(IN_DOUBT)
        except TradeopsError as exc:
            row["error"] = reason_of(exc)
        return row

    def run(self) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            while not self.halt.is_set():
                started = time.monotonic()
                row = self.sample()
                self.samples.append(row)
                fh.write(json.dumps(row, default=str) + "\n")
                fh.flush()
                if self.on_sample is not None:
                    self.on_sample(row)
                self.halt.wait(max(0.0, self.every - (time.monotonic() - started)))


# ---- the run ------------------------------------------------------------------------------------
def _method_seconds(experiment: Mapping[str, Any], config: Mapping[str, Any]) -> float:
    """The experiment's pauses, with ``${var}`` read from ``config`` (a bound for the chaos process)."""
    total = 0.0
    for activity in [*(experiment.get("method") or []), *(experiment.get("rollbacks") or [])]:
        for value in (activity.get("pauses") or {}).values():
            text = str(value)
            if text.startswith("${"):
                text = str(config.get(text[2:-1], 0))
            with contextlib.suppress(ValueError):
                total += float(text)
    return total


def _chaos(prep: Prepared, settings: Settings, config: dict[str, Any],
           environment: Mapping[str, str] | None = None) -> int:
    """``chaos run`` in its own process; returns its exit code (read for nothing but the log)."""
    run_dir = prep.run_dir
    (run_dir / "experiment.yaml").write_text(yaml.safe_dump(prep.experiment, sort_keys=False), encoding="utf-8")
    (run_dir / "vars.json").write_text(json.dumps({"configuration": config}, indent=2, default=str) + "\n",
                                       encoding="utf-8")
    env = {**os.environ, **chaos_exports(prep.faults, settings, prep.run_dir), **(environment or {}),
           "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "chaostoolkit", "--log-file", str(run_dir / "chaostoolkit.log"), "--no-version-check",
            "run", "--journal-path", str(run_dir / "journal.json"), "--var-file", str(run_dir / "vars.json"),
            str(run_dir / "experiment.yaml")]
    limit = _method_seconds(prep.experiment, config) + prep.activity_seconds + CHAOS_GRACE
    with open(run_dir / "chaos.out", "wb") as log:
        proc = subprocess.Popen(argv, env=env, cwd=run_dir, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        try:
            return proc.wait(limit)
        except subprocess.TimeoutExpired:
            supervisor.stop_process(proc, 10.0)
            raise OperationFailed(f"chaos run did not finish within {limit:.0f}s; "
                                  f"see {run_dir / 'chaos.out'}") from None


def _orders_per_second(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(summary.get("timeline") or [])


def _reimbursements(aws: Aws, ids: set[str]) -> Decimal:
    total = Decimal("0")
    for entry in Ledger(aws).entries():
        if entry.get("order_id") in ids:
            total += Decimal(str(entry.get("amount", "0")))
    return total


def _audit(aws: Aws, journal: Mapping[str, Any]) -> list[dict[str, Any]]:
    executions = [str(r["output"]["execution_id"]) for r in journal.get("run") or []
                  if isinstance(r.get("output"), dict) and r["output"].get("execution_id")]
    log = AuditLog(aws)
    return [record for eid in executions for record in log.entries(eid)]


def _write(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def run_drill(request: DrillRequest, settings: Settings, *, build_report: ReportBuilder,
              on_progress: Callable[[Progress], None] | None = None, prepared: Prepared | None = None,
              on_sample: Callable[[dict[str, Any]], None] | None = None) -> DrillResult:
    """Run one drill end to end and write its run folder, the report last; see the module docstring.

    ``on_progress`` hears each phase start, ``on_sample`` each row of the metrics timeline (once a second)."""
    progress = on_progress or (lambda p: None)
    prep = prepared or prepare(request, settings)
    prep.run_dir.mkdir(parents=True, exist_ok=True)
    with _stack(settings, request.workers, progress, prep.faults) as started_stack:
        settings = resolve_settings(settings) if prep.faults is None else prep.faults.settings(settings, prep.run_dir)
        if prep.faults is not None and not prep.faults.remote:
            prep.faults.preflight(settings, prep.run_dir)
        return _run(prep, settings, progress, started_stack, build_report, on_sample)


def _run(prep: Prepared, settings: Settings, progress: Callable[[Progress], None], started_stack: bool,
         build_report: ReportBuilder, on_sample: Callable[[dict[str, Any]], None] | None = None) -> DrillResult:
    aws = Aws(settings)
    run_dir = prep.run_dir
    before = Flags(aws).read()
    config = {**prep.configuration, "tradeops_state_dir": str(settings.state_dir.resolve()),
              "param_prefix": settings.param_prefix, "restore_mode": before.mode, "restore_active": before.active,
              "restore_processing": before.processing}
    runner: DrillLoad | ExperimentLoad
    remote = prep.faults is not None and prep.faults.remote
    if starts_own_load(prep.experiment):
        runner = ExperimentLoad(settings, folder=run_dir / "load", drain=prep.request.drain, rate=prep.request.rate)
    else:
        # The load outlives the experiment; the drill stops it when chaos is done. Another platform's load goes to
        # its intake with its token, and its orders are read back from its orders table.
        runner = DrillLoad(settings, scenario=str(prep.load.get("scenario", "steady")), rate=prep.load.get("rate"),
                           seconds=_method_seconds(prep.experiment, config) + prep.activity_seconds + CHAOS_GRACE,
                           folder=run_dir / "load", drain=prep.request.drain,
                           target=settings.intake_url if remote else None,
                           token_file=prep.request.token_file if remote else None, orders_table=remote)
    started_at = utcnow()
    sampler = _Sampler(settings, run_dir / "timeline.partial.jsonl", on_sample=on_sample)
    sampler.start()
    progress(Progress("load", runner.description))
    runner.start()
    try:
        progress(Progress("chaos", f"chaos run {prep.path.name}",
                          seconds=_method_seconds(prep.experiment, config) + prep.activity_seconds))
        chaos_code = _chaos(prep, settings, config, runner.environment)
    finally:
        backend = prep.faults.heal(settings) if prep.faults is not None else {}
        progress(Progress("drain", "stopping the load; draining and reconciling its orders", seconds=runner.drain))
        outcome = runner.finish()
        sampler.halt.set()
        sampler.join(5)
    if isinstance(outcome, BaseException):
        raise outcome
    load: LoadResult = outcome
    ended_at = utcnow()
    try:
        journal = json.loads((run_dir / "journal.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        journal = {"status": "missing", "run": [], "steady_states": {}}
    accepted, unanswered = read_ids(run_dir / "load" / "orders")
    orders = OrderStore(aws).get_many([*accepted, *unanswered])
    window_start, window_end = started_at - timedelta(seconds=2), ended_at + timedelta(seconds=1)
    events = sorted((e for stream in ("routing", "orders", "exposure")
                     for e in read_events(aws, stream=stream, since=window_start, until=window_end)),
                    key=lambda e: str(e.get("at")))
    audit = _audit(aws, journal)
    counts = dict(load.summary.get("orders") or {})
    owed = _reimbursements(aws, set(accepted))
    figures = drillfigures.compute_figures(journal=journal, events=events, orders=orders, timeline=sampler.samples,
                                           counts={k: v for k, v in counts.items() if isinstance(v, int)},
                                           reimbursements_owed=owed, trickle=before.trickle)
    faults_seen = prep.faults.observed(settings, journal, backend, since=iso(started_at)) if prep.faults else {}
    checked = reconciliation_checked(load.summary, remote=remote)
    for name in checked["unmeasured"]:
        figures[name] = None  # what the reconciliation could not check is not measured, never a pass
    judgement = drillfigures.judge(figures, prep.tolerance,
                                   [*drillfigures.journal_findings(journal), *faults_seen.get("findings", [])])
    window = drillfigures.fault_window(journal)
    drill_approvals = [a for r in journal.get("run") or [] if isinstance(r.get("output"), dict)
                       for a in r["output"].get("approvals") or []]
    result = {
        "scenario": prep.name, "title": prep.experiment.get("title"), "run_dir": str(run_dir),
        "passed": judgement.passed, "verdict": "passed" if judgement.passed else "failed",
        "failures": judgement.failures, "checks": judgement.checks, "figures": figures,
        "started_at": iso(started_at), "ended_at": iso(ended_at),
        "fault": {"provider": window.provider,
                  "started_at": iso(datetime.fromtimestamp(window.start, UTC)) if window.start else None,
                  "healed_at": iso(datetime.fromtimestamp(window.healed, UTC)) if window.healed else None},
        "journal": {"status": journal.get("status"), "deviated": journal.get("deviated"),
                    "steady_state_before": (journal.get("steady_states") or {}).get("before", {}) and
                    journal["steady_states"]["before"].get("steady_state_met"),
                    "steady_state_after": (journal.get("steady_states") or {}).get("after", {}) and
                    journal["steady_states"]["after"].get("steady_state_met"),
                    "activities": [{"name": (r.get("activity") or {}).get("name"), "status": r.get("status")}
                                   for r in journal.get("run") or []],
                    "rollbacks": [{"name": (r.get("activity") or {}).get("name"), "status": r.get("status")}
                                  for r in journal.get("rollbacks") or []],
                    "chaos_exit_code": chaos_code},
        "stop_conditions": {"interrupted": journal.get("status") == "interrupted",
                            "exposure_gbp": config.get("stop_exposure_gbp"),
                            "oldest_pending_seconds": config.get("stop_oldest_pending_seconds")},
        "drill_approvals": {"automated_in_drill": True, "human_four_eyes": False, "approvals": drill_approvals},
        "load": {"scenario": load.summary["scenario"]["name"], "rate": runner.rate(load),
                 "run_id": load.summary["run_id"], "started_by": runner.started_by, "run_dir": str(load.run_dir),
                 "orders": counts},
        "stack": {"started_by_drill": started_stack, "state_dir": str(settings.state_dir)},
        "target": prep.faults.target_record(settings) if prep.faults else None,
        "fault_backend": faults_seen.get("record"),
        "reconciliation": checked["record"],
        "files": {"journal": "journal.json", "timeline": "timeline.json", "events": "events.json",
                  "audit": "audit.json", "load_summary": "load/summary.json", "experiment": "experiment.yaml",
                  "orders": "orders.json", "evidence": "evidence.json", "report_html": "report.html",
                  "report_md": "report.md"},
    }
    _write(run_dir / "timeline.json", {"samples": sampler.samples,
                                       "orders_per_second": _orders_per_second(load.summary)})
    (run_dir / "timeline.partial.jsonl").unlink(missing_ok=True)
    _write(run_dir / "events.json", events)
    _write(run_dir / "audit.json", audit)
    _write(run_dir / "orders.json", [_order_fields(o) for o in orders.values()])
    _write(run_dir / "result.json", result)
    _record(settings, result)
    progress(Progress("report", f"writing the scenario-testing report into {run_dir}"))
    try:
        build_report(run_dir, settings, _who(settings))
    except Exception as exc:  # the drill's verdict stands without its report; `tradeops report build` retries
        (run_dir / "report-error.txt").write_text(f"{type(exc).__name__}: {exc}\n", encoding="utf-8")
        progress(Progress("report", f"the report was not built ({exc}); run `tradeops report build {run_dir}`"))
    return DrillResult(run_dir=run_dir, result=result)


def _who(settings: Settings) -> str:
    who = current_identity(settings)
    return f"tradeops drill run, as {who.name} ({who.source})"


ORDER_FIELDS = ("order_id", "status", "provider", "symbol", "side", "quantity", "order_type", "quote_price",
                "fill_price", "filled_quantity", "placed_at", "synthetic", "history", "double_execution")


def _order_fields(order: Mapping[str, Any]) -> dict[str, Any]:
    """What the report needs of an order (waits, broker, prices); nothing of the account."""
    return {k: order[k] for k in ORDER_FIELDS if k in order}


def _record(settings: Settings, result: Mapping[str, Any]) -> None:
    line = {"scenario": result["scenario"], "at": result["ended_at"], "verdict": result["verdict"],
            "failures": result["failures"][:3], "run_dir": result["run_dir"]}
    settings.runs_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.runs_dir / HISTORY, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def history(settings: Settings) -> dict[str, dict[str, Any]]:
    """Each scenario's last drill result (from ``runs/drill-history.jsonl``)."""
    last: dict[str, dict[str, Any]] = {}
    with contextlib.suppress(OSError):
        for line in (settings.runs_dir / HISTORY).read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                last[entry["scenario"]] = entry
    return last
