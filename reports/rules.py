"""The FCA rules tradeops cites, and finding citations in text. Pure.

``reports/rules.yaml`` lists every rule, guidance and policy statement tradeops cites, each with the
rule's own short title and where that was checked. :func:`citations` finds the references in a text
(``SYSC 15A.6.1R(7)``, ``SYSC 15A.5/15A.6``, a bare ``15A.4.2G``, ``COBS 11.2A``, ``PS21/3``);
:func:`unknown` names those the list does not hold, so a test can hold every file of the project to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Citation", "Rule", "citations", "parse_rules", "unknown"]

_SOURCEBOOK = r"(?P<book>SYSC|COBS|PRIN|SUP|DISP|CASS|FG)"
_NUMBER = r"\d+[A-Z]?(?:\.\d+[A-Z]?)*"
_PARTS = r"(?:\s?\(\d+\)(?:\s*(?:-|\u2013|to|,|and|or)\s*\(\d+\))*)?"
_SECTION = rf"{_NUMBER}{_PARTS}"
_MORE = rf"(?:\s*(?:/|,|and|or|to)\s*\d+[A-Z]?\.\d[\w.]*{_PARTS})*"
# A sourcebook's reference, and more sections of the same book after it ("SYSC 15A.5/15A.6", "15A.4, 15A.5.5G").
_PREFIXED = re.compile(rf"\b{_SOURCEBOOK}\s+(?P<refs>{_SECTION}{_MORE})")
_BARE = re.compile(rf"(?<![\w.]){re.escape('15A')}\.\d+(?:\.\d+[A-Z]?)?{_PARTS}")
_PAPER = re.compile(r"\b(?:PS|CP)\d{2}/\d{1,2}\b")
_ONE = re.compile(rf"(?P<number>{_NUMBER})(?P<parts>{_PARTS})")


@dataclass(frozen=True)
class Rule:
    ref: str
    title: str
    source: str
    parts: Mapping[str, str]


@dataclass(frozen=True)
class Citation:
    """One reference found: the rule (``SYSC 15A.6.1R``), the paragraphs cited (``7``), where, and as written."""

    ref: str
    parts: tuple[str, ...]
    line: int
    text: str


def parse_rules(doc: Mapping[str, Any]) -> dict[str, Rule]:
    """The list (``rules.yaml`` as loaded) by reference; ValueError on a malformed or repeated entry."""
    rules: dict[str, Rule] = {}
    for entry in doc.get("rules") or []:
        ref, title = str(entry.get("ref") or ""), str(entry.get("title") or "")
        if not ref or not title or not entry.get("source"):
            raise ValueError(f"rules.yaml: every rule needs ref, title and source: {entry!r}")
        if ref in rules:
            raise ValueError(f"rules.yaml: {ref} is listed twice")
        parts = {str(k): str(v) for k, v in (entry.get("parts") or {}).items()}
        rules[ref] = Rule(ref, title, str(entry["source"]), parts)
    return rules


def _split(book: str, refs: str, line: int, text: str) -> Iterator[Citation]:
    for match in _ONE.finditer(refs):
        parts = tuple(re.findall(r"\((\d+)\)", match.group("parts") or ""))
        yield Citation(f"{book} {match.group('number')}", parts, line, text)


def citations(text: str) -> list[Citation]:
    """Every reference to an FCA rule or paper in ``text``, in order."""
    found: list[Citation] = []
    for number, line_text in enumerate(text.splitlines(), 1):
        covered: list[tuple[int, int]] = []
        here: list[tuple[int, Citation]] = []
        for match in _PREFIXED.finditer(line_text):
            covered.append(match.span())
            here += [(match.start(), c) for c in _split(match.group("book"), match.group("refs"), number,
                                                         match.group(0))]
        for match in _BARE.finditer(line_text):
            if not any(a <= match.start() < b for a, b in covered):
                here += [(match.start(), c) for c in _split("SYSC", match.group(0), number, match.group(0))]
        here += [(m.start(), Citation(m.group(0), (), number, m.group(0))) for m in _PAPER.finditer(line_text)]
        found += [c for _start, c in sorted(here, key=lambda pair: pair[0])]
    return found


def unknown(found: Sequence[Citation], rules: Mapping[str, Rule]) -> list[tuple[Citation, str]]:
    """The citations the list does not hold, each with why (an unknown rule, or a paragraph it does not have)."""
    out: list[tuple[Citation, str]] = []
    for citation in found:
        rule = rules.get(citation.ref)
        if rule is None:
            out.append((citation, f"{citation.ref} is not in reports/rules.yaml"))
            continue
        missing = [p for p in citation.parts if p not in rule.parts]
        if missing:
            out.append((citation, f"{citation.ref} has no paragraph ({missing[0]}) in reports/rules.yaml"))
    return out
