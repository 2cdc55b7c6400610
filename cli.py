"""The ``tradeops`` command: the root typer app over the command groups in :mod:`tradeops.commands`.

Each group parses, calls the packages, renders. Errors from the packages arrive as
``TradeopsError`` and leave as one line on stderr with the error's exit code (2 bad input,
1 failed check or operation, not found included); typer's own usage errors exit 2. An AWS SDK
error that slipped past the adapters is still turned into one line here, never a traceback.

Every operator command and every test that runs ``tradeops`` pays this module's imports, so the
root mounts its commands lazily (:data:`COMMANDS`): a command's module, with boto3, Jinja2,
matplotlib or Chaos Toolkit behind it, is imported when that command runs (``--help`` imports them
all). Typer builds each one exactly as ``app.command()`` or ``app.add_typer()`` would.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Annotated, Any

import typer
import typer.main
from typer.core import TyperGroup

from tradeops.commands import helptext as _helptext  # noqa: F401  (sets how every --help labels parameters)
from tradeops.commands.context import choose_aws
from tradeops.commands.output import err, out
from tradeops.runtime.platform.errors import TradeopsError

__all__ = ["COMMANDS", "app", "main"]

COMMANDS: dict[str, str] = {
    # Commands, then groups: the order of `tradeops --help`.
    # The stack.
    "up": "tradeops.commands.stack:up",
    "status": "tradeops.commands.stack:status",
    "down": "tradeops.commands.stack:down",
    "doctor": "tradeops.commands.doctor:doctor",
    "metrics": "tradeops.commands.metrics:metrics",
    "deploy": "tradeops.commands.deploy:deploy",
    # Liability: exposure; load's exports for plain tools; the newcomer's demo drill.
    "exposure": "tradeops.commands.exposure:exposure",
    "env": "tradeops.commands.env:env",
    "demo": "tradeops.commands.drill:demo",
    # Operations: runbooks, the audit log, orders, flags and operators.
    "runbook": "tradeops.commands.runbook:runbook_app",
    "audit": "tradeops.commands.audit:audit_app",
    "orders": "tradeops.commands.orders:orders_app",
    "flags": "tradeops.commands.flags:flags_app",
    "operators": "tradeops.commands.operators:operators_app",
    # Liability: prices and reimbursements.
    "prices": "tradeops.commands.prices:prices_app",
    "reimbursements": "tradeops.commands.reimbursements:reimbursements_app",
    # Load and drills: Locust scenarios, Chaos Toolkit experiments under load and their schedule.
    "load": "tradeops.commands.load:load_app",
    "drill": "tradeops.commands.drill:drill_app",
    # Reports for the FCA, and the evidence packs that keep them.
    "report": "tradeops.commands.report:report_app",
    "evidence": "tradeops.commands.evidence:evidence_app",
}
"""Every command of the root, by name: ``module:attribute`` of its function or its typer group."""


def _as_subcommand() -> None:
    """The callback that makes a holder app a group, so its one entry is built as a subcommand."""


def build_command(name: str) -> Any:
    """The click command ``name`` (of :data:`COMMANDS`), imported and built as typer builds a subcommand."""
    module, _, attribute = COMMANDS[name].partition(":")
    found = getattr(importlib.import_module(module), attribute)
    holder = typer.Typer(add_completion=False)
    holder.callback()(_as_subcommand)
    if isinstance(found, typer.Typer):
        holder.add_typer(found, name=name)
    else:
        holder.command(name)(found)
    group = typer.main.get_command(holder)
    assert isinstance(group, TyperGroup)
    return group.commands[name]


class _LazyCommands(MutableMapping[str, Any]):
    """The root's commands: every name known at once, each command built the first time it is looked up.

    Commands typer built already (one mounted with ``app.command()`` or ``app.add_typer()``) are kept
    and listed after those of :data:`COMMANDS`."""

    def __init__(self, built: Mapping[str, Any]) -> None:
        self._built = dict(built)

    def __getitem__(self, name: str) -> Any:
        if name not in self._built:
            if name not in COMMANDS:
                raise KeyError(name)
            self._built[name] = build_command(name)
        return self._built[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        raise TypeError(f"the root's commands are not removed ({name})")

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self._built if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS.keys() | self._built.keys())


class _Root(TyperGroup):
    """The root group; its commands load on first use (typer's groups read and list them through ``commands``)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _LazyCommands(self.commands)


app = typer.Typer(
    name="tradeops",
    cls=_Root,
    help="Keep order execution alive when a broker fails, and prove it to the regulator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from tradeops import __version__  # read from the package metadata only when asked for

        out.print(f"tradeops {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    aws: Annotated[bool, typer.Option("--aws", help="Act on real AWS (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL "
                                                    "apply), not the local stack. Same as TRADEOPS_TARGET=aws.")]
    = False,
) -> None:
    """Keep order execution alive when a broker fails, and prove it to the regulator.

    Commands act on the local stack when one is up (`tradeops up`), on AWS only when asked
    (--aws or TRADEOPS_TARGET=aws), and otherwise stop with one line. Every command that changes
    something prints its target first. `tradeops doctor` says what is wrong and how to fix it.
    """
    choose_aws(aws)


def main() -> None:
    """Console-script entry point: run the app, turning our errors into one line and an exit code."""
    try:
        app()
    except TradeopsError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        from tradeops.runtime.platform.aws import foreign_error  # botocore: only once something has failed

        ours = foreign_error(exc, "AWS")
        if ours is None:
            raise
        err.print(f"error: {ours}", markup=False)
        sys.exit(ours.exit_code)


if __name__ == "__main__":
    main()
