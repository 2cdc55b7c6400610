"""`tradeops env`: the exports that plain `locust`, `chaos` and the aws CLI need to reach the local stack."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from tradeops.commands.output import JsonOpt, out, print_json
from tradeops.runtime.platform.settings import load_settings
from tradeops.runtime.platform.statefile import stack_exports

__all__ = ["env"]


def env(
    as_json: JsonOpt = False,
    unset: Annotated[bool, typer.Option("--unset", help="Print the commands that remove the exports.")] = False,
) -> None:
    """Print shell exports for the running stack: eval "$(tradeops env)" before plain locust, chaos or aws.

    Example: eval "$(tradeops env)" && locust -f loadtests/locustfile.py --headless -u 5 -r 5 -t 10s
    """
    exports = stack_exports(load_settings())
    if as_json:
        print_json(exports)
        return
    if unset:
        out.print(f"unset {' '.join(exports)}", markup=False, highlight=False)
        return
    if "TRADEOPS_INTAKE_TOKEN_FILE" not in exports:
        out.print("# the intake token came from TRADEOPS_INTAKE_TOKEN when the stack started", markup=False)
    for name, value in exports.items():
        out.print(f"export {name}={shlex.quote(value)}", markup=False, highlight=False, soft_wrap=True)
