"""tradeops command line: a thin typer shell over the packages.

Each command parses, calls the packages, renders. Errors from the packages arrive as
``TradeopsError`` and leave as one line on stderr with the error's exit code (2 bad input,
1 failed check or operation); typer's own usage errors exit 2.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from runtime.errors import BadInput, TradeopsError
from runtime.settings import load_settings

app = typer.Typer(
    name="tradeops",
    help="Keep order execution alive when a broker fails, and prove it to the regulator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _parse_ports(items: list[str]) -> dict[str, int | None]:
    allowed = {"aws", "primary", "secondary", "intake"}
    ports: dict[str, int | None] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in allowed or not value.isdigit() or not 0 < int(value) < 65536:
            raise BadInput(f"--port expects NAME=PORT with NAME one of {', '.join(sorted(allowed))}: {item!r}")
        ports[name] = int(value)
    return ports


# ---- the stack ------------------------------------------------------------------------------

@app.command()
def up(
    workers: Annotated[int, typer.Option(min=1, max=32, help="Worker processes on the order queue.")] = 2,
    foreground: Annotated[bool, typer.Option(help="Stay attached; Ctrl-C stops everything.")] = False,
    aws: Annotated[bool, typer.Option("--aws", help="Use real AWS (boto3 credential chain), no emulator.")]
    = False,
    port: Annotated[list[str] | None, typer.Option(
        help="Fix a port instead of a free one: aws=4566, primary=…, secondary=…, intake=…")] = None,
) -> None:
    """Start the local stack (AWS emulator, brokers, runtime) and return once all of it is healthy."""
    from runtime import localstack

    settings = load_settings()
    ports = _parse_ports(port or [])
    local = not aws
    if foreground:
        from runtime.stack import pid_alive, read_state

        state = read_state(settings.state_file)
        if state and pid_alive(state.get("supervisor_pid")):
            out.print(f"the stack is already up (since {state.get('started_at')})")
            return
        out.print("starting the stack in the foreground; Ctrl-C stops it")
        raise typer.Exit(localstack.run_supervisor(settings, workers=workers, local=local, ports=ports))
    try:
        state = localstack.launch(settings, workers=workers, local=local, ports=ports)
    except localstack.StackAlreadyUp as exc:
        out.print(str(exc))
        return
    out.print("[bold green]stack is up[/]")
    _render_state(state)
    out.print(f"state: {settings.state_file}   logs: {state.get('log_dir')}")


def _render_state(state: dict[str, Any]) -> None:
    table = Table("component", "where", show_header=True, header_style="bold")
    if state.get("aws_endpoint"):
        table.add_row("aws", f"{state['aws_endpoint']} (region {state.get('region')})")
    for name, broker in sorted(state.get("brokers", {}).items()):
        table.add_row(f"broker {name}", f"{broker['url']}  control {broker['control']}  ({broker['wire']})")
    if state.get("intake"):
        table.add_row("intake", state["intake"])
    out.print(table)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object for scripts.")] = False,
) -> None:
    """Show every component of the stack with its health (exit 1 if any is unhealthy)."""
    from runtime.stack import stack_status

    info = stack_status(load_settings())
    if as_json:
        _print_json(info)
    else:
        _render_state(info)
        table = Table("component", "healthy", "detail", header_style="bold")
        for name, ok in info["components"].items():
            detail = {k: v for k, v in info["details"][name].items() if k != "alive"}
            table.add_row(name, "[green]yes[/]" if ok else "[red]no[/]",
                          ", ".join(f"{k}={v}" for k, v in detail.items()))
        out.print(table)
    if not all(info["components"].values()):
        raise typer.Exit(1)


@app.command()
def down() -> None:
    """Stop every process the stack started (nothing running is not an error)."""
    from runtime import localstack

    state = localstack.stop(load_settings())
    out.print("stack stopped" if state else "no stack is running")


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


if __name__ == "__main__":
    main()
