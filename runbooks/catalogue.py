"""The built-in probes and actions a runbook may name: what each takes and where it lives. Pure data.

Each entry names its function by module and name (``"tradeops.runbooks.actions:set_active_broker"``),
as a Chaos Toolkit experiment names its activities; :mod:`.registry` imports the module the first
time the operation runs. So validating a runbook (names, argument schemas, rollbacks) needs none of
the runtime the operations call, and no module registers itself anywhere.

An entry's ``args`` maps each argument to its JSON Schema (all required unless ``required`` says
which). ``idempotent``: running it twice leaves the world as running it once (safe to run again after
an interruption). ``restore_arg``: the argument that sets the value the action changes; the action
returns ``{"previous": ..., "value": ...}`` and its rollback is the same action given the previous
value. ``sampling``: a probe that watches over a period (``plan`` reads it once instead).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = ["ENTRIES", "SET_ACTIVE_BROKER", "Entry", "Kind"]

Kind = Literal["probe", "action"]


@dataclass(frozen=True)
class Entry:
    name: str
    kind: Kind
    target: str  # "package.module:function"
    description: str
    args: Mapping[str, Any] = field(default_factory=dict)
    required: tuple[str, ...] | None = None
    idempotent: bool = False
    restore_arg: str | None = None
    sampling: bool = False

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the entry's arguments (an object of exactly these)."""
        return {"type": "object", "properties": dict(self.args),
                "required": sorted(self.args) if self.required is None else list(self.required),
                "additionalProperties": False}


_PROVIDER: Final = {"type": "string", "enum": ["primary", "secondary"]}
_DIGEST: Final = {"type": "string", "pattern": "^[0-9a-f]{16,64}$"}
_PROBES: Final = "tradeops.runbooks.probes"
_ACTIONS: Final = "tradeops.runbooks.actions"

SET_ACTIVE_BROKER: Final = "set_active_broker"
"""The action that moves order execution from one broker to the other: the failover itself."""


def _probe(name: str, description: str, **kw: Any) -> Entry:
    # Reading twice is reading once: every probe is idempotent.
    return Entry(name=name, kind="probe", target=f"{_PROBES}:{name}", description=description, idempotent=True, **kw)


def _action(name: str, description: str, **kw: Any) -> Entry:
    return Entry(name=name, kind="action", target=f"{_ACTIONS}:{name}", description=description, **kw)


ENTRIES: Final[tuple[Entry, ...]] = (
    _probe("broker_healthy", "Whether the broker's order API answers its health check now.",
           args={"provider": _PROVIDER}),
    _probe("broker_healthy_for", "Whether the broker stays healthy at every sample over a period (about one a "
                                 "second).",
           args={"provider": _PROVIDER, "seconds": {"type": "number", "minimum": 0, "maximum": 3600}}, sampling=True),
    _probe("processing", "The processing flag: running or paused."),
    _probe("routing_mode", "The routing mode flag: manual or auto."),
    _probe("active_broker", "The active broker flag (manual mode): primary or secondary."),
    _probe("workers_drained", "Whether no worker holds an order in flight (from their heartbeats)."),
    _probe("in_flight_at", "How many orders are SUBMITTING or IN_DOUBT at the broker.", args={"provider": _PROVIDER}),
    _probe("oldest_pending_age_seconds", "Age in seconds of the oldest order not yet final (0 if none)."),
    _probe("roster_proposal_current", "Whether a proposed roster exists and was made against the roster in force "
                                      "now.",
           args={"proposal": _DIGEST}),
    _action("set_processing", "Set the processing flag (paused = quiesce the workers).",
            args={"state": {"type": "string", "enum": ["running", "paused"]}}, idempotent=True, restore_arg="state"),
    _action(SET_ACTIVE_BROKER, "Set the active broker flag (which broker workers send to in manual mode).",
            args={"provider": _PROVIDER}, idempotent=True, restore_arg="provider"),
    _action("set_routing_mode", "Set the routing mode flag (auto = the router picks the broker).",
            args={"mode": {"type": "string", "enum": ["manual", "auto"]}}, idempotent=True, restore_arg="mode"),
    # Asking again only settles what is still open.
    _action("resolve_in_flight", "Ask the broker about every order in flight there and settle the ones it answers "
                                 "for.",
            args={"provider": _PROVIDER}, idempotent=True),
    _action("declare_void", "Declare the broker's in-flight orders void so they may go to the other broker.",
            args={"provider": _PROVIDER, "reason": {"type": "string", "minLength": 3}}),
    _action("apply_roster", "Make a proposed roster the shared roster (refused if the roster changed since the "
                            "proposal).",
            args={"proposal": _DIGEST}),
    # A repeated notice is harmless; a missing one is not.
    _action("notify", "Publish a notice on the alert topic for the named audiences.",
            args={"subject": {"type": "string", "minLength": 1, "maxLength": 100},
                  "message": {"type": "string", "minLength": 1},
                  "audience": {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}},
            idempotent=True),
    # A second synthetic order touches no customer.
    _action("canary", "Post a synthetic order and require it to fill at the expected broker within the timeout.",
            args={"expect_provider": _PROVIDER,
                  "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 600}},
            idempotent=True),
)
