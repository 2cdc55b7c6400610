"""Runbooks as documents: find one, read it, and parse it with the line of every element. No validation.

The YAML document itself is the data model (as in chaostoolkit-lib): a ``Runbook`` keeps the
parsed mapping, the exact text and its SHA-256 (approvals are bound to it). Parsing also maps each
element to its line, so :mod:`.validation` reports every problem as ``file:line: reason``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from tradeops.runtime.platform import yamlfiles
from tradeops.runtime.platform.errors import BadInput, NotFound
from tradeops.runtime.platform.packagedata import package_file

__all__ = [
    "STEP_KINDS",
    "Issue",
    "Lines",
    "Path_",
    "Runbook",
    "RunbookInvalid",
    "line_for",
    "parse_runbook",
    "read_runbook_text",
    "resolve_path",
    "runbook_dir",
    "sha256_text",
    "shipped_runbooks",
    "step_kind",
]

STEP_KINDS: Final = ("check", "action", "manual")
"""What a step does; a valid step has exactly one of these."""

Path_ = tuple[str | int, ...]
Lines = Mapping[Path_, int]


@dataclass(frozen=True)
class Issue:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


class RunbookInvalid(BadInput):
    """A runbook failed validation; ``issues`` holds every problem found."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        more = f" (and {len(issues) - 1} more; `tradeops runbook validate` lists them)" if len(issues) > 1 else ""
        super().__init__(f"invalid runbook: {issues[0]}{more}")


@dataclass(frozen=True)
class Runbook:
    path: Path
    text: str
    sha256: str
    doc: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.doc["name"])

    @property
    def title(self) -> str:
        return str(self.doc["title"])

    @property
    def version(self) -> str:
        return str(self.doc["version"])

    @property
    def service(self) -> str:
        return str(self.doc["service"])

    @property
    def impact_tolerance(self) -> dict[str, Any]:
        return dict(self.doc["impact_tolerance"])

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        return dict(self.doc.get("parameters") or {})

    @property
    def steps(self) -> list[dict[str, Any]]:
        return list(self.doc["steps"])


def step_kind(step: Mapping[str, Any]) -> str:
    """check, action or manual: what a (valid) step does."""
    return next(k for k in STEP_KINDS if k in step)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def runbook_dir() -> Path:
    """Where the shipped runbooks (and schema.json) live, inside the installed package."""
    return package_file("runbooks")


def shipped_runbooks() -> list[Path]:
    return sorted(p for p in runbook_dir().glob("*.yaml") if not p.name.startswith("operators"))


def resolve_path(ref: str | Path) -> Path:
    """A shipped runbook by name (``failover``) or a file by path."""
    text = str(ref)
    if isinstance(ref, Path) or "/" in text or text.endswith((".yaml", ".yml")):
        path = Path(text)
        if not path.is_file():
            raise NotFound(f"runbook file {path} does not exist")
        return path
    path = runbook_dir() / f"{text}.yaml"
    if not path.is_file():
        names = ", ".join(p.stem for p in shipped_runbooks())
        raise NotFound(f"no runbook named {text!r} (shipped: {names})")
    return path


def read_runbook_text(path: Path) -> str:
    """A runbook file's text; too large, unreadable or not UTF-8 is BadInput (one line) before any parsing."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(yamlfiles.MAX_BYTES + 1)
    except OSError as exc:
        raise BadInput(f"cannot read runbook {path}: {exc.strerror}") from None
    if len(raw) > yamlfiles.MAX_BYTES:
        raise BadInput(f"runbook {path} is larger than {yamlfiles.MAX_BYTES // 1024} KiB; refused")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"runbook {path} is not UTF-8 text") from None


# ---- YAML with line numbers ---------------------------------------------------------------

def _line_map(node: yaml.Node, path: Path_, lines: dict[Path_, int], dupes: list[tuple[int, str]]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            k = key.value
            if k in seen:
                dupes.append((key.start_mark.line + 1, f"duplicate key {k!r}"))
            seen.add(k)
            lines[(*path, k)] = key.start_mark.line + 1
            _line_map(value, (*path, k), lines, dupes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _line_map(item, (*path, i), lines, dupes)


def line_for(lines: Lines, path: Path_) -> int:
    """The line of the element at ``path``, else of its nearest parent that has one."""
    for n in range(len(path), 0, -1):
        if tuple(path[:n]) in lines:
            return lines[tuple(path[:n])]
    return 1


def parse_runbook(path: Path, text: str) -> tuple[Any, Lines, list[Issue]]:
    """The document, the line of each element, and the problems parsing found (the document is None when
    it cannot be parsed at all; duplicate keys are issues beside a parsed document)."""
    file = str(path)
    try:
        yamlfiles.check_size(text, "the runbook")
    except BadInput as exc:
        return None, {}, [Issue(file, 1, str(exc))]
    try:
        # Anchors and aliases refused, nesting bounded (yamlfiles): the line walk below cannot blow up.
        doc, node = yamlfiles.load_node(text)
    except yamlfiles.RefusedYaml as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        return None, {}, [Issue(file, line, f"refused: {exc.problem} (a runbook has no need of them)"
                                if "YAML a" in str(exc.problem) else f"refused: {exc.problem}")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else 1
        problem = getattr(exc, "problem", None) or str(exc)
        return None, {}, [Issue(file, line, f"not valid YAML: {problem}")]
    lines: dict[Path_, int] = {(): 1}
    dupes: list[tuple[int, str]] = []
    if node is not None:
        _line_map(node, (), lines, dupes)
    return doc, lines, [Issue(file, line, reason) for line, reason in dupes]
