"""Fault points: places where a process dies on purpose, for tests that prove recovery. A test hook only.

A fault point fires when a file named after it exists in ``<state_dir>/faults/`` (``arm`` creates it). It
fires once: the process removes the file and exits at once with :data:`FAULT_EXIT`, as a crash would (no
cleanup, no response, the connection dropped). A file rather than an environment variable so that a test
can arm a running stack's process and let the supervisor's restart come back unarmed. Nothing fires unless
someone created the file; checking costs one failed ``unlink`` where the point sits.

Points: ``intake.after_put`` (the order is recorded, its message not yet sent).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tradeops.runtime.platform.clock import iso

__all__ = ["FAULT_EXIT", "POINTS", "arm", "fault_point"]

FAULT_EXIT = 70
POINTS = frozenset({"intake.after_put"})


def _armed(state_dir: Path, name: str) -> Path:
    if name not in POINTS:
        raise ValueError(f"no fault point {name!r} (known: {', '.join(sorted(POINTS))})")
    return state_dir / "faults" / name


def arm(state_dir: Path, name: str) -> Path:
    """Arm fault point ``name`` for the processes of the stack kept in ``state_dir``; returns the file."""
    path = _armed(state_dir, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(iso() + "\n", encoding="utf-8")
    return path


def fault_point(state_dir: Path, name: str) -> None:
    """Die here (exit FAULT_EXIT, no cleanup) if ``name`` is armed; disarm it first, so it fires once."""
    try:
        _armed(state_dir, name).unlink()
    except FileNotFoundError:
        return
    # Through the process's one log configuration (a JSON line like every other); its handlers flush per line.
    logging.getLogger("tradeops.faults").critical("fault point %s fired: exiting %d", name, FAULT_EXIT,
                                                  extra={"fault_point": name, "exit": FAULT_EXIT})
    os._exit(FAULT_EXIT)
