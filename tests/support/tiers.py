"""The suite's five tiers: each test's follows from the fixtures it requests, and the unit tier starts nothing.

A tier says what a test starts, so that `python -m pytest -m unit` is a loop of seconds and the tests that
measure time run when nothing else does:

    unit      nothing: no process, no socket (pure code, in-process fakes, files in tmp_path)
    emulator  single servers or commands: the moto server, the simulated brokers, a `tradeops` command
              with no stack up, a child Python, a wheel build
    stack     a whole local stack: the session's shared one, or one the test starts itself
    drill     Chaos Toolkit or Locust runs, each on a stack of their own
    image     the container image built from Containerfile with podman, and run against a local stack

A test is in the highest tier of the fixtures it requests, directly or through other fixtures; the fixtures
that decide are in FIXTURE_TIERS, and a fixture of a test module that starts something requests one of them
(`processes` when it starts processes of its own). The suite runs the tiers in that order.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

TIERS = ("unit", "emulator", "stack", "drill", "image")
COLLECTED_TIERS = pytest.StashKey[dict[str, list[str]]]()
"""Every collected test's tier marks, before ``-m`` deselects any."""
COLLECTED_ALONE = pytest.StashKey[tuple[set[str], set[str]]]()
"""The collected tests marked to run alone, and those requesting a fixture in ALONE_FIXTURES."""

FIXTURE_TIERS = {
    "moto_endpoint": "emulator",  # the moto server (aws_settings deploys the template into it)
    "processes": "emulator",  # the test or its fixture starts processes of its own (commands, brokers, wheels)
    "shared_stack": "stack",  # the session's local stack
    "own_stack": "stack",  # the test starts (and stops) a local stack of its own
    "silent_stack": "stack",  # the silent-broker tests' own stack (tests/test_silent_broker.py)
    "enforced_stack": "stack",  # a stack that enforces IAM, one for its module (tests/test_enforced_stack.py)
    "load_stack": "drill",  # the load tests' own stack: Locust runs
    "drill_stack": "drill",  # the drill tests' own stack: Chaos Toolkit runs
    "own_drill": "drill",  # Chaos Toolkit or Locust on a stack the test starts itself (`tradeops demo`, a wheel)
    "container_image": "image",  # the image built from Containerfile (podman; tests/support/image.py)
}


def tier_of(fixturenames: Iterable[str]) -> str:
    """The tier of a test that requests ``fixturenames`` (the whole closure): the highest of theirs."""
    found = [TIERS.index(FIXTURE_TIERS[name]) for name in fixturenames if name in FIXTURE_TIERS]
    return TIERS[max(found, default=0)]


def tiers_marked(item: pytest.Item) -> list[str]:
    """The tier marks ``item`` carries (one, once the collection has marked it)."""
    return [mark.name for mark in item.iter_markers() if mark.name in TIERS]


def mark_tiers(items: list[pytest.Item]) -> None:
    """Mark every item with its tier, and fail the collection if any item ends with other than one."""
    for item in items:
        item.add_marker(tier_of(item.fixturenames))
    wrong = [f"{item.nodeid}: {', '.join(names) or 'none'}" for item in items
             if len(names := tiers_marked(item)) != 1]
    if wrong:
        raise pytest.UsageError("every test has exactly one tier, from its fixtures (a test marks none itself):\n  "
                                + "\n  ".join(wrong))


GROUPED_TIERS = ("stack", "drill", "image")
ALONE = "alone"
ALONE_FIXTURES = ("load_stack",)
"""Fixtures whose tests run when no other test does, even on xdist workers: a load run at 20 orders a second is
near what moto serves on two cores (tests/test_load_stack.py), and its time to fill measures whatever shares them."""
ALONE_TIERS = tuple(sorted({FIXTURE_TIERS[name] for name in ALONE_FIXTURES}))


def stack_group(nodeid: str, fixturenames: Iterable[str]) -> str | None:
    """The xdist group that keeps a module's tests on one worker (``--dist loadgroup``, tests/run.py), or None
    for a test that may run on any (the unit and emulator tiers). In the tiers that start stacks every module is
    a group: its stack is module-scoped, or its tests start stacks one after another, or they use the shared
    stack, of which each worker starts its own (it is session-scoped), so that the shared stack's modules are
    shared out between two stacks."""
    if tier_of(fixturenames) not in GROUPED_TIERS:
        return None
    module = nodeid.split("::")[0]
    return f"{module} (shared stack)" if "shared_stack" in set(fixturenames) else module


def runs_alone(fixturenames: Iterable[str]) -> bool:
    """Whether a test that requests ``fixturenames`` runs when no other test does (:data:`ALONE_FIXTURES`)."""
    return bool(set(ALONE_FIXTURES) & set(fixturenames))


def group_stacks(items: list[pytest.Item]) -> None:
    """Mark each item with its :func:`stack_group` (without xdist the mark changes nothing), and with
    :data:`ALONE` when it requests one of :data:`ALONE_FIXTURES` (tests/run.py runs those after the others)."""
    for item in items:
        if (group := stack_group(item.nodeid, item.fixturenames)) is not None:
            item.add_marker(pytest.mark.xdist_group(group))
        if runs_alone(item.fixturenames):
            item.add_marker(ALONE)


def in_tier_order(items: list[pytest.Item], *, first_in_tier: Callable[[pytest.Item], bool]) -> list[pytest.Item]:
    """``items`` by tier; within a tier those for which ``first_in_tier`` holds first, otherwise as collected."""
    def key(indexed: tuple[int, pytest.Item]) -> tuple[int, bool, int]:
        index, item = indexed
        return TIERS.index(tier_of(item.fixturenames)), not first_in_tier(item), index

    return [item for _, item in sorted(enumerate(items), key=key)]


GUARD = pytest.StashKey["StartsNothing"]()


class StartsNothing:
    """Makes starting a process or opening a socket fail the unit-tier test that does it.

    The call raises pytest's failure (not an Exception a caller could swallow); a call from another thread is
    remembered and fails the test when it ends. A socket pair (asyncio's wake-up pipe) is not a socket anyone
    can reach, and stays allowed.
    """

    @classmethod
    @contextmanager
    def around(cls, item: pytest.Item) -> Iterator[None]:
        """One phase of ``item`` (setup, call or teardown) under the guard, if ``item`` is in the unit tier."""
        if item.get_closest_marker("unit") is None:
            yield
            return
        guard = item.stash.setdefault(GUARD, cls(item.nodeid))
        with pytest.MonkeyPatch.context() as patch:
            guard.install(patch)
            yield

    @staticmethod
    def check(item: pytest.Item) -> None:
        """Fail ``item`` if a refusal happened where it could not see it (another thread)."""
        guard = item.stash.get(GUARD, None)
        if guard is not None and guard.elsewhere:
            pytest.fail(guard.elsewhere[0], pytrace=False)

    HINT = ("a unit-tier test starts no process and opens no socket; request the fixture that starts what it "
            "needs (moto_endpoint, processes, shared_stack, ...: see docs/testing.md)")

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid
        self.test_thread = threading.get_ident()
        self.elsewhere: list[str] = []

    def refuse(self, what: str) -> None:
        message = f"{self.nodeid} is in the unit tier but {what}: {self.HINT}"
        if threading.get_ident() != self.test_thread:
            self.elsewhere.append(message)
        pytest.fail(message)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        guard = self

        def refusing(what: str) -> Callable[..., Any]:
            def refuse(*args: Any, **kwargs: Any) -> Any:
                guard.refuse(what)
            return refuse

        for module, name in ((subprocess, "_fork_exec"), (os, "posix_spawn"), (os, "posix_spawnp"), (os, "fork"),
                             (os, "forkpty"), (os, "system")):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, refusing("started a process"))
        original_init = socket.socket.__init__

        def socket_init(sock: socket.socket, family: Any = -1, type: Any = -1, proto: int = -1,
                        fileno: Any = None) -> None:
            if fileno is None:
                guard.refuse("opened a socket")
            original_init(sock, family, type, proto, fileno)

        monkeypatch.setattr(socket.socket, "__init__", socket_init)
        for name in ("connect", "connect_ex", "bind"):
            monkeypatch.setattr(socket.socket, name, refusing(f"called socket.{name}"))


class LastUse:
    """Session resources stopped right after the last test that uses them, not at the end of the session."""

    def __init__(self) -> None:
        self._resources: dict[str, ExitStack] = {}
        self._last_user: dict[str, str] = {}

    def plan(self, items: list[pytest.Item], names: Iterable[str]) -> None:
        """Note, for each fixture of ``names``, the last of ``items`` (as they will run) that requests it."""
        self._last_user = {name: item.nodeid for item in items for name in names if name in item.fixturenames}

    def hold(self, name: str) -> ExitStack:
        """Where fixture ``name`` enters what it starts; closed after its last user, or when the session ends."""
        return self._resources.setdefault(name, ExitStack())

    def after(self, item: pytest.Item) -> None:
        """``item`` has finished: stop what it was the last user of."""
        for name, nodeid in self._last_user.items():
            if nodeid == item.nodeid and name in self._resources:
                self._resources.pop(name).close()
