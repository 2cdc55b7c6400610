"""What a scenario-testing report adds to every drill: the time to build it, and its parts.

Command: `python bench/bench_reports.py --runs 5`

Builds the report of the recorded primary-outage run folder (tests/data/drill-primary-outage) in a temp
copy, ``--runs`` times in one fresh process each (so matplotlib's import is paid every time, as it is
by a drill), with and without the PDF, and prints the medians.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "data" / "drill-primary-outage"

ONE = """
import sys, time
t0 = time.perf_counter()
from pathlib import Path
from tradeops.reports.build import build_run_report
from tradeops.runtime.platform.settings import load_settings
t1 = time.perf_counter()
build_run_report(Path(sys.argv[1]), load_settings(), generated_by="bench", pdf=sys.argv[2] == "pdf")
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    rows: dict[str, list[tuple[float, float]]] = {"html+md+json": [], "with pdf": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for name, mode in (("html+md+json", "-"), ("with pdf", "pdf")):
                folder = Path(tmp) / f"{i}-{mode}"
                shutil.copytree(FIXTURE, folder)
                started = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", ONE, str(folder), mode], capture_output=True, text=True,
                                     check=True).stdout.split()
                wall = time.perf_counter() - started
                rows[name].append((wall, float(out[1])))
    print("| | median wall time of a fresh process (s) | median build time after imports (s) |")
    print("|---|---|---|")
    for name, values in rows.items():
        print(f"| {name} | {statistics.median(v[0] for v in values):.2f} | "
              f"{statistics.median(v[1] for v in values):.2f} |")


if __name__ == "__main__":
    main()
