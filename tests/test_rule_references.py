"""Every FCA rule tradeops cites is the rule that says it: one list (reports/rules.yaml) holds each reference with the
rule's own short title and where it was checked, and every file of the project is held to it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from tests.support.stack import REPO

SCANNED = (".py", ".yaml", ".yml", ".json", ".html", ".md", ".toml", ".txt", ".cfg", ".sh", "")


def _project_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    return [REPO / f for f in listed if (REPO / f).is_file() and Path(f).suffix in SCANNED
            and f != "reports/rules.yaml" and not f.startswith("tests/data/")]


def _rules():
    from tradeops.reports.rules import parse_rules

    return parse_rules(yaml.safe_load((REPO / "reports" / "rules.yaml").read_text()))


def test_every_rule_cited_in_templates_data_code_and_docs_is_one_of_the_list(processes):
    """Every SYSC/COBS/PS reference in every file of the project (templates, data, code, docs, the deploy template,
    tests) is a rule of reports/rules.yaml, each with its own short title and where it was checked; a citation of
    a paragraph the rule does not have fails too."""
    from tradeops.reports.rules import citations, unknown

    rules = _rules()
    assert all(rule.title and rule.source for rule in rules.values())
    assert len(rules["SYSC 15A.6.1R"].parts) == 9
    found: list[str] = []
    cited = 0
    for path in _project_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        refs = citations(text)
        cited += len(refs)
        found += [f"{path.relative_to(REPO)}:{c.line}: {c.text!r}: {why}" for c, why in unknown(refs, rules)]
    assert not found, "\n".join(found)
    assert cited > 50


def test_the_reference_scanner_names_a_rule_the_list_does_not_hold():
    """The scanner reads every form a reference takes (a slash list, a bare section, a paragraph, a range) and
    names the ones the list does not hold: the record-keeping chapter the template once cited for seven years, a
    paragraph that does not exist, a paragraph number a rule does not have."""
    from tradeops.reports.rules import citations, unknown

    rules = _rules()
    book = "SYSC"  # the wrong references are put together here, so that this file cites none of them itself
    text = ("kept under SYSC 15A.6.1R(7) and (SYSC 15A.4/15A.5.5G), 15A.6.2R, PS21/3, COBS 11.2A; "
            f"SYSC 15A.6.1R (1)-(9)\n7 years (FCA {book} {9}); {book} 15A.2/15A.{5}.9R; {book} 15A.6.1R({12})")
    found = citations(text)
    assert [(c.ref, c.parts) for c in found[:7]] == [
        ("SYSC 15A.6.1R", ("7",)), ("SYSC 15A.4", ()), ("SYSC 15A.5.5G", ()), ("SYSC 15A.6.2R", ()),
        ("PS21/3", ()), ("COBS 11.2A", ()), ("SYSC 15A.6.1R", ("1", "9"))]
    wrong = [why for _c, why in unknown(found, rules)]
    assert wrong == [f"{book} {9} is not in reports/rules.yaml", f"{book} 15A.{5}.9R is not in reports/rules.yaml",
                     "SYSC 15A.6.1R has no paragraph (12) in reports/rules.yaml"]
