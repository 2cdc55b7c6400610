"""Shared fixtures: real servers, no mocks; and the tiers every test is put in (tests/support/tiers.py).

- ``moto_endpoint``, ``aws_settings``: the local stack's emulator (moto server, see runtime/stack/emulator.py)
  on a free 127.0.0.1 port, with ``deploy/template.yaml`` deployed into it by the same code `tradeops up`
  uses; for tests of one adapter. Tier emulator.
- ``processes``: says the test (or its fixture) starts processes of its own: `tradeops` commands with no stack,
  the simulated brokers, a child Python, a wheel build. Tier emulator.
- ``shared_stack`` (``shared_stack_env``, ``flow``): the whole local stack, started by the same code path as
  `tradeops up` in a private state directory, once, when its first test needs it, and stopped right after its
  last test (the stack tier runs those first). Tier stack.
- ``own_stack``: says the test starts and stops a stack of its own. Tier stack.
- ``own_drill``: says the test runs Chaos Toolkit or Locust on a stack it starts itself. Tier drill.

- ``drill_stack`` (``drill_roster``): a stack with fault proxies, one per drill test module. Tier drill.

The load tests' own stack (``load_stack``, tier drill) is in their module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.orderflow import Flow, fresh_flow
from tests.support.stack import running_emulator, running_stack, stack_environment
from tests.support.tiers import (
    ALONE,
    COLLECTED_ALONE,
    COLLECTED_TIERS,
    TIERS,
    LastUse,
    StartsNothing,
    group_stacks,
    in_tier_order,
    mark_tiers,
    tiers_marked,
)
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.settings import Settings, load_settings
from tradeops.runtime.stack.deploy import deploy_stack

LAST_USE = LastUse()
STOPPED_AFTER_LAST_USE = ("shared_stack", "moto_endpoint")


def pytest_configure(config: pytest.Config) -> None:
    for tier, what in zip(TIERS, ("starts nothing: no process, no socket",
                                  "the moto server, the simulated brokers or single commands; no stack",
                                  "a whole local stack", "Chaos Toolkit or Locust runs",
                                  "the container image, built with podman and run"), strict=True):
        config.addinivalue_line("markers", f"{tier}: tier set from the test's fixtures; {what}")
    config.addinivalue_line("markers", f"{ALONE}: runs when no other test does (tests/support/tiers.py)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test gets its tier; the tiers run in order, and in the stack tier the shared stack's tests first
    (so that it is stopped before the tests that start stacks of their own, and long before the drills). On
    xdist workers (tests/run.py) a module's stack tests stay together, and the load tests are marked to run alone.

    First of the hooks: ``-m TIER`` selects on the marks set here, and every collected test's tier is kept
    before any is deselected (tests/test_tiers.py checks them all).
    """
    mark_tiers(items)
    group_stacks(items)
    config.stash[COLLECTED_TIERS] = {item.nodeid: tiers_marked(item) for item in items}
    config.stash[COLLECTED_ALONE] = ({item.nodeid for item in items if item.get_closest_marker(ALONE)},
                                     {item.nodeid for item in items if "load_stack" in item.fixturenames})
    items[:] = in_tier_order(items, first_in_tier=lambda item: "shared_stack" in item.fixturenames)


def pytest_collection_finish(session: pytest.Session) -> None:
    # An xdist worker runs a share of the items, in an order the scheduler picks: it cannot know the last user.
    if "PYTEST_XDIST_WORKER" not in os.environ:
        LAST_USE.plan(session.items, STOPPED_AFTER_LAST_USE)


# A unit-tier test starts nothing in any of its phases, its fixtures' setup and teardown (whatever their scope)
# included: each phase runs under the guard (tests/support/tiers.py), and the test fails naming what it started.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with StartsNothing.around(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with StartsNothing.around(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    try:
        with StartsNothing.around(item):
            result = yield
        StartsNothing.check(item)
        return result
    finally:
        LAST_USE.after(item)


@pytest.fixture(scope="session")
def processes() -> None:
    """The test or its fixture starts processes of its own (a command, the simulated brokers, a child Python)."""


@pytest.fixture
def own_stack() -> None:
    """The test starts and stops a whole local stack of its own."""


@pytest.fixture
def own_drill() -> None:
    """The test runs Chaos Toolkit or Locust on a stack it starts itself (`tradeops demo`, a wheel's load run)."""


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """The local stack's emulator (moto server, DynamoDB requests one at a time) on a free port, our own."""
    with LAST_USE.hold("moto_endpoint") as held:
        yield held.enter_context(running_emulator())


@pytest.fixture(scope="session")
def aws_settings(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings pointing at the session's moto server, with the template deployed under prefix 'ut'."""
    settings = load_settings(
        aws_endpoint_url=moto_endpoint, name_prefix="ut", param_prefix="/ut", stack_name="ut",
        state_dir=tmp_path_factory.mktemp("ut-state"),
    )
    deploy_stack(Aws(settings), settings)
    return settings


@pytest.fixture(scope="session")
def shared_stack_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for `tradeops` commands that talk to the shared stack."""
    return stack_environment(tmp_path_factory.mktemp("stack-state"))


@pytest.fixture(scope="session")
def shared_stack(shared_stack_env: dict[str, str]) -> Iterator[dict]:
    """The whole local stack the stack tier shares: started with `tradeops up` when its first test needs it,
    stopped with `tradeops down` right after its last."""
    with LAST_USE.hold("shared_stack") as held:
        yield held.enter_context(running_stack(shared_stack_env))


@pytest.fixture(scope="module")
def drill_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """A local stack of the drill module's own (each module that asks starts one): drills place hundreds of orders
    and flip every flag. Its workers call the brokers through fault proxies, so every drill crosses a real
    network path and the proxy backend's drills run on the same stack as the simulators'."""
    env = stack_environment(tmp_path_factory.mktemp("drill-stack"))
    env["TRADEOPS_FAULT_PROXY"] = "true"
    with running_stack(env) as info:
        yield info


@pytest.fixture(scope="module")
def drill_roster(drill_stack: dict) -> None:
    """Drill identities in the drill stack's roster (the manual-failover runbooks need approvers)."""
    Flow(drill_stack).roster({"drill-executor": ["duty-engineer"], "drill-ops-manager": ["ops-manager"],
                              "drill-risk": ["risk"]})


@pytest.fixture
def flow(shared_stack: dict) -> Iterator[Flow]:
    """A Flow on the shared stack, with routing flags and broker faults reset before and after the test."""
    with fresh_flow(shared_stack) as f:
        yield f
