"""The audit chain's scheduled anchor: a small process of the stack (``tradeops up`` starts it).

At its start, and then every ``audit_anchor_seconds``, it anchors each audit chain's head outside the
table (:meth:`tradeops.runbooks.audit.AuditLog.anchor`) when records were appended since the last
anchor. Runbook executions anchor at their end anyway; this bounds how long records appended by
anything else (or by an execution that died before its end) stay unanchored. The round at start
covers records appended while no anchorer ran (the stack was down), and builds the process's AWS
clients while it starts rather than minutes later. Run it as
``python -m tradeops.runbooks.anchor [--chain audit] [--log-format json|text]``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from tradeops.runbooks.audit import AnchorStore, AuditLog
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import TradeopsError
from tradeops.runtime.platform.logs import FORMATS, configure
from tradeops.runtime.platform.settings import Settings, load_settings

__all__ = ["anchor_once", "run_anchoring"]

log = logging.getLogger("tradeops.audit")
BY = "audit-anchor schedule"


def anchor_once(aws: Aws, chains: list[str], store: AnchorStore | None = None) -> int:
    """Anchor each chain that moved; returns how many anchors were written. Failures are logged, not raised."""
    store = store or AnchorStore(aws)
    written = 0
    for chain in chains:
        try:
            if AuditLog(aws, chain=chain).anchor(by=BY, reason="schedule", store=store) is not None:
                written += 1
        except TradeopsError as exc:  # the next round tries again; verify reports a broken chain
            log.error("audit chain %s not anchored: %s", chain, exc, extra={"chain": chain})
    return written


def run_anchoring(settings: Settings, stop: threading.Event, chains: list[str]) -> None:
    """Anchor at once, then every ``audit_anchor_seconds``, until ``stop`` (a period of 0 turns it off)."""
    if settings.audit_anchor_seconds <= 0:
        stop.wait()
        return
    aws = Aws(settings)
    store = AnchorStore(aws)
    while True:
        anchor_once(aws, chains, store)
        if stop.wait(settings.audit_anchor_seconds):
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tradeops.runbooks.anchor", description=__doc__.splitlines()[0])
    parser.add_argument("--chain", action="append", help="audit chain to anchor (repeatable; default: audit)")
    parser.add_argument("--log-format", choices=FORMATS, default=None,
                        help="json (default; or TRADEOPS_LOG_FORMAT) or text for a terminal")
    args = parser.parse_args(argv)
    configure("audit-anchor", fmt=args.log_format)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        run_anchoring(load_settings(), stop, args.chain or ["audit"])
    except TradeopsError as exc:
        print(f"audit-anchor failed to start: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
