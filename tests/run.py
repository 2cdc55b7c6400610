"""The whole suite, one tier after another: `python -m tests.run` (the README's test command, and CI's).

Each tier runs in a pytest of its own, in order (unit, emulator, stack, drill, image), and the run stops at the
first tier that fails, naming it. The tiers that wait more than they compute run on two pytest-xdist workers:

- `unit` and `emulator`: tests spread over the workers one by one; each worker has its own moto server. An
  emulator module whose tests build on each other keeps them on one worker with its own `xdist_group` mark.
- `stack`, `drill` and `image`: a module's tests stay together on one worker (`xdist_group`, set in
  tests/conftest.py), so that a module's stack starts once; each worker starts its own shared stack. At most
  two stacks run at once: a stack test spends most of its time waiting on its stack.
- The load tests run alone, after the rest of their tier: their figures are near what two cores serve.

Every process the suite starts (each pytest and its workers, every stack component, every `tradeops` command) imports
the same modules from this checkout, so the runner lets Python write their compiled bytecode even where the
environment says not to (``PYTHONDONTWRITEBYTECODE``, set on some CI machines): each module and each test module's
assertion rewrite is compiled once in the run instead of in every one of the suite's thousands of processes
(`__pycache__/` is ignored by git).

`--serial` runs every tier in one process (what `python -m pytest -m TIER` does); `--tier` picks tiers; anything
else is handed to every pytest (`python -m tests.run --tier stack -x`; a tier in which nothing is selected fails,
as pytest exits 5). docs/testing.md has the figures.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

from tests.support.tiers import ALONE, ALONE_TIERS, TIERS

SPREAD = {"unit": "load", "emulator": "loadgroup", "stack": "loadgroup", "drill": "loadgroup", "image": "loadgroup"}
"""How xdist hands each tier's tests to its workers: one by one, or a group (a stack's tests) at a time."""


def workers() -> int:
    """Two, or one on a machine with a single core (two workers would only take turns on it)."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def phases(tier: str, *, serial: bool) -> list[tuple[str, list[str]]]:
    """The pytest runs of ``tier``: its -m expression and xdist options, in order. A tier that holds tests that
    must run alone (tests/support/tiers.py, ALONE_FIXTURES) runs its other tests first, then those on one worker."""
    spread = [] if serial or workers() < 2 else ["-n", str(workers()), "--dist", SPREAD[tier]]
    if tier not in ALONE_TIERS:
        return [(tier, spread)]
    return [(f"{tier} and not {ALONE}", spread), (f"{tier} and {ALONE}", [])]


def environment() -> dict[str, str]:
    """The environment of the tiers' pytest processes: the caller's, with bytecode written (module docstring)."""
    return {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}


def pytest_argv(tier: str, *, serial: bool, extra: list[str]) -> list[list[str]]:
    """The pytest command lines that run ``tier``, one after another."""
    return [[sys.executable, "-m", "pytest", "-m", marks, *options, *extra]
            for marks, options in phases(tier, serial=serial)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.run", description=__doc__.splitlines()[0])
    parser.add_argument("--tier", action="append", choices=TIERS, help="run only this tier (repeatable)")
    parser.add_argument("--serial", action="store_true", help="one process per tier, no xdist workers")
    args, extra = parser.parse_known_args(argv)
    chosen = [tier for tier in TIERS if not args.tier or tier in args.tier]
    started = time.monotonic()
    for tier in chosen:
        began = time.monotonic()
        code = 0
        for command in pytest_argv(tier, serial=args.serial, extra=extra):
            print("+ " + shlex.join(["python", *command[1:]]), flush=True)
            if (code := subprocess.call(command, env=environment())) != 0:
                break
        print(f"the {tier} tier took {time.monotonic() - began:.0f} s", flush=True)
        if code != 0:
            print(f"the {tier} tier failed (pytest exit code {code})", file=sys.stderr, flush=True)
            return code
    print(f"{len(chosen)} tiers passed in {time.monotonic() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
