"""`tradeops` run as an operator runs it, and whole local stacks started and stopped with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tradeops.runtime.stack.supervisor import free_port, stop_process

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def running_emulator(env: Mapping[str, str] | None = None) -> Iterator[str]:
    """The local stack's emulator on a free 127.0.0.1 port (``env`` added to its environment); yields its URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tradeops.runtime.stack.emulator", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **(env or {})})
    try:
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                # moto's own API, not an AWS action: it does not count against INITIAL_NO_AUTH_ACTION_COUNT.
                if httpx.get(f"{endpoint}/moto-api/", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("moto server did not start")
            time.sleep(0.05)
        yield endpoint
    finally:
        stop_process(proc, 10)


def stack_environment(state_dir: Path) -> dict[str, str]:
    """Environment for `tradeops` commands that talk to a test stack kept in ``state_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))}
    env["TRADEOPS_STATE_DIR"] = str(state_dir)
    # Short leases and visibility so that crash recovery shows within a test's patience.
    env["TRADEOPS_WORKER_LEASE_SECONDS"] = "4"
    env["TRADEOPS_QUEUE_VISIBILITY_SECONDS"] = "6"
    env["TRADEOPS_BROKER_READ_TIMEOUT"] = "1.0"
    env["TRADEOPS_CANARY_SECONDS"] = "0"  # canaries are tested on their own
    env["TRADEOPS_AUDIT_ANCHOR_SECONDS"] = "2"  # the scheduled anchor shows within a test's patience
    # Orders recorded but never queued are re-enqueued after 6 s instead of 30 s (the sweeper's test waits less).
    env["TRADEOPS_SWEEP_AGE_SECONDS"] = "6"
    # The test stack's intake accepts symbols outside the universe, so that the monitor's reporting of orders it
    # cannot price can be seen end to end (tests/test_universe_stack.py); the default refusal (400) is tested
    # against the intake itself (tests/test_intake.py).
    env["TRADEOPS_ALLOW_UNPRICED_SYMBOLS"] = "true"
    # A broker's recovery pages after 10 s of health instead of 30 s, so that tests need not wait as long.
    env["TRADEOPS_PAGING_BROKER_RECOVERY_SECONDS"] = "10"
    # Every process of the stack and every command run against it records its AWS calls (once per shape), which
    # tests/test_aws_permissions.py checks against the template's roles.
    env["TRADEOPS_AWS_CALL_LOG"] = str(state_dir / "aws-calls.jsonl")
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed `tradeops` command as an operator would."""
    return subprocess.run(["tradeops", *args], env=env, capture_output=True, text=True, timeout=timeout)


@contextmanager
def running_stack(env: dict[str, str], *, workers: int = 2) -> Iterator[dict]:
    """A whole local stack, started with `tradeops up`, stopped with `tradeops down`; yields its status."""
    up = run_cli("up", "--workers", str(workers), env=env, timeout=180)
    if up.returncode != 0:
        pytest.fail(f"tradeops up failed: {up.stdout}\n{up.stderr}")
    try:
        info = json.loads(run_cli("status", "--json", env=env, timeout=60).stdout)
        info["env"] = env
        info["state_dir"] = env["TRADEOPS_STATE_DIR"]
        yield info
    finally:
        run_cli("down", env=env, timeout=60)
