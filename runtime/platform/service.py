"""What the stack's small HTTP services (price feed, divergence monitor) share.

- :func:`service_main`, the process entry point: each is ``python -m tradeops.runtime.<...> --host H
  --port P [--log-format json|text]``: parse, configure the one log format (:mod:`.logs`), load the
  settings (with the running stack's addresses), serve until SIGTERM/SIGINT, and turn a failure into
  one line and an exit code.
- :class:`JsonHandler`, the request handler base: JSON answers, no log line per request.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

from tradeops.runtime.platform.errors import TradeopsError
from tradeops.runtime.platform.logs import FORMATS, configure
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.platform.statefile import resolve_settings

__all__ = ["JsonHandler", "service_main"]


class JsonHandler(BaseHTTPRequestHandler):
    """A quiet request handler that answers JSON (money and times as strings)."""

    def log_message(self, format: str, *args: Any) -> None:  # quiet: no line per request
        return

    def reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, sort_keys=True, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def service_main(argv: list[str] | None, *, prog: str, label: str, description: str,
                 serve: Callable[[Settings, str, int], int]) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log-format", choices=FORMATS, default=None,
                        help="json (default; or TRADEOPS_LOG_FORMAT) or text for a terminal")
    args = parser.parse_args(argv)
    configure(label, fmt=args.log_format)
    try:
        return serve(resolve_settings(), args.host, args.port)
    except TradeopsError as exc:
        logging.getLogger(f"tradeops.{label}").error("%s failed: %s", label, exc)
        return exc.exit_code
    except OSError as exc:
        logging.getLogger(f"tradeops.{label}").error("%s failed: %s", label, exc)
        return 1
