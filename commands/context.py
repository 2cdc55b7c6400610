"""Settings, the target, AWS clients, the roster and the caller's identity, as every command resolves them.

The target is decided in one place (:func:`tradeops.runtime.platform.statefile.resolve_target`): the
local stack when one is up, AWS only when asked (``tradeops --aws``, ``TRADEOPS_TARGET=aws`` or the
``target`` setting), otherwise the command stops with one line before any AWS client exists.
Commands that change something print their target first (:meth:`Context.announce`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tradeops.commands.output import out

if TYPE_CHECKING:
    from tradeops.runbooks.identity import Identity, Operators
    from tradeops.runtime.platform.aws import Aws
    from tradeops.runtime.platform.settings import Settings
    from tradeops.runtime.platform.statefile import Target

# Every command imports this module, and most need only part of it: boto3 (Aws), the roster and
# the settings are imported where they are used (see tradeops.cli on start-up time).

__all__ = ["Context", "aws_chosen", "choose_aws", "context"]

# The root `--aws` option of the command line being run; the root callback sets it on every invocation.
_chosen = {"aws": False}


def choose_aws(aws: bool) -> None:
    """Record whether this command line asked for AWS (``tradeops --aws ...``)."""
    _chosen["aws"] = aws


def aws_chosen() -> bool:
    """Whether the root ``--aws`` option was given on this command line."""
    return _chosen["aws"]


class Context:
    """One command's view of the world: its target, settings with the target's endpoints, and lazy clients."""

    def __init__(self, settings: Settings, target: Target) -> None:
        self.settings = settings
        self.target = target
        self._aws: Aws | None = None
        self._account: str | None = None
        self._announced = False

    @property
    def aws(self) -> Aws:
        if self._aws is None:
            from tradeops.runtime.platform.aws import Aws

            self._aws = Aws(self.settings)
        return self._aws

    def target_text(self) -> str:
        """Where changes land: the local endpoint, or the AWS account (from STS) and region."""
        if self.target.kind == "aws" and self._account is None:
            self._account = self.aws.caller()["account"]
        return self.target.describe(self._account)

    def target_json(self) -> dict[str, object]:
        """The target for a --json document (the account only on AWS)."""
        text = self.target_text()
        return {"kind": self.target.kind, "endpoint": self.target.endpoint, "region": self.target.region,
                "account": self._account, "text": text}

    def announce(self, *, quiet: bool = False) -> None:
        """Print the target first, before anything changes (``quiet`` for --json: the JSON carries it)."""
        text = self.target_text()
        if not quiet and not self._announced:
            out.print(f"target: {text}", markup=False)
        self._announced = True

    def identity(self) -> Identity:
        """Who runs this command (the person behind STS on AWS; TRADEOPS_OPERATOR or the OS user locally)."""
        from tradeops.runbooks.identity import current_identity

        return current_identity(self.settings, self.aws)

    def operators(self) -> Operators:
        """The shared roster (identity → roles): never a file of the caller's own."""
        from tradeops.runbooks.roster import Roster

        return Roster(self.aws).require()


def context() -> Context:
    """The context of the command being run; NoTarget (exit 1) when it has nothing to act on."""
    from tradeops.runtime.platform.settings import load_settings
    from tradeops.runtime.platform.statefile import resolve_target

    settings, target = resolve_target(load_settings(), aws=aws_chosen())
    return Context(settings, target)
