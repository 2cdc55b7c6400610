"""The one log configuration of every process of the stack: JSON lines, or text for a person.

Each line is one JSON object: ``at`` (UTC, milliseconds, ``Z``: :func:`clock.iso`), ``level``,
``component`` (intake, worker-1, monitor, ...), ``logger``, ``message``, and the ``order_id`` or
``execution_id`` bound to the code that logged it, plus any structured ``extra`` fields. That is
what CloudWatch Logs Insights and the CloudWatch agent read in production; ``TRADEOPS_LOG_FORMAT=text``
(``tradeops up --log-format text``) gives one readable line instead, for a terminal; metric (EMF)
lines stay JSON in either format, so CloudWatch and ``tradeops metrics`` read them all the same.

Why a stdlib formatter and not structlog: every module already logs through ``logging`` (and so do
uvicorn, botocore and stamina); one ``logging.Formatter`` turns all of them into JSON with no call
site rewritten and no second logging system to configure beside the first.

The ids are bound with contextvars (:func:`bound`), so a line logged deep in the router while a
worker thread handles an order carries that order's id without passing it down.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

from tradeops.runtime.platform.clock import iso
from tradeops.runtime.platform.errors import BadInput

__all__ = ["FORMATS", "JsonFormatter", "TextFormatter", "bound", "configure", "current_ids", "log_format"]

FORMATS = ("json", "text")
_ENV = "TRADEOPS_LOG_FORMAT"

_order_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("order_id", default=None)
_execution_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("execution_id", default=None)

# LogRecord's own attributes: anything else on a record came in through ``extra`` and is logged.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


@contextmanager
def bound(*, order_id: str | None = None, execution_id: str | None = None) -> Iterator[None]:
    """Every line logged inside (this thread or task) carries these ids."""
    tokens = []
    if order_id is not None:
        tokens.append((_order_id, _order_id.set(order_id)))
    if execution_id is not None:
        tokens.append((_execution_id, _execution_id.set(execution_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current_ids() -> dict[str, str]:
    """The ids bound here now (for records written outside logging, e.g. EMF lines)."""
    ids = {"order_id": _order_id.get(), "execution_id": _execution_id.get()}
    return {k: v for k, v in ids.items() if v}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: at, level, component, logger, message, bound ids, extra fields."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "at": iso(datetime.fromtimestamp(record.created, UTC)), "level": record.levelname,
            "component": self.component, "logger": record.name, "message": record.getMessage(),
        }
        line.update(current_ids())
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and (not key.startswith("_") or key == "_aws"):  # _aws: an EMF record
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``<at> <component> <LEVEL> <message> [order_id=...]`` for a person at a terminal."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        if hasattr(record, "_aws"):  # an EMF record stays JSON: it is a metric, whoever reads the log
            return JsonFormatter(self.component).format(record)
        ids = " ".join(f"{k}={v}" for k, v in current_ids().items())
        text = (f"{iso(datetime.fromtimestamp(record.created, UTC))} {self.component} {record.levelname} "
                f"{record.getMessage()}{' ' + ids if ids else ''}")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def log_format(value: str | None = None) -> str:
    """The format asked for (an option, else ``TRADEOPS_LOG_FORMAT``, else json); BadInput for another."""
    chosen = (value or os.environ.get(_ENV) or "json").strip().lower()
    if chosen not in FORMATS:
        raise BadInput(f"unknown log format {chosen!r}: use json or text")
    return chosen


def configure(component: str, *, fmt: str | None = None, level: int = logging.INFO,
              stream: TextIO | None = None) -> None:
    """Send every logger of this process to stderr in one format; quiet the per-request chatter."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(component) if log_format(fmt) == "json" else TextFormatter(component))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for chatty in ("httpx", "httpcore", "botocore", "urllib3", "werkzeug"):  # no line per request
        logging.getLogger(chatty).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # through our handler, not uvicorn's own
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
