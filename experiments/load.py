"""A load run: Locust in its own processes, then drain, reconciliation, summary and verdict.

``tradeops load run`` is a thin shell over :func:`run_load`; the drill runner calls it the same way.
Everything is checked before anything starts (:func:`prepare`: scenario, parameters, thresholds,
target, token), so bad input changes nothing. Then:

1. Locust runs the locustfile (``tradeops.loadtests.locustfile``) as a subprocess: one process,
   or a master and ``workers`` worker processes on this machine (plus ``remote_workers`` that
   join from other machines). gevent never enters this process.
2. While it runs, ``on_progress`` gets the elapsed time, target and achieved rate, and orders
   placed and filled, once a second.
3. When Locust has exited (its stats files lag the totals by about a second while it runs, so the
   final figures are read only after it exits), the run's orders are given ``drain`` seconds to
   settle; then they are reconciled against the orders table and both brokers' fill ledgers.
4. The run folder gets Locust's CSV and HTML, ``reconciliation.json``, ``scenario.json`` and
   ``summary.json``; the thresholds alone decide pass or fail, never Locust's exit code.

The run folder (``runs/<UTC time>-load-<scenario>/`` unless ``out`` is given)::

    summary.json          what the drill runner and report builder read (loadreport.build_summary)
    reconciliation.json   every order id by outcome
    scenario.json         the scenario as run (parameters applied)
    locust.html, locust_stats.csv, locust_stats_history.csv, locust_failures.csv, locust*.log
    orders/               the ids each Locust process placed (<process>.accepted / .unanswered)
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from tradeops.experiments.loadreport import HttpFigures, aws_per_order, build_summary, http_figures
from tradeops.loadtests.scenario import Scenario, ScenarioError, load_scenario, new_run_id
from tradeops.loadtests.thresholds import BUILT_IN, Threshold, ThresholdError, merge, parse_threshold
from tradeops.runtime.orderpath.fills import reconcile_orders
from tradeops.runtime.orderpath.heartbeats import fleet
from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.orderpath.routing import PROVIDERS
from tradeops.runtime.orderpath.states import PENDING
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import BadInput, OperationFailed, StackError, TradeopsError, reason_of
from tradeops.runtime.platform.packagedata import package_file
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.platform.statefile import read_state
from tradeops.runtime.stack import status as stack_status
from tradeops.runtime.stack.supervisor import free_port, log_tail, stop_process

__all__ = ["LoadRequest", "LoadResult", "Prepared", "Progress", "prepare", "run_load"]

FILL_CHECKS = frozenset({"orders filled twice", "orders wrong broker", "orders unrecorded fill"})
STARTUP_GRACE = 60.0
"""How long Locust may take beyond the shape's duration (start, workers joining, stopping) before it is stopped."""


@dataclass(frozen=True)
class LoadRequest:
    """What to run. ``params`` are scenario parameters (``rate``, ``duration``, ``peak``, ...)."""

    scenario: str
    params: Mapping[str, str] = field(default_factory=dict)
    thresholds: Sequence[str] = ()
    workers: int = 0
    remote_workers: int = 0
    master_bind: str = "127.0.0.1"
    master_port: int | None = None
    out: Path | None = None
    target: str | None = None
    token_file: Path | None = None
    drain: float | None = None
    orders_table: bool = False
    """The target is not the local stack, yet its orders table is the one the settings reach (a drill with
    ``--aws``): its orders are drained and reconciled there, against the brokers' status queries."""


@dataclass(frozen=True)
class Progress:
    """One progress report while the load runs (``filled`` is None when it cannot be seen)."""

    phase: str
    elapsed: float
    duration: float
    target_rate: float
    achieved_rate: float | None
    placed: int
    failed: int
    filled: int | None
    detail: str = ""


@dataclass(frozen=True)
class Prepared:
    """A checked request: nothing has started yet."""

    request: LoadRequest
    scenario: Scenario
    thresholds: list[Threshold]
    target: str
    token_file: Path | None
    token_env: str | None
    local_stack: bool
    run_dir: Path
    drain: float


@dataclass(frozen=True)
class LoadResult:
    run_dir: Path
    summary: dict[str, Any]

    @property
    def passed(self) -> bool:
        return bool(self.summary["passed"])


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def check_request(request: LoadRequest) -> tuple[Scenario, list[Threshold]]:
    """The request's own input (scenario, parameters, thresholds, worker counts), checked without a stack:
    bad input is reported the same whether or not anything is running. Returns the scenario and the
    command line's thresholds."""
    try:
        scenario = load_scenario(request.scenario, request.params)
        cli = [parse_threshold(text, source="command line") for text in request.thresholds]
    except (ScenarioError, ThresholdError) as exc:
        raise BadInput(str(exc)) from None
    if request.workers < 0 or request.remote_workers < 0:
        raise BadInput("--workers and --remote-workers must be 0 or more")
    return scenario, cli


def prepare(request: LoadRequest, settings: Settings) -> Prepared:
    """Check everything a run needs, before anything starts; BadInput / StackError say what is wrong."""
    scenario, cli = check_request(request)
    if find_spec("locust") is None:
        raise OperationFailed("Locust is not installed: pip install 'tradeops[load]'")
    state = read_state(settings.state_file) or {}
    target = request.target or settings.intake_url
    if not target:
        raise StackError("no intake to load: the stack is not up (`tradeops up`); or pass --target URL "
                         "and --token-file FILE")
    local_stack = request.target is None or request.target.rstrip("/") == (settings.intake_url or "").rstrip("/")
    token_file = request.token_file
    token_env = None
    if token_file is None and local_stack:
        if state.get("intake_token_file"):
            token_file = Path(state["intake_token_file"])
        elif settings.intake_token:
            token_env = settings.intake_token
    if token_file is None and token_env is None:
        raise BadInput("--target needs --token-file FILE (the intake's bearer token)")
    if token_file is not None:
        try:
            if not token_file.read_text(encoding="utf-8").strip():
                raise BadInput(f"token file {token_file} is empty")
        except OSError as exc:
            raise BadInput(f"token file {token_file}: {exc.strerror}") from None
    run_dir = (request.out or settings.runs_dir / f"{_stamp()}-load-{scenario.name}").resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise BadInput(f"run folder {run_dir} exists and is not empty; choose another --out")
    drain = request.drain if request.drain is not None else scenario.drain
    return Prepared(request=request, scenario=scenario, thresholds=merge(BUILT_IN, scenario.thresholds, cli),
                    target=target, token_file=token_file, token_env=token_env, local_stack=local_stack,
                    run_dir=run_dir, drain=drain)


# ---- Locust as subprocesses ----------------------------------------------------------------------
class _Locust:
    """The Locust master (or lone process) and its local workers."""

    def __init__(self, prep: Prepared, settings: Settings, run_id: str) -> None:
        self.prep = prep
        self.dir = prep.run_dir
        locustfile = package_file("loadtests", "locustfile.py")
        env = {k: v for k, v in os.environ.items() if k != "TRADEOPS_INTAKE_TOKEN"}
        env.pop("TRADEOPS_INTAKE_TOKEN_FILE", None)
        if prep.token_file is not None:
            env["TRADEOPS_INTAKE_TOKEN_FILE"] = str(prep.token_file.resolve())
        if prep.token_env is not None:
            env["TRADEOPS_INTAKE_TOKEN"] = prep.token_env
        if prep.local_stack and settings.prices_url:
            env["TRADEOPS_PRICES_URL"] = settings.prices_url
        env["PYTHONUNBUFFERED"] = "1"
        self.env = env
        self.base = [sys.executable, "-m", "locust", "-f", str(locustfile)]
        self.master_argv = [*self.base, "--headless", "--host", prep.target,
                            "--scenario", str((self.dir / "scenario.json").resolve()), "--run-id", run_id,
                            "--record-dir", str((self.dir / "orders").resolve()),
                            "--csv", str(self.dir / "locust"), "--html", str(self.dir / "locust.html"),
                            "--json-file", str(self.dir / "locust"),
                            "--stop-timeout", "10", "--loglevel", "INFO", "--logfile", str(self.dir / "locust.log")]
        self.workers_wanted = prep.request.workers + prep.request.remote_workers
        self.port = prep.request.master_port or (free_port() if self.workers_wanted else None)
        if self.workers_wanted:
            self.master_argv += ["--master", "--expect-workers", str(self.workers_wanted),
                                 "--expect-workers-max-wait", "60",
                                 "--master-bind-host", prep.request.master_bind, "--master-bind-port", str(self.port)]
        self.master: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        with open(self.dir / "locust.out", "ab") as log:
            self.master = subprocess.Popen(self.master_argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, cwd=self.dir)
        for n in range(1, self.prep.request.workers + 1):
            argv = [*self.base, "--worker", "--master-host", "127.0.0.1", "--master-port", str(self.port),
                    "--loglevel", "INFO", "--logfile", str(self.dir / f"locust-worker-{n}.log")]
            with open(self.dir / f"locust-worker-{n}.out", "ab") as log:
                self.workers.append(subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                     stdin=subprocess.DEVNULL, cwd=self.dir))

    def running(self) -> bool:
        return self.master is not None and self.master.poll() is None

    def stop(self, grace: float = 20.0) -> None:
        """Ask Locust to stop (it finishes in-flight orders and writes its reports), then make sure."""
        if self.master is not None and self.master.poll() is None:
            self.master.send_signal(signal.SIGTERM)
        for proc in [self.master, *self.workers]:
            if proc is not None:
                stop_process(proc, grace)

    def wait_workers(self, grace: float = 15.0) -> None:
        deadline = time.monotonic() + grace
        for proc in self.workers:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop_process(proc, 5.0)


def _history_row(path: Path) -> dict[str, str] | None:
    """The latest Aggregated line of Locust's stats history (written once a second while it runs)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [r for r in csv.DictReader(fh) if r.get("Name") == "Aggregated"]
    except (OSError, csv.Error):
        return None
    return rows[-1] if rows else None


def _int(value: Any) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return 0


def read_http(run_dir: Path) -> HttpFigures:
    """Locust's final figures for POST /orders, from the JSON it writes as it exits (its CSV files are
    rewritten only once a second while it runs, so they can miss the last second)."""
    entry: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        stats = json.loads((run_dir / "locust.json").read_text(encoding="utf-8"))
        entry = next((e for e in stats if e.get("name") == "POST /orders"), {})
    reasons: list[dict[str, Any]] = []
    with contextlib.suppress(OSError, csv.Error), open(run_dir / "locust_failures.csv", newline="",
                                                       encoding="utf-8") as fh:
        for r in csv.DictReader(fh):
            reasons.append({"reason": r.get("Error", ""), "count": _int(r.get("Occurrences"))})
    reasons.sort(key=lambda r: -int(r["count"]))
    return http_figures(entry, reasons[:10])


def read_ids(folder: Path) -> tuple[list[str], list[str]]:
    """The ids the Locust processes recorded: (accepted, unanswered)."""
    accepted: list[str] = []
    unanswered: list[str] = []
    for path in sorted(folder.glob("*.accepted")):
        accepted += path.read_text(encoding="utf-8").split()
    for path in sorted(folder.glob("*.unanswered")):
        unanswered += path.read_text(encoding="utf-8").split()
    return list(dict.fromkeys(accepted)), list(dict.fromkeys(unanswered))


# ---- the run ------------------------------------------------------------------------------------
def _filled_so_far(aws: Aws) -> int | None:
    """Fills the live workers have counted since they started (their heartbeats), or None."""
    try:
        return sum(int(w["counters"].get("filled", 0)) for w in fleet(aws)["workers"])
    except TradeopsError:
        return None


def _aws_snapshot(settings: Settings) -> tuple[dict[str, dict[str, int]] | None, str | None]:
    try:
        counts, unreadable = stack_status.aws_requests(settings)
    except TradeopsError as exc:
        return None, reason_of(exc)
    return counts, (f"not counted: {', '.join(unreadable)}, canary" if unreadable else "not counted: canary")


def _drain(store: OrderStore, ids: list[str], wait: float,
           on_progress: Callable[[Progress], None] | None) -> dict[str, Any]:
    """Wait up to ``wait`` seconds for the run's orders to leave the pending states; reads only the
    ones still pending after the first pass."""
    started = time.monotonic()
    pending = list(ids)
    while pending:
        orders = store.get_many(pending, consistent=False)
        pending = [oid for oid in pending if oid in orders and orders[oid]["status"] in PENDING]
        waited = time.monotonic() - started
        if on_progress is not None:
            on_progress(Progress("drain", waited, wait, 0.0, None, len(ids), 0, len(ids) - len(pending),
                                 detail=f"{len(pending)} pending"))
        if not pending or waited >= wait:
            break
        time.sleep(min(1.0, max(0.0, wait - waited)))
    return {"drain_limit_seconds": wait, "drain_seconds": round(time.monotonic() - started, 3),
            "drained": not pending}


def run_load(request: LoadRequest, settings: Settings, *,
             on_progress: Callable[[Progress], None] | None = None,
             prepared: Prepared | None = None, stop: threading.Event | None = None) -> LoadResult:
    """Run one load scenario end to end and write its run folder; see the module docstring.

    ``stop`` ends the load early (Locust stops placing orders and writes its reports), for a caller
    whose own work decides how long the load lasts (a drill); drain and reconciliation still follow."""
    prep = prepared or prepare(request, settings)
    scenario, shape = prep.scenario, prep.scenario.shape
    run_dir = prep.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "orders").mkdir(exist_ok=True)
    (run_dir / "scenario.json").write_text(json.dumps(scenario.document, indent=2, sort_keys=True) + "\n",
                                           encoding="utf-8")
    run_id = new_run_id()
    aws = Aws(settings) if prep.local_stack or prep.request.orders_table else None
    aws_before, aws_note = _aws_snapshot(settings) if aws is not None else (None, "not the local stack")
    filled_before = _filled_so_far(aws) if aws is not None else None

    locust = _Locust(prep, settings, run_id)
    launched = time.time()
    locust.start()
    placed = failed = 0
    try:
        while locust.running():
            if stop is not None and stop.wait(1.0):
                locust.stop()
                break
            if stop is None:
                time.sleep(1.0)
            marker = _read_marker(run_dir)
            elapsed = time.time() - (marker.get("started_epoch") or launched)
            # Before the marker, Locust is starting (and a master may wait up to 60 s for its workers).
            if elapsed > shape.duration + STARTUP_GRACE + (0 if marker else 60):
                locust.stop()
                raise OperationFailed(f"Locust did not finish within {shape.duration + STARTUP_GRACE:.0f}s of "
                                      f"starting; see {run_dir / 'locust.log'}")
            row = _history_row(run_dir / "locust_stats_history.csv")
            if row is not None:
                total, failed = _int(row.get("Total Request Count")), _int(row.get("Total Failure Count"))
                placed = total - failed
            achieved = (placed + failed) / elapsed if elapsed >= 1 else None
            filled = None
            if filled_before is not None and aws is not None:
                current = _filled_so_far(aws)
                filled = None if current is None else max(0, current - filled_before)
            if on_progress is not None:
                on_progress(Progress("load", min(elapsed, shape.duration), shape.duration,
                                     shape.rate_at(elapsed) or 0.0, achieved, placed, failed, filled))
    except BaseException:
        locust.stop()
        raise
    locust.wait_workers()
    ended = time.time()
    master_code = locust.master.returncode if locust.master is not None else None
    marker = _read_marker(run_dir)
    if not marker:
        tail = log_tail(run_dir / "locust.out", 3) or log_tail(run_dir / "locust.log", 3)
        raise OperationFailed(f"Locust did not start the run (exit code {master_code}): {tail}")
    started = float(marker["started_epoch"])

    accepted, unanswered = read_ids(run_dir / "orders")
    recon = orders = None
    recon_note = None
    drain: dict[str, Any] = {"drain_limit_seconds": prep.drain, "drain_seconds": 0.0, "drained": False}
    thresholds = prep.thresholds
    if aws is not None:
        store = OrderStore(aws)
        drain = _drain(store, accepted, prep.drain, on_progress)
        if on_progress is not None:
            on_progress(Progress("reconcile", 0.0, 0.0, 0.0, None, len(accepted), 0, None))
        recon, orders = reconcile_orders(settings, aws, accepted, unanswered=unanswered)
        if recon.fills_source == "status":
            recon_note = "no broker fill ledger to read: fills were checked by each broker's status query"
        if not recon.fills_checked:
            recon_note = "no broker fill ledger to read: fills were not cross-checked"
            thresholds = [t for t in thresholds if not (t.source == "built-in" and t.metric in FILL_CHECKS)]
    else:
        recon_note = f"{prep.target} is not the local stack: its orders table is not known here"
    aws_after = _aws_snapshot(settings)[0] if aws is not None else None
    filled_count = recon.counts["filled"] if recon is not None else 0
    aws_figures = (aws_per_order(aws_before, aws_after, filled_count)
                   if aws_before is not None and aws_after is not None else None)
    http = read_http(run_dir)
    parameters = {**shape.describe(), "user_rate": scenario.user_rate, "workers": prep.request.workers,
                  "remote_workers": prep.request.remote_workers, "target": prep.target,
                  "drain_seconds": prep.drain, "locust_exit_code": master_code,
                  "params": dict(prep.request.params)}
    files = {"locust_html": "locust.html", "locust_stats": "locust.json",
             "locust_history": "locust_stats_history.csv", "reconciliation": "reconciliation.json",
             "scenario": "scenario.json", "orders": "orders/"}
    summary = build_summary(run_id=run_id, scenario=scenario, parameters=parameters, thresholds=thresholds,
                            started=started, ended=ended, http=http, recon=recon, recon_note=recon_note,
                            orders=orders or {}, aws=aws_figures, aws_note=aws_note, providers=PROVIDERS,
                            drain=drain, files=files)
    reconciliation = {"run_id": run_id, "available": recon is not None, "note": recon_note,
                      **(recon.as_dict() if recon is not None else {})}
    _write_json(run_dir / "reconciliation.json", reconciliation)
    _write_json(run_dir / "summary.json", summary)
    return LoadResult(run_dir=run_dir, summary=summary)


def _read_marker(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((run_dir / "orders" / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)

