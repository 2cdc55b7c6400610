"""The entry point shared by the stack's small HTTP services (price feed, divergence monitor).

Each is ``python -m runtime.<name> --host H --port P``: parse, quiet the chatty libraries, load
the settings (with the running stack's addresses), serve until SIGTERM/SIGINT, and turn a
failure into one line and an exit code.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from runtime.errors import TradeopsError
from runtime.settings import Settings

__all__ = ["service_main"]


def service_main(argv: list[str] | None, *, prog: str, label: str, description: str,
                 serve: Callable[[Settings, str, int], int]) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=f"%(asctime)s {label} %(message)s")
    for chatty in ("httpx", "httpcore", "botocore", "urllib3"):  # quiet: no line per request
        logging.getLogger(chatty).setLevel(logging.WARNING)
    from runtime.stack import resolve_settings

    try:
        return serve(resolve_settings(), args.host, args.port)
    except TradeopsError as exc:
        print(f"{label} failed: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"{label} failed: {exc}", file=sys.stderr)
        return 1
