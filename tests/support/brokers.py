"""Both simulated brokers as real HTTP servers (their own processes), for the tests of the brokers and their
callers; the key the adapters present to them; a fault proxy in front of one."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.stack import REPO
from tradeops.runtime.brokers.proxy import proxy_command
from tradeops.runtime.brokers.sim import API_KEY_ENV, sim_command
from tradeops.runtime.stack.supervisor import free_port, stop_process

API_KEY = "sim-" + secrets.token_hex(12)


@dataclass
class Broker:
    name: str
    wire: str
    order_port: int
    control_port: int
    proc: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.order_port}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"


def start_broker(name: str, wire: str, seed: int, log_dir: Path) -> Broker:
    """One simulated broker on free ports, logging into ``log_dir``; not yet known to answer."""
    order_port, control_port = free_port(), free_port()
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            sim_command(name=name, wire=wire, host="127.0.0.1", order_port=order_port,
                        control_port=control_port, seed=seed),
            cwd=REPO, env={**os.environ, API_KEY_ENV: API_KEY}, stdout=out, stderr=subprocess.STDOUT,
        )
    return Broker(name, wire, order_port, control_port, proc, log)


def wait_healthy(broker: Broker, timeout: float = 15.0) -> None:
    """Until the broker's control API answers its health check (fails naming its log if it exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert broker.proc.poll() is None, f"{broker.name} exited: {broker.log.read_text()}"
        try:
            if httpx.get(f"{broker.control_url}/_sim/health", timeout=0.5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{broker.name} not healthy within {timeout}s")


def stop_broker(broker: Broker) -> None:
    stop_process(broker.proc, 5)


@contextmanager
def broker_pair(log_dir: Path) -> Iterator[dict[str, Broker]]:
    """Both simulated brokers (primary alpha, secondary beta) as real HTTP servers, for a module's tests."""
    started: list[Broker] = []
    try:
        for name, wire, seed in (("primary", "alpha", 1), ("secondary", "beta", 2)):
            started.append(start_broker(name, wire, seed, log_dir))
        for broker in started:
            wait_healthy(broker)
        yield {broker.name: broker for broker in started}
    finally:
        for broker in started:
            stop_broker(broker)


@dataclass
class Proxy:
    name: str
    port: int
    control_port: int
    proc: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"


def start_proxy(name: str, upstream: str, log_dir: Path, *, protocol: str = "http", seed: int = 1,
                connect_timeout: float = 2.0) -> Proxy:
    """A fault proxy in front of ``upstream`` on free ports, answering its health check before this returns."""
    port, control_port = free_port(), free_port()
    log = log_dir / f"proxy-{name}-{protocol}.log"
    argv = [*proxy_command(name=name, upstream=upstream, host="127.0.0.1", port=port, control_port=control_port,
                           protocol=protocol, seed=seed), "--connect-timeout", str(connect_timeout)]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    proxy = Proxy(name, port, control_port, proc, log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"proxy {name} exited: {log.read_text()}"
        try:
            if httpx.get(f"{proxy.control_url}/_proxy/health", timeout=3).status_code == 200:
                return proxy
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    stop_process(proc, 5)
    raise AssertionError(f"proxy {name} not healthy within 15s")


def stop_proxy(proxy: Proxy) -> None:
    stop_process(proxy.proc, 5)
