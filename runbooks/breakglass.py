"""Break-glass: one person changing by hand what a four-eyes runbook guards, openly.

A direct change of a routing flag (``flags set active|mode|processing``) or a declaration of void
(``orders declare-void --break-glass``) skips four-eyes. So it is allowed only to an identity that
holds a break-glass role in the shared roster, only with a reason (the rule is
:func:`tradeops.runbooks.approvals.break_glass_refusal`), and it is never quiet: the change is
recorded in the hash-chained audit log *before* it is made (if the audit cannot record it, nothing
changes), and an alert naming the identity and the reason goes to the alert topic right after, so
the people on call know at once that someone pulled the lever by hand.

The trickle share is not routing: it stays a plain flag change (recorded as a ``flag_set`` event).
"""

from __future__ import annotations

from typing import Any

from tradeops.runbooks.approvals import break_glass_refusal
from tradeops.runbooks.audit import AuditLog
from tradeops.runbooks.eventkinds import BREAK_GLASS_DECLARE_VOID, BREAK_GLASS_FLAG_SET
from tradeops.runbooks.identity import Identity, Operators
from tradeops.runtime.orderpath import inflight
from tradeops.runtime.orderpath.flags import Flags, validate_flag
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import Refused
from tradeops.runtime.platform.events import EventLog

__all__ = ["GUARDED_FLAGS", "authorize", "declare_void", "set_flag"]

GUARDED_FLAGS = ("processing", "mode", "active")
"""Flags a runbook changes only under four-eyes: by hand they are break-glass. (``trickle`` is not.)"""


def authorize(identity: Identity, roster: Operators, reason: str) -> None:
    """Refuse (exit 1, nothing changed) unless ``identity`` may break the glass, with a reason."""
    why = break_glass_refusal(identity.name, roster.roles_of(identity.name), roster.break_glass, reason)
    if why:
        raise Refused(f"refused: {why}")


def _record(aws: Aws, kind: str, identity: Identity, roster: Operators, facts: dict[str, Any]) -> None:
    AuditLog(aws).append(kind, actor=identity.name, identity_source=identity.source,
                         data={**facts, "roles": sorted(roster.roles_of(identity.name)),
                               "roster_digest": roster.digest})


def _alert(aws: Aws, identity: Identity, what: str, facts: dict[str, Any]) -> None:
    EventLog(aws, source=identity.name, echo=False).emit("break_glass", stream="break_glass", actor=identity.name,
                                                         identity_source=identity.source, what=what, **facts)


def set_flag(aws: Aws, *, identity: Identity, roster: Operators | None, flag: str, value: str, reason: str,
             target: str) -> dict[str, Any]:
    """Set a flag by hand: break-glass for GUARDED_FLAGS (authorised by ``roster``, audited, alerted), plain for
    the rest (``roster`` unused)."""
    canonical = validate_flag(flag, value)
    flags = Flags(aws)
    before = flags.read().as_dict()[flag]
    facts = {"flag": flag, "before": before, "after": canonical, "reason": reason, "target": target}
    if flag not in GUARDED_FLAGS:
        flags.set(flag, canonical, actor=identity.name)
        return {**facts, "break_glass": False}
    if roster is None:
        raise Refused(f"refused: flag {flag} is break-glass and no roster was given to authorise it")
    authorize(identity, roster, reason)
    _record(aws, BREAK_GLASS_FLAG_SET, identity, roster, facts)
    flags.set(flag, canonical, actor=identity.name)
    _alert(aws, identity, f"flag {flag}: {before} -> {canonical}", facts)
    return {**facts, "break_glass": True}


def declare_void(aws: Aws, *, identity: Identity, roster: Operators, provider: str, reason: str,
                 target: str) -> dict[str, Any]:
    """Declare a broker's in-flight orders void by hand (break-glass); the broker is asked once more first."""
    authorize(identity, roster, reason)
    _record(aws, BREAK_GLASS_DECLARE_VOID, identity, roster, {"provider": provider, "reason": reason,
                                                                  "target": target})
    result = inflight.void_in_flight(aws, provider, actor=identity.name, reason=f"{reason} (break-glass)")
    _alert(aws, identity, f"declared {len(result['released'])} order(s) void at {provider}",
           {"provider": provider, "reason": reason, "released": len(result["released"]),
            "settled": len(result["settled"]), "target": target})
    return {**result, "reason": reason, "declared_by": identity.name, "identity_source": identity.source,
            "break_glass": True}
