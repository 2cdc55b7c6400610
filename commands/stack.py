"""`tradeops up`, `status` and `down`: the local stack (or the runtime processes on real AWS)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from tradeops.commands.context import context
from tradeops.commands.output import JsonOpt, out, print_json
from tradeops.runtime.platform.errors import BadInput
from tradeops.runtime.platform.settings import load_settings
from tradeops.runtime.platform.statefile import StackState, pid_alive, read_state
from tradeops.runtime.stack import supervisor
from tradeops.runtime.stack.status import full_status

__all__ = ["down", "status", "up"]

_PORT_NAMES = ("aws", "intake", "primary", "secondary")


def parse_ports(items: list[str]) -> dict[str, int | None]:
    """``NAME=PORT`` pairs (``--port primary=8101``) as a mapping; BadInput names a bad one."""
    ports: dict[str, int | None] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in _PORT_NAMES or not value.isdigit() or not 0 < int(value) < 65536:
            raise BadInput(f"--port expects NAME=PORT with NAME one of {', '.join(_PORT_NAMES)}: {item!r}")
        ports[name] = int(value)
    return ports


def render_state(state: StackState) -> None:
    """Where each component of a stack listens."""
    table = Table("component", "where", show_header=True, header_style="bold")
    if state.get("aws_endpoint"):
        table.add_row("aws", f"{state['aws_endpoint']} (region {state.get('region')})")
    for name, broker in sorted(state.get("brokers", {}).items()):
        table.add_row(f"broker {name}", f"{broker['url']}  control {broker['control']}  ({broker['wire']})")
    if state.get("intake"):
        table.add_row("intake", state["intake"])
    out.print(table)


def up(
    workers: Annotated[int, typer.Option(min=1, max=32, help="Worker processes on the order queue.")] = 2,
    foreground: Annotated[bool, typer.Option(help="Stay attached; Ctrl-C stops everything.")] = False,
    aws: Annotated[bool, typer.Option("--aws", help="Use real AWS (boto3 credential chain), no emulator.")] = False,
    port: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME=PORT", help="Fix a port instead of a free one: aws=4566, primary=…, "
                                               "secondary=…, intake=…"),
    ] = None,
) -> None:
    """Start the local stack (AWS emulator, brokers, runtime) and return once all of it is healthy."""
    settings = load_settings()
    ports = parse_ports(port or [])
    local = not aws
    if foreground:
        state = read_state(settings.state_file)
        if state and pid_alive(state.get("supervisor_pid")):
            out.print(f"the stack is already up (since {state.get('started_at')})")
            return
        out.print("starting the stack in the foreground; Ctrl-C stops it")

        def ready(state: dict[str, Any]) -> None:
            out.print("[bold green]stack is up[/] (Ctrl-C stops it)")
            render_state(state)

        code = supervisor.run_supervisor(settings, workers=workers, local=local, ports=ports, on_ready=ready)
        out.print("stack stopped" if code == 0 else "stack failed")
        raise typer.Exit(code)
    try:
        state = supervisor.launch(settings, workers=workers, local=local, ports=ports)
    except supervisor.StackAlreadyUp as exc:
        out.print(str(exc))
        return
    out.print("[bold green]stack is up[/]")
    render_state(state)
    out.print(f"state: {settings.state_file}   logs: {state.get('log_dir')}")


def status(as_json: JsonOpt = False) -> None:
    """Show every component of the stack with its health (exit 1 if any is unhealthy)."""
    info = full_status(context().settings)
    if as_json:
        print_json(info)
    else:
        render_state(info)
        table = Table("component", "healthy", "detail", header_style="bold")
        for name, ok in info["components"].items():
            detail = {k: v for k, v in info["details"][name].items() if k != "alive"}
            table.add_row(
                name, "[green]yes[/]" if ok else "[red]no[/]", ", ".join(f"{k}={v}" for k, v in detail.items())
            )
        out.print(table)
        routing, queues = info["routing"], info["queues"]
        out.print(
            f"routing: mode [bold]{routing['mode']}[/], active [bold]{routing['active']}[/], "
            f"trickle {routing['trickle']}, processing [bold]{routing['processing']}[/]"
        )
        out.print(
            "breakers: " + (", ".join(f"{p} {s}" for p, s in sorted(info["breakers"].items())) or "no live worker")
        )
        for provider, seen in sorted(info.get("suspect", {}).items()):
            evidence = "; ".join(f"{w}: a call unanswered for {e.get('oldest_call_ms')} ms > {e.get('threshold_ms')} ms"
                                 f" (p99 {e.get('p99_ms')} ms)" for w, e in sorted(seen.items()))
            out.print(f"[bold red]suspect[/]: {provider} gets no new orders until its breaker's probes close it "
                      f"({evidence})")
        if info.get("double_executions", {}).get("open"):
            out.print(f"[bold red]double executions[/]: {info['double_executions']['open']} open "
                      "(`tradeops orders duplicates`)")
        age = info["oldest_pending_age_seconds"]
        out.print(
            f"queue: {queues['queue']['visible']} waiting, {queues['queue']['in_flight']} in flight; "
            f"DLQ: {queues['dlq']['visible']}; oldest pending order: " + ("none" if age is None else f"{age:.1f}s")
        )
        counts = ", ".join(f"{k} {v}" for k, v in info["orders"].items() if v)
        out.print(f"orders: {counts or 'none'}")
    if not all(info["components"].values()):
        raise typer.Exit(1)


def down() -> None:
    """Stop every process the stack started (nothing running is not an error)."""
    state = supervisor.stop(load_settings())
    out.print("stack stopped" if state else "no stack is running")
