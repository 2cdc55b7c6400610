"""A drill's one load: the scenario ``tradeops drill run`` runs itself, or the load its experiment starts.

An experiment that calls ``start_load`` anywhere brings its own load (:class:`ExperimentLoad`): the drill starts
none, tells the experiment's load through the environment to write into the drill's ``load/`` (and at the
drill's ``--rate``), and when ``chaos run`` ends stops it if the experiment did not and reads that run's summary.
Any other experiment gets the scenario its ``tradeops`` extension names (:class:`DrillLoad`), run in a thread of
the drill for as long as the experiment may run. Either way one load runs, and ``result.json`` says which.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tradeops.experiments import loadproc
from tradeops.experiments.load import LoadRequest, LoadResult, run_load
from tradeops.experiments.load import prepare as prepare_load
from tradeops.runtime.platform.errors import OperationFailed, TradeopsError
from tradeops.runtime.platform.settings import Settings

__all__ = ["ACTIVITIES_MODULE", "LOAD_FUNCS", "DrillLoad", "ExperimentLoad", "starts_own_load"]

LOAD_FUNCS = frozenset({"start_load"})
ACTIVITIES_MODULE = "tradeops.experiments.activities"


def starts_own_load(experiment: Mapping[str, Any]) -> bool:
    """Whether the experiment starts its own load (``start_load`` anywhere in it): then that is the drill's load."""
    hypothesis = experiment.get("steady-state-hypothesis") or {}
    activities = [*(hypothesis.get("probes") or []), *(experiment.get("method") or []),
                  *(experiment.get("rollbacks") or [])]
    return any((a.get("provider") or {}).get("module") == ACTIVITIES_MODULE
               and (a.get("provider") or {}).get("func") in LOAD_FUNCS for a in activities if isinstance(a, Mapping))


class DrillLoad:
    """The scenario's load, run by the drill in a thread for up to ``seconds`` (the drill stops it sooner, when
    ``chaos run`` ends), into ``folder``."""

    started_by = "drill"

    def __init__(self, settings: Settings, *, scenario: str, rate: Any, seconds: float, folder: Path,
                 drain: float | None, target: str | None = None, token_file: Path | None = None,
                 orders_table: bool = False) -> None:
        self.asked_rate = rate
        self.folder = folder
        # ``target``/``token_file``/``orders_table``: another platform's intake, its token, and its orders read back
        # from its orders table (a drill of a platform that is not the local stack).
        self.request = LoadRequest(scenario=scenario, params={"rate": str(5 if rate is None else rate),
                                                              "duration": f"{seconds:.0f}s"},
                                   out=folder, drain=drain, target=target, token_file=token_file,
                                   orders_table=orders_table)
        self.settings = settings
        self.load_prep = prepare_load(self.request, settings)
        self.drain = self.load_prep.drain
        self.description = f"{scenario} at {self.request.params['rate']}/s"
        self.environment: dict[str, str] = {}
        self.halt = threading.Event()
        self.box: dict[str, Any] = {}
        self.thread = threading.Thread(target=self._load, name="drill-load", daemon=True)

    def _load(self) -> None:
        try:
            self.box["result"] = run_load(self.request, self.settings, prepared=self.load_prep, stop=self.halt)
        except BaseException as exc:  # reported after the experiment
            self.box["error"] = exc

    def start(self) -> None:
        """Start the load and wait (up to a minute) until Locust has begun the run."""
        self.thread.start()
        marker = self.folder / "orders" / "run.json"
        deadline = time.monotonic() + 60
        while not marker.exists() and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.2)

    def finish(self) -> LoadResult | BaseException:
        """Stop the load; its result once drained and reconciled, or what went wrong."""
        self.halt.set()
        self.thread.join()
        return self.box.get("error") or self.box["result"]

    def rate(self, load: LoadResult) -> Any:
        return self.asked_rate


class ExperimentLoad:
    """The load the experiment starts itself (``start_load``), into ``folder``: the drill starts none, stops this
    one when the experiment is done if the experiment did not, and reads its summary."""

    started_by = "experiment"
    description = "the experiment starts its own load (start_load)"
    SUMMARY_GRACE = 90.0
    """How long reconciling may take beyond the drain."""

    def __init__(self, settings: Settings, *, folder: Path, drain: float | None, rate: float | None) -> None:
        self.folder = folder
        self.settings = settings
        self.drain = drain if drain is not None else 30.0
        # To start_load in the chaos process: the environment, since chaos hands an activity only the configuration
        # keys its experiment declares.
        self.environment = {loadproc.LOAD_OUT_ENV: str(folder)}
        if rate is not None:
            self.environment[loadproc.LOAD_RATE_ENV] = f"{rate:g}"

    def start(self) -> None:
        """Nothing: the experiment starts it."""

    def finish(self) -> LoadResult | BaseException:
        """Stop the experiment's load if it still runs; its summary once written, or what went wrong."""
        load = loadproc.find_in(self.settings, self.folder)
        if load is None:
            return OperationFailed("the experiment names start_load but started no load; see its journal")
        loadproc.stop(load)
        try:
            summary = loadproc.wait_summary(load, self.drain + self.SUMMARY_GRACE)
        except TradeopsError as exc:
            return exc
        return LoadResult(run_dir=load.run_dir, summary=summary)

    def rate(self, load: LoadResult) -> Any:
        return load.summary["rates"]["target"]
