"""`tradeops up`, `status` and `down`: the local stack (or the runtime processes on real AWS)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tradeops.commands.context import aws_chosen, context
from tradeops.commands.output import Column, JsonOpt, human, out, print_json, print_table, when, yes_no
from tradeops.runtime.platform.errors import BadInput, NoTarget, StackError
from tradeops.runtime.platform.statefile import StackState, pid_alive, read_state

if TYPE_CHECKING:
    from tradeops.runbooks.identity import Operators
    from tradeops.runtime.platform.settings import Settings

# The supervisor, the runtime figures and the health checks bring boto3 and httpx: each command imports
# what it runs, so `tradeops status` with no stack up answers before any of them is loaded.

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


def render_state(state: StackState, found: dict[str, dict[str, Any]]) -> None:
    """Where each component of a stack listens, and each broker and the price feed: real or simulated, and where."""
    rows: list[tuple[str, str]] = []
    if state.get("aws_endpoint"):
        rows.append(("aws", f"{state['aws_endpoint']} (region {state.get('region')})"))
    for name, source in found.items():
        where = f"{'simulated' if source['simulated'] else 'real'} {source['endpoint'] or '(no endpoint set here)'}"
        if source.get("control"):
            where += f"  control {source['control']}"
        if source.get("wire"):
            where += f"  ({source['wire']})"
        elif source["simulated"]:
            where += f"  onto {source['stream']}"
        rows.append((name if name == "prices" else f"broker {name}", where))
    if state.get("intake"):
        rows.append(("intake", state["intake"]))
    print_table([Column("component"), Column("where", ident=True)], rows)


class _Progress:
    """`up`'s progress, component by component: a spinner on a terminal, one line per component otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.done: set[str] = set()
        self.status = out.status("starting the stack…") if out.is_terminal and not quiet else None
        self.started = time.monotonic()

    def __enter__(self) -> _Progress:
        if self.status is not None:
            self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.stop()

    def __call__(self, state: dict[str, Any]) -> None:
        if self.quiet:
            return
        if state.get("deployed_at") and "template" not in self.done:
            self.done.add("template")
            out.print(f"[green]✓[/] template deployed ({time.monotonic() - self.started:.1f} s)")
        for name, comp in state.get("components", {}).items():
            if comp.get("ready_at") and name not in self.done:
                self.done.add(name)
                out.print(f"[green]✓[/] {name} ready ({time.monotonic() - self.started:.1f} s)")
        if self.status is not None and state.get("stage"):
            self.status.update(f"{state['stage']}…")


def up(
    workers: Annotated[int, typer.Option(min=1, max=32, help="Worker processes on the order queue.")] = 2,
    foreground: Annotated[bool, typer.Option(help="Stay attached; Ctrl-C stops everything.")] = False,
    aws: Annotated[bool, typer.Option("--aws", help="Use real AWS (boto3 credential chain), no emulator, and the "
                                                    "real brokers and price feed.")] = False,
    sim_brokers: Annotated[bool, typer.Option(
        "--sim-brokers", help="With --aws: start the simulated brokers instead of using the real ones (a sandbox). "
                              "The local stack always simulates them.")] = False,
    sim_prices: Annotated[bool, typer.Option(
        "--sim-prices", help="With --aws: start the simulated price feed, which writes onto the price stream (a "
                             "sandbox). The local stack always simulates it.")] = False,
    port: Annotated[
        list[str] | None,
        typer.Option(metavar="NAME=PORT", help="Fix a port instead of a free one: aws=4566, primary=…, "
                                               "secondary=…, intake=…"),
    ] = None,
    log_format: Annotated[str | None, typer.Option(
        "--log-format", metavar="json|text",
        help="How the stack's processes log: json lines (default) or text for reading at a terminal "
             "(metric lines stay JSON either way).")] = None,
    enforce: Annotated[bool | None, typer.Option(
        "--enforce/--no-enforce",
        help="Run the emulator with IAM access control on: each person of the operators file an IAM user holding "
             "the template's operator policy, the approval gate a component with GateRole's policy, every command "
             "signing as TRADEOPS_OPERATOR (default: the enforce setting, TRADEOPS_ENFORCE; off).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Start the local stack (AWS emulator, brokers, runtime) and return once all of it is healthy.

    Shows each component as it becomes healthy. With --aws no emulator starts, and the brokers
    (TRADEOPS_PRIMARY_URL, TRADEOPS_SECONDARY_URL; keys in Secrets Manager) and the price feed are
    real unless --sim-brokers / --sim-prices ask for the simulators.

    Example:

        tradeops up --workers 4 --port primary=8101
        tradeops up --foreground --log-format text
        tradeops up --aws --sim-brokers --sim-prices
        TRADEOPS_OPERATORS_FILE=operators.yaml tradeops up --enforce
    """
    from tradeops.runtime.platform import logs
    from tradeops.runtime.platform.settings import load_settings
    from tradeops.runtime.stack import supervisor
    from tradeops.runtime.stack.status import sources

    if log_format is not None:
        # The supervisor hands its environment to every process it starts (platform/logs.py reads it).
        os.environ["TRADEOPS_LOG_FORMAT"] = logs.log_format(log_format)
    settings = load_settings()
    ports = parse_ports(port or [])
    local = not (aws or aws_chosen())
    simulate = supervisor.Simulated(brokers=sim_brokers, prices=sim_prices)
    if enforce is not None:
        settings = settings.model_copy(update={"enforce": enforce})
    if settings.enforce and not local:
        raise BadInput("--enforce is for the local stack's emulator: on AWS, IAM enforces the template's roles")
    people: tuple[str, ...] = ()
    operators: Operators | None = None
    if settings.enforce:
        from tradeops.runbooks.identity import iam_user_name, load_operators, operators_path

        operators = load_operators(operators_path(settings))
        people = tuple(sorted(iam_user_name(name) for name in operators.roles))
    if foreground:
        state = read_state(settings.state_file)
        if state and pid_alive(state.get("supervisor_pid")):
            out.print(f"the stack is already up (since {when(state.get('started_at'))})", markup=False)
            return
        out.print("starting the stack in the foreground; Ctrl-C stops it")

        def ready(state: dict[str, Any]) -> None:
            if operators is not None:
                _seed_roster(settings, state, operators)
            out.print("[bold green]stack is up[/] (Ctrl-C stops it)")
            render_state(state, sources(settings, state))

        code = supervisor.run_supervisor(settings, workers=workers, local=local, ports=ports, simulate=simulate,
                                         people=people, on_ready=ready)
        out.print("stack stopped" if code == 0 else "stack failed")
        raise typer.Exit(code)
    try:
        with _Progress(quiet=as_json) as progress:
            state = supervisor.launch(settings, workers=workers, local=local, ports=ports, simulate=simulate,
                                      people=people, on_progress=progress)
        if operators is not None:
            _seed_roster(settings, state, operators)
    except supervisor.StackAlreadyUp as exc:
        if as_json:
            print_json({**exc.state, "already_up": True})
        else:
            out.print(str(exc), markup=False)
        return
    if as_json:
        print_json({**state, "state_file": str(settings.state_file), "sources": sources(settings, state)})
        return
    out.print("[bold green]stack is up[/]")
    render_state(state, sources(settings, state))
    out.print(f"state: {settings.state_file}   logs: {state.get('log_dir')}", markup=False)


def _seed_roster(settings: Settings, state: StackState, operators: Operators) -> None:
    """Seed an enforcing stack's roster as its admin (people may not write it): the operators file's people as the
    IAM users STS names them."""
    from tradeops.runbooks.identity import Identity, as_iam_users
    from tradeops.runbooks.roster import Roster
    from tradeops.runtime.platform.aws import Aws
    from tradeops.runtime.platform.statefile import read_keys

    admin = read_keys(Path(state["keys_file"]))["admin"]
    account = admin["arn"].split(":")[4]
    aws = Aws(settings.model_copy(update={"aws_endpoint_url": state["aws_endpoint"], "enforce": True,
                                          "emulator_access_key_id": admin["access_key_id"],
                                          "emulator_secret_access_key": admin["secret_access_key"]}))
    Roster(aws).seed(as_iam_users(operators, account), actor=Identity(admin["arn"], "iam-user"))


def _detail(detail: dict[str, Any]) -> str:
    words = []
    for key, value in detail.items():
        if key == "alive":
            continue
        words.append(f"{key.replace('_', ' ')} {yes_no(value) if isinstance(value, bool) else human(value)}")
    return ", ".join(words)


def status(as_json: JsonOpt = False) -> None:
    """Show the target and every component of the stack with its health (exit 1 if any is unhealthy)."""
    try:
        ctx = context()
    except NoTarget:
        raise StackError("the stack is not up (run `tradeops up`), and no AWS target was chosen (--aws)") from None
    from tradeops.runtime.orderpath.figures import runtime_status
    from tradeops.runtime.stack.status import full_status, sources

    state = read_state(ctx.settings.state_file)
    if ctx.target.kind == "aws" and not (state and pid_alive(state.get("supervisor_pid"))):
        info: dict[str, Any] = {"target": ctx.target_json(), **runtime_status(ctx.aws)}
        info["components"] = {}
        info["sources"] = sources(ctx.settings)
    else:
        info = full_status(ctx.settings)
        info["target"] = ctx.target_json()
    if as_json:
        print_json(info)
    else:
        out.print(f"target: {ctx.target_text()}", markup=False)
        render_state(info, info["sources"])
        if info["components"]:
            print_table([Column("component", ident=True), Column("healthy"), Column("detail")],
                        [(name, yes_no(ok), _detail(info["details"][name]))
                         for name, ok in info["components"].items()])
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
        if info.get("workers", {}).get("events_dropped"):
            out.print(f"[bold yellow]events dropped[/]: {info['workers']['events_dropped']} (the workers' event "
                      "queues were full; the orders were not delayed)")
        age = info["oldest_pending_age_seconds"]
        out.print(
            f"queue: {queues['queue']['visible']} waiting, {queues['queue']['in_flight']} in flight; "
            f"DLQ: {queues['dlq']['visible']}; oldest pending order: " + ("none" if age is None else f"{age:.1f}s")
        )
        counts = ", ".join(f"{k} {v}" for k, v in info["orders"].items() if v)
        out.print(f"orders: {counts or 'none'}")
        swept = info.get("swept", {}).get("last_hour", 0)
        out.print(f"swept: {swept} order{'' if swept == 1 else 's'} re-enqueued in the last hour "
                  "(recorded but never queued)", markup=False)
    if not all(info["components"].values()):
        raise typer.Exit(1)


def down(as_json: JsonOpt = False) -> None:
    """Stop every process the stack started (nothing running is not an error).

    Example:

        tradeops down
    """
    from tradeops.runtime.platform.settings import load_settings
    from tradeops.runtime.stack import supervisor

    state = supervisor.stop(load_settings())
    if as_json:
        print_json({"stopped": bool(state), "started_at": (state or {}).get("started_at")})
        return
    out.print("stack stopped" if state else "no stack is running")
