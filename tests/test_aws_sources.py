"""On AWS the brokers and the price feed are real (issue 22, item 4): `tradeops up --aws` starts no simulator unless
asked, real brokers' endpoints and keys are checked before anything starts, and `status` says which is which.

moto stands in for AWS: boto3's own AWS_ENDPOINT_URL points at it, with the template deployed under a prefix of
this module's, and `--aws`. The "real" brokers are simulated brokers this module starts itself, demanding the keys
the template's secrets hold: a worker that fills an order at one has read its key from Secrets Manager.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.orderflow import Flow
from tests.support.stack import run_cli, stack_environment
from tradeops.runtime.brokers.sim import API_KEY_ENV, sim_command
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.errors import ConfigError
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import Settings, load_settings
from tradeops.runtime.stack.deploy import deploy_stack
from tradeops.runtime.stack.plan import Simulated, plan
from tradeops.runtime.stack.status import sources
from tradeops.runtime.stack.supervisor import Component, check_real_brokers, free_port, stop_process

PREFIX = "realsrc"
SIMULATORS = {"broker-primary", "broker-secondary", "prices"}


def test_the_plan_leaves_out_what_is_not_simulated(processes):
    """The local stack's plan has both brokers and the feed; on AWS only the simulators asked for are in it."""
    every = {c.name for c in plan({}, workers=1)}
    assert SIMULATORS <= every
    real = {c.name for c in plan({}, workers=1, simulate=Simulated(brokers=False, prices=False))}
    assert real == every - SIMULATORS == {"intake", "monitor", "canary", "audit-anchor", "worker-1"}
    assert {c.name for c in plan({}, workers=1, simulate=Simulated(brokers=True, prices=False))} == every - {"prices"}
    assert Simulated(brokers=False, prices=True).flags() == ["--sim-prices"]


def test_sources_say_real_or_simulated_with_the_endpoint(tmp_path):
    """`sources`: a state's simulated brokers and feed, a state's real ones, and with no state the configured ones."""
    settings = load_settings(state_dir=tmp_path, name_prefix="src", primary_url="https://a.example/api")
    simulated = {"brokers": {"primary": {"url": "http://127.0.0.1:1", "control": "http://127.0.0.1:2", "wire": "alpha",
                                         "simulated": True},
                             "secondary": {"url": "http://127.0.0.1:3", "control": "http://127.0.0.1:4",
                                           "wire": "beta"}},
                 "prices": "http://127.0.0.1:5", "price_stream": "src-prices"}
    found = sources(settings, simulated)
    assert found["primary"] == {"simulated": True, "endpoint": "http://127.0.0.1:1", "wire": "alpha",
                                "control": "http://127.0.0.1:2"}
    assert found["secondary"]["simulated"] is True  # a state from before real brokers held simulated ones only
    assert found["prices"] == {"simulated": True, "endpoint": "http://127.0.0.1:5", "stream": "src-prices"}
    real = {"brokers": {p: {"url": f"https://{p}.example", "control": None, "wire": "beta", "simulated": False}
                        for p in ("primary", "secondary")}, "prices": None, "price_stream": "src-prices"}
    found = sources(settings, real)
    assert found["secondary"] == {"simulated": False, "endpoint": "https://secondary.example", "wire": "beta"}
    assert found["prices"] == {"simulated": False, "endpoint": "kinesis:src-prices", "stream": "src-prices"}
    configured = sources(settings)
    assert configured["primary"] == {"simulated": False, "endpoint": "https://a.example/api", "wire": "alpha"}
    assert configured["secondary"]["endpoint"] is None and configured["prices"]["endpoint"] == "kinesis:src-prices"


@pytest.fixture(scope="module")
def aws_real(moto_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """moto with the template deployed under this module's own prefix (its queue, flags and secrets are its own)."""
    settings = load_settings(aws_endpoint_url=moto_endpoint, name_prefix=PREFIX, param_prefix=f"/{PREFIX}",
                             stack_name=PREFIX, state_dir=tmp_path_factory.mktemp("real-state"))
    deploy_stack(Aws(settings), settings)
    return settings


def test_real_brokers_need_an_endpoint_an_adapter_and_a_key(aws_real):
    """check_real_brokers: a missing URL, an unknown wire, a URL that is not http(s) and a missing secret are each
    a ConfigError naming the broker and the fix; configured endpoints with the template's secrets pass."""
    aws = Aws(aws_real)
    with pytest.raises(ConfigError, match=r"no endpoint for the primary broker: set TRADEOPS_PRIMARY_URL.*--sim"):
        check_real_brokers(aws_real, aws)
    urls = {"primary_url": "https://a.example", "secondary_url": "https://b.example"}
    with pytest.raises(ConfigError, match="unknown wire 'gamma'"):
        check_real_brokers(aws_real.model_copy(update={**urls, "secondary_wire": "gamma"}), aws)
    with pytest.raises(ConfigError, match="must start with http"):
        check_real_brokers(aws_real.model_copy(update={**urls, "primary_url": "a.example"}), aws)
    elsewhere = aws_real.model_copy(update={**urls, "name_prefix": "nothing-deployed"})
    with pytest.raises(ConfigError, match="no API key for the primary broker: no secret nothing-deployed/broker/"):
        check_real_brokers(elsewhere, Aws(elsewhere))
    check_real_brokers(elsewhere.model_copy(update={"primary_api_key": "k1", "secondary_api_key": "k2"}), aws)
    check_real_brokers(aws_real.model_copy(update=urls), aws)


def _env(aws_real: Settings, state_dir: Path) -> dict[str, str]:
    """The CLI's environment: moto as "AWS" through boto3's own variable, this module's prefix, no emulator setting."""
    env = stack_environment(state_dir)
    env.update({"AWS_ENDPOINT_URL": str(aws_real.aws_endpoint_url), "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": aws_real.region,
                "TRADEOPS_NAME_PREFIX": PREFIX, "TRADEOPS_PARAM_PREFIX": f"/{PREFIX}", "TRADEOPS_STACK_NAME": PREFIX})
    env.pop("AWS_SESSION_TOKEN", None)
    return env


def test_up_aws_without_broker_endpoints_is_one_line_and_starts_nothing(aws_real, tmp_path):
    """`tradeops up --aws` with no broker endpoint configured and no --sim-brokers: one line, exit 2, no process."""
    done = run_cli("up", "--aws", env=_env(aws_real, tmp_path / "state"), timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: no endpoint for the primary broker") and "--sim-brokers" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not (tmp_path / "state" / "stack.json").exists() and not (tmp_path / "state" / "supervisor.log").exists()


@pytest.fixture(scope="module")
def real_brokers(aws_real: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Component]]:
    """Two brokers that stand in for the firm's real ones: each demands the key the template's secret holds."""
    aws, names = Aws(aws_real), names_for(aws_real)
    logs = tmp_path_factory.mktemp("real-broker-logs")
    started: dict[str, Component] = {}
    try:
        for name, wire, seed in (("primary", "alpha", 1), ("secondary", "beta", 2)):
            order_port, control_port = free_port(), free_port()
            key = aws.secrets.get_secret_value(SecretId=names.broker_secret(name))["SecretString"]
            comp = Component(name=name, argv=sim_command(name=name, wire=wire, host="127.0.0.1", order_port=order_port,
                                                         control_port=control_port, seed=seed),
                             health_url=f"http://127.0.0.1:{control_port}/_sim/health", env={API_KEY_ENV: key},
                             info={"url": f"http://127.0.0.1:{order_port}", "wire": wire,
                                   "control": f"http://127.0.0.1:{control_port}"})
            comp.start(logs, dict(os.environ))
            started[name] = comp
        deadline = time.monotonic() + 15
        while not all(c.healthy() for c in started.values()):
            assert time.monotonic() < deadline, "the stand-in brokers did not start"
            time.sleep(0.1)
        yield started
    finally:
        for comp in started.values():
            if comp.proc is not None:
                stop_process(comp.proc)


def test_up_aws_starts_no_simulator_and_status_says_which_are_real(aws_real, real_brokers, tmp_path):
    """`tradeops up --aws` with the brokers configured starts neither simulated brokers nor the feed; `status --json`
    names each broker and the feed real, with its endpoint; a worker fills an order at the real primary broker with
    the key it read from Secrets Manager."""
    env = _env(aws_real, tmp_path / "state")
    for name, comp in real_brokers.items():
        env[f"TRADEOPS_{name.upper()}_URL"] = comp.info["url"]
        env[f"TRADEOPS_{name.upper()}_WIRE"] = comp.info["wire"]
    up = run_cli("up", "--aws", "--workers", "1", env=env, timeout=120)
    assert up.returncode == 0, up.stdout + up.stderr
    try:
        assert "real " + real_brokers["primary"].info["url"] in up.stdout
        assert f"real kinesis:{PREFIX}-prices" in up.stdout and "simulated" not in up.stdout
        status = run_cli("status", "--json", env=env, timeout=60)
        assert status.returncode == 0, status.stdout + status.stderr
        info = json.loads(status.stdout)
        assert info["target"]["kind"] == "aws" and info["local"] is False
        assert set(info["components"]) == {"intake", "monitor", "canary", "audit-anchor", "worker-1"}
        for name, comp in real_brokers.items():
            assert info["sources"][name] == {"simulated": False, "endpoint": comp.info["url"],
                                             "wire": comp.info["wire"]}
        assert info["sources"]["prices"] == {"simulated": False, "endpoint": f"kinesis:{PREFIX}-prices",
                                             "stream": f"{PREFIX}-prices"}
        flow = Flow({"intake": info["intake"], "state_dir": env["TRADEOPS_STATE_DIR"], "aws_endpoint": None,
                     "region": aws_real.region})
        order = flow.post(flow.order_body("realsrc", 1))
        done = flow.wait_final([order["order_id"]], timeout=30)[order["order_id"]]
        assert (done["status"], done["provider"]) == ("FILLED", "primary")
        fills = httpx.get(f"{real_brokers['primary'].info['control']}/_sim/fills", timeout=5).json()["fills"]
        assert order["order_id"] in {f["order_id"] for f in fills}
    finally:
        down = subprocess.run(["tradeops", "down"], env=env, capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
