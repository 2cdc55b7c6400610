"""The local stack's state file: what `tradeops up` started and where.

The supervisor (:mod:`tradeops.runtime.stack.supervisor`) writes it; every command and service
reads it to find the stack without flags (:func:`resolve_settings`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tradeops.runtime.platform.errors import StackError
from tradeops.runtime.platform.settings import Settings, load_settings

__all__ = ["StackState", "clear_state", "pid_alive", "read_state", "resolve_settings", "write_state"]

StackState = dict[str, Any]


def write_state(path: Path, state: StackState) -> None:
    """Write the state atomically (a reader never sees half a file), readable only by the user."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".stack-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2, sort_keys=True)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_state(path: Path) -> StackState | None:
    """The state, or None when no stack has been started from this state directory."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        state = json.loads(text)
    except json.JSONDecodeError:
        raise StackError(f"stack state file {path} is corrupt; remove it or run `tradeops down`") from None
    return state if isinstance(state, dict) else None


def clear_state(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def resolve_settings(settings: Settings | None = None) -> Settings:
    """Settings, with the running local stack's endpoint filled in when none was configured."""
    settings = settings or load_settings()
    state = read_state(settings.state_file)
    if not state or state.get("status") != "ready":
        return settings
    update: dict[str, Any] = {}
    if settings.aws_endpoint_url is None and state.get("aws_endpoint") and state.get("local"):
        update["aws_endpoint_url"] = state["aws_endpoint"]
    for provider, broker in state.get("brokers", {}).items():
        if getattr(settings, f"{provider}_url", "unset") is None:
            update[f"{provider}_url"] = broker["url"]
            update[f"{provider}_wire"] = broker["wire"]
            update[f"{provider}_control_url"] = broker["control"]
    if settings.prices_url is None and state.get("prices"):
        update["prices_url"] = state["prices"]
    if settings.intake_url is None and state.get("intake"):
        update["intake_url"] = state["intake"]
    if settings.intake_token is None and state.get("intake_token_file"):
        try:
            update["intake_token"] = Path(state["intake_token_file"]).read_text(encoding="utf-8").strip()
        except OSError:
            pass
    return settings.model_copy(update=update) if update else settings
