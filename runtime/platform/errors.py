"""The tradeops exception hierarchy.

Every error an operator or a script can see derives from ``TradeopsError``; the CLI turns
it into one line and an exit code, never a traceback::

    TradeopsError
    ├── BadInput                 (exit 2) the request, file or argument is wrong
    │   ├── ConfigError          settings or configuration file are invalid
    │   └── NotFound             a named thing (order, execution, step) does not exist
    ├── CheckFailed              (exit 1) a check, drill or verification did not pass
    └── OperationFailed          (exit 1) something we tried to do did not work
        ├── StackError           the local stack could not start or is not up
        ├── AwsError             an AWS call failed for a reason other than our input
        └── ProviderError        a broker call failed (see tradeops.runtime.orderpath.providers for the kinds)
"""

from __future__ import annotations

__all__ = [
    "AwsError",
    "BadInput",
    "CheckFailed",
    "ConfigError",
    "NotFound",
    "OperationFailed",
    "ProviderError",
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


class NotFound(BadInput):
    """A named object does not exist."""


class CheckFailed(TradeopsError):
    """A check, verification or drill ran and did not pass."""

    exit_code = 1


class OperationFailed(TradeopsError):
    """An operation was attempted and failed."""

    exit_code = 1


class StackError(OperationFailed):
    """The local stack failed to start, or is not running."""


class AwsError(OperationFailed):
    """An AWS call failed for a reason other than a rule we enforce."""


class ProviderError(OperationFailed):
    """A broker call failed."""


def reason_of(exc: BaseException) -> str:
    """One line a person can read: our own errors as they are, anything else with its type."""
    if isinstance(exc, TradeopsError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
