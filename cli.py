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
    aws: Annotated[bool, typer.Option("--aws", help="Use real AWS (boto3 credential chain), no emulator.")] = False,
    port: Annotated[
        list[str] | None,
        typer.Option(help="Fix a port instead of a free one: aws=4566, primary=…, secondary=…, intake=…"),
    ] = None,
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

        def ready(state: dict[str, Any]) -> None:
            out.print("[bold green]stack is up[/] (Ctrl-C stops it)")
            _render_state(state)

        code = localstack.run_supervisor(settings, workers=workers, local=local, ports=ports, on_ready=ready)
        out.print("stack stopped" if code == 0 else "stack failed")
        raise typer.Exit(code)
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
    from runtime.ops import full_status
    from runtime.stack import resolve_settings

    info = full_status(resolve_settings())
    if as_json:
        _print_json(info)
    else:
        _render_state(info)
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
        age = info["oldest_pending_age_seconds"]
        out.print(
            f"queue: {queues['queue']['visible']} waiting, {queues['queue']['in_flight']} in flight; "
            f"DLQ: {queues['dlq']['visible']}; oldest pending order: " + ("none" if age is None else f"{age:.1f}s")
        )
        counts = ", ".join(f"{k} {v}" for k, v in info["orders"].items() if v)
        out.print(f"orders: {counts or 'none'}")
    if not all(info["components"].values()):
        raise typer.Exit(1)


# ---- runbooks and the audit log (runbooks/commands.py) ----------------------------------------

from runbooks.commands import audit_app, runbook_app  # noqa: E402 - grouped with the commands they add

app.add_typer(runbook_app, name="runbook")
app.add_typer(audit_app, name="audit")


# ---- liability: prices, exposure, reimbursements (runtime/liability_commands.py) ---------------

from runtime.liability_commands import exposure, prices_app, reimbursements_app  # noqa: E402

app.command("exposure")(exposure)
app.add_typer(prices_app, name="prices")
app.add_typer(reimbursements_app, name="reimbursements")


# ---- orders and flags -------------------------------------------------------------------------

orders_app = typer.Typer(help="Look at orders; declare a broker's in-doubt orders void.", no_args_is_help=True)
app.add_typer(orders_app, name="orders")


@orders_app.command("show")
def orders_show(
    order_id: Annotated[str, typer.Argument(help="The order id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One order with its state, provider, fill and history."""
    from runtime.aws import Aws
    from runtime.intake import order_json
    from runtime.orders import OrderStore
    from runtime.stack import resolve_settings

    order = order_json(OrderStore(Aws(resolve_settings())).require(order_id))
    if as_json:
        _print_json(order)
        return
    for key in (
        "order_id",
        "status",
        "provider",
        "symbol",
        "side",
        "quantity",
        "order_type",
        "limit_price",
        "quote_price",
        "fill_price",
        "placed_at",
        "filled_at",
        "synthetic",
    ):
        if order.get(key) is not None:
            out.print(f"{key:>12}: {order[key]}")
    table = Table("at", "status", "actor", "provider", "note", header_style="bold")
    for entry in order.get("history", []):
        table.add_row(
            entry.get("at", ""),
            entry.get("status", ""),
            entry.get("actor", ""),
            entry.get("provider", ""),
            entry.get("note", ""),
        )
    out.print(table)


@orders_app.command("declare-void")
def orders_declare_void(
    provider: Annotated[str, typer.Option(help="The broker whose in-flight orders are declared void.")],
    reason: Annotated[str, typer.Option(help="Why (recorded with the declaration).")] = "broker unavailable",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Declare PROVIDER's in-doubt orders void so they may go to the other broker. Records who did it."""
    from runbooks.identity import current_identity
    from runtime.aws import Aws
    from runtime.ops import declare_void, in_flight_orders
    from runtime.stack import resolve_settings

    settings = resolve_settings()
    aws = Aws(settings)
    who = current_identity(settings, aws)
    pending = in_flight_orders(aws, provider)
    if not yes and not as_json:
        out.print(
            f"{len(pending)} order(s) in flight at {provider}. Declaring them void means you accept that "
            f"{provider} will never fill them."
        )
        typer.confirm("Declare them void?", abort=True)
    released = declare_void(aws, provider, actor=who.name, reason=reason)
    if as_json:
        _print_json(
            {"provider": provider, "declared_by": who.name, "identity_source": who.source, "released": released}
        )
    else:
        out.print(
            f"{len(released)} order(s) declared void at {provider} by {who.name} ({who.source}); "
            "they will be routed again"
        )


flags_app = typer.Typer(help="Read or set the control flags in SSM.", invoke_without_command=True)
app.add_typer(flags_app, name="flags")


@flags_app.callback()
def flags_show(ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Show the control flags."""
    if ctx.invoked_subcommand:
        return
    from runtime.aws import Aws
    from runtime.control import Flags
    from runtime.stack import resolve_settings

    values = Flags(Aws(resolve_settings())).read().as_dict()
    if as_json:
        _print_json(values)
    else:
        for key, value in values.items():
            out.print(f"{key:>10}: {value}")


@flags_app.command("set")
def flags_set(
    name: Annotated[str, typer.Argument(help="processing | mode | active | trickle")],
    value: Annotated[str, typer.Argument(help="The new value.")],
) -> None:
    """Set one flag (workers see it within a second). Prefer a runbook for failover."""
    from runbooks.identity import current_identity
    from runtime.aws import Aws
    from runtime.control import Flags
    from runtime.stack import resolve_settings

    settings = resolve_settings()
    aws = Aws(settings)
    flags = Flags(aws)
    before = flags.read().as_dict().get(name)
    canonical = flags.set(name, value, actor=current_identity(settings, aws).name)
    out.print(f"{name}: {before} -> {canonical}")


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
