"""`tradeops doctor`: what is wrong, and how to fix it, one line each.

Each check answers ok, or a problem with its fix; a check that needs something an earlier one
found missing (no target, no stack) says it was skipped and why. Nothing here changes anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

from tradeops.runbooks.audit import AuditLog
from tradeops.runbooks.controls import judge, read_deployed
from tradeops.runbooks.identity import (
    as_target_identities,
    break_glass_users,
    current_identity,
    load_operators,
    operators_path,
)
from tradeops.runbooks.roster import Roster
from tradeops.runtime.orderpath import figures, inflight
from tradeops.runtime.orderpath.flags import Flags
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import utcnow
from tradeops.runtime.platform.errors import TradeopsError, reason_of
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.platform.statefile import Target, read_state, resolve_target
from tradeops.runtime.stack.status import stack_status

__all__ = ["MAX_SKEW_SECONDS", "Finding", "diagnose", "segregation"]

MAX_SKEW_SECONDS = 5.0
"""Beyond this the audit log's times and the approval deadlines drift from AWS's (and SigV4 fails at 300 s)."""


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str | None = None
    skipped: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "ok": self.ok, "skipped": self.skipped, "detail": self.detail, "fix": self.fix}


def _run(name: str, check: Callable[[], Finding]) -> Finding:
    try:
        return check()
    except TradeopsError as exc:
        return Finding(name, False, str(exc), "see the message")
    except Exception as exc:  # a doctor reports, it does not crash
        return Finding(name, False, reason_of(exc), "see the message")


def diagnose(settings: Settings, *, aws_target: bool = False) -> list[Finding]:
    """Every check in order: target, stack, operators file, roster, identity, brokers, flags, DLQ, audit, clock;
    on AWS, then each segregation-of-duties control (:func:`segregation`)."""
    findings: list[Finding] = []
    target: Target | None = None
    try:
        settings, target = resolve_target(settings, aws=aws_target)
        findings.append(Finding("target", True, target.describe()))
    except TradeopsError as exc:
        findings.append(Finding("target", False, str(exc), "`tradeops up`, or `tradeops --aws doctor` for AWS"))

    def stack() -> Finding:
        state = read_state(settings.state_file)
        if target is not None and target.kind != "local" and not state:
            return Finding("stack", True, "no local stack (not needed: the target is not the local stack)")
        info = stack_status(settings)
        down = [name for name, ok in info["components"].items() if not ok]
        if down:
            return Finding("stack", False, f"unhealthy: {', '.join(down)}",
                           f"look at the logs in {info.get('log_dir')}; `tradeops down && tradeops up`")
        return Finding("stack", True, f"up since {info.get('started_at')}, {len(info['components'])} components "
                                      "healthy")

    findings.append(_run("stack", stack))

    def operators_file() -> Finding:
        path = operators_path(settings)
        if not path.exists():
            return Finding("operators file", True, f"{path} not found (only needed to seed or change the roster)")
        local = load_operators(path)
        return Finding("operators file", True, f"{path}: {len(local.roles)} operators, digest {local.digest[:12]}")

    findings.append(_run("operators file", operators_file))
    if target is None:
        for name in ("roster", "identity", "brokers", "flags", "dead letters", "audit chain", "clock"):
            findings.append(Finding(name, False, "skipped: no target", None, skipped=True))
        return findings
    aws = Aws(settings)

    def roster() -> Finding:
        current = Roster(aws).current()
        if current is None:
            return Finding("roster", False, "no shared roster yet: approvals and break-glass are refused",
                           "`tradeops operators apply operators.yaml` seeds it")
        path = operators_path(settings)
        note = ""
        if path.exists() and as_target_identities(load_operators(path), aws).digest != current.digest:
            note = f"; {path} differs (`tradeops operators diff`)"
        return Finding("roster", True, f"v{current.version}: {len(current.roles)} operators, break-glass roles "
                                       f"{', '.join(sorted(current.break_glass)) or 'none'}{note}")

    findings.append(_run("roster", roster))

    def identity() -> Finding:
        who = current_identity(settings, aws)
        current = Roster(aws).current()
        roles = sorted(current.roles_of(who.name)) if current else []
        return Finding("identity", True, f"{who.name} (from {who.source}); roles {', '.join(roles) or 'none'}")

    findings.append(_run("identity", identity))

    def brokers() -> Finding:
        bad = []
        for provider in ("primary", "secondary"):
            health = inflight.broker_health(settings, aws, provider)
            if not health["healthy"]:
                bad.append(f"{provider}: {health['error']}")
        if bad:
            return Finding("brokers", False, "; ".join(bad),
                           "check the broker's status page; `tradeops runbook plan failover` if the primary is down")
        return Finding("brokers", True, "primary and secondary answer their health checks")

    findings.append(_run("brokers", brokers))

    def flags() -> Finding:
        values = Flags(aws).read()
        text = f"processing {values.processing}, mode {values.mode}, active {values.active}, trickle {values.trickle}"
        if values.processing != "running":
            return Finding("flags", False, text + ": workers take no orders",
                           "finish the runbook that paused them, or `tradeops runbook run ...`")
        return Finding("flags", True, text)

    findings.append(_run("flags", flags))

    def dead_letters() -> Finding:
        depth = figures.queue_figures(aws)["dlq"]["visible"]
        if depth:
            return Finding("dead letters", False, f"{depth} message(s) in the dead-letter queue",
                           "inspect them (each is an order that failed repeatedly) and redrive or reject")
        return Finding("dead letters", True, "the dead-letter queue is empty")

    findings.append(_run("dead letters", dead_letters))

    def audit() -> Finding:
        result = AuditLog(aws).verify()
        if not result.ok:
            return Finding("audit chain", False, result.summary(), "treat it as an incident: compare with the backups "
                                                                    "(point-in-time recovery) and report it")
        return Finding("audit chain", True, result.summary())

    findings.append(_run("audit chain", audit))

    def clock() -> Finding:
        stamped = aws.caller().get("date")
        if not stamped:
            return Finding("clock", True, "AWS did not stamp its answer; skew unknown")
        skew = (utcnow() - parsedate_to_datetime(stamped)).total_seconds()
        if abs(skew) > MAX_SKEW_SECONDS:
            return Finding("clock", False, f"this machine is {skew:+.1f} s off AWS's clock",
                           "synchronise the clock (NTP: `timedatectl set-ntp true`)")
        return Finding("clock", True, f"within {MAX_SKEW_SECONDS:g} s of AWS's clock ({skew:+.1f} s)")

    findings.append(_run("clock", clock))
    if target.kind == "aws":
        findings.extend(segregation(aws))
    return findings


def segregation(aws: Aws) -> list[Finding]:
    """One finding per segregation-of-duties control the deployed account holds or lacks (:mod:`.controls`)."""
    try:
        current = Roster(aws).current()
        deployed = read_deployed(aws, glass_holders=break_glass_users(current) if current else None)
    except TradeopsError as exc:
        return [Finding("segregation of duties", False, str(exc), "see the message")]
    fix = "deploy deploy/template.yaml as shipped (`tradeops deploy`); docs/architecture.md, \"Who may do what\""
    return [Finding(f"control: {c.control}", c.in_place, c.why, None if c.in_place else fix)
            for c in judge(deployed, names_for(aws.settings))]
