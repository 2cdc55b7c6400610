"""`tradeops operators show | diff | apply`: the one shared roster of operators (identity → roles)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tradeops.commands.context import context
from tradeops.commands.output import Column, JsonOpt, YesOpt, confirm, out, print_json, print_table, when
from tradeops.commands.runbook import run_guided
from tradeops.runbooks.identity import Operators, as_target_identities, load_operators, operators_path
from tradeops.runbooks.roster import Roster
from tradeops.runtime.platform.settings import load_settings

__all__ = ["operators_app"]

operators_app = typer.Typer(help="The shared roster of operators: who holds which role, who may break the glass.",
                            no_args_is_help=True)

FileArg = Annotated[Path | None, typer.Argument(metavar="[FILE]", help="Operators file (default: "
                                                "TRADEOPS_OPERATORS_FILE or ./operators.yaml).")]


def _file(path: Path | None) -> Operators:
    return load_operators(path or operators_path(load_settings()))


def _roster_json(roster: Operators) -> dict[str, Any]:
    return {"version": roster.version, "digest": roster.digest, "source": roster.source, **roster.as_document()}


def _diff(old: Operators | None, new: Operators) -> dict[str, Any]:
    before = dict(old.roles) if old else {}
    after = dict(new.roles)
    return {
        "added": {k: sorted(v) for k, v in sorted(after.items()) if k not in before},
        "removed": {k: sorted(v) for k, v in sorted(before.items()) if k not in after},
        "changed": {k: {"from": sorted(before[k]), "to": sorted(after[k])}
                    for k in sorted(set(before) & set(after)) if before[k] != after[k]},
        "break_glass": {"from": sorted(old.break_glass) if old else [], "to": sorted(new.break_glass)},
    }


def _print_diff(diff: dict[str, Any]) -> None:
    lines = [f"+ {k}: {', '.join(v)}" for k, v in diff["added"].items()]
    lines += [f"- {k}: {', '.join(v)}" for k, v in diff["removed"].items()]
    lines += [f"~ {k}: {', '.join(c['from'])} -> {', '.join(c['to'])}" for k, c in diff["changed"].items()]
    if diff["break_glass"]["from"] != diff["break_glass"]["to"]:
        lines.append(f"~ break_glass: {', '.join(diff['break_glass']['from']) or 'none'} -> "
                     f"{', '.join(diff['break_glass']['to']) or 'none'}")
    for line in lines or ["no difference"]:
        out.print(line, markup=False)


@operators_app.command("show")
def show(
    version: Annotated[int | None, typer.Option(metavar="N", help="An earlier version of the roster.")] = None,
    show_history: Annotated[bool, typer.Option("--history", help="List every version instead.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """The shared roster in force (or version N, or its history): identities, roles, break-glass roles."""
    roster = Roster(context().aws)
    if show_history:
        rows = roster.history()
        if as_json:
            print_json(rows)
            return
        print_table([Column("version"), Column("digest", ident=True), Column("operators"), Column("set by", ident=True),
                     Column("at"), Column("how"), Column("execution", ident=True)],
                    [(r["version"], r["digest"][:16], r["operators"], r["set_by"], when(r["at"]), r["how"],
                      r["execution_id"] or "") for r in rows])
        return
    current = roster.at_version(version) if version is not None else roster.require()
    if as_json:
        print_json(_roster_json(current))
        return
    out.print(f"roster v{current.version} (digest {current.digest})", markup=False)
    print_table([Column("identity", ident=True), Column("roles")],
                [(name, ", ".join(sorted(roles))) for name, roles in sorted(current.roles.items())])
    out.print(f"break-glass roles: {', '.join(sorted(current.break_glass)) or 'none'}", markup=False)


@operators_app.command("diff")
def diff(file: FileArg = None, as_json: JsonOpt = False) -> None:
    """What applying FILE would change in the shared roster (+ added, - removed, ~ changed)."""
    proposed = _file(file)
    ctx = context()
    proposed = as_target_identities(proposed, ctx.aws)
    current = Roster(ctx.aws).current()
    result = _diff(current, proposed)
    if as_json:
        print_json({"current": _roster_json(current) if current else None, "file": str(proposed.source),
                    "file_digest": proposed.digest, **result})
        return
    out.print(f"{proposed.source} against the roster "
              + (f"v{current.version}" if current else "(none yet: apply seeds it)"), markup=False)
    _print_diff(result)


@operators_app.command("apply")
def apply(
    file: FileArg = None,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
    poll: Annotated[float, typer.Option(metavar="SECONDS", help="Seconds between looks at the approvals.",
                                        min=0.05)] = 1.0,
) -> None:
    """Make FILE the shared roster: seeds it when there is none; otherwise proposes it for four-eyes approval.

    A change runs the change-operators runbook: two approvers (ops-manager, risk) under the roster in
    force must approve before the proposal becomes the roster. Executions already running keep
    their roster: decisions and resumes under the new one are refused.

    Example:

        tradeops operators apply operators.yaml
    """
    proposed = _file(file)
    ctx = context()
    proposed = as_target_identities(proposed, ctx.aws)
    ctx.announce(quiet=as_json)
    roster = Roster(ctx.aws)
    current = roster.current()
    who = ctx.identity()
    if not as_json:
        _print_diff(_diff(current, proposed))
    if current is None:
        confirm(f"Seed the roster with {proposed.source}?", yes=yes, what="seeding the roster")
        seeded = roster.seed(proposed, actor=who)
        if as_json:
            print_json({"seeded": True, **_roster_json(seeded), "target": ctx.target_json()})
        else:
            out.print(f"roster seeded: v{seeded.version} (digest {seeded.digest}) by {who.name}", markup=False)
        return
    proposal = roster.propose(proposed, actor=who)
    if not as_json:
        out.print(f"proposal {proposal['digest']} stored; running change-operators for four-eyes approval",
                  markup=False)
    run_guided(ctx, "change-operators", {"proposal": proposal["digest"]}, yes=yes, as_json=as_json, poll=poll)
