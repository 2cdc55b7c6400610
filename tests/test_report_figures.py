"""The recorded primary-outage run's report (tests/data, no stack): one value per figure in HTML, Markdown and JSON,
nothing counted from an excerpt, the impact tolerance measured as stated beside the engineering targets and the
RTO, the executive summary first and on the first screen, chart scales that show the data, and the index counting
each run once."""

from __future__ import annotations

import html as htmllib
import json
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support.stack import REPO

FIXTURE = REPO / "tests" / "data" / "drill-primary-outage"
RUN = "20261126T155151Z-drill-primary-outage"
VALUE = r"(not measured|£-?[\d,]+\.\d{2}|-?\d+\.\d{3} s|-?\d+)"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The recorded run's report, built once into a copy of its folder."""
    from tradeops.reports.build import build_run_report
    from tradeops.runtime.platform.settings import load_settings

    root = tmp_path_factory.mktemp("figures")
    folder = root / "runs" / RUN
    shutil.copytree(FIXTURE, folder)
    settings = load_settings(state_dir=root / "state", runs_dir=root / "runs")
    build_run_report(folder, settings, generated_by="compliance-dana (TRADEOPS_OPERATOR)")
    return folder


def _text(page: str) -> str:
    """What a reader of the HTML sees: no charts, no tags, entities decoded, one space between words."""
    page = re.sub(r"<svg.*?</svg>", " ", page, flags=re.S)
    page = re.sub(r"<[^>]+>", " ", page)
    return re.sub(r"\s+", " ", htmllib.unescape(page))


def _labelled(text: str, labels: dict[str, str]) -> list[tuple[str, str]]:
    """(figure, value) for every place a figure's label is followed by a value, longest labels first so that
    "orders filled twice (double fills)" is never read as "orders filled"."""
    found = []
    masked = text
    for name, label in sorted(labels.items(), key=lambda kv: -len(kv[1])):
        pattern = re.compile(re.escape(label) + r"[\s:|]{0,6}" + VALUE)
        for match in pattern.finditer(masked):
            found.append((name, match.group(1)))
        masked = pattern.sub(lambda m: "#" * len(m.group(0)), masked)
    return found


def _walk(value, path=()):
    if isinstance(value, dict):
        yield path, value
        for k, v in value.items():
            yield from _walk(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, (*path, i))


def test_every_figure_reads_the_same_in_html_markdown_and_json(report):
    """Each figure is computed once (evidence.json's `figures`) and every occurrence agrees with it: every value
    the JSON carries elsewhere, every marked figure and results row of the HTML, and every value that follows a
    figure's label in the HTML's text and in the Markdown."""
    evidence = json.loads((report / "evidence.json").read_text())
    figures = evidence["figures"]
    page = (report / "report.html").read_text()
    md = (report / "report.md").read_text()
    checked = 0
    for path, node in _walk({k: v for k, v in evidence.items() if k != "figures"}):
        if "figure" in node and "measured" in node:
            assert node["measured"] == figures[node["figure"]]["value"], path
            checked += 1
    for name in evidence["customer_impact"]["figures"]:
        assert evidence["customer_impact"][name] == figures[name]["value"], name
        checked += 1
    head = evidence["headline"]
    assert head["time_to_fail_over"] == figures["time_to_99pct_secondary"]["value"]
    assert head["longest_wait_seconds"] == figures["longest_wait_seconds"]["value"]
    spans = re.findall(r'<span class="figure" data-figure="([a-z_0-9]+)">([^<]*)</span>', page)
    rows = re.findall(r'<tr data-figure="([a-z_0-9]+)"><td>[^<]*</td><td class="measured">([^<]*)</td>', page)
    assert len(spans) >= 20 and len(rows) == 16
    for name, shown in spans + rows:
        assert htmllib.unescape(shown) == figures[name]["shown"], (name, shown)
        checked += 1
    labels = {name: f["label"] for name, f in figures.items()}
    for text, where in ((_text(page), "html"), (md, "md")):
        pairs = _labelled(text, labels)
        assert len(pairs) > 25, where
        for name, value in pairs:
            assert value == figures[name]["shown"], (where, name, value)
        checked += len(pairs)
    assert checked > 100


def test_one_longest_wait_everywhere_and_nothing_from_the_excerpt(report):
    """The longest wait is one figure, read the same wherever a wait is named (the report once showed 0.368 s and
    2.590 s); the 4-order excerpt of 105 placed gives no figure: no 2.590 s, no "orders delayed: 1"."""
    evidence = json.loads((report / "evidence.json").read_text())
    longest = evidence["figures"]["longest_wait_seconds"]
    assert longest["shown"] == "0.421 s" and "load's reconciliation of every filled order" in longest["source"]
    sampled = evidence["figures"]["max_oldest_pending_seconds"]
    assert "wait" not in sampled["label"] and sampled["shown"] == "0.368 s"
    for name in ("report.html", "report.md", "evidence.json"):
        text = (report / name).read_text()
        assert "2.590" not in text and "2.59 " not in text and "2.59," not in text, name
        if name != "evidence.json":
            waits = re.findall(r"longest wait[^0-9£]{0,60}?" + VALUE, _text(text) if name.endswith("html") else text)
            assert waits and set(waits) == {"0.421 s"}, (name, waits)
    values = [node["longest_wait_seconds"] for _path, node in _walk(evidence) if "longest_wait_seconds" in node]
    values = [v["value"] if isinstance(v, dict) else v for v in values]  # the figure's record, or a copy of its value
    assert len(values) >= 3 and set(values) == {0.421}
    assert evidence["figures"]["orders_delayed"]["value"] is None
    assert "4 of the 105 orders placed" in evidence["figures"]["orders_delayed"]["source"]


def test_the_tolerance_is_measured_as_stated_beside_the_engineering_targets_and_the_rto(report):
    """Time is the longest wait against 30 min with its headroom, customers affected is orders affected against
    none, money at risk is not judged and says why (owed, no approvals recorded in a drill), so the headline is not
    "within tolerance"; the engineering targets and the phase's RTO, named as an RTO, are a section apart."""
    evidence = json.loads((report / "evidence.json").read_text())
    tolerance = {t["metric"]: t for t in evidence["tolerance"]}
    time = tolerance["time"]
    assert (time["figures"], time["limit"], time["headroom"], time["verdict"]) == (
        ["longest_wait_seconds"], "30 min", "29 min 59.6 s", "within tolerance")
    assert "from placement to its outcome" in time["definition"]
    affected = tolerance["customers affected"]
    assert (affected["figures"], affected["limit"], affected["verdict"]) == (["orders_affected"], "0 orders",
                                                                           "within tolerance")
    assert evidence["figures"]["orders_affected"]["value"] == 0
    money = tolerance["money at risk"]
    assert money["verdict"] == "not judged" and money["within"] is None
    assert "does not record finance's decisions" in money["reason"]
    assert money["figures"] == ["max_exposure_gbp", "reimbursements_owed_gbp", "reimbursements_approved_gbp"]
    assert evidence["figures"]["reimbursements_owed_gbp"]["shown"] == "£66.77"
    assert evidence["verdict"] == "not judged in full" and evidence["passed"] is None
    assert "money at risk not judged" in evidence["verdict_text"]
    rto = evidence["engineering"]["rto"]
    assert (rto["figure"], rto["limit"], rto["within"]) == ("time_to_99pct_secondary", "1 min", True)
    md = (report / "report.md").read_text()
    engineering = md[md.index("## 4. Engineering targets"):md.index("## 5. The scenario")]
    assert "**Recovery time objective (RTO)** of Phase 3" in engineering
    assert "| time to detect | 0.072 s | <= 1 | pass |" in engineering
    assert "30 min" not in engineering and "longest wait" not in engineering
    summary = md[md.index("## 1. Executive summary"):md.index("## 2.")]
    row = "| time | longest wait of a customer's order: 0.421 s | 30 min | 29 min 59.6 s | within tolerance |"
    assert row in summary
    assert "Sign-off: **draft**" in summary and "Open vulnerabilities: **0**" in summary
    assert "Customer order execution" in summary and "(simulation)" in summary


def test_the_html_loads_with_no_failed_request_and_the_first_screen_holds_the_executive_summary(processes, report,
                                                                                              tmp_path):
    """Headless Chromium loads report.html fetching nothing else; on a 1200x900 first screen both frame lines of
    the executive summary (#1b4f72, above and below it) are visible, so the whole summary is."""
    import numpy
    from PIL import Image

    from tests.support.browser import load_page

    shot = tmp_path / "first-screen.png"
    page = load_page(report / "report.html", shot, user_data_dir=tmp_path / "chromium", width=1200, height=900)
    assert page.loaded and page.requests == [(report / "report.html").resolve().as_uri()]
    assert not page.failed and not page.bad_status and not page.console_errors
    assert page.dom.index('<section id="summary">') < page.dom.index('<section id="service">')
    pixels = numpy.asarray(Image.open(shot).convert("RGB"), dtype=int)
    frame = (numpy.abs(pixels - numpy.array([0x1B, 0x4F, 0x72])) <= 2).all(axis=2)
    lines = [y for y in range(frame.shape[0]) if frame[y].sum() > 600]
    bands = [y for i, y in enumerate(lines) if i == 0 or y != lines[i - 1] + 1]
    assert len(bands) == 2, bands  # the frame above the summary and the one below it, both on the first screen
    assert pixels.shape[0] == 900


def test_the_exposure_chart_scale_shows_the_data_and_names_thresholds_off_it():
    """A £0 series under £10,000/£20,000 thresholds is drawn on its own scale with the thresholds named as above it;
    a threshold within twice the peak is drawn as a line, one further off is named."""
    from tradeops.reports.charts import exposure_chart

    timeline = json.loads((FIXTURE / "timeline.json").read_text())
    far = exposure_chart(timeline["samples"], load_started="2026-11-26T15:52:01.430Z", fault={},
                         thresholds={"alert threshold": Decimal("10000"), "immediate page": Decimal("20000")})
    assert "Total exposure (peak £0.00); above this scale, not drawn: alert threshold £10,000.00, immediate page " \
           "£20,000.00" in far
    assert far.count("alert threshold £10,000.00") == 1  # in the title only: no line, no legend entry
    near_samples = [{**s, "exposure_gbp": "900.00"} for s in timeline["samples"]]
    near = exposure_chart(near_samples, load_started="2026-11-26T15:52:01.430Z", fault={},
                          thresholds={"alert threshold": Decimal("1000"), "immediate page": Decimal("2000")})
    assert "above this scale, not drawn: immediate page £2,000.00" in near
    assert near.count("alert threshold £1,000.00") == 1 and "not drawn: alert" not in near  # its legend entry


def test_the_index_counts_a_run_once_when_an_unzipped_pack_lies_under_the_runs_folder(report):
    """An evidence pack unzipped under the runs folder holds a copy of the run folder; `list_reports` and index.html
    count the run once, from its own folder."""
    from tradeops.reports.build import list_reports, write_index

    runs = report.parent
    copy = runs / "ev-2026-11" / "runs" / RUN
    shutil.copytree(report, copy)
    try:
        rows = list_reports(runs)
        assert [r["id"] for r in rows] == [RUN] and rows[0]["folder"] == str(report)
        index = write_index(runs).read_text()
        assert index.count(f'href="{RUN}/report.html"') == 1 and "ev-2026-11" not in index
        assert "<td>primary-outage</td><td>1</td>" in index
    finally:
        shutil.rmtree(runs / "ev-2026-11")
