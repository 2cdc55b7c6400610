"""The package's shape: one job per module, so no module outside the tests and benchmarks grows past 600 lines."""

from __future__ import annotations

import ast
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


# The brokers speak their own vocabulary, which shares words with ours (a broker's order is FILLED too):
# the simulated brokers and the adapters that translate their answers spell those words as the wire does.
BROKER_VOCABULARY = ("runtime/brokers/", "runtime/orderpath/providers.py")
# Tables of their own: the two state tables, the event kinds, and a reimbursement's statuses (its REJECTED is not
# an order's).
TABLES = ("runtime/orderpath/states.py", "runbooks/states.py", "runbooks/eventkinds.py",
          "runtime/liability/reimbursement.py")


def _table_words() -> set[str]:
    from tradeops.runbooks import eventkinds
    from tradeops.runbooks import states as runbook_states
    from tradeops.runtime.orderpath import states as order_states

    # EVENTS ("events", a record of several) is a plain word too: everything else the audit log holds is dotted.
    words = set(order_states.STATES) | set(eventkinds.KINDS) | set(eventkinds.OTHER_RECORDS) - {eventkinds.EVENTS}
    # A runbook's distinctive statuses and phases; plain English ones (pending, done, failed) name other things too.
    words |= {runbook_states.WAITING_APPROVAL, runbook_states.APPROVAL_TIMED_OUT, runbook_states.ACTION_FAILED,
              runbook_states.ACTED}
    return words


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    exported = {id(item) for node in ast.walk(tree) if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
                for item in ast.walk(node.value)}
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings | exported]


def test_order_states_runbook_phases_and_event_kinds_are_spelled_only_in_their_tables():
    """Outside the state and event-kind tables, code names a status, phase or event kind by its constant:
    no string literal in the package spells one (so a renamed state cannot leave a stale copy behind)."""
    words = _table_words()
    spelled = {}
    for path in _modules():
        rel = path.relative_to(ROOT).as_posix()
        if rel in TABLES or rel.startswith(BROKER_VOCABULARY):
            continue
        found = [f"{line}: {value}" for line, value in _literals(path) if value in words]
        if found:
            spelled[rel] = found
    assert not spelled, f"spelled outside their tables: {spelled}"
