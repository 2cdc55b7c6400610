"""`tradeops deploy --aws`: both templates to AWS as change sets, shown and confirmed before they run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from tradeops.commands.output import JsonOpt, YesOpt, out, print_json

if TYPE_CHECKING:
    from tradeops.runtime.stack.changesets import StackPlan

__all__ = ["deploy"]

_SIGN = {"Add": "+", "Modify": "~", "Remove": "-", "Import": ">", "Dynamic": "?"}


def deploy(
    aws: Annotated[bool, typer.Option("--aws", help="Deploy to AWS (the only place this command deploys to; same "
                                                    "as `tradeops --aws deploy`).")] = False,
    image: Annotated[str | None, typer.Option(metavar="URI", envvar="TRADEOPS_IMAGE",
                                              help="The image the services run (REGISTRY/REPO:TAG or @sha256:...); "
                                                   "left out, the deployed one stays.")] = None,
    stack_name: Annotated[str | None, typer.Option(
        metavar="NAME", help="The base stack (default: the stack_name setting); the runtime stack is NAME-runtime.")
    ] = None,
    vpc: Annotated[str | None, typer.Option(metavar="VPC_ID", envvar="TRADEOPS_DEPLOY_VPC",
                                            help="The VPC the services run in.")] = None,
    subnets: Annotated[list[str] | None, typer.Option("--subnet", metavar="SUBNET_ID", envvar="TRADEOPS_DEPLOY_SUBNETS",
                                                      help="A private subnet (repeat, or comma-separate; at least "
                                                           "two, in two Availability Zones).")] = None,
    groups: Annotated[list[str] | None, typer.Option("--security-group", metavar="SG_ID",
                                                     envvar="TRADEOPS_DEPLOY_SECURITY_GROUPS",
                                                     help="A security group of the tasks (repeatable).")] = None,
    balancer_groups: Annotated[list[str] | None, typer.Option("--lb-security-group", metavar="SG_ID",
                                                              envvar="TRADEOPS_DEPLOY_LB_SECURITY_GROUPS",
                                                              help="A security group of the intake's load balancer "
                                                                   "(repeatable).")] = None,
    certificate: Annotated[str | None, typer.Option(metavar="ARN", envvar="TRADEOPS_DEPLOY_CERTIFICATE",
                                                    help="ACM certificate of the intake's HTTPS listener.")] = None,
    max_workers: Annotated[int | None, typer.Option(metavar="N", min=2, max=200,
                                                    help="Most worker tasks scaling may run (default 10).")] = None,
    allow_replace: Annotated[list[str] | None, typer.Option("--allow-replace", metavar="NAME",
                                                            help="Let the release replace or remove this stateful "
                                                                 "resource (repeatable).")] = None,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Deploy the base and runtime templates to AWS as CloudFormation change sets.

    Shows what each change set would add, modify, replace or remove (a stateful resource replaced or
    removed in red, and refused unless named with --allow-replace), asks, then executes the base's
    change set and the runtime's, following their events, and prints the stacks' outputs. Nothing is
    sent before every value given has been checked; it never deploys to the local stack.

    The network and certificate may come from the environment (TRADEOPS_DEPLOY_VPC, _SUBNETS,
    _SECURITY_GROUPS, _LB_SECURITY_GROUPS, _CERTIFICATE; docs/aws.md), as a pipeline keeps them.

    Example:

        tradeops deploy --aws --image 123456789012.dkr.ecr.eu-west-2.amazonaws.com/tradeops:0.2.0
    """
    from tradeops.commands.context import choose_aws, context
    from tradeops.commands.output import confirm
    from tradeops.runtime.platform.errors import NoTarget
    from tradeops.runtime.platform.settings import load_settings
    from tradeops.runtime.stack import changesets
    from tradeops.runtime.stack.deploy import broker_parameters

    settings = load_settings()
    release = changesets.validate(
        stack_name=stack_name or settings.stack_name, image=image, vpc=vpc, subnets=subnets or [],
        service_groups=groups or [], balancer_groups=balancer_groups or [], certificate=certificate,
        max_workers=max_workers)
    release = changesets.with_brokers(release, broker_parameters(settings))
    if aws:
        choose_aws(True)
    ctx = context()  # no stack and no --aws: NoTarget, before any client exists
    if ctx.target.kind != "aws":
        raise NoTarget("tradeops deploy deploys to AWS only: add --aws (the local stack deploys its templates "
                       "itself when `tradeops up` starts it)")
    ctx.announce(quiet=as_json)
    plans = changesets.plan(ctx.aws, ctx.settings, release)
    if not as_json:
        _show(plans)
    changesets.refuse_unsafe(ctx.aws, plans, allow_replace or [])
    if all(p.status == "no changes" for p in plans):
        _finish(ctx, plans, as_json, deployed=False)
        return
    try:
        confirm(f"Deploy these changes to {ctx.target_text()}?", yes=yes, what="the release")
    except BaseException:
        changesets.discard(ctx.aws, plans)
        raise
    progress = None if as_json else _progress
    changesets.execute(ctx.aws, ctx.settings, release, plans, on_event=progress or (lambda stack, event: None))
    _finish(ctx, plans, as_json, deployed=True)


def _show(plans: list[StackPlan]) -> None:
    """Each stack's changes, one line each; a stateful resource replaced or removed in red."""
    from rich.markup import escape

    for plan in plans:
        what = {"no changes": "no changes", "after the base": "created once the base is deployed"}.get(
            plan.status, f"{len(plan.changes)} change{'s' if len(plan.changes) != 1 else ''}")
        verb = "create" if plan.kind == "CREATE" else "update"
        out.print(f"{plan.template} stack {plan.stack} ({verb}): {what}", markup=False)
        for change in plan.changes:
            replace = {"True": ", replaced", "Conditional": ", may be replaced"}.get(change.replacement or "", "")
            line = (f"  {_SIGN.get(change.action, '?')} {change.logical_id}  {change.resource_type}  "
                    f"{change.action.lower()}{replace}{' (stateful)' if change.stateful and change.unsafe else ''}")
            out.print(f"[bold red]{escape(line)}[/]" if change.unsafe else escape(line))


def _progress(stack: str, event: dict[str, Any]) -> None:
    from tradeops.commands.output import when

    reason = event.get("ResourceStatusReason")
    out.print(f"  {when(event.get('Timestamp'))}  {stack}  {event.get('LogicalResourceId')}  "
              f"{event.get('ResourceStatus')}{'  ' + reason if reason else ''}", markup=False)


def _finish(ctx: Any, plans: list[StackPlan], as_json: bool, *, deployed: bool) -> None:
    if as_json:
        print_json({"target": ctx.target_json(), "deployed": deployed, "stacks": [p.as_dict() for p in plans]})
        return
    if not deployed:
        out.print("nothing to change", markup=False)
        return
    for plan in plans:
        out.print(f"{plan.template} stack {plan.stack}: deployed", markup=False)
        for key, value in sorted(plan.outputs.items()):
            out.print(f"  {key}: {value}", markup=False)
