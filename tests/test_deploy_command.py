"""`tradeops deploy --aws`: input checked before anything is sent, the explicit target, change sets shown and refused
when they would replace or remove evidence, CloudFormation's own reasons when a release fails."""

from __future__ import annotations

import json
import os
import re
import sys
from io import StringIO
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from rich.console import Console

from tradeops.runtime.platform.aws import PROCESS_REQUESTS, Aws
from tradeops.runtime.platform.errors import OperationFailed, Refused
from tradeops.runtime.platform.settings import load_settings
from tradeops.runtime.platform.statefile import write_state
from tradeops.runtime.stack import changesets
from tradeops.runtime.stack.changesets import Change, Release, StackPlan
from tradeops.runtime.stack.deploy import deploy_stack, load_template

REPO = Path(__file__).resolve().parent.parent
IMAGE = "123456789012.dkr.ecr.eu-west-2.amazonaws.com/tradeops:0.1.0"
CERT = "arn:aws:acm:eu-west-2:123456789012:certificate/1a2b3c4d-0000-1111-2222-333344445555"
NETWORK = ["--vpc", "vpc-0abc12345def67890", "--subnet", "subnet-0aaa1111bbbb2222c",
           "--subnet", "subnet-0ddd3333eeee4444f", "--security-group", "sg-0123456789abcdef0",
           "--lb-security-group", "sg-0fedcba9876543210", "--certificate", CERT]


def _tradeops(capsys, *args: str) -> tuple[int, str, str]:
    """Run the `tradeops` entry point in this process (the same main() the console script runs)."""
    from tradeops.cli import main

    argv = sys.argv
    sys.argv = ["tradeops", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """An environment whose AWS is a closed port and with no local stack: anything sent would fail differently."""
    for key in [k for k in os.environ if k.startswith(("TRADEOPS_", "AWS_"))]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("TRADEOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-2")
    for provider, wire in (("PRIMARY", "alpha"), ("SECONDARY", "beta")):
        monkeypatch.setenv(f"TRADEOPS_{provider}_URL", f"https://{provider.lower()}.broker.example")
        monkeypatch.setenv(f"TRADEOPS_{provider}_WIRE", wire)
    return tmp_path


# ---- nothing is sent ------------------------------------------------------------------------------

def _with(option: str, value: str | None) -> list[str]:
    args = list(NETWORK)
    i = args.index(option)
    if value is None:
        del args[i:i + 2]
    else:
        args[i + 1] = value
    return args


BAD = {
    "no VPC": (_with("--vpc", None), "give the VPC"),
    "a VPC id that is not one": (_with("--vpc", "vpc-12"), "is not a vpc id"),
    "one subnet": (_with("--subnet", None), "at least 2 subnet ids"),
    "a subnet id that is not one": (_with("--subnet", "subnet-XYZ"), "is not a subnet id"),
    "no certificate": (_with("--certificate", None), "give the ACM certificate"),
    "a certificate that is not an ACM ARN": (_with("--certificate", "arn:aws:iam::123456789012:server-certificate/x"),
                                             "is not an ACM certificate ARN"),
    "a security group id that is not one": (_with("--security-group", "sg_1"), "is not a security group id"),
    "an image that is not a URI": ([*NETWORK, "--image", "tradeops latest"], "is not an image URI"),
    "a stack name AWS refuses": ([*NETWORK, "--stack-name", "1-stack"], "is not one CloudFormation accepts"),
    "a stack name too long for its runtime stack": ([*NETWORK, "--stack-name", "s" * 121],
                                                    "is not one CloudFormation accepts"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_stops_before_anything_is_sent(nowhere, capsys, case):
    """A missing or malformed network value, image or stack name exits 2 with one line naming it; no request
    leaves the process (AWS here is a closed port, and the request counter does not move)."""
    args, expected = BAD[case]
    before = PROCESS_REQUESTS.snapshot()
    code, out, err = _tradeops(capsys, "deploy", "--aws", *args, "--yes")
    assert code == 2, err
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert PROCESS_REQUESTS.snapshot() == before and out == ""


BAD_BROKERS = {
    "no primary broker": ("TRADEOPS_PRIMARY_URL", None,
                          "needs the primary broker's order API: set TRADEOPS_PRIMARY_URL"),
    "a broker URL that is not one": ("TRADEOPS_SECONDARY_URL", "secondary.example", "is not an http(s) URL"),
    "a wire with no adapter": ("TRADEOPS_PRIMARY_WIRE", "gamma", "is not a wire tradeops has an adapter for"),
}


@pytest.mark.parametrize("case", list(BAD_BROKERS))
def test_a_release_without_the_brokers_real_addresses_stops_before_anything_is_sent(nowhere, capsys, monkeypatch,
                                                                                   case):
    """The services on AWS talk to the real brokers: a missing or malformed broker URL, or a wire no adapter
    speaks, exits 2 with one line naming the setting, and nothing is sent."""
    name, value, expected = BAD_BROKERS[case]
    if value is None:
        monkeypatch.delenv(name)
    else:
        monkeypatch.setenv(name, value)
    before = PROCESS_REQUESTS.snapshot()
    code, out, err = _tradeops(capsys, "deploy", "--aws", "--image", IMAGE, *NETWORK, "--yes")
    assert code == 2, err
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert PROCESS_REQUESTS.snapshot() == before and out == ""


def test_the_broker_url_check_is_the_runtime_templates_own_pattern():
    """The broker URL check is the runtime template's AllowedPattern for both brokers, and its wires are the
    adapters tradeops has."""
    from tradeops.runtime.orderpath.providers import ADAPTERS
    from tradeops.runtime.stack.deploy import BROKER_URL

    params = load_template(REPO / "deploy" / "runtime.yaml")[1]["Parameters"]
    for name in ("Primary", "Secondary"):
        assert params[f"{name}BrokerUrl"]["AllowedPattern"] == BROKER_URL
        assert sorted(params[f"{name}BrokerWire"]["AllowedValues"]) == sorted(ADAPTERS)


def test_with_no_target_chosen_it_stops_with_one_line_and_sends_nothing(nowhere, capsys):
    """Without --aws and with no local stack up, deploy stops with the target rules' one line, sending nothing."""
    before = PROCESS_REQUESTS.snapshot()
    code, _, err = _tradeops(capsys, "deploy", "--image", IMAGE, *NETWORK, "--yes")
    assert code == 1 and "no target was chosen" in err and len(err.strip().splitlines()) == 1
    assert PROCESS_REQUESTS.snapshot() == before


def test_a_running_local_stack_is_never_deployed_to(nowhere, capsys):
    """With a local stack up and no --aws, deploy refuses in one line rather than deploy into the emulator."""
    settings = load_settings()
    write_state(settings.state_file, {"status": "ready", "supervisor_pid": os.getpid(), "local": True,
                                      "aws_endpoint": "http://127.0.0.1:9", "brokers": {}})
    before = PROCESS_REQUESTS.snapshot()
    code, _, err = _tradeops(capsys, "deploy", "--image", IMAGE, *NETWORK, "--yes")
    assert code == 1 and "deploys to AWS only: add --aws" in err and len(err.strip().splitlines()) == 1
    assert PROCESS_REQUESTS.snapshot() == before


def test_the_local_checks_are_the_runtime_templates_own_patterns():
    """The image and certificate checks are the runtime template's AllowedPattern, so what passes here is what
    CloudFormation accepts."""
    params = load_template(REPO / "deploy" / "runtime.yaml")[1]["Parameters"]
    assert params["Image"]["AllowedPattern"] == changesets.IMAGE_URI
    assert params["CertificateArn"]["AllowedPattern"] == changesets.CERTIFICATE_ARN


# ---- against moto standing in for AWS -------------------------------------------------------------

@pytest.fixture
def on_moto(nowhere, moto_endpoint, monkeypatch, request):
    """AWS is the session's emulator (AWS_ENDPOINT_URL, --aws); a fresh prefix and a VPC with two subnets in two
    zones and a certificate of its own. Yields the deploy arguments and a CloudFormation client."""
    prefix = "dp" + str(abs(hash(request.node.name)) % 10**6)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("TRADEOPS_NAME_PREFIX", prefix)
    monkeypatch.setenv("TRADEOPS_PARAM_PREFIX", f"/{prefix}")
    session = boto3.session.Session(region_name="eu-west-2")
    ec2 = session.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.51.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.51.{n}.0/24", AvailabilityZone=f"eu-west-2{z}")[
        "Subnet"]["SubnetId"] for n, z in ((1, "a"), (2, "b"))]
    group = ec2.create_security_group(GroupName=prefix, Description="tasks", VpcId=vpc)["GroupId"]
    cert = session.client("acm").request_certificate(DomainName=f"{prefix}.example.com")["CertificateArn"]
    args = ["--stack-name", prefix, "--vpc", vpc, "--subnet", ",".join(subnets), "--security-group", group,
            "--lb-security-group", group, "--certificate", cert]
    return prefix, args, session.client("cloudformation")


def _open_change_sets(cfn, prefix: str) -> list[str]:
    """Change sets of the release's two stacks not executed (moto lists every stack's, executed ones too)."""
    return [c["ChangeSetName"] for c in cfn.list_change_sets(StackName=prefix)["Summaries"]
            if c["StackName"] in (prefix, f"{prefix}-runtime") and c["ExecutionStatus"] != "EXECUTE_COMPLETE"]


def _base_deployed(prefix: str, endpoint: str) -> None:
    """The base stack created the way the local stack creates it. moto (5.2) executes a new stack's change set
    without giving the stack its outputs, and the runtime's parameters come from the base's outputs, so a first
    release of both stacks cannot run against it; the runtime's first release can (its own outputs stay empty)."""
    settings = load_settings(aws_endpoint_url=endpoint, stack_name=prefix)
    deploy_stack(Aws(settings), settings)


def test_a_first_release_creates_the_runtime_and_a_second_has_nothing_to_change(on_moto, moto_endpoint, capsys):
    """With the base deployed, a first release finds nothing to change in it, shows the runtime's change set (every
    resource added) and creates the runtime stack from the base's outputs; the same release again changes nothing
    and says so, leaving no change set behind."""
    prefix, args, cfn = on_moto
    _base_deployed(prefix, moto_endpoint)
    code, out, err = _tradeops(capsys, "deploy", "--aws", "--image", IMAGE, *args, "--yes", "--json")
    assert code == 0, err
    doc = json.loads(out)
    base, runtime = doc["stacks"]
    assert (base["stack"], base["status"], runtime["stack"], runtime["kind"]) == (
        prefix, "no changes", f"{prefix}-runtime", "CREATE")
    assert {"Cluster", "WorkerService", "HttpsListener", "WorkerScalableTarget"} <= {
        c["logical_id"] for c in runtime["changes"]}
    assert all(c["action"] == "Add" for c in runtime["changes"]) and doc["deployed"] is True
    ecs = boto3.session.Session(region_name="eu-west-2").client("ecs")
    assert any(arn.endswith(f"/{prefix}") for arn in ecs.list_clusters()["clusterArns"])
    parameters = {p["ParameterKey"]: p["ParameterValue"]
                  for p in cfn.describe_stacks(StackName=f"{prefix}-runtime")["Stacks"][0]["Parameters"]}
    assert parameters["WorkerRoleArn"] == base["outputs"]["WorkerRoleArn"] and parameters["Image"] == IMAGE
    code, out, err = _tradeops(capsys, "deploy", "--aws", "--image", IMAGE, *args)
    assert code == 0, err
    assert out.strip().endswith("nothing to change") and "no changes" in out
    assert _open_change_sets(cfn, prefix) == []


def test_removing_a_stateful_resource_is_refused_unless_named_and_nothing_changes(on_moto, moto_endpoint, capsys,
                                                                                   tmp_path, monkeypatch):
    """A release whose change set would remove the events table is refused before anything changes, naming it
    and --allow-replace; its change sets are deleted and the stack keeps the table. Named with --allow-replace,
    the refusal lifts (and without a terminal the release then stops at its confirmation, deleting them too)."""
    prefix, args, cfn = on_moto
    _base_deployed(prefix, moto_endpoint)
    renamed = tmp_path / "template.yaml"
    text = (REPO / "deploy" / "template.yaml").read_text(encoding="utf-8")
    renamed.write_text(re.sub(r"\bEventsTable\b", "EventsLog", text), encoding="utf-8")
    monkeypatch.setenv("TRADEOPS_TEMPLATE_PATH", str(renamed))
    code, out, err = _tradeops(capsys, "deploy", "--aws", "--image", IMAGE, *args, "--yes")
    assert code == 1 and "EventsTable (AWS::DynamoDB::Table, remove)" in err and "--allow-replace EventsTable" in err
    assert len(err.strip().splitlines()) == 1
    assert "- EventsTable" in out  # shown before the refusal
    assert _open_change_sets(cfn, prefix) == []
    resources = {r["LogicalResourceId"] for r in cfn.list_stack_resources(StackName=prefix)["StackResourceSummaries"]}
    assert "EventsTable" in resources and "EventsLog" not in resources
    code, _, err = _tradeops(capsys, "deploy", "--aws", "--image", IMAGE, *args, "--allow-replace", "EventsTable")
    assert code == 1 and "needs a confirmation" in err
    assert _open_change_sets(cfn, prefix) == []


# ---- what moto cannot show: CloudFormation's replacement details and failures (botocore's Stubber) ----

class _StubbedAws:
    """Stands in for runtime.platform.aws.Aws: one real botocore CloudFormation client under a Stubber, which
    checks every request we make and every answer we read against botocore's service model."""

    def __init__(self) -> None:
        self.cfn = boto3.session.Session(region_name="eu-west-2", aws_access_key_id="x",
                                         aws_secret_access_key="x").client("cloudformation")
        self.stub = Stubber(self.cfn)

    def client(self, name: str):
        assert name == "cloudformation"
        return self.cfn


RELEASE = Release(stack_name="tradeops", image=IMAGE, vpc="vpc-0abc12345def67890",
                  subnets=("subnet-0aaa1111bbbb2222c", "subnet-0ddd3333eeee4444f"),
                  service_groups=("sg-0123456789abcdef0",), balancer_groups=("sg-0fedcba9876543210",), certificate=CERT)
STACK_ID = "arn:aws:cloudformation:eu-west-2:123456789012:stack/tradeops/1a2b3c4d-0000-1111-2222-333344445555"
CS_ID = "arn:aws:cloudformation:eu-west-2:123456789012:changeSet/tradeops-1/1a2b3c4d-0000-1111-2222-333344445555"
OUTPUTS = [{"OutputKey": k, "OutputValue": v} for k, v in (
    ("WorkerRoleArn", "arn:aws:iam::123456789012:role/tradeops-WorkerRole-1"),
    ("MonitorRoleArn", "arn:aws:iam::123456789012:role/tradeops-MonitorRole-1"), ("OrderQueueName", "tradeops-orders"))]


def _stack(name: str, status: str, outputs: list | None = None) -> dict:
    return {"Stacks": [{"StackName": name, "StackId": STACK_ID, "StackStatus": status,
                        "CreationTime": "2026-12-01T00:00:00Z", "Outputs": outputs or []}]}


def test_a_replaced_audit_table_is_shown_in_red_and_refused_then_its_change_sets_are_deleted():
    """CloudFormation says the audit table would be replaced (Replacement True, which moto never reports): the plan
    marks it unsafe, shows it in red, and the release is refused with the change set deleted. Stubber checks
    our requests and the parsing of the answers against botocore's models."""
    aws = _StubbedAws()
    base_text = (REPO / "deploy" / "template.yaml").read_text(encoding="utf-8")
    s = aws.stub
    s.add_response("describe_stacks", _stack("tradeops", "UPDATE_COMPLETE"), {"StackName": "tradeops"})
    s.add_response("describe_stacks", _stack("tradeops-runtime", "UPDATE_COMPLETE"),
                   {"StackName": "tradeops-runtime"})
    s.add_response("create_change_set", {"Id": CS_ID, "StackId": STACK_ID})
    s.add_response("describe_change_set", {
        "ChangeSetId": CS_ID, "StackName": "tradeops", "Status": "CREATE_COMPLETE", "ExecutionStatus": "AVAILABLE",
        "Changes": [{"Type": "Resource", "ResourceChange": {
            "Action": "Modify", "LogicalResourceId": "AuditTable", "ResourceType": "AWS::DynamoDB::Table",
            "Replacement": "True", "Scope": ["Properties"]}},
            {"Type": "Resource", "ResourceChange": {
                "Action": "Modify", "LogicalResourceId": "AlertTopic", "ResourceType": "AWS::SNS::Topic",
                "Replacement": "False", "Scope": ["Properties"]}}]},
        {"ChangeSetName": CS_ID, "StackName": "tradeops"})
    s.add_response("get_template", {"TemplateBody": base_text}, {"StackName": "tradeops", "TemplateStage": "Original"})
    s.add_response("describe_stacks", _stack("tradeops", "UPDATE_COMPLETE", OUTPUTS), {"StackName": "tradeops"})
    s.add_response("create_change_set", {"Id": CS_ID + "r", "StackId": STACK_ID})
    s.add_response("describe_change_set", {
        "ChangeSetId": CS_ID + "r", "StackName": "tradeops-runtime", "Status": "FAILED",
        "StatusReason": "The submitted information didn't contain changes. Submit different information to create "
                        "a change set."}, {"ChangeSetName": CS_ID + "r", "StackName": "tradeops-runtime"})
    s.add_response("delete_change_set", {}, {"ChangeSetName": CS_ID + "r", "StackName": "tradeops-runtime"})
    s.add_response("delete_change_set", {}, {"ChangeSetName": CS_ID, "StackName": "tradeops"})
    with s:
        plans = changesets.plan(aws, load_settings(), RELEASE)
        audit = next(c for c in plans[0].changes if c.logical_id == "AuditTable")
        assert audit.unsafe and not next(c for c in plans[0].changes if c.logical_id == "AlertTopic").unsafe
        assert plans[1].status == "no changes"
        console = Console(file=StringIO(), force_terminal=True, color_system="standard", width=200)
        from tradeops.commands import deploy as deploy_command

        deploy_command.out, saved = console, deploy_command.out
        try:
            deploy_command._show(plans)
        finally:
            deploy_command.out = saved
        shown = console.file.getvalue().splitlines()
        audit_line = next(line for line in shown if "AuditTable" in line)
        assert audit_line.startswith("\x1b[1;31m")  # bold red
        assert "AWS::DynamoDB::Table  modify, replaced (stateful)" in re.sub(r"\x1b\[[0-9;]*m", "", audit_line)
        assert "\x1b[1;31m" not in next(line for line in shown if "AlertTopic" in line)
        with pytest.raises(Refused, match=r"AuditTable \(AWS::DynamoDB::Table, replace\).*--allow-replace AuditTable"):
            changesets.refuse_unsafe(aws, plans, [])
        s.assert_no_pending_responses()


def test_a_refused_change_set_says_cloudformations_reason_and_leaves_a_new_stack_uncreated():
    """A change set CloudFormation refuses (FAILED) stops the release with its StatusReason; a first release's
    empty stack is deleted again, so the account is as it was."""
    aws = _StubbedAws()
    s = aws.stub
    s.add_response("describe_stacks", {"Stacks": []}, {"StackName": "tradeops"})
    s.add_response("describe_stacks", {"Stacks": []}, {"StackName": "tradeops-runtime"})
    s.add_response("create_change_set", {"Id": CS_ID, "StackId": STACK_ID})
    reason = "Parameter 'ParamPrefix' must match pattern ^/[A-Za-z0-9_./-]*[A-Za-z0-9_-]$"
    s.add_response("describe_change_set", {"ChangeSetId": CS_ID, "StackName": "tradeops", "Status": "FAILED",
                                           "StatusReason": reason}, {"ChangeSetName": CS_ID, "StackName": "tradeops"})
    s.add_response("delete_change_set", {}, {"ChangeSetName": CS_ID, "StackName": "tradeops"})
    s.add_response("describe_stacks", _stack("tradeops", "REVIEW_IN_PROGRESS"), {"StackName": "tradeops"})
    s.add_response("delete_stack", {}, {"StackName": "tradeops"})
    with s, pytest.raises(OperationFailed, match=re.escape(reason) + r".*nothing was changed"):
        changesets.plan(aws, load_settings(), RELEASE)
    s.assert_no_pending_responses()


def test_an_update_that_fails_is_rolled_back_and_says_which_resource_and_why():
    """An executed change set that CloudFormation rolls back ends the release with the first failed resource and
    CloudFormation's ResourceStatusReason, and says the stack is back as it was."""
    aws = _StubbedAws()
    s = aws.stub
    base = StackPlan("base", "tradeops", "UPDATE", "", [], change_set=CS_ID,
                     changes=[Change("AlertTopic", "AWS::SNS::Topic", "Modify", "False", False)])
    runtime = StackPlan("runtime", "tradeops-runtime", "UPDATE", "", [], status="no changes")
    reason = "Resource handler returned message: \"Invalid parameter: KmsMasterKeyId\""

    def event(n: int, logical: str, status: str, why: str | None = None) -> dict:
        found = {"StackId": STACK_ID, "EventId": f"e{n}", "StackName": "tradeops", "LogicalResourceId": logical,
                 "ResourceStatus": status, "Timestamp": f"2026-12-01T00:00:0{n}Z"}
        return {**found, "ResourceStatusReason": why} if why else found

    s.add_response("describe_stacks", _stack("tradeops", "UPDATE_COMPLETE", OUTPUTS), {"StackName": "tradeops"})
    s.add_response("describe_stack_events", {"StackEvents": [event(0, "tradeops", "UPDATE_COMPLETE")]},
                   {"StackName": "tradeops"})
    s.add_response("execute_change_set", {}, {"ChangeSetName": CS_ID, "StackName": "tradeops"})
    s.add_response("describe_stack_events", {"StackEvents": [
        event(4, "tradeops", "UPDATE_ROLLBACK_COMPLETE"), event(3, "AlertTopic", "UPDATE_COMPLETE"),
        event(2, "AlertTopic", "UPDATE_FAILED", reason), event(1, "tradeops", "UPDATE_IN_PROGRESS"),
        event(0, "tradeops", "UPDATE_COMPLETE")]}, {"StackName": "tradeops"})
    s.add_response("describe_stacks", _stack("tradeops", "UPDATE_ROLLBACK_COMPLETE"), {"StackName": "tradeops"})
    seen = []
    with s, pytest.raises(OperationFailed) as failed:
        changesets.execute(aws, load_settings(), RELEASE, [base, runtime], on_event=lambda st, e: seen.append(e),
                           poll=0)
    message = str(failed.value)
    assert "UPDATE_ROLLBACK_COMPLETE; it is back as it was" in message and f"AlertTopic: {reason}" in message
    assert [e["EventId"] for e in seen] == ["e1", "e2", "e3", "e4"]
    s.assert_no_pending_responses()
