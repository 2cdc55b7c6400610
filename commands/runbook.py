"""`tradeops runbook ...`: list, check, plan and run runbooks; approve, reject, resume and abort them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tradeops.commands.context import context
from tradeops.commands.output import JsonOpt, compact, err, out, print_json
from tradeops.runbooks import engine, registry
from tradeops.runbooks.events import Event
from tradeops.runbooks.expectations import describe_expect
from tradeops.runbooks.identity import load_operators, operators_path
from tradeops.runbooks.model import check_runbook, load_runbook, parse_param_overrides, shipped_runbooks
from tradeops.runtime.platform.errors import CheckFailed, OperationFailed
from tradeops.runtime.platform.settings import load_settings

__all__ = ["ConsoleObserver", "runbook_app"]

runbook_app = typer.Typer(help="Runbooks as code: list, check, plan and run them; approve their steps.",
                          no_args_is_help=True)

ParamOpt = Annotated[list[str] | None, typer.Option("--param", "-p", help="Runbook parameter NAME=VALUE.")]


def _confirm(prompt: str) -> bool:
    try:
        return typer.confirm(prompt, default=False)
    except click.exceptions.Abort:
        return False  # no answer (closed input) is not a yes


class ConsoleObserver:
    """Renders run events for the person at the terminal (the guided run)."""

    def __init__(self, console: Console) -> None:
        self.c = console
        self.total: int | None = None

    def notify(self, event: Event) -> None:
        d, c, k = event.data, self.c, event.kind
        if k in ("execution.started", "execution.resumed"):
            if k == "execution.started":
                c.print(f"[bold]{escape(d['title'])}[/]  (runbook {d['runbook']} v{d['version']}, "
                        f"sha256 {d['runbook_sha256'][:12]})")
                c.print(f"service: {escape(d['service'])}; impact tolerance "
                        f"{d['impact_tolerance'].get('max_outage_minutes')} min")
            else:
                c.print(f"[bold]resuming[/] at step {d.get('at_step')} (was {d.get('previous_status')})")
            c.print(f"execution [bold]{event.execution_id}[/], executor {escape(event.actor)} "
                    f"(identity from {event.identity_source})")
        elif k == "step.started":
            c.print(f"\n[bold cyan]{d['index'] + 1}. {escape(d['title'])}[/]  [dim]({event.step_id})[/]")
            if d.get("description"):
                c.print(f"   [dim]{escape(' '.join(d['description'].split()))}[/]")
        elif k == "check.evaluated":
            mark = "[green]✓[/]" if d.get("met") else "[red]✗[/]"
            value = escape(compact(d.get("value")))
            args = ", ".join(f"{a}={v}" for a, v in (d.get("args") or {}).items())
            extra = f" [dim]{escape(compact(d['detail']))}[/]" if d.get("detail") else ""
            extra += f" [red]{escape(d['error'])}[/]" if d.get("error") else ""
            waited = f" [dim](after {d['waited']} s)[/]" if d.get("polls", 1) > 1 else ""
            c.print(f"   {mark} {d['what']}: {d['probe']}({escape(args)}) = [bold]{value}[/] "
                    f"(expect {escape(describe_expect(d.get('expect')))}){waited}{extra}")
        elif k == "manual.instruction":
            c.print(f"   [yellow]☐ {escape(' '.join(d['instruction'].split()))}[/]")
        elif k == "approval.requested":
            c.print(f"   [yellow]needs {d['count']} approval(s) from: {', '.join(d['roles'])}[/] "
                    f"(not {', '.join(d['executors'])}, who execute this run). Each approver runs:")
            c.print(f"     [bold]{d['command']}[/]")
        elif k == "approval.progress":
            who = ", ".join(d["approved_by"]) or "nobody yet"
            c.print(f"   approved by: {escape(who)} ({len(d['approved_by'])} of {d['needed']}) — waiting…")
            for identity, why in d.get("refused") or []:
                c.print(f"   [red]not counted: {escape(identity)}: {escape(why)}[/]")
        elif k == "approval.granted":
            c.print(f"   [green]approved by {escape(', '.join(d['approved_by']))}[/]")
        elif k == "approval.stopped":
            c.print(f"   [red]rejected by {escape('; '.join(f'{i} ({r})' for i, r in d['rejected_by']))}[/]")
        elif k == "action.started":
            args = ", ".join(f"{a}={compact(v, 60)}" for a, v in (d.get("args") or {}).items())
            again = f" [dim](run {d['run']})[/]" if d.get("run", 1) > 1 else ""
            c.print(f"   → {d['action']}({escape(args)}){again}")
        elif k == "action.retry":
            c.print(f"   [yellow]step was {d['reason']}; running its action again[/]")
        elif k == "action.finished":
            if d["status"] == "succeeded":
                c.print(f"   [green]✓[/] {d['action']} in {d['duration']} s: {escape(compact(d.get('output')))}")
            else:
                c.print(f"   [red]✗ {d['action']} failed: {escape(str(d.get('error')))}[/]")
        elif k == "step.finished":
            status = d.get("status")
            colour = {"succeeded": "green", "skipped": "dim"}.get(str(status), "red")
            why = f": {escape(str(d.get('reason') or d.get('error')))}" if status != "succeeded" else ""
            c.print(f"   [{colour}]{status}[/]{why}")
        elif k == "rollback.started":
            c.print(f"\n[bold red]rolling back[/] {', '.join(d['steps']) or 'nothing'} ({escape(d['reason'])})")
        elif k == "rollback.step":
            c.print(f"   ↶ {event.step_id}: {d['status']} " + escape(compact({k2: d.get(k2) for k2 in
                                                                             ("action", "args", "error")})))
        elif k in ("execution.finished", "execution.stopped"):
            colour = "green" if d.get("status") == "completed" else "red"
            c.print(f"\n[bold {colour}]execution {event.execution_id}: {d.get('status')}[/]"
                    + (f" — {escape(str(d['reason']))}" if d.get("reason") else ""))


def _conclude(outcome: engine.Outcome) -> None:
    if outcome.status == "completed":
        return
    if outcome.status == "failed":
        raise OperationFailed(f"execution {outcome.execution_id} failed: {outcome.reason}")
    raise CheckFailed(f"execution {outcome.execution_id} is {outcome.status}: {outcome.reason}")


# ---- runbook commands ---------------------------------------------------------------------

@runbook_app.command("list")
def list_runbooks(
    as_json: JsonOpt = False,
    operations: Annotated[bool, typer.Option("--operations", help="List the probes and actions instead.")] = False,
) -> None:
    """List the shipped runbooks (or, with --operations, what a runbook step can call)."""
    if operations:
        operations_list = registry.probes() + registry.actions()
        if as_json:
            print_json([{"name": o.name, "kind": o.kind, "args": sorted(o.schema.get("properties", {})),
                         "idempotent": o.idempotent, "restorable": o.restore_arg is not None,
                         "description": o.description} for o in operations_list])
            return
        table = Table("kind", "name", "args", "description", header_style="bold")
        for o in operations_list:
            table.add_row(o.kind, o.name, ", ".join(sorted(o.schema.get("properties", {}))), o.description)
        out.print(table)
        return
    runbooks = [(path, load_runbook(path)) for path in shipped_runbooks()]
    if as_json:
        print_json([{"name": rb.name, "title": rb.title, "version": rb.version, "steps": len(rb.steps),
                     "sha256": rb.sha256, "path": str(path)} for path, rb in runbooks])
        return
    table = Table("name", "title", "version", "steps", "sha256", header_style="bold")
    for _, rb in runbooks:
        table.add_row(rb.name, rb.title, str(rb.version), str(len(rb.steps)), rb.sha256[:12])
    out.print(table)


@runbook_app.command()
def show(name: Annotated[str, typer.Argument(help="Runbook name or file.")], as_json: JsonOpt = False) -> None:
    """Show a runbook: its service, tolerance, parameters and steps."""
    rb = load_runbook(name)
    if as_json:
        print_json({**rb.doc, "sha256": rb.sha256, "path": str(rb.path)})
        return
    out.print(f"[bold]{escape(rb.title)}[/]  ({rb.name} v{rb.version}, sha256 {rb.sha256[:12]})")
    out.print(f"service: {escape(rb.service)}; impact tolerance {rb.impact_tolerance['max_outage_minutes']} min")
    for pname, spec in rb.parameters.items():
        out.print(f"  --param {pname}=… ({spec['type']}, default {spec.get('default', 'required')}): "
                  f"{escape(spec.get('description', ''))}")
    for i, step in enumerate(rb.steps, 1):
        kind = next(k for k in ("check", "action", "manual") if k in step)
        what = step[kind] if kind == "manual" else (step[kind].get("probe") or step[kind].get("name"))
        extras = []
        if "approval" in step:
            extras.append(f"approval {step['approval']['count']} of {'/'.join(step['approval']['roles'])}")
        if "verify" in step:
            extras.append(f"verify {step['verify']['probe']} within {step['verify']['timeout']} s")
        if "when" in step:
            extras.append(f"when {step['when']}")
        out.print(f"{i:2}. {escape(step['title'])} [dim]({step['id']}: {kind} {escape(compact(what, 60))}"
                  f"{'; ' + '; '.join(extras) if extras else ''})[/]")


@runbook_app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="Runbook files to check.")],
    operators: Annotated[Path | None, typer.Option(help="Operators file (default: TRADEOPS_OPERATORS_FILE or "
                                                        "./operators.yaml).")] = None,
) -> None:
    """Check runbook files: every problem with file, line and reason (exit 2 if any)."""
    ops_path = operators or operators_path(load_settings())
    ops = load_operators(ops_path) if (operators or ops_path.exists()) else None
    if ops is None:
        err.print(f"note: operators file {ops_path} not found; approval counts not checked against roles")
    bad = 0
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            out.print(f"{path}:1: cannot read: {exc.strerror}", markup=False)
            bad += 1
            continue
        _, issues = check_runbook(path, text, operators=ops)
        for issue in issues:
            out.print(str(issue), markup=False)
        if issues:
            bad += 1
        else:
            out.print(f"{path}: ok", markup=False)
    if bad:
        err.print(f"{bad} of {len(files)} runbook(s) invalid", markup=False)
        raise typer.Exit(2)


@runbook_app.command()
def plan(name: Annotated[str, typer.Argument(help="Runbook name or file.")], param: ParamOpt = None,
         as_json: JsonOpt = False) -> None:
    """What a run would do, with the live value of every check. Changes nothing."""
    ctx = context()
    result = engine.plan_runbook(ctx.settings, name, aws=ctx.aws, params=parse_param_overrides(param))
    if as_json:
        print_json(result)
        return
    out.print(f"[bold]{escape(result['title'])}[/]  ({result['runbook']} v{result['version']}) — plan, nothing changed")
    for i, step in enumerate(result["steps"], 1):
        skip = "" if step["runs"] else " [dim](skipped: when is false)[/]"
        out.print(f"\n[bold]{i}. {escape(step['title'])}[/] [dim]({step['id']})[/]{skip}")
        for chk in step["checks"]:
            mark = "[green]✓[/]" if chk["met"] else "[red]✗[/]"
            note = " [dim](one sample; the run watches over the period)[/]" if chk.get("sampled_once") else ""
            error = f" [red]{escape(chk['error'])}[/]" if chk.get("error") else ""
            out.print(f"   {mark} {chk['what']}: {chk['probe']}({escape(compact(chk['args'], 60))}) now "
                      f"[bold]{escape(compact(chk['value']))}[/], expect {escape(chk['expect_text'])}{note}{error}")
        if "approval" in step:
            out.print(f"   approval: {step['approval']['count']} of {', '.join(step['approval']['roles'])}")
        if "action" in step:
            out.print(f"   would run {step['action']['name']}({escape(compact(step['action']['args'], 100))}); "
                      f"rollback: {escape(compact(step['rollback'], 60))}")
        if "manual" in step:
            out.print(f"   manual: {escape(' '.join(step['manual'].split()))}")


@runbook_app.command()
def run(
    name: Annotated[str, typer.Argument(help="Runbook name (failover, failback, ...) or file.")],
    param: ParamOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before actions (drills). "
                                                          "Approvals are still required.")] = False,
    approval_timeout: Annotated[float | None, typer.Option(help="Stop waiting for approvals after SECONDS "
                                                                "(resume waits again).")] = None,
    poll: Annotated[float, typer.Option(help="Seconds between looks at the approvals.", min=0.05)] = 1.0,
    execution_id: Annotated[str | None, typer.Option(help="Choose the execution id (drills correlate by it).")]
    = None,
) -> None:
    """Run a runbook, guided: each step, its live checks, a confirmation before each action."""
    ctx = context()
    outcome = engine.run_execution(
        ctx.settings, name, aws=ctx.aws, params=parse_param_overrides(param), assume_yes=yes,
        confirm=None if yes else _confirm, observers=[ConsoleObserver(out)], poll_seconds=poll,
        approval_timeout=approval_timeout, execution_id=execution_id)
    _conclude(outcome)


@runbook_app.command()
def resume(
    execution: Annotated[str, typer.Argument(help="Execution id.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before actions.")] = False,
    approval_timeout: Annotated[float | None, typer.Option(help="Stop waiting for approvals after SECONDS.")] = None,
    poll: Annotated[float, typer.Option(help="Seconds between looks at the approvals.", min=0.05)] = 1.0,
) -> None:
    """Continue an interrupted or stopped execution from the step it stopped at."""
    ctx = context()
    outcome = engine.resume_execution(
        ctx.settings, execution, aws=ctx.aws, assume_yes=yes, confirm=None if yes else _confirm,
        observers=[ConsoleObserver(out)], poll_seconds=poll, approval_timeout=approval_timeout)
    _conclude(outcome)


def _decide(execution: str, step: str, decision: str, reason: str) -> None:
    ctx = context()
    approval = engine.decide(ctx.settings, execution, step, decision, aws=ctx.aws, reason=reason)
    verb = "approved" if decision == "approve" else "rejected"
    out.print(f"{verb} step {step} of {execution} as {approval.identity} (identity from "
              f"{approval.identity_source}; roles {', '.join(approval.roles) or 'none'})", markup=False)


@runbook_app.command()
def approve(
    execution: Annotated[str, typer.Argument(help="Execution id.")],
    step: Annotated[str, typer.Argument(help="Step id.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")] = "",
) -> None:
    """Approve a step of someone else's execution (four-eyes)."""
    _decide(execution, step, "approve", reason)


@runbook_app.command()
def reject(
    execution: Annotated[str, typer.Argument(help="Execution id.")],
    step: Annotated[str, typer.Argument(help="Step id.")],
    reason: Annotated[str, typer.Option(help="Why (required; recorded in the audit log).")] = ...,  # type: ignore[assignment]
) -> None:
    """Reject a step: its action will not run and the execution stops."""
    _decide(execution, step, "reject", reason)


@runbook_app.command()
def abort(
    execution: Annotated[str, typer.Argument(help="Execution id.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")] = "",
    rollback: Annotated[bool, typer.Option(help="Also undo the completed actions, newest first.")] = False,
) -> None:
    """Abort an execution (it can no longer be resumed)."""
    ctx = context()
    result = engine.abort_execution(ctx.settings, execution, aws=ctx.aws, reason=reason, rollback=rollback)
    note = ""
    if rollback:
        note = ("; completed actions rolled back" if result.get("rolled_back")
                else f"; rollback {result.get('rollback')}")
    out.print(f"execution {execution} aborted (was {result['previous_status']}){note}", markup=False)


@runbook_app.command()
def history(
    execution: Annotated[str | None, typer.Argument(help="Execution id (omit to list executions).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List executions, or show one execution's timeline (steps and audit records)."""
    ctx = context()
    if execution is None:
        rows = engine.list_executions(ctx.settings, aws=ctx.aws)
        if as_json:
            print_json(rows)
            return
        table = Table("execution", "runbook", "status", "executor", "started", "at step", header_style="bold")
        for r in rows:
            table.add_row(r.get("execution_id"), r.get("runbook"), r.get("status"), r.get("executor"),
                          r.get("created_at"), r.get("current_step") or "")
        out.print(table)
        return
    data = engine.execution_history(ctx.settings, execution, aws=ctx.aws)
    if as_json:
        print_json(data)
        return
    meta = data["execution"]
    out.print(f"[bold]{meta['execution_id']}[/] {meta['runbook']} — {meta['status']}"
              + (f" ({escape(str(meta['reason']))})" if meta.get("reason") else ""))
    table = Table("seq", "at", "event", "step", "actor", "detail", header_style="bold")
    for e in data["timeline"]:
        table.add_row(str(e.get("seq")), str(e.get("at")), str(e.get("kind")), e.get("step_id") or "",
                      str(e.get("actor")), escape(compact(e.get("data"), 80)))
    out.print(table)
