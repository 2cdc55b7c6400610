"""`tradeops env`: the exports that plain `locust`, `chaos` and the aws CLI need to reach the local stack."""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from tradeops.commands.output import JsonOpt, out, print_json
from tradeops.runtime.platform.errors import StackError
from tradeops.runtime.platform.settings import load_settings
from tradeops.runtime.platform.statefile import pid_alive, read_state

__all__ = ["env"]


def stack_exports() -> dict[str, str]:
    """Environment variables that point standard tools at the running local stack."""
    settings = load_settings()
    state = read_state(settings.state_file)
    if not state or state.get("status") != "ready" or not pid_alive(state.get("supervisor_pid")):
        raise StackError("the stack is not up (run `tradeops up`)")
    exports = {"TRADEOPS_STATE_DIR": str(settings.state_dir.resolve())}
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
    return exports


def env(
    as_json: JsonOpt = False,
    unset: Annotated[bool, typer.Option("--unset", help="Print the commands that remove the exports.")] = False,
) -> None:
    """Print shell exports for the running stack: eval "$(tradeops env)" before plain locust, chaos or aws.

    Example: eval "$(tradeops env)" && locust -f loadtests/locustfile.py --headless -u 5 -r 5 -t 10s
    """
    exports = stack_exports()
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
