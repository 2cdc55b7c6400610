"""`tradeops demo`, the README's first command, end to end on a machine with no stack up.

A module of its own: the demo starts (and must stop) a stack of its own, which should not share two
busy cores with another test module's stack.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tests.support.stack import run_cli


def _processes_using(state_dir: Path) -> list[int]:
    """Our processes whose environment points at ``state_dir`` (what a stack started there would leave)."""
    needle = f"TRADEOPS_STATE_DIR={state_dir}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_demo_starts_a_stack_runs_primary_outage_prints_the_headline_and_stops_what_it_started(own_drill, tmp_path):
    """With no stack up, `tradeops demo` starts one, runs primary-outage under load, prints the verdict, time to
    detect and recover, orders lost and filled twice and the run folder, exits 0, and leaves nothing running."""
    state = tmp_path / "state"
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp_path)), "TRADEOPS_STATE_DIR": str(state),
           "TRADEOPS_RUNS_DIR": str(tmp_path / "runs"), "COLUMNS": "200"}
    done = run_cli("demo", env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    text = re.sub(r"\s+", " ", done.stdout)
    assert "PASSED" in text and "drill primary-outage" in text
    for label in ("time to detect", "99% of new orders at the secondary", "orders lost", "orders filled twice"):
        assert label in text, label
    folder = Path(re.search(r"run folder: (\S+)", done.stdout).group(1))
    assert folder.is_relative_to(tmp_path / "runs")
    result = json.loads((folder / "result.json").read_text())
    assert result["passed"] and result["stack"]["started_by_drill"]
    assert result["figures"]["orders_lost"] == 0 and result["figures"]["orders_filled_twice"] == 0
    assert result["figures"]["time_to_detect"] is not None
    assert "starting the local stack" in done.stderr and "stopping the stack this drill started" in done.stderr
    assert not (state / "stack.json").exists() and _processes_using(state) == []
