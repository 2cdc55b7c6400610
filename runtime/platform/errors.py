"""The tradeops exception hierarchy.

Every error an operator or a script can see derives from ``TradeopsError``; the CLI turns
it into one line and an exit code, never a traceback::

    TradeopsError
    ├── BadInput                 (exit 2) the request, file or argument is wrong
    │   └── ConfigError          settings or configuration file are invalid
    ├── CheckFailed              (exit 1) a check, drill or verification did not pass
    ├── OperationFailed          (exit 1) something we tried to do did not work
    │   ├── NotFound             a named thing (order, execution, step) does not exist
    │   ├── Refused              the rules refuse it: a missing role, four-eyes, the wrong moment
    │   ├── NoTarget             no local stack is up and no AWS target was chosen
    │   ├── StackError           the local stack could not start or is not up
    │   ├── AwsError             an AWS call failed for a reason other than our input
    │   └── ProviderError        a broker call failed (see tradeops.runtime.orderpath.providers for the kinds)
    └── Interrupted              (exit 130) Ctrl-C; what was interrupted says how to continue

"Not found" is a failed operation, not bad usage: the command was well formed, the thing it
names is not there (any more).
"""

from __future__ import annotations

__all__ = [
    "AwsError",
    "BadInput",
    "CheckFailed",
    "ConfigError",
    "Interrupted",
    "NoTarget",
    "NotFound",
    "OperationFailed",
    "ProviderError",
    "Refused",
    "StackError",
    "TradeopsError",
    "reason_of",
]


class TradeopsError(Exception):
    """Root of every error tradeops raises on purpose."""

    exit_code = 1


class BadInput(TradeopsError):
    """The input (argument, file, request) is invalid; nothing was changed."""

    exit_code = 2


class ConfigError(BadInput):
    """Settings or a configuration file are invalid."""


class CheckFailed(TradeopsError):
    """A check, verification or drill ran and did not pass."""

    exit_code = 1


class OperationFailed(TradeopsError):
    """An operation was attempted and failed."""

    exit_code = 1


class NotFound(OperationFailed):
    """A named object does not exist."""


class Refused(OperationFailed):
    """The rules refuse the operation: the caller lacks the role, four-eyes forbids it, or it is too early or
    too late (an approval before it was requested, a decision once the action runs). Nothing was changed."""


class NoTarget(OperationFailed):
    """No local stack is up and nobody chose AWS: the command refuses to guess (and sends nothing anywhere)."""


class StackError(OperationFailed):
    """The local stack failed to start, or is not running."""


class AwsError(OperationFailed):
    """An AWS call failed for a reason other than a rule we enforce."""


class ProviderError(OperationFailed):
    """A broker call failed."""


class Interrupted(TradeopsError):
    """Ctrl-C: the work stopped where it was, and the message says how to pick it up again."""

    exit_code = 130


def reason_of(exc: BaseException) -> str:
    """One line a person can read: our own errors as they are, anything else with its type."""
    if isinstance(exc, TradeopsError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
