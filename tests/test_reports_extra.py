"""The reports' extra (matplotlib, WeasyPrint) is optional: the runtime's image leaves it out, and a report command
run without it says so in one line naming the extra, not with a traceback."""

from __future__ import annotations

import importlib
import sys

import pytest

from tradeops.reports.render import render_pdf
from tradeops.runtime.platform.errors import OperationFailed


def test_charts_without_matplotlib_name_the_extra(monkeypatch):
    """Drawing a chart with matplotlib not installed is an OperationFailed naming `pip install 'tradeops[reports]'`."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # None in sys.modules: the import fails as if not installed
    monkeypatch.delitem(sys.modules, "tradeops.reports.charts", raising=False)
    with pytest.raises(OperationFailed, match=r"charts need matplotlib, not installed: pip install .tradeops\[reports"):
        importlib.import_module("tradeops.reports.charts")


def test_pdf_without_weasyprint_names_the_extra(monkeypatch):
    """`report build --pdf` with WeasyPrint not installed is an OperationFailed naming the extra."""
    monkeypatch.setitem(sys.modules, "weasyprint", None)
    with pytest.raises(OperationFailed, match=r"PDF needs weasyprint, not installed: pip install .tradeops\[reports\]"):
        render_pdf("<html></html>")
