"""The image's health probe (runtime/stack/health.py): which component runs here, and what to ask it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradeops.runtime.platform.names import worker_id
from tradeops.runtime.stack.health import Probe, find_component, probe_for


@pytest.mark.parametrize(("argv", "expected"), [
    (["python", "-m", "tradeops.runtime.orderpath.intake", "--host", "0.0.0.0", "--port", "8080"],
     Probe("tradeops.runtime.orderpath.intake", url="http://127.0.0.1:8080/health")),
    (["/opt/tradeops/bin/python", "-m", "tradeops.runtime.liability.monitor", "--port=8081", "--host", "10.0.0.5"],
     Probe("tradeops.runtime.liability.monitor", url="http://10.0.0.5:8081/health")),
    (["python", "-m", "tradeops.runtime.liability.prices", "--host", "::", "--port", "9000"],
     Probe("tradeops.runtime.liability.prices", url="http://127.0.0.1:9000/health")),
    (["python", "-m", "tradeops.runtime.liability.prices", "--host", "::1", "--port", "9000"],
     Probe("tradeops.runtime.liability.prices", url="http://[::1]:9000/health")),
    (["python", "-m", "tradeops.runtime.brokers.sim", "--name", "primary", "--order-port", "1", "--control-port", "2"],
     Probe("tradeops.runtime.brokers.sim", url="http://127.0.0.1:2/_sim/health")),
    (["python", "-m", "tradeops.runtime.orderpath.worker", "--id", "w-7"],
     Probe("tradeops.runtime.orderpath.worker", worker="w-7")),
    (["python", "-m", "tradeops.runtime.orderpath.worker"],
     Probe("tradeops.runtime.orderpath.worker", worker="worker-task-a1b2-1")),
    (["python", "-m", "tradeops.runtime.orderpath.canary"], Probe("tradeops.runtime.orderpath.canary")),
    (["python", "-m", "tradeops.runbooks.anchor", "--chain", "audit"], Probe("tradeops.runbooks.anchor")),
    (["python", "-m", "tradeops.runtime.orderpath.intake"], None),  # no port: nothing to ask
    (["python", "-m", "http.server"], None),
    (["sleep", "100"], None),
])
def test_the_probe_follows_the_command_line(argv, expected):
    """Each component's command line gives its probe: an HTTP component's health URL (through 127.0.0.1 when it
    listens everywhere), a worker's id (the default one when none is given), or liveness; anything else is none."""
    assert probe_for(argv, pid=1, host="task-a1b2") == expected


def test_a_default_worker_id_is_unique_per_container():
    """Every container's main process is pid 1: the host name (unique per container or task) tells them apart."""
    assert worker_id("task-a1b2", 1) != worker_id("task-c3d4", 1)
    assert worker_id("task-a1b2", 1) == "worker-task-a1b2-1"


def _proc(root: Path, pid: int, *argv: str) -> None:
    (root / str(pid)).mkdir()
    (root / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")


def test_the_component_is_the_oldest_tradeops_process_here(tmp_path):
    """Behind an init process (whose command line holds the component's) the component itself is found, not the init;
    the probe's own process and unreadable entries are skipped."""
    _proc(tmp_path, 1, "/sbin/tini", "--", "python", "-m", "tradeops.runtime.orderpath.canary")
    _proc(tmp_path, 7, "python", "-m", "tradeops.runtime.orderpath.worker", "--id", "w-1")
    _proc(tmp_path, 9, "python", "-m", "tradeops.runtime.stack.health")
    (tmp_path / "self").mkdir()
    (tmp_path / "20").mkdir()  # gone, or not ours to read: no cmdline
    assert find_component(tmp_path, own_pid=9) == (7, ["python", "-m", "tradeops.runtime.orderpath.worker", "--id",
                                                       "w-1"])
    _proc(tmp_path, 3, "python", "-m", "tradeops.runtime.orderpath.intake", "--port", "8080")
    assert find_component(tmp_path, own_pid=9)[0] == 3
    assert find_component(tmp_path / "20", own_pid=9) is None
