"""`tradeops runbook ...`: list, check, plan and run runbooks; approve, reject, resume and abort them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from tradeops.commands.context import Context, context
from tradeops.commands.output import (
    Column,
    JsonOpt,
    YesOpt,
    ask,
    compact,
    confirm,
    err,
    human,
    interactive,
    out,
    print_json,
    print_table,
    when,
)
from tradeops.commands.runbookview import ConsoleObserver, duration
from tradeops.runbooks import engine, registry
from tradeops.runbooks.identity import load_operators, operators_path
from tradeops.runbooks.loader import shipped_runbooks, step_kind
from tradeops.runbooks.params import parse_param_overrides
from tradeops.runbooks.states import APPROVAL_TIMED_OUT, COMPLETED, FAILED, WAITING_APPROVAL
from tradeops.runbooks.validation import check_runbook, load_runbook
from tradeops.runtime.platform.clock import parse_iso, utcnow
from tradeops.runtime.platform.errors import BadInput, CheckFailed, OperationFailed, Refused
from tradeops.runtime.platform.settings import load_settings

__all__ = ["run_guided", "runbook_app"]

runbook_app = typer.Typer(help="Runbooks as code: list, check, plan and run them; approve their steps.",
                          no_args_is_help=True)

ExecutionArg = Annotated[str, typer.Argument(metavar="EXECUTION", help="Execution id.")]
StepArg = Annotated[str, typer.Argument(metavar="STEP", help="Step id.")]
ParamOpt = Annotated[list[str] | None, typer.Option("--param", "-p", metavar="NAME=VALUE",
                                                    help="Runbook parameter (repeatable).")]
PollOpt = Annotated[float, typer.Option(metavar="SECONDS", help="Seconds between looks at the approvals.", min=0.05)]
TimeoutOpt = Annotated[float | None, typer.Option(metavar="SECONDS", help="Wait this long for approvals instead of "
                                                  "the runbook's approval.timeout (resume waits again).")]


def _conclude(outcome: engine.Outcome) -> None:
    if outcome.status == COMPLETED:
        return
    if outcome.status == FAILED:
        raise OperationFailed(f"execution {outcome.execution_id} failed: {outcome.reason}")
    raise CheckFailed(f"execution {outcome.execution_id} is {outcome.status}: {outcome.reason}")


def _unattended(what: str, yes: bool) -> None:
    """Without a terminal a run cannot ask before its actions: refuse before touching anything."""
    if not yes and not interactive():
        raise Refused(f"{what} asks before each action and there is no terminal to ask on: run it at a terminal, "
                      "or pass --yes to run unattended (approvals are still required)")


def run_guided(ctx: Context, name: str, params: dict[str, Any], *, yes: bool, as_json: bool, poll: float = 1.0,
               approval_timeout: float | None = None, execution_id: str | None = None) -> None:
    """Run a runbook for the person at the terminal (or unattended with --yes); one JSON outcome with --json."""
    _unattended(f"runbook run {name}", yes)
    console = err if as_json else out
    ctx.announce(quiet=as_json)

    def asker(prompt: str) -> bool:
        return ask(prompt, to_stderr=as_json)

    outcome = engine.run_execution(
        ctx.settings, name, aws=ctx.aws, params=params, assume_yes=yes, confirm=None if yes else asker,
        observers=[ConsoleObserver(console)], poll_seconds=poll, approval_timeout=approval_timeout,
        execution_id=execution_id)
    if as_json:
        print_json({"execution_id": outcome.execution_id, "status": outcome.status, "reason": outcome.reason,
                    "steps": outcome.steps, "target": ctx.target_json()})
    _conclude(outcome)


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
        print_table([Column("kind"), Column("name", ident=True), Column("args"), Column("description")],
                    [(o.kind, o.name, ", ".join(sorted(o.schema.get("properties", {}))) or "none", o.description)
                     for o in operations_list])
        return
    runbooks = [(path, load_runbook(path)) for path in shipped_runbooks()]
    if as_json:
        print_json([{"name": rb.name, "title": rb.title, "version": rb.version, "steps": len(rb.steps),
                     "sha256": rb.sha256, "path": str(path)} for path, rb in runbooks])
        return
    print_table([Column("name", ident=True), Column("title"), Column("version"), Column("steps"),
                 Column("sha256", ident=True)],
                [(rb.name, rb.title, rb.version, len(rb.steps), rb.sha256[:12]) for _, rb in runbooks])


@runbook_app.command()
def show(name: Annotated[str, typer.Argument(metavar="NAME", help="Runbook name or file.")],
         as_json: JsonOpt = False) -> None:
    """Show a runbook: its service, tolerance, parameters and steps."""
    rb = load_runbook(name)
    if as_json:
        print_json({**rb.doc, "sha256": rb.sha256, "path": str(rb.path)})
        return
    out.print(f"[bold]{escape(rb.title)}[/]  ({rb.name} v{rb.version}, sha256 {rb.sha256})")
    out.print(f"service: {escape(rb.service)}; impact tolerance {human(rb.impact_tolerance['max_outage_minutes'])} "
              "min")
    for pname, spec in rb.parameters.items():
        out.print(f"  --param {pname}=… ({spec['type']}, default {human(spec.get('default', 'required'))}): "
                  f"{escape(spec.get('description', ''))}")
    for i, step in enumerate(rb.steps, 1):
        kind = step_kind(step)
        what = step[kind] if kind == "manual" else (step[kind].get("probe") or step[kind].get("name"))
        extras = []
        if "approval" in step:
            wait = step["approval"].get("timeout")
            extras.append(f"approval {step['approval']['count']} of {'/'.join(step['approval']['roles'])}"
                          + (f", waits {human(wait)} s" if wait is not None else ""))
        if "verify" in step:
            extras.append(f"verify {step['verify']['probe']} within {human(step['verify']['timeout'])} s")
        if "when" in step:
            extras.append(f"when {human(step['when'])}")
        out.print(f"{i:2}. {escape(step['title'])} [dim]({step['id']}: {kind} {escape(compact(what, 60))}"
                  f"{'; ' + '; '.join(extras) if extras else ''})[/]")


@runbook_app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Runbook files to check.")],
    operators: Annotated[Path | None, typer.Option(metavar="FILE", help="Operators file to check approval counts "
                                                   "against (default: TRADEOPS_OPERATORS_FILE or "
                                                   "./operators.yaml).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check runbook files: every problem with file, line and reason (exit 2 if any). Needs no stack."""
    ops_path = operators or operators_path(load_settings())
    ops = load_operators(ops_path) if (operators or ops_path.exists()) else None
    if ops is None and not as_json:
        err.print(f"note: operators file {ops_path} not found; approval counts not checked against roles")
    bad = 0
    results = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            issues = [f"{path}:1: cannot read: {getattr(exc, 'strerror', None) or exc}"]
        else:
            issues = [str(i) for i in check_runbook(path, text, operators=ops)[1]]
        results.append({"file": str(path), "ok": not issues, "issues": issues})
        bad += bool(issues)
        if not as_json:
            for issue in issues:
                out.print(issue, markup=False)
            if not issues:
                out.print(f"{path}: ok", markup=False)
    if as_json:
        print_json(results)
    if bad:
        if not as_json:
            err.print(f"{bad} of {len(files)} runbook(s) invalid", markup=False)
        raise typer.Exit(2)


def _check_line(chk: dict[str, Any]) -> str:
    args = ", ".join(f"{k}={human(v)}" for k, v in (chk["args"] or {}).items())
    call = f"{chk['probe']}({escape(compact(args, 60))})"
    now = "unreadable" if chk.get("error") else compact(chk.get("value"))
    role = chk.get("role")
    note = " [dim](one sample; the run watches over the period)[/]" if chk.get("sampled_once") else ""
    error = f" [red]{escape(chk['error'])}[/]" if chk.get("error") else ""
    if role == "after the action":
        return f"   [dim]·[/] after the action: expect {call} {escape(chk['expect_text'])} (now {escape(now)})"
    if role == "after earlier actions":
        return (f"   [dim]·[/] after earlier actions: {chk['what']} {call} expects {escape(chk['expect_text'])} "
                f"(now {escape(now)}){error}")
    mark = "[green]✓[/]" if chk["met"] else ("[yellow]·[/]" if role == "skips the step if not met" else "[red]✗[/]")
    how = " (skips the step if not met)" if role == "skips the step if not met" else ""
    return (f"   {mark} {chk['what']}{how}: {call} now [bold]{escape(now)}[/], expected "
            f"{escape(chk['expect_text'])}{note}{error}")


@runbook_app.command()
def plan(name: Annotated[str, typer.Argument(metavar="NAME", help="Runbook name or file.")], param: ParamOpt = None,
         as_json: JsonOpt = False) -> None:
    """What a run would do, with the live value of every check, and whether it would pass. Changes nothing.

    Ends with one line: "a run would pass its checks up to step N", or "a run would stop at step N
    (id): CHECK now X, expected Y" (exit 1). Verifications are shown as what the action must achieve.
    """
    ctx = context()
    result = engine.plan_runbook(ctx.settings, name, aws=ctx.aws, params=parse_param_overrides(param))
    verdict = result["verdict"]
    if as_json:
        print_json(result)
        if not verdict["passes"]:
            raise typer.Exit(1)
        return
    out.print(f"[bold]{escape(result['title'])}[/]  ({result['runbook']} v{result['version']}) — plan, nothing "
              f"changed; target {escape(ctx.target_text())}")
    for i, step in enumerate(result["steps"], 1):
        skip = "" if step["runs"] else " [dim](skipped: when is false)[/]"
        out.print(f"\n[bold]{i}. {escape(step['title'])}[/] [dim]({step['id']})[/]{skip}")
        for chk in step["checks"]:
            out.print(_check_line(chk))
        if "approval" in step:
            out.print(f"   approval: {step['approval']['count']} of {', '.join(step['approval']['roles'])}")
        if "action" in step:
            args = ", ".join(f"{k}={human(v)}" for k, v in step["action"]["args"].items())
            out.print(f"   would run {step['action']['name']}({escape(compact(args, 100))}); "
                      f"rollback: {escape(compact(step['rollback'], 60))}")
        if "manual" in step:
            out.print(f"   manual: {escape(' '.join(step['manual'].split()))}")
    colour = "green" if verdict["passes"] else "red"
    out.print(f"\n[bold {colour}]{escape(verdict['text'])}[/]")
    if not verdict["passes"]:
        raise typer.Exit(1)


@runbook_app.command()
def run(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Runbook name (failover, failback, ...) or file.")],
    param: ParamOpt = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before actions (unattended runs, drills). "
                                                          "Approvals are still required.")] = False,
    approval_timeout: TimeoutOpt = None,
    poll: PollOpt = 1.0,
    execution_id: Annotated[str | None, typer.Option(metavar="ID", help="Choose the execution id (drills correlate "
                                                                         "by it).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a runbook, guided: each step, its live checks, a confirmation before each action.

    Without a terminal it needs --yes. A four-eyes step publishes an approval request on the
    approvers' topic and waits (the runbook's approval.timeout) for the approvers.

    Example:

        tradeops runbook run failover --param drain_timeout=30
    """
    run_guided(context(), name, parse_param_overrides(param), yes=yes, as_json=as_json, poll=poll,
               approval_timeout=approval_timeout, execution_id=execution_id)


@runbook_app.command()
def resume(
    execution: ExecutionArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before actions.")] = False,
    approval_timeout: TimeoutOpt = None,
    poll: PollOpt = 1.0,
    as_json: JsonOpt = False,
) -> None:
    """Continue an interrupted or stopped execution from the step it stopped at.

    Refused under a roster other than the one the execution started with. Without a terminal it
    needs --yes, and it says so before taking the execution over.

    Example:

        tradeops runbook resume failover-20261126T090725Z-a1b2c3
    """
    _unattended(f"runbook resume {execution}", yes)
    ctx = context()
    ctx.announce(quiet=as_json)
    console = err if as_json else out

    def asker(prompt: str) -> bool:
        return ask(prompt, to_stderr=as_json)

    outcome = engine.resume_execution(
        ctx.settings, execution, aws=ctx.aws, assume_yes=yes, confirm=None if yes else asker,
        observers=[ConsoleObserver(console)], poll_seconds=poll, approval_timeout=approval_timeout)
    if as_json:
        print_json({"execution_id": outcome.execution_id, "status": outcome.status, "reason": outcome.reason,
                    "steps": outcome.steps, "target": ctx.target_json()})
    _conclude(outcome)


def _show_view(view: dict[str, Any]) -> None:
    out.print(f"[bold]step {view['step']} of {view['execution_id']}: {escape(view['title'])}[/] "
              f"[dim]({view['step_id']})[/]")
    out.print(f"  runbook:   {view['runbook']} v{view['version']} (sha256 {view['runbook_sha256']})", markup=False)
    out.print(f"  executor:  {', '.join(view['executors']) or human(view['executor'])}", markup=False)
    if view.get("action"):
        args = ", ".join(f"{k}={human(v)}" for k, v in view["action"]["args"].items())
        out.print(f"  action:    {view['action']['name']}({args})", markup=False)
    request = view.get("request")
    if request:
        out.print(f"  requested: {when(request['at'])}, waiting {duration(view.get('waited_seconds', 0))} of "
                  f"{duration(request['timeout'])}", markup=False)
    else:
        out.print("  requested: not yet (the run has not reached this step)", markup=False)
    decisions = view.get("decisions") or {}
    needed = (view.get("approval") or {}).get("count")
    approved = ", ".join(decisions.get("approved_by") or []) or "none"
    out.print(f"  approvals: {approved} ({len(decisions.get('approved_by') or [])} of {needed} needed)", markup=False)
    for who, why in decisions.get("rejected_by") or []:
        out.print(f"  rejected:  {who} ({why})", markup=False)
    for who, why in decisions.get("not_counted") or []:
        out.print(f"  not counted: {who}: {why}", markup=False)


def _decide(execution: str, step: str, decision: str, reason: str, yes: bool, as_json: bool) -> None:
    ctx = context()
    ctx.announce(quiet=as_json)
    view = engine.approval_view(ctx.settings, execution, step, aws=ctx.aws)
    if not as_json:
        _show_view(view)
    verb = "Approve" if decision == "approve" else "Reject"
    confirm(f"{verb} step {step} of {execution}?", yes=yes, what=f"{verb.lower()} step {step}")
    approval = engine.decide(ctx.settings, execution, step, decision, aws=ctx.aws, reason=reason)
    if as_json:
        print_json({"decision": decision, "execution_id": execution, "step_id": step,
                    "identity": approval.identity, "identity_source": approval.identity_source,
                    "roles": list(approval.roles), "reason": reason, "at": approval.at, "binding": approval.binding,
                    "view": view, "target": ctx.target_json()})
        return
    done = "approved" if decision == "approve" else "rejected"
    out.print(f"{done} step {step} of {execution} as {approval.identity} (identity from "
              f"{approval.identity_source}; roles {', '.join(approval.roles) or 'none'})", markup=False)


@runbook_app.command()
def approve(
    execution: ExecutionArg,
    step: StepArg,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")] = "",
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Approve a step of someone else's execution (four-eyes), after seeing what it will do.

    Shows the step, its action and arguments, the executor, the runbook and its SHA-256, and the
    approvals so far, then asks. Accepted only once the run has requested the approval, and only
    until the step's action starts.

    Example:

        tradeops runbook approve failover-20261126T090725Z-a1b2c3 toggle-to-secondary --reason "checked with risk"
    """
    _decide(execution, step, "approve", reason, yes, as_json)


@runbook_app.command()
def reject(
    execution: ExecutionArg,
    step: StepArg,
    reason: Annotated[str, typer.Option(help="Why (required; recorded in the audit log).")] = "",
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Reject a step: its action will not run and the execution stops. Needs --reason.

    A rejection counts until the step's action starts: one recorded while the executor is still at
    the confirmation prompt stops the action.

    Example:

        tradeops runbook reject failover-20261126T090725Z-a1b2c3 toggle-to-secondary --reason "secondary not ready"
    """
    if len(reason.strip()) < 3:
        raise BadInput("reject needs --reason (why; it is recorded and shown to the executor)")
    _decide(execution, step, "reject", reason, yes, as_json)


@runbook_app.command()
def withdraw(
    execution: ExecutionArg,
    step: StepArg,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")] = "",
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Withdraw your approval of a step whose action has not started (it stops counting at once).

    Example:

        tradeops runbook withdraw failover-20261126T090725Z-a1b2c3 toggle-to-secondary --reason "wrong execution"
    """
    ctx = context()
    ctx.announce(quiet=as_json)
    confirm(f"Withdraw your approval of step {step} of {execution}?", yes=yes, what="withdrawing the approval")
    engine.withdraw(ctx.settings, execution, step, aws=ctx.aws, reason=reason)
    if as_json:
        print_json({"withdrawn": True, "execution_id": execution, "step_id": step, "target": ctx.target_json()})
        return
    out.print(f"withdrew your approval of step {step} of {execution}", markup=False)


@runbook_app.command()
def abort(
    execution: ExecutionArg,
    reason: Annotated[str, typer.Option(help="Why (recorded in the audit log).")] = "",
    rollback: Annotated[bool, typer.Option(help="Also undo the completed actions, newest first.")] = False,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Abort an execution (it can no longer be resumed).

    Example:

        tradeops runbook abort failover-20261126T090725Z-a1b2c3 --reason "drill over" --rollback
    """
    ctx = context()
    ctx.announce(quiet=as_json)
    confirm(f"Abort {execution}{' and roll back its completed actions' if rollback else ''}?", yes=yes,
            what=f"aborting {execution}")
    result = engine.abort_execution(ctx.settings, execution, aws=ctx.aws, reason=reason, rollback=rollback)
    if as_json:
        print_json({**result, "target": ctx.target_json()})
        return
    note = ""
    if rollback:
        note = ("; completed actions rolled back" if result.get("rolled_back")
                else f"; rollback {result.get('rollback')}")
    out.print(f"execution {execution} aborted (was {result['previous_status']}){note}", markup=False)


def _waiting(row: dict[str, Any]) -> str:
    if row.get("status") not in (WAITING_APPROVAL, APPROVAL_TIMED_OUT) or not row.get("waiting_since"):
        return ""
    try:
        return duration((utcnow() - parse_iso(row["waiting_since"])).total_seconds())
    except ValueError:
        return ""


@runbook_app.command()
def history(
    execution: Annotated[str | None, typer.Argument(metavar="[EXECUTION]",
                                                    help="Execution id (omit to list executions).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List executions, or show one execution's timeline (steps and audit records).

    The timeline is chosen by the audit records' hashed bodies; a record whose query attributes
    disagree with its body is reported as tampering (exit 1).
    """
    ctx = context()
    if execution is None:
        rows = engine.list_executions(ctx.settings, aws=ctx.aws)
        if as_json:
            print_json(rows)
            return
        print_table([Column("execution", ident=True), Column("runbook"), Column("status"),
                     Column("executor", ident=True), Column("started"), Column("at step"), Column("waiting")],
                    [(r.get("execution_id"), r.get("runbook"), r.get("status"), r.get("executor"),
                      when(r.get("created_at")), r.get("current_step") or "", _waiting(r)) for r in rows])
        return
    data = engine.execution_history(ctx.settings, execution, aws=ctx.aws)
    if as_json:
        print_json(data)
    else:
        meta = data["execution"]
        out.print(f"[bold]{meta['execution_id']}[/] {meta['runbook']} — {meta['status']}"
                  + (f" ({escape(str(meta['reason']))})" if meta.get("reason") else ""))
        waiting = _waiting(meta)
        if waiting:
            out.print(f"waiting for approval of {meta.get('current_step')} for {waiting}", markup=False)
        print_table([Column("seq"), Column("at"), Column("event"), Column("step", ident=True),
                     Column("actor", ident=True), Column("detail")],
                    [(e.get("seq"), when(e.get("at")), e.get("kind"), e.get("step_id") or "", e.get("actor"),
                      compact(e.get("data"), 80)) for e in data["timeline"]])
    if data["tampering"]:
        raise CheckFailed(f"execution {execution}: {len(data['tampering'])} audit record(s) tampered with: "
                          + "; ".join(data["tampering"][:3]))
