"""How a runbook run shows at the terminal: one renderer per kind of event, keyed by the kind (:data:`RENDERERS`)."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.markup import escape

from tradeops.commands.output import compact, human
from tradeops.runbooks import eventkinds as ev
from tradeops.runbooks.events import Event
from tradeops.runbooks.expectations import describe_expect
from tradeops.runbooks.states import COMPLETED, SKIPPED, SUCCEEDED

__all__ = ["RENDERERS", "ConsoleObserver", "duration"]


def duration(seconds: float) -> str:
    seconds = max(float(seconds), 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _started(c: Console, e: Event) -> None:
    d = e.data
    if e.kind == ev.EXECUTION_STARTED:
        c.print(f"[bold]{escape(d['title'])}[/]  (runbook {d['runbook']} v{d['version']}, "
                f"sha256 {d['runbook_sha256'][:12]})")
        c.print(f"service: {escape(d['service'])}; impact tolerance "
                f"{human(d['impact_tolerance'].get('max_outage_minutes'))} min")
    else:
        c.print(f"[bold]resuming[/] at step {human(d.get('at_step'))} (was {human(d.get('previous_status'))})")
    c.print(f"execution [bold]{e.execution_id}[/], executor {escape(e.actor)} (identity from {e.identity_source})")


def _step_started(c: Console, e: Event) -> None:
    d = e.data
    c.print(f"\n[bold cyan]{d['index'] + 1}. {escape(d['title'])}[/]  [dim]({e.step_id})[/]")
    if d.get("description"):
        c.print(f"   [dim]{escape(' '.join(d['description'].split()))}[/]")


def _check(c: Console, e: Event) -> None:
    d = e.data
    mark = "[green]✓[/]" if d.get("met") else "[red]✗[/]"
    value = escape(compact(d.get("value")))
    args = ", ".join(f"{a}={human(v)}" for a, v in (d.get("args") or {}).items())
    extra = f" [dim]{escape(compact(d['detail']))}[/]" if d.get("detail") else ""
    extra += f" [red]{escape(d['error'])}[/]" if d.get("error") else ""
    waited = f" [dim](after {d['waited']} s)[/]" if d.get("polls", 1) > 1 else ""
    c.print(f"   {mark} {d['what']}: {d['probe']}({escape(args)}) = [bold]{value}[/] "
            f"(expect {escape(describe_expect(d.get('expect')))}){waited}{extra}")


def _manual(c: Console, e: Event) -> None:
    c.print(f"   [yellow]☐ {escape(' '.join(e.data['instruction'].split()))}[/]")


def _requested(c: Console, e: Event) -> None:
    d = e.data
    c.print(f"   [yellow]needs {d['count']} approval(s) from: {', '.join(d['roles'])}[/] "
            f"(not {', '.join(d['executors'])}, who execute this run); the approvers were told on the "
            f"approvers' topic. Waiting up to {duration(d['timeout'])}. Each approver runs:")
    c.print(f"     [bold]{escape(d['command'])}[/]")


def _progress(c: Console, e: Event) -> None:
    d = e.data
    who = ", ".join(d["approved_by"]) or "nobody yet"
    c.print(f"   approved by: {escape(who)} ({len(d['approved_by'])} of {d['needed']}) — waiting "
            f"{duration(d.get('elapsed', 0))} of {duration(d.get('timeout', 0))}…")
    for identity, why in d.get("refused") or []:
        c.print(f"   [red]not counted: {escape(identity)}: {escape(why)}[/]")


def _granted(c: Console, e: Event) -> None:
    c.print(f"   [green]approved by {escape(', '.join(e.data['approved_by']))}[/]")


def _rejected(c: Console, e: Event) -> None:
    c.print(f"   [red]rejected by {escape('; '.join(f'{i} ({r})' for i, r in e.data['rejected_by']))}[/]")


def _action_started(c: Console, e: Event) -> None:
    d = e.data
    args = ", ".join(f"{a}={compact(v, 60)}" for a, v in (d.get("args") or {}).items())
    again = f" [dim](run {d['run']})[/]" if d.get("run", 1) > 1 else ""
    c.print(f"   → {d['action']}({escape(args)}){again}")


def _retry(c: Console, e: Event) -> None:
    c.print(f"   [yellow]step was {e.data['reason']}; running its action again[/]")


def _action_finished(c: Console, e: Event) -> None:
    d = e.data
    if d["status"] == SUCCEEDED:
        c.print(f"   [green]✓[/] {d['action']} in {d['duration']} s: {escape(compact(d.get('output')))}")
    else:
        c.print(f"   [red]✗ {d['action']} failed: {escape(str(d.get('error')))}[/]")


def _step_finished(c: Console, e: Event) -> None:
    d = e.data
    status = d.get("status")
    colour = {SUCCEEDED: "green", SKIPPED: "dim"}.get(str(status), "red")
    why = f": {escape(str(d.get('reason') or d.get('error')))}" if status != SUCCEEDED else ""
    c.print(f"   [{colour}]{status}[/]{why}")


def _rollback_started(c: Console, e: Event) -> None:
    c.print(f"\n[bold red]rolling back[/] {', '.join(e.data['steps']) or 'nothing'} ({escape(e.data['reason'])})")


def _rollback_step(c: Console, e: Event) -> None:
    d = e.data
    c.print(f"   ↶ {e.step_id}: {d['status']} " + escape(compact({k: d.get(k) for k in ("action", "args", "error")})))


def _ended(c: Console, e: Event) -> None:
    d = e.data
    colour = "green" if d.get("status") == COMPLETED else "red"
    c.print(f"\n[bold {colour}]execution {e.execution_id}: {d.get('status')}[/]"
            + (f" — {escape(str(d['reason']))}" if d.get("reason") else ""))


RENDERERS: dict[str, Callable[[Console, Event], None]] = {
    ev.EXECUTION_STARTED: _started, ev.EXECUTION_RESUMED: _started, ev.STEP_STARTED: _step_started,
    ev.CHECK_EVALUATED: _check, ev.MANUAL_INSTRUCTION: _manual, ev.APPROVAL_REQUESTED: _requested,
    ev.APPROVAL_PROGRESS: _progress, ev.APPROVAL_GRANTED: _granted, ev.APPROVAL_STOPPED: _rejected,
    ev.ACTION_STARTED: _action_started, ev.ACTION_RETRY: _retry, ev.ACTION_FINISHED: _action_finished,
    ev.STEP_FINISHED: _step_finished, ev.ROLLBACK_STARTED: _rollback_started, ev.ROLLBACK_STEP: _rollback_step,
    ev.EXECUTION_FINISHED: _ended, ev.EXECUTION_STOPPED: _ended,
}
"""How the guided run shows each kind of event; a kind not here (e.g. rollback.finished) is not shown."""


class ConsoleObserver:
    """Renders run events for the person at the terminal (the guided run)."""

    def __init__(self, console: Console) -> None:
        self.c = console

    def notify(self, event: Event) -> None:
        render = RENDERERS.get(event.kind)
        if render is not None:
            render(self.c, event)
