"""Fault backends: which one a drill gets, what each can show, the shipped experiments' faults held to them, and
the FIS backend's requests (create, start, get, stop) validated against botocore's FIS model with a Stubber."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import Stubber

from tradeops.experiments.drill import DrillRequest
from tradeops.experiments.drilltarget import plan_faults, reconciliation_checked
from tradeops.experiments.faultbackends import (
    BACKENDS,
    FIS_ACTIONS,
    MODES,
    FaultStep,
    FisBackend,
    check_faults,
    choose,
    faults_in,
    fis_template_name,
    make_backend,
)
from tradeops.runtime.platform.errors import BadInput, OperationFailed
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.stack.deploy import fis_template_request, load_template

REPO = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))
RUNTIME = REPO / "deploy" / "runtime.yaml"


def _experiment(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    return doc, dict(doc.get("configuration") or {})


# ---- choosing a backend ---------------------------------------------------------------------------

def test_each_target_gets_its_default_backend():
    """sim on the local stack; elsewhere proxy when proxies stand in front of the brokers, fis without them."""
    assert choose(None, local=True, proxies=False).name == "sim"
    assert choose(None, local=True, proxies=True).name == "sim"
    assert choose(None, local=False, proxies=True).name == "proxy"
    assert choose(None, local=False, proxies=False).name == "fis"
    assert choose("proxy", local=True, proxies=True).why == "asked for"


@pytest.mark.parametrize("requested, local, proxies, reason", [
    ("chaos", True, True, "unknown fault backend 'chaos'"),
    ("sim", False, True, "only the local stack has"),
    ("fis", True, True, "the fis backend needs AWS"),
    ("proxy", False, False, "no fault proxy in front of the brokers"),
    ("proxy", True, False, "TRADEOPS_FAULT_PROXY=true"),
])
def test_a_backend_the_target_cannot_use_is_bad_input(requested, local, proxies, reason):
    """An unknown backend, sim off the local stack, fis on it, proxy without proxies: BadInput saying which."""
    with pytest.raises(BadInput, match=reason):
        choose(requested, local=local, proxies=proxies)


# ---- what each backend can show ------------------------------------------------------------------

@pytest.mark.parametrize("path", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_every_shipped_experiments_faults_are_ones_the_sim_backend_shows(path):
    """Every shipped experiment's inject_fault steps (method and rollbacks, ${vars} resolved) pass sim's check."""
    steps = faults_in(*_experiment(path))
    check_faults("sim", steps)
    assert all(step.provider in ("primary", "secondary") for step in steps)


@pytest.mark.parametrize("scenario", ["primary-outage", "primary-blackhole", "both-down", "primary-flapping"])
def test_the_outage_and_blackhole_drills_run_through_the_proxy_backend(scenario):
    """The drills whose faults are a closed port or a silent broker have the same faults through the proxy."""
    steps = faults_in(*_experiment(REPO / "experiments" / f"{scenario}.yaml"))
    assert steps and {s.mode for s in steps} <= {"down", "blackhole", "none", "error", "latency"}
    check_faults("proxy", steps)


@pytest.mark.parametrize("backend, step, reason", [
    ("proxy", FaultStep("primary", "loss", {"rate": 0.3}), "cannot inject mode 'loss'"),
    ("sim", FaultStep("primary", "reset"), "cannot inject mode 'reset'"),
    ("fis", FaultStep("primary", "down"), "cannot inject mode 'down'"),
    ("sim", FaultStep("primary", "latency", {"ms": 5.0, "jitter_ms": 1.0}), "not jitter_ms"),
    ("proxy", FaultStep("primary", "blackhole", template="x"), "template names an FIS experiment template"),
])
def test_a_step_its_backend_cannot_show_is_bad_input_naming_the_step(backend, step, reason):
    """A mode or parameter the backend cannot show is refused before anything starts, naming the step."""
    with pytest.raises(BadInput, match=reason):
        check_faults(backend, [step])


def test_fault_steps_are_read_with_the_experiments_configuration_and_checked():
    """faults_in resolves ${name} from the configuration; a bad provider or number is BadInput naming the step."""
    def experiment(arguments: dict[str, Any]) -> dict[str, Any]:
        return {"method": [{"name": "break-it", "type": "action", "provider": {
            "type": "python", "module": "tradeops.experiments.activities", "func": "inject_fault",
            "arguments": arguments}}]}

    [step] = faults_in(experiment({"provider": "primary", "mode": "latency", "ms": "${delay}"}), {"delay": 800})
    assert step == FaultStep("primary", "latency", {"ms": 800.0}, where="break-it")
    with pytest.raises(BadInput, match="break-it: unknown provider 'tertiary'"):
        faults_in(experiment({"provider": "tertiary", "mode": "down"}), {})
    with pytest.raises(BadInput, match="break-it: ms must be a number"):
        faults_in(experiment({"provider": "primary", "mode": "latency", "ms": "soon"}), {})
    with pytest.raises(BadInput, match="inject_fault takes no volume"):
        faults_in(experiment({"provider": "primary", "mode": "down", "volume": 11}), {})


def test_every_mode_a_backend_shows_is_one_inject_fault_accepts():
    """The activities' FAULT_MODES cover every backend's modes, and FIS's each have their ECS action."""
    from tradeops.experiments.activities import FAULT_MODES

    assert set(BACKENDS) == set(MODES)
    assert {m for modes in MODES.values() for m in modes} <= set(FAULT_MODES)
    assert set(MODES["fis"]) - {"none"} == set(FIS_ACTIONS)
    assert fis_template_name("tradeops", "primary", "loss") == "tradeops-primary-packet-loss"


def test_a_drill_of_another_platform_needs_its_intake_token_before_anything_starts(tmp_path):
    """--target without --aws, a token file with no remote target, a missing or empty token: BadInput."""
    experiment, config = _experiment(REPO / "experiments" / "primary-blackhole.yaml")
    local = Settings(state_dir=tmp_path)
    aws = Settings(state_dir=tmp_path, target="aws", primary_proxy_url="http://p", secondary_proxy_url="http://s")
    empty = tmp_path / "token"
    empty.write_text("\n")
    for settings, request, reason in (
            (local, DrillRequest("primary-blackhole", target="https://intake"), "add --aws"),
            (local, DrillRequest("primary-blackhole", token_file=empty), "--token-file goes with"),
            (aws, DrillRequest("primary-blackhole", target="https://intake"), "needs --token-file"),
            (aws, DrillRequest("primary-blackhole", target="https://intake", token_file=tmp_path / "none"),
             "token file"),
            (aws, DrillRequest("primary-blackhole", target="https://intake", token_file=empty), "is empty")):
        with pytest.raises(BadInput, match=reason):
            plan_faults(request, settings, experiment, config, stack_up=False)


def test_what_a_status_query_reconciliation_cannot_check_is_said_and_not_measured():
    """Fills checked by status queries are said to be; orders no broker answered about leave lost and filled twice
    unmeasured (so their tolerances fail), and no fills at all leave filled twice unmeasured."""
    by_status = reconciliation_checked({"reconciliation": {"available": True, "fills_checked": True,
                                                           "fills_source": "status"},
                                        "orders": {"unchecked": 3}}, remote=True)
    assert by_status["record"]["method"] == "each broker's status query"
    assert by_status["unmeasured"] == ["orders_filled_twice", "orders_lost"]
    assert any("3 orders could not be checked" in line for line in by_status["record"]["not_checked"])
    assert any("fill prices and times" in line for line in by_status["record"]["not_checked"])
    blind = reconciliation_checked({"reconciliation": {"available": True, "fills_checked": False}}, remote=False)
    assert blind["unmeasured"] == ["orders_filled_twice"]
    ledger = reconciliation_checked({"reconciliation": {"available": True, "fills_checked": True,
                                                        "fills_source": "ledger"}}, remote=False)
    assert ledger == {"record": {"method": "the brokers' fill ledgers", "note": None, "not_checked": []},
                      "unmeasured": []}


def test_an_order_no_broker_could_be_asked_about_is_unchecked_never_lost_nor_proven():
    """reconcile with ``unchecked`` ids: a FILLED order without a known fill is unchecked, not lost; one with its
    fill is filled and unchecked; a lost order still shows when its brokers did answer."""
    from tradeops.runtime.orderpath.reconcile import reconcile

    orders = {oid: {"order_id": oid, "status": "FILLED", "provider": "primary"} for oid in ("a", "b", "c")}
    recon = reconcile(["a", "b", "c"], orders, {"primary": [{"order_id": "b"}], "secondary": []}, unchecked=["a", "b"])
    assert recon.ids["unchecked"] == ["a", "b"] and recon.ids["lost"] == ["c"]
    assert sorted(recon.ids["filled"]) == ["a", "b"] and recon.counts["unchecked"] == 2


# ---- FIS: the requests, against botocore's model ----------------------------------------------------

def _resolved(value: Any) -> Any:
    """The template's properties with every intrinsic function replaced by a string, as CloudFormation resolves
    them (the FIS model types these fields as strings)."""
    if isinstance(value, list):
        return [_resolved(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)).startswith(("Fn::", "Ref")):
            return "arn:aws:iam::123456789012:role/resolved"
        return {k: _resolved(v) for k, v in value.items()}
    return value


@pytest.fixture
def fis():
    """A FIS client whose calls a Stubber answers: every request is still validated against the service model."""
    client = boto3.client("fis", region_name="eu-west-2", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


def test_the_runtime_templates_fis_experiment_templates_are_valid_create_requests(fis):
    """Each AWS::FIS::ExperimentTemplate of deploy/runtime.yaml, as fis_template_request sends it, passes botocore's
    validation of CreateExperimentTemplate; six of them, one per broker and ECS network action."""
    client, stub = fis
    doc = load_template(RUNTIME)[1]
    templates = {k: r for k, r in doc["Resources"].items() if r["Type"] == "AWS::FIS::ExperimentTemplate"}
    assert len(templates) == 6
    actions = set()
    for resource in templates.values():
        request = fis_template_request(_resolved(resource["Properties"]))
        assert resource["Condition"] == "FaultInjectionEnabled"
        assert {c["source"] for c in request["stopConditions"]} == {"aws:cloudwatch:alarm"}
        actions |= {a["actionId"] for a in request["actions"].values()}
        stub.add_response("create_experiment_template", {"experimentTemplate": {"id": "EXT1"}})
        client.create_experiment_template(**request)
    assert actions == set(FIS_ACTIONS.values())


def _template(name: str, template_id: str, parameters: dict[str, str]) -> dict[str, Any]:
    return {"id": template_id, "tags": {"Name": name},
            "actions": {"Latency": {"actionId": "aws:ecs:task-network-latency", "parameters": parameters}}}


def _backend(client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FisBackend:
    """The fis backend on ``client``; chaostoolkit-aws's activities handed the same client (their module's
    client factory is chaosaws's, not ours)."""
    import chaosaws.fis.actions
    import chaosaws.fis.probes

    for module in (chaosaws.fis.actions, chaosaws.fis.probes):
        monkeypatch.setattr(module, "aws_client", lambda *a, **k: client)
    settings = Settings(state_dir=tmp_path, name_prefix="tradeops")
    return FisBackend(settings, client=client, ledger=tmp_path / "fis.json", poll_seconds=0)


def test_fis_preflight_finds_the_template_and_refuses_what_the_stack_lacks(fis, tmp_path, monkeypatch):
    """preflight lists the templates by Name tag and reads each one a step needs: one that is not deployed, or that
    injects another delay than the step asks, is BadInput before anything starts."""
    client, stub = fis
    backend = _backend(client, tmp_path, monkeypatch)
    listing = {"experimentTemplates": [{"id": "EXTlat", "tags": {"Name": "tradeops-primary-latency"}},
                                       {"id": "EXTbh", "tags": {"Name": "tradeops-primary-blackhole"}}]}
    latency = _template("tradeops-primary-latency", "EXTlat", {"delayMilliseconds": "2500"})
    stub.add_response("list_experiment_templates", listing, {})
    stub.add_response("get_experiment_template", {"experimentTemplate": latency}, {"id": "EXTlat"})
    assert backend.preflight([FaultStep("primary", "latency", {"ms": 2500.0})]) == {
        "templates": {"tradeops-primary-latency": "EXTlat"}}
    stub.add_response("list_experiment_templates", listing, {})
    with pytest.raises(BadInput, match="no FIS experiment template nope is deployed here"):
        backend.preflight([FaultStep("primary", "blackhole", template="nope")])
    stub.add_response("list_experiment_templates", listing, {})
    stub.add_response("get_experiment_template", {"experimentTemplate": latency}, {"id": "EXTlat"})
    with pytest.raises(BadInput, match="injects delayMilliseconds 2500; the experiment asks 800"):
        backend.preflight([FaultStep("primary", "latency", {"ms": 800.0})])


def test_fis_inject_starts_and_watches_and_clear_stops_the_experiment(fis, tmp_path, monkeypatch):
    """inject starts the template's experiment through chaosaws.fis and waits for it to run; clear stops it and
    waits for it to end: start, get, stop requests all valid for FIS, the experiment remembered until stopped."""
    client, stub = fis
    backend = _backend(client, tmp_path, monkeypatch)

    def experiment(status: str) -> dict[str, Any]:
        return {"experiment": {"id": "EXP1", "experimentTemplateId": "EXTbh", "state": {"status": status}}}

    stub.add_response("list_experiment_templates",
                      {"experimentTemplates": [{"id": "EXTbh", "tags": {"Name": "tradeops-primary-blackhole"}}]}, {})
    stub.add_response("start_experiment", experiment("initiating"))
    stub.add_response("get_experiment", experiment("initiating"), {"id": "EXP1"})
    stub.add_response("get_experiment", experiment("running"), {"id": "EXP1"})
    started = backend.inject(FaultStep("primary", "blackhole"))
    assert started["experiment_id"] == "EXP1" and started["state"] == {"status": "running"}
    assert backend.observe("") == {"running": {"primary": "EXP1"}}
    stub.add_response("get_experiment", experiment("running"), {"id": "EXP1"})
    stub.add_response("stop_experiment", experiment("stopping"), {"id": "EXP1"})
    stub.add_response("get_experiment", experiment("stopped"), {"id": "EXP1"})
    assert backend.clear("primary")["state"] == {"status": "stopped"}
    assert backend.observe("") == {"running": {}} and not (tmp_path / "fis.json").exists()
    assert backend.clear("primary")["experiment_id"] is None  # nothing left to stop


def test_an_fis_experiment_that_ends_on_a_stop_condition_fails_the_injection(fis, tmp_path, monkeypatch):
    """An experiment FIS stops (a stop condition's alarm) before it runs: OperationFailed with FIS's reason."""
    client, stub = fis
    backend = _backend(client, tmp_path, monkeypatch)
    stub.add_response("list_experiment_templates",
                      {"experimentTemplates": [{"id": "EXTbh", "tags": {"Name": "tradeops-primary-blackhole"}}]}, {})
    stub.add_response("start_experiment", {"experiment": {"id": "EXP2", "state": {"status": "initiating"}}})
    stub.add_response("get_experiment", {"experiment": {"id": "EXP2", "state": {
        "status": "stopped", "reason": "Experiment stopped by a stop condition"}}}, {"id": "EXP2"})
    with pytest.raises(OperationFailed, match="EXP2 is stopped: Experiment stopped by a stop condition"):
        backend.inject(FaultStep("primary", "blackhole"))


def test_make_backend_knows_only_the_three():
    """make_backend builds sim, proxy and fis, and refuses any other name."""
    settings = Settings()
    assert [make_backend(name, settings).name for name in BACKENDS] == list(BACKENDS)
    with pytest.raises(BadInput, match="unknown fault backend"):
        make_backend("chaos", settings)
