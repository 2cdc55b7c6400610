"""A load run in a process of its own, for experiments that start their own load: started, found by its run
id, stopped, its summary awaited.

``start_load`` and ``stop_load`` (:mod:`tradeops.experiments.activities`) are thin shells over this, and
``tradeops drill run`` finds here the load an experiment started, so that it never starts a second one.

The process is ``tradeops load run`` (Locust in a process of its own below it). It is asked to stop with
SIGTERM, which ``load run`` takes as "stop placing orders now": it still drains, reconciles and writes the
run's ``summary.json`` (an interrupt, SIGINT, abandons the run before any of that).

Each load started is one record, ``<state dir>/loads/<run id>.json`` (its process, run folder, when it
started and which process started it), so that any later process (the drill runner, a script) finds the load
by its run id: the id every order of the run carries, which the Locust process writes as it starts. Within
one ``chaos run`` (one process runs all of an experiment's activities) "the load" is the last one that
process started: :func:`started_here`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tradeops.runtime.platform.clock import iso, utcnow
from tradeops.runtime.platform.errors import BadInput, OperationFailed
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.platform.statefile import pid_alive
from tradeops.runtime.stack.supervisor import log_tail

__all__ = ["LOAD_OUT_ENV", "LOAD_RATE_ENV", "OWNER", "STARTUP_SECONDS", "BackgroundLoad", "find", "find_in",
           "start", "started_here", "stop", "wait_summary"]

OWNER = f"{os.getpid()}-{uuid.uuid4().hex}"
"""This process, among every process that ever started a load from the state directory (a pid alone is reused)."""

LOAD_OUT_ENV = "TRADEOPS_DRILL_LOAD_OUT"
"""Under ``drill run``: where an experiment's own load writes (the drill's ``load/``), so the drill reads it there."""
LOAD_RATE_ENV = "TRADEOPS_DRILL_LOAD_RATE"
"""Under ``drill run``: the drill's ``--rate``, which replaces the rate an experiment's ``start_load`` asks for."""

STARTUP_SECONDS = 60.0
"""How long a load may take to place its first order (Locust starting) before starting it has failed."""


@dataclass(frozen=True)
class BackgroundLoad:
    """One load run started in the background: its run id, process and run folder."""

    run_id: str
    pid: int
    run_dir: Path
    started_at: str
    owner: str = ""
    """The process that started it (an experiment's ``chaos run``): :data:`OWNER` there."""

    @property
    def summary_path(self) -> Path:
        return self.run_dir / "summary.json"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "run_dir": str(self.run_dir)}


def _records(settings: Settings) -> Path:
    return settings.state_dir / "loads"


def _read(path: Path) -> BackgroundLoad | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return BackgroundLoad(run_id=str(doc["run_id"]), pid=int(doc["pid"]), run_dir=Path(doc["run_dir"]),
                              started_at=str(doc["started_at"]), owner=str(doc.get("owner", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def start(settings: Settings, *, scenario: str, rate: float, duration: str, out: Path) -> BackgroundLoad:
    """Start ``tradeops load run`` in a session of its own and return once Locust has begun the run (its run id
    is known); OperationFailed with the tail of its output when it stops before that."""
    run_dir = out.resolve()
    if run_dir.exists() and any(run_dir.iterdir()):
        raise BadInput(f"load run folder {run_dir} exists and is not empty")
    argv = [sys.executable, "-m", "tradeops.cli", "load", "run", scenario, "--rate", str(rate), "--duration",
            str(duration), "--out", str(run_dir), "--quiet", "--json"]
    env = {**os.environ, "TRADEOPS_STATE_DIR": str(settings.state_dir)}
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    output = run_dir.parent / f"{run_dir.name}.out"
    with open(output, "wb") as log:
        # A session of its own: the experiment's process group (chaos run, or a Ctrl-C at its terminal) does not
        # reach it; only stop() does, and then it drains and writes its summary.
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    marker = run_dir / "orders" / "run.json"
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        with contextlib.suppress(OSError, ValueError):
            run_id = str(json.loads(marker.read_text(encoding="utf-8"))["run_id"])
            break
        if proc.poll() is not None:
            raise OperationFailed(f"the load stopped before it placed an order (exit code {proc.returncode}): "
                                  f"{log_tail(output, 3) or 'no output'}")
        if time.monotonic() > deadline:
            proc.send_signal(signal.SIGTERM)
            raise OperationFailed(f"the load placed no order within {STARTUP_SECONDS:.0f}s; see {output}")
        time.sleep(0.2)
    load = BackgroundLoad(run_id=run_id, pid=proc.pid, run_dir=run_dir, started_at=iso(utcnow()),
                          owner=OWNER)
    folder = _records(settings)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{run_id}.json").write_text(json.dumps(load.as_dict()), encoding="utf-8")
    return load


def _all(settings: Settings) -> list[BackgroundLoad]:
    return [load for path in _records(settings).glob("*.json") if (load := _read(path)) is not None]


def find(settings: Settings, run_id: str) -> BackgroundLoad:
    """The load started with run id ``run_id``; BadInput when there is none."""
    load = _read(_records(settings) / f"{run_id}.json")
    if load is None:
        raise BadInput(f"no load run {run_id!r} was started from {settings.state_dir} (start_load answers the run id)")
    return load


def started_here(settings: Settings) -> BackgroundLoad | None:
    """The last load this process started (an experiment's own, in its ``chaos run``), or None."""
    mine = [load for load in _all(settings) if load.owner == OWNER]
    return max(mine, key=lambda load: (load.started_at, load.run_id)) if mine else None


def find_in(settings: Settings, run_dir: Path) -> BackgroundLoad | None:
    """The load whose run folder is ``run_dir`` (the drill runner's own load folder), or None."""
    wanted = run_dir.resolve()
    return next((load for load in _all(settings) if load.run_dir == wanted), None)


def _alive(pid: int) -> bool:
    # The process that started the load (a chaos run's activities) never waits for it: reap it here if it is
    # ours and has ended, or it stays a zombie that signals still reach.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return pid_alive(pid)


def stop(load: BackgroundLoad) -> bool:
    """Ask the load to stop placing orders (it drains, reconciles and writes its summary); False when it had
    already ended."""
    if not _alive(load.pid):
        return False
    try:
        os.kill(load.pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    return True


def wait_summary(load: BackgroundLoad, timeout: float) -> dict[str, Any]:
    """The run's ``summary.json`` once written (the load ends after its drain and reconciliation); OperationFailed
    when the process ended without one, or after ``timeout`` seconds."""
    deadline = time.monotonic() + float(timeout)
    while True:
        with contextlib.suppress(OSError, ValueError):
            summary = json.loads(load.summary_path.read_text(encoding="utf-8"))
            if isinstance(summary, dict) and summary.get("run_id") == load.run_id:
                return summary
        if not _alive(load.pid) and not load.summary_path.exists():
            output = load.run_dir.parent / f"{load.run_dir.name}.out"
            raise OperationFailed(f"load run {load.run_id} ended without a summary: "
                                  f"{log_tail(output, 3) or 'no output'}")
        if time.monotonic() > deadline:
            raise OperationFailed(f"load run {load.run_id} wrote no summary within {float(timeout):.0f}s "
                                  f"(is it still running? {load.run_dir})")
        time.sleep(0.5)
