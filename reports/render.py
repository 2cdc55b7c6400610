"""Renders the evidence model: Jinja2 templates (package data) to self-contained HTML and to Markdown; PDF
through WeasyPrint from that HTML.

The templates hold layout and wording only; every fact comes from the model (and the RACI from the
service catalogue, ``reports/service.yaml``). The HTML loads nothing from anywhere: the styles are
inline, the charts are inline SVG, and there is no script.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from tradeops.reports.measures import shown
from tradeops.runtime.platform.errors import OperationFailed
from tradeops.runtime.platform.packagedata import package_file

__all__ = ["environment", "render_html", "render_index", "render_markdown", "render_pdf"]


def _figure(value: Any, unit: str = "") -> str:
    """A value as a person reads it (the index and period reports; a report's figures carry their own text)."""
    return shown(value, unit)


def _fig_html(figures: Mapping[str, Mapping[str, Any]], name: str) -> Markup:
    """A report's figure in HTML: its one text, marked with its name (a test compares every occurrence)."""
    record = figures.get(name) or {}
    return Markup('<span class="figure" data-figure="{}">{}</span>').format(name, record.get("shown", "not measured"))


def _fig_md(figures: Mapping[str, Mapping[str, Any]], name: str) -> str:
    return str((figures.get(name) or {}).get("shown", "not measured"))


def _verdict(passed: Any) -> str:
    return "not judged" if passed is None else ("pass" if passed else "FAIL")


def _yes(value: Any) -> str:
    return "yes" if value else "no"


def _md(value: Any) -> str:
    """A table cell for Markdown: no pipes or newlines to break the row."""
    return str("" if value is None else value).replace("|", "\\|").replace("\n", " ")


_ENV: dict[str, Environment] = {}


def environment(kind: str) -> Environment:
    """The Jinja2 environment for ``html`` (autoescaped) or ``md`` templates."""
    if kind not in _ENV:
        env = Environment(loader=FileSystemLoader(str(package_file("reports", "templates"))),
                          autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
                          undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
        env.filters.update(figure=_figure, verdict=_verdict, md=_md, yes=_yes)
        env.globals.update(fig=_fig_html if kind == "html" else _fig_md, escape=escape)
        _ENV[kind] = env
    return _ENV[kind]


def render_html(model: Mapping[str, Any], charts: Mapping[str, str | None]) -> str:
    """The report as one self-contained HTML page (charts inline)."""
    return environment("html").get_template("report.html").render(m=model, charts=charts)


def render_markdown(model: Mapping[str, Any]) -> str:
    """The report as Markdown (the charts are in the HTML and PDF)."""
    return environment("md").get_template("report.md").render(m=model)


def render_index(rows: Sequence[Mapping[str, Any]], trend: Mapping[str, Any], chart: str | None) -> str:
    """``index.html``: every report, newest first, and the time-to-fail-over trend per scenario."""
    return environment("html").get_template("index.html").render(rows=rows, trend=trend, chart=chart)


def render_pdf(html: str) -> bytes:
    """The HTML as PDF through WeasyPrint. Nothing is fetched: the page is self-contained."""
    try:
        from weasyprint import HTML  # imported here: it takes a second and only `--pdf` needs it
    except ModuleNotFoundError as exc:  # an extra (the runtime's image leaves it out): one line, not a traceback
        raise OperationFailed(f"PDF needs {exc.name}, not installed: pip install 'tradeops[reports]'") from None

    def no_fetch(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise ValueError(f"reports fetch nothing ({url})")

    return bytes(HTML(string=html, url_fetcher=no_fetch).write_pdf())
