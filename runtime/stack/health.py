"""Is this container's component healthy? The image's HEALTHCHECK, and an ECS task's health check command.

One image runs every component (the command selects the module), so one probe must serve them all.
It finds the component the way ``ps`` would, from its command line (``python -m tradeops...``), and
asks what that component can answer for itself:

- an HTTP service (intake, divergence monitor, price feed, approval gate, a simulated broker): its health endpoint
  on the port it was told to listen on, through 127.0.0.1 when it listens on every address;
- a worker: its heartbeat in the heartbeats table is fresh (three intervals), the test ``tradeops
  status`` and the local stack's supervisor apply: a live process that stopped beating (stuck, or cut
  off from AWS) is not serving the queue;
- the canary and the audit anchorer: their process is alive (they answer to nobody; when they die
  the container stops anyway).

``--url URL`` or ``--worker ID`` name the check instead, for a task definition that prefers to say so.
Run it as ``python -m tradeops.runtime.stack.health``: exit 0 healthy, 1 not (what Docker, podman and
ECS expect), with one line saying why.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Probe", "find_component", "heartbeat_check", "main", "probe_for"]

# The modules the image runs, and which of their options names the port their health endpoint answers on.
_HTTP = {
    "tradeops.runtime.orderpath.intake": ("--port", "/health"),
    "tradeops.runtime.liability.monitor": ("--port", "/health"),
    "tradeops.runtime.liability.prices": ("--port", "/health"),
    "tradeops.runbooks.gateservice": ("--port", "/health"),
    "tradeops.runtime.brokers.sim": ("--control-port", "/_sim/health"),
}
_WORKER = "tradeops.runtime.orderpath.worker"
_ALIVE = ("tradeops.runtime.orderpath.canary", "tradeops.runbooks.anchor")
_ANY_ADDRESS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class Probe:
    """What to ask: ``url`` (GET, healthy below 500), or ``worker`` (its heartbeat), or neither (alive is enough)."""

    component: str
    url: str | None = None
    worker: str | None = None


def _option(argv: Sequence[str], name: str) -> str | None:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``argv`` (the last one wins, as argparse does)."""
    found = None
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            found = argv[i + 1]
        elif arg.startswith(name + "="):
            found = arg.split("=", 1)[1]
    return found


def _module(argv: Sequence[str]) -> str | None:
    for i, arg in enumerate(argv[:-1]):
        if arg == "-m":
            return argv[i + 1]
    return None


def probe_for(argv: Sequence[str], *, pid: int, host: str) -> Probe | None:
    """The probe of the component whose command line is ``argv`` (None: not a component of ours)."""
    module = _module(argv)
    if module in _HTTP:
        option, path = _HTTP[module]
        port = _option(argv, option)
        if port is None:
            return None
        listen = _option(argv, "--host") or "127.0.0.1"
        address = "127.0.0.1" if listen in _ANY_ADDRESS else listen
        if ":" in address:
            address = f"[{address}]"
        return Probe(module, url=f"http://{address}:{port}{path}")
    if module == _WORKER:
        from tradeops.runtime.platform.names import worker_id  # the settings it brings: only a worker's probe

        return Probe(module, worker=_option(argv, "--id") or worker_id(host, pid))
    if module in _ALIVE:
        return Probe(module)
    return None


def find_component(proc: Path = Path("/proc"), *, own_pid: int | None = None) -> tuple[int, list[str]] | None:
    """The pid and command line of the oldest tradeops component process visible here (None: none runs).

    In a container that is the main process, or the child of an init process (``--init``, ECS
    ``initProcessEnabled``).
    """
    own_pid = os.getpid() if own_pid is None else own_pid
    found: list[tuple[int, list[str]]] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == own_pid:
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
        except OSError:  # gone since the listing, or not ours to read
            continue
        argv = [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]
        # An init process's command line holds its child's (``docker-init -- python -m ...``): the child is it.
        if not argv or not Path(argv[0]).name.startswith("python"):
            continue
        module = _module(argv)
        if module in _HTTP or module == _WORKER or module in _ALIVE:
            found.append((int(entry.name), argv))
    return min(found) if found else None


def heartbeat_check(aws: Any, table: str, worker: str, every: float,
                    clock: Callable[[], float] = time.time) -> Callable[[], bool]:
    """A check that is true while ``worker``'s heartbeat is fresh (three intervals and a second)."""
    def check() -> bool:
        try:
            item = aws.dynamodb.get_item(TableName=table, Key={"worker_id": {"S": worker}}).get("Item")
        except Exception:  # AWS unreachable or refusing: the heartbeat cannot be seen, which is not healthy
            return False
        return bool(item) and clock() - float(item["at_epoch"]["N"]) < 3 * every + 1
    return check


def _get(url: str, timeout: float) -> int:
    """The status code of a GET of ``url`` (raises OSError when nothing answers)."""
    # The standard library's client: the probe runs every few seconds in every container, and importing
    # httpx and the settings would cost it a second of CPU each time on a busy task.
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - our own http:// health URL
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _check(probe: Probe) -> tuple[bool, str]:
    if probe.url is not None:
        try:
            code = _get(probe.url, timeout=3.0)
        except OSError as exc:
            return False, f"{probe.url} did not answer ({type(exc).__name__})"
        return code < 500, f"{probe.url} answered {code}"
    if probe.worker is not None:
        from tradeops.runtime.platform.aws import Aws  # boto3: only a worker's probe reads AWS
        from tradeops.runtime.platform.names import names_for
        from tradeops.runtime.platform.settings import load_settings

        settings = load_settings()
        fresh = heartbeat_check(Aws(settings), names_for(settings).heartbeats_table, probe.worker,
                                settings.heartbeat_seconds)()
        return fresh, f"worker {probe.worker}: heartbeat {'fresh' if fresh else 'missing or stale'}"
    return True, f"{probe.component} is running"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tradeops.runtime.stack.health",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="GET this URL instead (healthy below HTTP 500)")
    parser.add_argument("--worker", metavar="ID", help="check this worker's heartbeat instead")
    args = parser.parse_args(argv)
    probe: Probe | None
    if args.url or args.worker:
        probe = Probe("given", url=args.url, worker=args.worker)
    else:
        found = find_component()
        probe = probe_for(found[1], pid=found[0], host=socket.gethostname()) if found else None
        if probe is None:
            print("unhealthy: no tradeops component runs here", file=sys.stderr)
            return 1
    try:
        healthy, why = _check(probe)
    except Exception as exc:  # a probe that breaks says so in one line: the health check's log shows it
        healthy, why = False, f"{type(exc).__name__}: {str(exc)[:200]}"
    print(f"{'healthy' if healthy else 'unhealthy'}: {why}", file=sys.stdout if healthy else sys.stderr)
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
