"""Settings, AWS clients and the caller's identity, as every command resolves them.

Commands act on the stack `tradeops up` started (its state file fills in the endpoints), or on
what the settings name.
"""

from __future__ import annotations

from tradeops.runbooks.identity import Identity, Operators, current_identity, load_operators, operators_path
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.platform.statefile import resolve_settings

__all__ = ["Context", "context"]


class Context:
    """One command's view of the world: settings with the stack's endpoints, and lazily made clients."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._aws: Aws | None = None

    @property
    def aws(self) -> Aws:
        if self._aws is None:
            self._aws = Aws(self.settings)
        return self._aws

    def identity(self) -> Identity:
        """Who runs this command (STS on AWS; TRADEOPS_OPERATOR or the OS user on the local stack)."""
        return current_identity(self.settings, self.aws)

    def operators(self) -> Operators:
        """The operators file (identity → roles)."""
        return load_operators(operators_path(self.settings))


def context() -> Context:
    """The context of the command being run."""
    return Context(resolve_settings())
