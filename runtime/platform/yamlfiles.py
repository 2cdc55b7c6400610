"""YAML that people write (runbooks, the operators file), read so that a hostile file costs nothing.

PyYAML's own loaders expand aliases, and anything that walks the composed node graph follows them:
a few hundred bytes of nested aliases become gigabytes, and a self-referencing alias
(``name: &r [*r]``) recurses until Python gives up. The files tradeops reads have no need of
anchors or aliases, so :func:`load` refuses them outright (at the first one, before anything is
expanded), refuses files over a size limit, and refuses nesting deeper than a small bound, which
also makes recursion over the result impossible. Every refusal is one line naming the file and line.
"""

from __future__ import annotations

from typing import Any

import yaml

from tradeops.runtime.platform.errors import BadInput

__all__ = ["MAX_BYTES", "MAX_DEPTH", "RefusedYaml", "check_size", "load", "load_node"]

MAX_BYTES = 64 * 1024
"""Ten times the largest runbook we ship; a file this size parses in well under a second."""
MAX_DEPTH = 24
"""Nesting levels (a runbook needs about six)."""


class RefusedYaml(yaml.MarkedYAMLError):
    """A YAML document refused before it was built: an anchor, an alias, or nesting too deep."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors and aliases and bounds the nesting while it composes."""

    def __init__(self, stream: str, max_depth: int) -> None:
        super().__init__(stream)
        self._depth = 0
        self._max_depth = max_depth

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            raise RefusedYaml(None, None, f"YAML aliases (*{event.anchor}) are not allowed", event.start_mark)
        if getattr(event, "anchor", None):
            raise RefusedYaml(None, None, f"YAML anchors (&{event.anchor}) are not allowed", event.start_mark)
        self._depth += 1
        try:
            if self._depth > self._max_depth:
                raise RefusedYaml(None, None, f"nested deeper than {self._max_depth} levels", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _too_deep_flow(text: str, max_depth: int) -> yaml.Mark | None:
    """Where ``[``/``{`` nesting first goes deeper than ``max_depth`` (outside quotes and comments), else None.

    PyYAML's scanner reads ahead through nested flow collections keeping one candidate key per
    level, which costs time quadratic in the depth before the composer could refuse it; this linear
    pre-scan refuses such a file first."""
    depth, line, quote, comment = 0, 0, "", False
    for i, ch in enumerate(text):
        if ch == "\n":
            line, comment = line + 1, False
        elif comment:
            continue
        elif quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t\n"):
            comment = True
        elif ch in "[{":
            depth += 1
            if depth > max_depth:
                return yaml.Mark("", i, line, 0, None, None)
        elif ch in "]}":
            depth = max(depth - 1, 0)
    return None


def load_node(text: str, *, max_depth: int = MAX_DEPTH) -> tuple[Any, yaml.Node | None]:
    """The document and its composed node (for line numbers); raises yaml.YAMLError, RefusedYaml included."""
    mark = _too_deep_flow(text, max_depth)
    if mark is not None:
        raise RefusedYaml(None, None, f"nested deeper than {max_depth} levels", mark)
    loader = _StrictLoader(text, max_depth)
    try:
        node = loader.get_single_node()
        doc = loader.construct_document(node) if node is not None else None
    finally:
        loader.dispose()
    return doc, node


def check_size(text: str, what: str, *, max_bytes: int = MAX_BYTES) -> None:
    """Refuse (BadInput, one line) a text larger than ``max_bytes`` before parsing any of it."""
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise BadInput(f"{what} is {size} bytes; refused (at most {max_bytes // 1024} KiB)")


def load(text: str, what: str, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``text`` strictly; every problem is one BadInput line naming ``what`` and the line."""
    check_size(text, what, max_bytes=max_bytes)
    try:
        doc, _ = load_node(text, max_depth=max_depth)
    except RefusedYaml as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 1
        raise BadInput(f"{what}:{line}: refused: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise BadInput(f"{what}{line}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    return doc
