"""The stack's child processes: a free port, a component started with its log and its health, and stopping
processes or a whole process group (SIGTERM, then SIGKILL after a grace). The supervisor (:mod:`.supervisor`)
plans and watches them."""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tradeops.runtime.platform.errors import StackError
from tradeops.runtime.platform.statefile import pid_alive

__all__ = ["HOST", "Component", "check_port_free", "free_port", "group_running", "kill_group", "port_free",
           "reap_group", "reap_pids", "stop_process", "stop_processes"]

HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1
_PROC_SELF = Path("/proc/self/stat")


_OUTGOING_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LISTEN_FLOOR = 10000


def _outgoing_floor() -> int:
    """The lowest port the kernel gives outgoing connections (Linux's default where it cannot be read)."""
    try:
        return int(_OUTGOING_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port that is free now, for a component to bind a moment later.

    Chosen at random below the range the kernel gives outgoing connections: the stack and its tests open many,
    and one could take a port the kernel had just handed out as free before its component binds it. A random
    pick also keeps two stacks starting side by side apart; the supervisor checks again before each start
    (:func:`port_free`) and picks anew if another process got there first. Where that range leaves no room
    below it, the kernel picks (bind to port 0).
    """
    low = _outgoing_floor()
    if low - _LISTEN_FLOOR >= 1000:
        for _ in range(50):
            port = random.randrange(_LISTEN_FLOOR, low)
            if port_free(port):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_free(port: int) -> bool:
    """Whether ``port`` on :data:`HOST` can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def check_port_free(component: str, port: int) -> None:
    """StackError naming ``component`` when ``port`` is taken (before starting it on that port)."""
    if not port_free(port):
        raise StackError(f"{component}: port {port} on {HOST} is already in use")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Component:
    """One process of the stack."""

    name: str
    argv: list[str]
    health_url: str | None
    env: dict[str, str] = field(default_factory=dict)
    restart: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    heartbeat: Callable[[], bool] | None = None  # health from the heartbeats table (workers)
    replan: Callable[[], Component] | None = None  # the same component on other free ports (ports nobody fixed)
    stage: int = 0  # when it starts: after every component of a lower stage answers (runtime/stack/plan.py)
    proc: subprocess.Popen | None = None
    restarts: int = 0
    started_at: float = 0.0

    def start(self, log_dir: Path, base_env: dict[str, str]) -> None:
        self.started_at = time.monotonic()
        with open(log_dir / f"{self.name}.log", "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**base_env, **self.env}, preexec_fn=_die_with_parent,
            )

    def healthy(self, timeout: float = 1.0) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        if self.heartbeat is not None:
            return self.heartbeat()
        if self.health_url is None:
            return True
        try:
            return httpx.get(self.health_url, timeout=timeout).status_code < 500
        except httpx.HTTPError:
            return False


def stop_process(proc: subprocess.Popen, grace: float = 5.0) -> int:
    """SIGTERM, then SIGKILL if it has not exited within ``grace`` seconds; its exit code."""
    stop_processes([proc], grace)
    return proc.returncode


def stop_processes(procs: list[subprocess.Popen], grace: float = 5.0) -> None:
    """SIGTERM to all of ``procs`` at once, then SIGKILL whichever has not exited within ``grace`` seconds."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kill_group(pgid: int, grace: float = 10.0) -> None:
    """SIGTERM to the whole process group ``pgid``, then :func:`reap_group`."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    reap_group(pgid, grace)


def group_running(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running. One that has exited but waits for its parent to collect
    it (a zombie: it holds no port, file or lock any more) does not count, where /proc tells; elsewhere any member
    does. A stopped stack's supervisor is collected by whoever adopted it, which can take a second."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not _PROC_SELF.exists():
        return True
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command name: state, ppid, pgrp, ...
        except (OSError, IndexError):
            continue  # gone meanwhile
        if fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def reap_group(pgid: int, grace: float) -> None:
    """Wait up to ``grace`` seconds for process group ``pgid`` to stop running (:func:`group_running`), then SIGKILL
    what is left of it."""
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not group_running(pgid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def reap_pids(pids: list[int], grace: float) -> None:
    """Wait up to ``grace`` seconds for ``pids`` to exit, then SIGKILL the ones still alive."""
    deadline = time.monotonic() + grace
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in filter(pid_alive, pids):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
