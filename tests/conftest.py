"""Shared fixtures: real servers, no mocks.

- ``aws_settings``: the local stack's emulator (moto server, see runtime/stack/emulator.py) on a free
  127.0.0.1 port with ``deploy/template.yaml``
  deployed into it (the same deploy code `tradeops up` uses); for tests of one adapter.
- ``stack``: the whole local stack started by the same code path as `tradeops up`, in a
  private state directory; for end-to-end tests. Session-scoped: started once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.settings import Settings, load_settings
from tradeops.runtime.stack.deploy import deploy_stack
from tradeops.runtime.stack.supervisor import free_port

REPO = Path(__file__).resolve().parent.parent

# Modules whose tests put the stack under load run first, before the session's shared stack exists:
# a load run measures what the local stack sustains on the machine, and the shared stack's background
# work (workers, monitor, price feed and their emulator, about a fifth of a core) would be measured too.
RUN_FIRST = ("test_load_stack.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the RUN_FIRST modules' tests at the front, each group in its collected order."""
    items.sort(key=lambda item: item.path.name not in RUN_FIRST)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The local stack's emulator (moto server, DynamoDB requests one at a time) on a free port, our own."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tradeops.runtime.stack.emulator", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{endpoint}/moto-api/", timeout=1).status_code < 500:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("moto server did not start")
        time.sleep(0.1)
    yield endpoint
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def aws_settings(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings pointing at the session's moto server, with the template deployed under prefix 'ut'."""
    settings = load_settings(
        aws_endpoint_url=moto_endpoint, name_prefix="ut", param_prefix="/ut", stack_name="ut",
        state_dir=tmp_path_factory.mktemp("ut-state"),
    )
    deploy_stack(Aws(settings), settings)
    return settings


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


@contextmanager
def running_stack(env: dict[str, str], *, workers: int = 2) -> Iterator[dict]:
    """A whole local stack, started with `tradeops up`, stopped with `tradeops down`; yields its status."""
    up = subprocess.run(["tradeops", "up", "--workers", str(workers)], env=env, capture_output=True,
                        text=True, timeout=180)
    if up.returncode != 0:
        pytest.fail(f"tradeops up failed: {up.stdout}\n{up.stderr}")
    try:
        status = subprocess.run(["tradeops", "status", "--json"], env=env, capture_output=True,
                                text=True, timeout=60)
        info = json.loads(status.stdout)
        info["env"] = env
        info["state_dir"] = env["TRADEOPS_STATE_DIR"]
        yield info
    finally:
        subprocess.run(["tradeops", "down"], env=env, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for `tradeops` commands that talk to the test stack."""
    return stack_environment(tmp_path_factory.mktemp("stack-state"))


@pytest.fixture(scope="session")
def stack(stack_env: dict[str, str]) -> Iterator[dict]:
    """The whole local stack, started with `tradeops up`, stopped with `tradeops down`."""
    with running_stack(stack_env) as info:
        yield info


def run_cli(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed `tradeops` command as an operator would."""
    return subprocess.run(["tradeops", *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def flow(stack):
    """A Flow on the session stack, with routing flags and broker faults reset before and after the test."""
    from tests.orderflow import Flow

    f = Flow(stack)
    f.reset()
    yield f
    f.reset()
