"""The ``tradeops`` command: the root typer app over the command groups in :mod:`tradeops.commands`.

Each group parses, calls the packages, renders. Errors from the packages arrive as
``TradeopsError`` and leave as one line on stderr with the error's exit code (2 bad input,
1 failed check or operation, not found included); typer's own usage errors exit 2. An AWS SDK
error that slipped past the adapters is still turned into one line here, never a traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from tradeops import __version__
from tradeops.commands import (
    audit,
    deploy,
    doctor,
    drill,
    env,
    evidence,
    exposure,
    flags,
    load,
    metrics,
    operators,
    orders,
    prices,
    reimbursements,
    report,
    runbook,
    stack,
)
from tradeops.commands import helptext as _helptext  # noqa: F401  (sets how every --help labels parameters)
from tradeops.commands.context import choose_aws
from tradeops.commands.output import err, out
from tradeops.runtime.platform.aws import foreign_error
from tradeops.runtime.platform.errors import TradeopsError

__all__ = ["app", "main"]

app = typer.Typer(
    name="tradeops",
    help="Keep order execution alive when a broker fails, and prove it to the regulator.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
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


# The stack.
app.command()(stack.up)
app.command()(stack.status)
app.command()(stack.down)
app.command()(doctor.doctor)
app.command("metrics")(metrics.metrics)
app.command("deploy")(deploy.deploy)
# Operations: runbooks, the audit log, orders and flags.
app.add_typer(runbook.runbook_app, name="runbook")
app.add_typer(audit.audit_app, name="audit")
app.add_typer(orders.orders_app, name="orders")
app.add_typer(flags.flags_app, name="flags")
app.add_typer(operators.operators_app, name="operators")
# Liability: prices, exposure, reimbursements.
app.command("exposure")(exposure.exposure)
app.add_typer(prices.prices_app, name="prices")
app.add_typer(reimbursements.reimbursements_app, name="reimbursements")
# Load: scenarios under Locust, and the exports plain tools need to reach the stack.
app.add_typer(load.load_app, name="load")
app.command("env")(env.env)
# Drills: Chaos Toolkit experiments under load, their schedule, and the newcomer's demo.
app.add_typer(drill.drill_app, name="drill")
app.command("demo")(drill.demo)
# Reports for the FCA, and the evidence packs that keep them.
app.add_typer(report.report_app, name="report")
app.add_typer(evidence.evidence_app, name="evidence")


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
        ours = foreign_error(exc, "AWS")
        if ours is None:
            raise
        err.print(f"error: {ours}", markup=False)
        sys.exit(ours.exit_code)


if __name__ == "__main__":
    main()
