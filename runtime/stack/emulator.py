"""The local stack's AWS: moto server, with DynamoDB's one-item-at-a-time guarantee restored.

DynamoDB applies each item write atomically: a conditional write sees the item as the last write
left it. moto server answers every request in its own thread and checks a condition, then applies
the update, in plain Python with no lock: under concurrent writers two conditional writes on one
item can both pass (and a failed multi-item transaction restores a snapshot of the whole table,
erasing what other writers committed meanwhile). The audit chain and the four-eyes state in the
executions table rely on the guarantee, so this launcher runs moto's own WSGI application behind a
lock that lets one DynamoDB request at a time through. Other services are untouched (an SQS long
poll must not hold anything up), and DynamoDB requests are short, CPU-bound Python that the GIL
serialises anyway, so the lock costs next to nothing.

Run as ``python -m tradeops.runtime.stack.emulator -H 127.0.0.1 -p PORT`` (the supervisor and the
test fixtures do); it serves the same API as ``python -m moto.server``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["SerialDynamoDB", "main"]


class SerialDynamoDB:
    """WSGI middleware: DynamoDB (and DynamoDB Streams) requests run one at a time, each to its last byte."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            with self.lock:
                return list(self.app(environ, start_response))  # the whole answer, inside the lock
        return self.app(environ, start_response)


def main(argv: list[str] | None = None) -> int:
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(prog="python -m tradeops.runtime.stack.emulator")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, required=True)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(args.host, args.port, SerialDynamoDB(app), threaded=True, request_handler=MotoRequestHandler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
