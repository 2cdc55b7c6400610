"""The local stack's state file: what `tradeops up` started and where, and the exports that point tools at it.

The supervisor (:mod:`tradeops.runtime.stack.supervisor`) writes it; every command and service
reads it to find the stack without flags (:func:`resolve_target` for a command,
:func:`resolve_settings` for a service).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tradeops.runtime.platform.errors import ConfigError, NoTarget, StackError
from tradeops.runtime.platform.settings import Settings, load_settings

__all__ = ["StackState", "Target", "clear_state", "operator_key", "pid_alive", "read_keys", "read_state",
           "resolve_settings", "resolve_target", "stack_exports", "write_state"]

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


@dataclass(frozen=True)
class Target:
    """What a command acts on: the local stack, an endpoint someone configured, or real AWS."""

    kind: Literal["local", "endpoint", "aws"]
    region: str
    endpoint: str | None = None

    def describe(self, account: str | None = None) -> str:
        """One line for the operator: where a change is about to land."""
        if self.kind == "local":
            return f"the local stack at {self.endpoint} (region {self.region})"
        if self.kind == "endpoint":
            return f"the AWS endpoint {self.endpoint} (TRADEOPS_AWS_ENDPOINT_URL, region {self.region})"
        return f"AWS account {account or '(unknown)'}, region {self.region}"


def _ready_state(settings: Settings) -> StackState | None:
    state = read_state(settings.state_file)
    if not state or state.get("status") != "ready" or not pid_alive(state.get("supervisor_pid")):
        return None
    return state


def _aws_region(settings: Settings) -> str:
    # TRADEOPS_REGION wins; else boto3's own resolution (AWS_REGION, AWS_DEFAULT_REGION, the profile).
    if "region" in settings.model_fields_set:
        return settings.region
    import boto3  # every command reads this module; only a command bound for AWS needs boto3

    return boto3.session.Session().region_name or settings.region


def resolve_target(settings: Settings | None = None, *, aws: bool = False) -> tuple[Settings, Target]:
    """The settings a command acts with, and its target; NoTarget (exit 1) when there is none.

    The local stack when one is up; an endpoint someone configured (TRADEOPS_AWS_ENDPOINT_URL); real
    AWS only when asked (``aws``, i.e. ``--aws``, or TRADEOPS_TARGET=aws). With none of these the
    command refuses before any AWS client exists, so nothing leaves the machine.
    """
    settings = settings or load_settings()
    want_aws = aws or settings.target == "aws"
    state = _ready_state(settings)
    if want_aws:
        # A local stack's brokers and emulator are never production's: take nothing from an emulator stack.
        if state and not state.get("local"):
            settings = _fill(settings, state)
        settings = settings.model_copy(update={"region": _aws_region(settings), "target": "aws"})
        return settings, Target("aws", settings.region, settings.aws_endpoint_url)
    if settings.aws_endpoint_url is not None:
        if state:
            settings = _fill(settings, state)
        return settings, Target("endpoint", settings.region, settings.aws_endpoint_url)
    if state and state.get("local"):
        settings = _fill(settings, state)
        return settings, Target("local", settings.region, settings.aws_endpoint_url)
    if state:  # a stack started with `up --aws`: its operator chose AWS then
        settings = _fill(settings, state)
        return settings, Target("aws", settings.region)
    if settings.target == "local":
        raise NoTarget("no local stack is up (TRADEOPS_TARGET=local): start one with `tradeops up`")
    raise NoTarget("no local stack is up and no target was chosen: start one with `tradeops up`, "
                   "or act on AWS with `tradeops --aws ...` (or TRADEOPS_TARGET=aws)")


def resolve_settings(settings: Settings | None = None) -> Settings:
    """Settings, with the running local stack's endpoint filled in when none was configured (services)."""
    settings = settings or load_settings()
    state = read_state(settings.state_file)
    if not state or state.get("status") != "ready":
        return settings
    return _fill(settings, state)


def _fill(settings: Settings, state: StackState) -> Settings:
    update: dict[str, Any] = {}
    if settings.aws_endpoint_url is None and state.get("aws_endpoint") and state.get("local"):
        update["aws_endpoint_url"] = state["aws_endpoint"]
    for provider, broker in state.get("brokers", {}).items():
        if getattr(settings, f"{provider}_url", "unset") is None:
            update[f"{provider}_url"] = broker["url"]
            update[f"{provider}_wire"] = broker["wire"]
            update[f"{provider}_control_url"] = broker["control"]
            if broker.get("proxy"):  # the workers call the broker through a fault proxy (its control address)
                update[f"{provider}_proxy_url"] = broker["proxy"]
                update["fault_proxy"] = True
    if settings.gate_url is None and state.get("gate"):
        update["gate_url"] = state["gate"]
    if state.get("enforce") and state.get("local") and not settings.emulator_access_key_id:
        key = operator_key(settings, state)
        update.update(enforce=True, emulator_access_key_id=key["access_key_id"],
                      emulator_secret_access_key=key["secret_access_key"])
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


def read_keys(path: Path) -> dict[str, Any]:
    """The keys of an enforcing stack's principals (runtime/stack/principals.py writes them); ConfigError when
    they cannot be read."""
    try:
        keys = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the stack's keys at {path} ({type(exc).__name__}): run `tradeops down` "
                          "and `tradeops up --enforce` again") from None
    return keys if isinstance(keys, dict) else {}


def operator_key(settings: Settings, state: StackState) -> dict[str, str]:
    """The key of the person this command runs as (TRADEOPS_OPERATOR, else the OS user) on a stack that enforces
    IAM; ConfigError (exit 2) naming the people it has keys for when it has none for them."""
    name = (settings.operator or getpass.getuser()).strip()
    people = read_keys(Path(state.get("keys_file") or settings.state_dir / "keys.json")).get("people") or {}
    # Names compare as roster identities do, ignoring case (runbooks/approvals.py identity_key).
    found = next((key for person, key in people.items() if person.casefold() == name.casefold()), None)
    if found is None:
        raise ConfigError(f"the local stack enforces IAM and has no key for operator {name!r}: set TRADEOPS_OPERATOR "
                          f"to one of its people ({', '.join(sorted(people)) or 'none'}), the operators file's at "
                          "`tradeops up --enforce`")
    return dict(found)


def stack_exports(settings: Settings) -> dict[str, str]:
    """Environment variables that point standard tools (locust, chaos, the aws CLI) at the running local stack."""
    state = read_state(settings.state_file)
    if not state or state.get("status") != "ready" or not pid_alive(state.get("supervisor_pid")):
        raise StackError("the stack is not up (run `tradeops up`)")
    exports = {"TRADEOPS_STATE_DIR": str(settings.state_dir.resolve())}
    # The prefixes the stack was started with, not this shell's: an experiment's flags and a plain tool's tables
    # must be the ones its workers read.
    exports["TRADEOPS_NAME_PREFIX"] = str(state.get("name_prefix") or settings.name_prefix)
    exports["TRADEOPS_PARAM_PREFIX"] = str(state.get("param_prefix") or settings.param_prefix)
    if state.get("intake"):
        exports["TRADEOPS_INTAKE_URL"] = state["intake"]
    if state.get("intake_token_file"):
        exports["TRADEOPS_INTAKE_TOKEN_FILE"] = state["intake_token_file"]
    if state.get("prices"):
        exports["TRADEOPS_PRICES_URL"] = state["prices"]
    region = state.get("region") or settings.region
    exports.update({"AWS_REGION": region, "AWS_DEFAULT_REGION": region})
    if state.get("local") and state.get("aws_endpoint"):
        # The emulator: boto3 (chaostoolkit-aws) and the aws CLI honour AWS_ENDPOINT_URL; it takes
        # any credentials, and fixed dummy ones keep real ones from being sent to it.
        exports.update({"AWS_ENDPOINT_URL": state["aws_endpoint"], "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing"})
        if state.get("enforce"):  # the emulator takes only its own users' keys: yours, as TRADEOPS_OPERATOR names you
            key = operator_key(settings, state)
            exports.update({"AWS_ACCESS_KEY_ID": key["access_key_id"],
                            "AWS_SECRET_ACCESS_KEY": key["secret_access_key"]})
    if state.get("gate"):
        exports["TRADEOPS_GATE_URL"] = state["gate"]
    return exports
