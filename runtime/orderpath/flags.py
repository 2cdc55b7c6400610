"""The control flags in SSM Parameter Store (docs/architecture.md, "Control flags").

Readers get a cached view refreshed at most every ``flag_refresh_seconds`` (≤ 1 s): one
GetParameters call for all four flags, so a flag flip reaches every worker within a second
while flag reads cost next to nothing per order. Writers change one flag and record who did.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from tradeops.runtime.orderpath.routing import MODES, PROVIDERS
from tradeops.runtime.platform.aws import Aws, aws_errors
from tradeops.runtime.platform.errors import BadInput, OperationFailed
from tradeops.runtime.platform.events import EventLog
from tradeops.runtime.platform.names import Names, names_for

__all__ = ["FLAGS", "FlagCache", "FlagValues", "Flags", "validate_flag"]

PROCESSING = ("running", "paused")
# flag name → allowed values (None = validated by a function below); the routing values are routing's own
FLAGS: dict[str, tuple[str, ...] | None] = {"processing": PROCESSING, "mode": MODES, "active": PROVIDERS,
                                            "trickle": None}


def validate_flag(name: str, value: str) -> str:
    """Return the canonical value of a flag, or raise BadInput with the reason."""
    if name not in FLAGS:
        raise BadInput(f"unknown flag {name!r} (one of {', '.join(FLAGS)})")
    value = str(value).strip().lower()
    allowed = FLAGS[name]
    if allowed is not None:
        if value not in allowed:
            raise BadInput(f"flag {name} must be one of {', '.join(allowed)}, not {value!r}")
        return value
    try:
        share = float(value)
    except ValueError:
        raise BadInput(f"flag trickle must be a number between 0 and 1, not {value!r}") from None
    if not 0.0 <= share <= 1.0:
        raise BadInput(f"flag trickle must be between 0 and 1, not {value}")
    return value


@dataclass(frozen=True)
class FlagValues:
    processing: str
    mode: str
    active: str
    trickle: float
    read_at: float  # monotonic seconds

    def as_dict(self) -> dict[str, Any]:
        return {"processing": self.processing, "mode": self.mode, "active": self.active,
                "trickle": self.trickle}


def _param_name(names: Names, flag: str) -> str:
    return {"processing": names.processing_param, "mode": names.mode_param,
            "active": names.active_param, "trickle": names.trickle_param}[flag]


class Flags:
    """Direct access to the flags (no cache): for operators, runbooks and status."""

    def __init__(self, aws: Aws, names: Names | None = None) -> None:
        self.aws = aws
        self.names = names or names_for(aws.settings)

    def read(self) -> FlagValues:
        params = {flag: _param_name(self.names, flag) for flag in FLAGS}
        with aws_errors("read control flags"):
            got = self.aws.ssm.get_parameters(Names=list(params.values()))
        by_name = {p["Name"]: p["Value"] for p in got.get("Parameters", [])}
        missing = [n for n in params.values() if n not in by_name]
        if missing:
            raise OperationFailed(f"control flags missing in SSM: {', '.join(missing)} (is the stack deployed?)")
        values = {flag: by_name[name].strip().lower() for flag, name in params.items()}
        # A garbage value in SSM is treated as the safe default rather than crashing every worker.
        try:
            trickle = float(validate_flag("trickle", values["trickle"]))
        except BadInput:
            trickle = 0.0
        return FlagValues(
            processing=values["processing"] if values["processing"] in PROCESSING else "paused",
            mode=values["mode"] if values["mode"] in MODES else "manual",
            active=values["active"] if values["active"] in PROVIDERS else "primary",
            trickle=trickle,
            read_at=time.monotonic(),
        )

    def set(self, flag: str, value: str, *, actor: str | None = None) -> str:
        """Set one flag. A change is published as a ``flag_set`` event (time, before, after, who)."""
        canonical = validate_flag(flag, value)
        name = _param_name(self.names, flag)
        with aws_errors(f"set flag {flag}"):
            try:
                before = self.aws.ssm.get_parameter(Name=name)["Parameter"]["Value"]
            except self.aws.ssm.exceptions.ParameterNotFound:
                before = None
            self.aws.ssm.put_parameter(Name=name, Value=canonical, Type="String", Overwrite=True)
        if before != canonical:
            EventLog(self.aws, source=actor or "unknown", names=self.names, echo=False).emit(
                "flag_set", metric=("FlagChanged", 1.0), dimensions={"Flag": flag},
                flag=flag, before=before, after=canonical, actor=actor or "unknown")
        return canonical


class FlagCache:
    """A worker's view of the flags, never older than ``max_age`` seconds when read."""

    def __init__(self, flags: Flags, max_age: float) -> None:
        self._flags = flags
        self._max_age = max_age
        self._lock = threading.Lock()
        self._values: FlagValues | None = None
        self.reads = 0

    def get(self) -> FlagValues:
        with self._lock:
            now = time.monotonic()
            if self._values is None or now - self._values.read_at >= self._max_age:
                try:
                    self._values = self._flags.read()
                    self.reads += 1
                except OperationFailed:
                    if self._values is None:
                        raise
                    # Keep acting on the last known flags for one more interval rather than stopping.
            return self._values
