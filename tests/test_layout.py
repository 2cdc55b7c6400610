"""The package's shape: one job per module, so no module outside the tests and benchmarks grows past 600 lines."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 600
OUTSIDE = {"tests", "bench", ".venv", "build", "dist"}


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py")
                  if not OUTSIDE.intersection(p.relative_to(ROOT).parts[:1])
                  and not any(part.startswith(".") for part in p.relative_to(ROOT).parts))


def test_no_module_outside_tests_and_bench_is_longer_than_600_lines():
    """Every module of the package holds at most 600 lines: a longer one is doing more than one job."""
    modules = _modules()
    assert len(modules) > 100, "the package's modules were not found from the checkout root"
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in modules}
    long = {name: n for name, n in sizes.items() if n > LIMIT}
    assert not long, f"modules over {LIMIT} lines: {long}"
