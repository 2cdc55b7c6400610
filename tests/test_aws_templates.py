"""The AWS templates: what the base keeps when the stack goes, and the runtime deployed into the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.commandline import run_main
from tradeops.runbooks.gateledger import EXPIRES_AT
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import BadInput
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.stack.deploy import deploy_runtime_stack, load_template, runtime_stack_name, runtime_template
from tradeops.runtime.stack.supervisor import MODULES

REPO = Path(__file__).resolve().parent.parent
BASE = REPO / "deploy" / "template.yaml"
RUNTIME = REPO / "deploy" / "runtime.yaml"
DRILL_IMAGE = "123456789012.dkr.ecr.eu-west-2.amazonaws.com/tradeops-drill:0.1.0"

# The evidence (docs/aws.md, "What is kept"): the tables, the events table (flag changes, breaker
# transitions, pages: what an incident report is built from), the gate's decisions, the key, both locked buckets
# and the guarded-use trail.
KEPT = {"OrdersTable", "ExecutionsTable", "DecisionsTable", "AuditTable", "ReimbursementsTable", "EventsTable",
        "DataKey", "AuditAnchorBucket", "EvidenceBucket", "TrailBucket"}
# Stateful types (cfn-lint's I3011 list, as it applies to the base template) deleted with the stack on purpose.
WORKING_STATE = {"OrderQueue", "OrderDeadLetterQueue", "ExposureTable", "HeartbeatsTable", "PriceStream",
                 "PrimaryBrokerSecret", "SecondaryBrokerSecret", "IntakeTokenSecret"}
# Each component's service, the module it runs (runtime/stack/supervisor.py) and the base role it runs under.
COMPONENTS = {"worker": ("worker", "WorkerRoleArn"), "intake": ("intake", "WorkerRoleArn"),
              "canary": ("canary", "WorkerRoleArn"), "monitor": ("monitor", "MonitorRoleArn"),
              "audit-anchor": ("audit-anchor", "MonitorRoleArn"), "gate": ("gate", "GateRoleArn")}


def _resources(path: Path) -> dict:
    return load_template(path)[1]["Resources"]


# ---- the templates as files -------------------------------------------------------------------

@pytest.mark.parametrize("path", [BASE, RUNTIME], ids=["base", "runtime"])
def test_the_template_reads_the_same_through_libyaml_as_through_pure_python(path):
    """The loader parses with libyaml where PyYAML has it; its short-form tags and every value come out as the
    pure-Python parser gives them."""
    import yaml

    from tradeops.runtime.stack import deploy

    class PurePython(yaml.SafeLoader):
        pass

    PurePython.add_multi_constructor("!", deploy._construct_tag)
    text = path.read_text(encoding="utf-8")
    assert load_template(path)[1] == yaml.load(text, Loader=PurePython)
    assert issubclass(deploy._CfnLoader, getattr(yaml, "CSafeLoader", yaml.SafeLoader))


@pytest.mark.parametrize("path", [BASE, RUNTIME], ids=["base", "runtime"])
def test_cfn_lint_is_clean_informational_checks_included(path):
    """cfn-lint finds nothing in the template, informational checks (I3011 on stateful resources) included."""
    from cfnlint.api import ManualArgs, lint_file  # a second to import (sympy): paid by this test, not collection

    matches = lint_file(path, config=ManualArgs(include_checks=["I"]))
    assert [str(m) for m in matches] == []


def test_every_evidence_resource_is_retained_and_everything_else_stateful_is_deleted_on_purpose():
    """The evidence tables, the key, both locked buckets and the trail carry DeletionPolicy and UpdateReplacePolicy
    Retain; every other stateful resource says Delete explicitly, and nothing is in neither list."""
    resources = _resources(BASE)
    retained = {k for k, r in resources.items() if r.get("DeletionPolicy") == "Retain"}
    assert retained == KEPT
    for name in KEPT:
        assert resources[name]["UpdateReplacePolicy"] == "Retain", name
    for name in WORKING_STATE:
        assert (resources[name]["DeletionPolicy"], resources[name]["UpdateReplacePolicy"]) == ("Delete", "Delete")
    stateful = {k for k, r in resources.items() if "DeletionPolicy" in r}
    assert stateful == KEPT | WORKING_STATE


def test_every_retained_table_has_deletion_protection_and_point_in_time_recovery():
    """Each retained DynamoDB table refuses deletion and keeps 35 days of point-in-time recovery."""
    resources = _resources(BASE)
    tables = [k for k in KEPT if resources[k]["Type"] == "AWS::DynamoDB::Table"]
    assert len(tables) == 6
    for name in tables:
        props = resources[name]["Properties"]
        assert props.get("DeletionProtectionEnabled") is True, name
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}, name


def test_the_decisions_table_expires_the_gates_nonces_on_the_attribute_the_gate_writes():
    """The decisions table's TTL is on the attribute the gate sets on a nonce (and on nothing a step's ledger has)."""
    spec = _resources(BASE)["DecisionsTable"]["Properties"]["TimeToLiveSpecification"]
    assert spec == {"AttributeName": EXPIRES_AT, "Enabled": True}


def test_no_paging_alarm_treats_missing_data_as_not_breaching():
    """An alarm that pages (its actions go to the alert topic) never reads silence as 'all well': the monitor's
    figures and the queue's age page on silence, the transition-only BreakerOpen keeps its last state."""
    paging = {k: r["Properties"] for k, r in _resources(BASE).items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert {k: p["TreatMissingData"] for k, p in paging.items()} == {
        "OldestPendingOrderAlarm": "breaching", "QueueOldestMessageAlarm": "breaching",
        "TotalExposureAlarm": "breaching", "BreakerOpenAlarm": "missing"}


def test_worker_stop_timeout_covers_the_broker_calls_and_the_drain():
    """ECS waits long enough after SIGTERM for a worker to finish its worst order (status, cancel and a send to
    each broker, each up to connect + read timeout) after its receive, and flush its events; within Fargate's 120 s."""
    settings = Settings()
    worst_order = 4 * (settings.broker_connect_timeout + settings.broker_read_timeout)
    events_flush = 5  # Worker.run: self.events.flush(timeout=5)
    drain = settings.worker_wait_seconds + worst_order + events_flush
    container = _resources(RUNTIME)["WorkerTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    assert drain < container["StopTimeout"] <= 120


def test_each_component_runs_its_supervisor_module():
    """Every service's container runs the module the local stack's supervisor runs for that component."""
    resources = _resources(RUNTIME)
    for component in COMPONENTS:
        logical = "".join(p.title() for p in component.split("-")) + "TaskDefinition"
        container = resources[logical]["Properties"]["ContainerDefinitions"][0]
        command = " ".join(container["Command"])
        assert f"python -m {MODULES[component]}" in command, component


def test_the_gate_takes_drills_flag_changes_only_where_its_stack_says_so():
    """The gate's task sets TRADEOPS_GATE_DRILL_FLAGS from a parameter that defaults to false (production)."""
    runtime = load_template(RUNTIME)[1]
    assert runtime["Parameters"]["GateDrillFlags"]["Default"] == "false"
    container = runtime["Resources"]["GateTaskDefinition"]["Properties"]["ContainerDefinitions"][0]
    env = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert env["TRADEOPS_GATE_DRILL_FLAGS"] == {"Ref": "GateDrillFlags"}


# ---- both templates deployed into the emulator ------------------------------------------------

@pytest.fixture(scope="module")
def runtime(aws_settings):
    """The runtime template deployed into the session's emulator after its base stack, in a VPC with two
    private subnets in two zones, with a drill image; yields (aws, the base stack's outputs, the network)."""
    aws = Aws(aws_settings)
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnets = {ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.42.{n}.0/24", AvailabilityZone=zone)["Subnet"]["SubnetId"]:
               zone for n, zone in ((1, "eu-west-2a"), (2, "eu-west-2b"))}
    group = ec2.create_security_group(GroupName="ut-tasks", Description="tradeops tasks", VpcId=vpc)["GroupId"]
    certificate = aws.client("acm").request_certificate(DomainName="intake.example.com")["CertificateArn"]
    network = {"Image": "123456789012.dkr.ecr.eu-west-2.amazonaws.com/tradeops:0.1.0", "DrillImage": DRILL_IMAGE,
               "VpcId": vpc,
               "PrivateSubnetIds": ",".join(subnets), "ServiceSecurityGroupIds": group,
               "LoadBalancerSecurityGroupIds": group, "CertificateArn": certificate, "WorkerMaxTasks": "8",
               "PrimaryBrokerUrl": "https://primary.broker.example", "SecondaryBrokerUrl": "https://secondary.example",
               # A staging stack: the FIS drills' templates and what the worker tasks need for them.
               "FaultInjection": "enabled", "PrimaryBrokerPort": "8443", "SecondaryBrokerPort": "9443"}
    deploy_runtime_stack(aws, aws_settings, network)
    cfn = aws.client("cloudformation")
    base = {o["OutputKey"]: o["OutputValue"]
            for o in cfn.describe_stacks(StackName=aws_settings.stack_name)["Stacks"][0]["Outputs"]}
    return aws, base, {**network, "zones": subnets}


def test_one_fargate_service_per_component_with_its_role_and_log_group(runtime):
    """The cluster runs one Fargate service per component in the private subnets of two zones, each task under
    its base role (WorkerRole: worker, intake, canary; MonitorRole: monitor, anchorer) and logging to its own
    log group (awslogs, with a retention period)."""
    aws, base, network = runtime
    ecs, logs = aws.client("ecs"), aws.client("logs")
    assert ecs.describe_clusters(clusters=["ut"])["clusters"][0]["status"] == "ACTIVE"
    services = ecs.describe_services(cluster="ut", services=list(COMPONENTS))["services"]
    assert sorted(s["serviceName"] for s in services) == sorted(COMPONENTS)
    for service in services:
        name = service["serviceName"]
        assert service["launchType"] == "FARGATE"
        vpc = service["networkConfiguration"]["awsvpcConfiguration"]
        assert vpc["assignPublicIp"] == "DISABLED"
        assert len({network["zones"][s] for s in vpc["subnets"]}) == 2
        task = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
        assert task["taskRoleArn"] == base[COMPONENTS[name][1]], name
        assert task["networkMode"] == "awsvpc" and task["requiresCompatibilities"] == ["FARGATE"]
        assert task["executionRoleArn"] and task["executionRoleArn"] != task["taskRoleArn"]
        log = task["containerDefinitions"][0]["logConfiguration"]
        assert log["logDriver"] == "awslogs"
        group = logs.describe_log_groups(logGroupNamePrefix=log["options"]["awslogs-group"])["logGroups"]
        assert group[0]["logGroupName"] == f"/ut/{COMPONENTS[name][0]}" and group[0]["retentionInDays"] > 0
    assert next(s for s in services if s["serviceName"] == "worker")["desiredCount"] == 2


def test_intake_behind_an_https_listener_checked_on_its_health_path_with_its_token_from_secrets_manager(
        runtime, aws_settings):
    """The intake's service is registered with the load balancer's target group, whose listener is HTTPS on 443
    with the certificate and whose health check asks the intake's own health route; the bearer token reaches
    the container from Secrets Manager, never as plain environment."""
    from tradeops.runtime.orderpath.intake import create_app

    aws, _, network = runtime
    ecs, elb = aws.client("ecs"), aws.client("elbv2")
    intake = ecs.describe_services(cluster="ut", services=["intake"])["services"][0]
    (registration,) = intake["loadBalancers"]
    group = elb.describe_target_groups(TargetGroupArns=[registration["targetGroupArn"]])["TargetGroups"][0]
    routes = {r.path for r in create_app(aws_settings, token="t", aws=aws).routes if "GET" in getattr(r, "methods", ())}
    assert group["HealthCheckPath"] in routes and group["HealthCheckPath"] == "/health"
    (listener,) = elb.describe_listeners(LoadBalancerArn=group["LoadBalancerArns"][0])["Listeners"]
    assert (listener["Protocol"], listener["Port"]) == ("HTTPS", 443)
    assert listener["Certificates"] == [{"CertificateArn": network["CertificateArn"]}]
    assert listener["DefaultActions"][0]["TargetGroupArn"] == group["TargetGroupArn"]
    container = ecs.describe_task_definition(taskDefinition=intake["taskDefinition"])["taskDefinition"][
        "containerDefinitions"][0]
    assert container["secrets"] == [{"name": "TRADEOPS_INTAKE_TOKEN", "valueFrom": "ut/intake/token"}]
    assert not any(e["name"] == "TRADEOPS_INTAKE_TOKEN" for e in container.get("environment", []))
    aws.secrets.describe_secret(SecretId="ut/intake/token")  # the base template's secret exists by that name


def test_workers_scale_on_backlog_per_task_and_oldest_message_age(runtime):
    """The worker service is a scalable target (2 to WorkerMaxTasks) with a target-tracking policy on messages
    visible per running task (metric math) and a step policy its queue-age alarm triggers."""
    aws, base, _ = runtime
    scaling = aws.client("application-autoscaling")
    (target,) = scaling.describe_scalable_targets(ServiceNamespace="ecs", ResourceIds=["service/ut/worker"])[
        "ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 8)
    policies = {p["PolicyType"]: p for p in scaling.describe_scaling_policies(
        ServiceNamespace="ecs", ResourceId="service/ut/worker")["ScalingPolicies"]}
    assert set(policies) == {"TargetTrackingScaling", "StepScaling"}
    metrics = policies["TargetTrackingScaling"]["TargetTrackingScalingPolicyConfiguration"][
        "CustomizedMetricSpecification"]["Metrics"]
    by_id = {m["Id"]: m for m in metrics}
    assert by_id["visible"]["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "QueueName",
                                                                       "Value": base["OrderQueueName"]}]
    assert by_id["tasks"]["MetricStat"]["Metric"]["MetricName"] == "RunningTaskCount"
    assert [m["Expression"] for m in metrics if m["ReturnData"]] == ["visible / tasks"]
    (alarm,) = aws.cloudwatch.describe_alarms(AlarmNames=["ut-worker-scale-out-on-queue-age"])["MetricAlarms"]
    assert alarm["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert alarm["AlarmActions"] == [policies["StepScaling"]["PolicyARN"]]


def test_a_staging_stack_deploys_the_fis_drills_templates_and_the_worker_tasks_they_need(runtime, aws_settings):
    """FaultInjection enabled: the six FIS experiment templates (each broker: blackhole, latency, packet loss) are
    created, found by the fis backend by their Name tags, each against the worker service's tasks with the
    base template's alarms as stop conditions; the worker task allows ECS fault injection, shares its process
    namespace and runs the SSM agent sidecar; a step naming a template the stack lacks is bad input."""
    from tradeops.experiments.faultbackends import FIS_ACTIONS, FaultStep, FisBackend, fis_template_name

    aws, _, _ = runtime
    fis = aws.client("fis")
    backend = FisBackend(aws_settings, client=fis, ledger=aws_settings.state_dir / "fis.json")
    deployed = backend.templates()
    wanted = {fis_template_name("ut", p, m) for p in ("primary", "secondary") for m in FIS_ACTIONS}
    assert wanted <= set(deployed)
    for name in wanted:
        template = fis.get_experiment_template(id=deployed[name])["experimentTemplate"]
        (target,) = template["targets"].values()
        assert target["resourceType"] == "aws:ecs:task" and target["parameters"]["service"] == "worker"
        assert {c["value"].rsplit(":", 1)[-1] for c in template["stopConditions"]} == {
            "ut-oldest-pending-order-age", "ut-total-exposure"}
        (action,) = template["actions"].values()
        if "sources" in action["parameters"]:  # latency and loss act on traffic to the broker's host alone
            broker = "primary.broker.example" if "primary" in name else "secondary.example"
            assert action["parameters"]["sources"] == broker
        else:
            assert action["parameters"]["port"] == ("8443" if "primary" in name else "9443")
    assert backend.preflight([FaultStep("primary", "latency", {"ms": 2500.0})])["templates"]
    with pytest.raises(BadInput, match="no FIS experiment template ut-nope is deployed here"):
        backend.preflight([FaultStep("secondary", "blackhole", template="ut-nope")])
    ecs = aws.client("ecs")
    worker = ecs.describe_services(cluster="ut", services=["worker"])["services"][0]
    task = ecs.describe_task_definition(taskDefinition=worker["taskDefinition"])["taskDefinition"]
    assert task["pidMode"] == "task"
    # The emulator drops enableFaultInjection from what it registers: the template must ask for it.
    worker_task = _resources(RUNTIME)["WorkerTaskDefinition"]["Properties"]
    assert worker_task["EnableFaultInjection"] == {"Fn::If": ["FaultInjectionEnabled", True, {"Ref": "AWS::NoValue"}]}
    assert [c["name"] for c in task["containerDefinitions"]] == ["worker", "fis-ssm-agent"]
    assert not task["containerDefinitions"][1]["essential"]


def test_runtime_stack_is_named_after_its_base_and_ships_in_the_package():
    """The runtime stack's name follows from the base stack's, and its template is found through the package."""
    assert runtime_stack_name("tradeops") == "tradeops-runtime"
    assert runtime_template().read_text(encoding="utf-8") == RUNTIME.read_text(encoding="utf-8")


def _valid(service: str, operation: str, params: dict) -> str:
    """botocore's own parameter validation of a request against the service's model ("" when valid)."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model(service).operation_model(operation)
    report = ParamValidator().validate(params, model.input_shape)
    return report.generate_report() if report.has_errors() else ""


def test_the_eventbridge_export_runs_the_runtime_stacks_drill_task_with_its_scheduler_role(runtime, aws_settings,
                                                                                           monkeypatch, capsys,
                                                                                           tmp_path):
    """`tradeops --aws drill schedule export --format eventbridge` reads the deployed runtime stack: each schedule
    passes botocore's validation of scheduler:CreateSchedule, its RunTask input ECS's, and names the stack's drill
    task (the drill image, in the stack's cluster and private subnets) and the role the template made for
    EventBridge Scheduler; the emulator's Scheduler creates it. An entry firing in market hours is refused (exit 2)."""
    import json

    import yaml

    aws, _, network = runtime
    for key in [k for k in __import__("os").environ if k.startswith("TRADEOPS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("TRADEOPS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("TRADEOPS_AWS_ENDPOINT_URL", aws_settings.aws_endpoint_url)
    monkeypatch.setenv("TRADEOPS_NAME_PREFIX", "ut")
    monkeypatch.setenv("TRADEOPS_STACK_NAME", "ut")
    schedule = tmp_path / "drills.yaml"
    schedule.write_text(yaml.safe_dump({"drills": [{"name": "nightly", "scenario": "primary-outage",
                                                    "cron": "0 2 * * 1-5", "timezone": "Europe/London",
                                                    "rate": 5}]}))
    code, out, err = run_main(capsys, "--aws", "drill", "schedule", "export", "--format", "eventbridge",
                               "--schedule", str(schedule))
    assert code == 0, err
    (request,) = json.loads(out)["schedules"]
    assert _valid("scheduler", "CreateSchedule", request) == ""
    assert request["ScheduleExpression"] == "cron(0 2 ? * 2-6 *)"  # moved from the schedule commands' test
    run_task = json.loads(request["Target"]["Input"])
    assert _valid("ecs", "RunTask", run_task) == ""
    ecs, iam = aws.client("ecs"), aws.client("iam")
    assert run_task["cluster"] == ecs.describe_clusters(clusters=["ut"])["clusters"][0]["clusterArn"]
    task = ecs.describe_task_definition(taskDefinition=run_task["taskDefinition"])["taskDefinition"]
    (container,) = task["containerDefinitions"]
    assert (container["name"], container["image"]) == ("drill", DRILL_IMAGE)
    assert task["family"] == "ut-drill" and task["requiresCompatibilities"] == ["FARGATE"]
    # It runs as the drill task role the gate knows as a drill identity, and it reaches the gate's load balancer.
    assert task["taskRoleArn"].rsplit("/", 1)[1] == "ut-drill-task"
    (gate,) = aws.client("elbv2").describe_load_balancers(Names=["ut-gate"])["LoadBalancers"]
    assert {"name": "TRADEOPS_GATE_URL", "value": f"https://{gate['DNSName']}"} in container["environment"]
    assert set(run_task["networkConfiguration"]["awsvpcConfiguration"]["subnets"]) == set(network["zones"])
    assert run_task["overrides"]["containerOverrides"][0]["command"][:5] == ["tradeops", "--aws", "drill", "run",
                                                                             "primary-outage"]
    role = iam.get_role(RoleName=request["Target"]["RoleArn"].rsplit("/", 1)[1])["Role"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    aws.client("scheduler").create_schedule(**request)
    assert aws.client("scheduler").get_schedule(Name=request["Name"])["Target"]["RoleArn"] == role["Arn"]

    schedule.write_text(yaml.safe_dump({"drills": [{"name": "daytime", "scenario": "primary-outage",
                                                    "cron": "0 9 * * 1-5", "timezone": "Europe/London"}]}))
    code, out, err = run_main(capsys, "--aws", "drill", "schedule", "export", "--format", "eventbridge",
                               "--schedule", str(schedule))
    assert code == 2 and "inside the blackout window London market hours" in err and out == ""
    assert len(err.strip().splitlines()) == 1


def test_the_runtime_template_makes_no_drill_task_without_a_drill_image():
    """Scheduled drills' task, roles, log group and outputs exist only with a DrillImage: the services' image
    holds no Chaos Toolkit."""
    doc = load_template(RUNTIME)[1]
    drills = {k for k, r in doc["Resources"].items() if r.get("Condition") == "ScheduledDrills"}
    assert drills == {"DrillLogGroup", "DrillTaskRole", "DrillTaskDefinition", "DrillSchedulerRole"}
    assert {k for k, o in doc["Outputs"].items() if o.get("Condition") == "ScheduledDrills"} == {
        "DrillTaskDefinitionArn", "DrillSchedulerRoleArn", "DrillSubnetIds", "DrillSecurityGroupIds"}
    assert doc["Parameters"]["DrillImage"]["Default"] == ""
