"""A drill's result as JUnit XML, so that any CI shows it: one test case per tolerance figure. Pure.

The JUnit format CI systems read (Jenkins, GitHub Actions reporters, GitLab, CodeBuild's test reports) is a
``<testsuites>`` of one ``<testsuite>`` here, with:

- one ``<testcase>`` per figure of the drill's tolerance, named after the figure (``time_to_detect``), its
  class ``drill.<scenario>``; a figure out of tolerance has a ``<failure>`` whose message is the measured
  value against the tolerance (``measured 1.32 s, tolerance <= 1``); a figure within it says the same in its
  ``<system-out>``, since JUnit gives a passed case no message;
- one more ``<testcase>``, ``experiment``, for what the Chaos Toolkit journal says went wrong (the steady
  state not met, an activity failed, a stop condition interrupted the method): the verdict fails on those
  too, and a CI must not show a failed drill as all green;
- the run folder and the verdict as the suite's properties.

Written with the standard library's ElementTree: the format is a dozen elements, and a dependency of the
drills' install for them would buy nothing. The tests read it back with junitparser, a JUnit reader.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from tradeops.drillresult.figures import measured_text
from tradeops.runtime.platform.clock import parse_iso

__all__ = ["EXPERIMENT_CASE", "junit_xml"]

EXPERIMENT_CASE = "experiment"


def _findings(result: Mapping[str, Any]) -> list[str]:
    """The verdict's failures that are not a figure out of tolerance: the journal's findings."""
    failed = [c for c in result.get("checks") or [] if not c.get("passed")]
    return [line for line in result.get("failures") or []
            if not any(str(line).startswith(f"{c.get('label')} ({c.get('figure')})") for c in failed)]


def _seconds(result: Mapping[str, Any]) -> float:
    try:
        return max(0.0, (parse_iso(str(result["ended_at"])) - parse_iso(str(result["started_at"]))).total_seconds())
    except (KeyError, ValueError):
        return 0.0


def _case(suite: ET.Element, name: str, classname: str, *, failure: str | None, detail: str,
          text: Sequence[str] = ()) -> None:
    case = ET.SubElement(suite, "testcase", {"name": name, "classname": classname, "time": "0"})
    if failure is not None:
        ET.SubElement(case, "failure", {"message": failure, "type": "tolerance" if name != EXPERIMENT_CASE
                                        else "experiment"}).text = "\n".join(text) or failure
    ET.SubElement(case, "system-out").text = detail


def junit_xml(result: Mapping[str, Any]) -> bytes:
    """The drill's ``result.json`` document as a JUnit XML file (UTF-8, with its declaration)."""
    scenario = str(result.get("scenario") or "drill")
    classname = f"drill.{scenario}"
    checks = list(result.get("checks") or [])
    findings = _findings(result)
    failures = sum(1 for c in checks if not c.get("passed")) + (1 if findings else 0)
    root = ET.Element("testsuites", {"name": "tradeops drills", "tests": str(len(checks) + 1),
                                     "failures": str(failures), "errors": "0"})
    suite = ET.SubElement(root, "testsuite", {
        "name": f"tradeops drill {scenario}", "tests": str(len(checks) + 1), "failures": str(failures),
        "errors": "0", "skipped": "0", "time": f"{_seconds(result):.3f}",
        "timestamp": str(result.get("started_at") or ""),
    })
    properties = ET.SubElement(suite, "properties")
    for name, value in (("verdict", result.get("verdict")), ("run_dir", result.get("run_dir")),
                        ("title", result.get("title"))):
        ET.SubElement(properties, "property", {"name": name, "value": str(value or "")})
    for check in checks:
        figure = str(check["figure"])
        measured = check.get("measured")
        line = (f"{'measured ' if measured is not None else ''}{measured_text(figure, measured)}, "
                f"tolerance {check.get('tolerance')}")
        label = check.get("label") or figure
        _case(suite, figure, classname, failure=None if check.get("passed") else line, detail=f"{label}: {line}")
    journal = result.get("journal") or {}
    summary = (f"journal {journal.get('status')}, steady state before {journal.get('steady_state_before')}, "
               f"after {journal.get('steady_state_after')}")
    _case(suite, EXPERIMENT_CASE, classname, failure="; ".join(findings)[:1000] if findings else None,
          detail=summary, text=findings)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
