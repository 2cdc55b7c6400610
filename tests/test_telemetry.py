"""Telemetry ops can use (issue 13 item 5): JSON logs with ids, EMF metrics, events off the order's path."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.policies import role_statements
from tests.support.stack import run_cli
from tradeops.runtime.orderpath.providers import BrokerOrder, NotReceived, make_provider
from tradeops.runtime.orderpath.router import Router
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import utcnow
from tradeops.runtime.platform.errors import BadInput
from tradeops.runtime.platform.events import EventLog, read_events
from tradeops.runtime.platform.logs import JsonFormatter, TextFormatter, bound, log_format
from tradeops.runtime.platform.metrics import emf_record, latest_figures, prometheus_text
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.stack.deploy import load_template


# ---- logs --------------------------------------------------------------------------------------
def _line(formatter: logging.Formatter, message: str, **extra: Any) -> str:
    logger = logging.getLogger("tradeops.test-telemetry")
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, message, (), None, extra=extra)
    return formatter.format(record)


def test_a_json_log_line_carries_time_level_component_and_the_bound_order_id():
    """One JSON object per line: UTC ms Z time, level, component, message, the bound order_id and extra fields."""
    with bound(order_id="o-42"):
        line = json.loads(_line(JsonFormatter("worker-1"), "order handled", outcome="done"))
    assert line["at"].endswith("Z") and len(line["at"]) == len("2026-11-26T09:07:25.123Z")
    assert (line["level"], line["component"], line["message"]) == ("WARNING", "worker-1", "order handled")
    assert line["order_id"] == "o-42" and line["outcome"] == "done"
    assert "order_id" not in json.loads(_line(JsonFormatter("worker-1"), "after")), "the binding ends with its block"


def test_the_execution_id_is_bound_the_same_way_and_text_stays_readable():
    """An execution_id binds like an order_id; the text format is one readable line naming it."""
    with bound(execution_id="ex-1"):
        assert json.loads(_line(JsonFormatter("runbook"), "step done"))["execution_id"] == "ex-1"
        text = _line(TextFormatter("runbook"), "step done")
    assert text.endswith("runbook WARNING step done execution_id=ex-1") and not text.startswith("{")
    emf = emf_record("Tradeops", [("BreakerOpen", 1.0, "None")])
    assert json.loads(_line(TextFormatter("worker-1"), "metric", **emf))["_aws"], "EMF lines stay JSON"


def test_the_log_format_comes_from_the_option_then_the_environment(monkeypatch):
    """--log-format wins over TRADEOPS_LOG_FORMAT, json is the default, and an unknown format is bad input."""
    monkeypatch.delenv("TRADEOPS_LOG_FORMAT", raising=False)
    assert log_format() == "json"
    monkeypatch.setenv("TRADEOPS_LOG_FORMAT", "text")
    assert log_format() == "text" and log_format("json") == "json"
    with pytest.raises(BadInput, match="unknown log format 'yaml'"):
        log_format("yaml")


# ---- metrics -----------------------------------------------------------------------------------
def test_an_emf_record_declares_its_metric_with_and_without_its_dimensions():
    """The EMF record names namespace, metric and unit, with a per-Provider and a fleet-wide dimension set
    (the template's BreakerOpen alarm has no dimension)."""
    at = utcnow()
    record = emf_record("Tradeops", [("BreakerOpen", 1.0, "None")], dimensions={"Provider": "primary"}, at=at)
    block = record["_aws"]["CloudWatchMetrics"][0]
    assert record["_aws"]["Timestamp"] == int(at.timestamp() * 1000)
    assert block["Namespace"] == "Tradeops" and block["Dimensions"] == [["Provider"], []]
    assert block["Metrics"] == [{"Name": "BreakerOpen", "Unit": "None"}]
    assert record["BreakerOpen"] == 1.0 and record["Provider"] == "primary"
    assert emf_record("Tradeops", [("TotalExposureGbp", 3.5, "None")])["_aws"]["CloudWatchMetrics"][0][
        "Dimensions"] == [[]]


def test_the_latest_figure_of_each_metric_is_read_back_from_log_lines_and_rendered_for_prometheus(tmp_path):
    """EMF lines in log files give the latest point per metric and dimensions; other lines are ignored;
    the Prometheus text names them tradeops_<snake_case> with lowercase labels."""
    def emf(value: float, at: str, provider: str) -> str:
        rec = emf_record("Tradeops", [("BreakerOpen", value, "None")], dimensions={"Provider": provider})
        return json.dumps({"at": at, "component": "worker-1", **rec})

    (tmp_path / "worker-1.log").write_text("\n".join([
        "not json", json.dumps({"at": "x", "message": "hello"}),
        emf(1, "2026-11-26T10:00:00.000Z", "primary"), emf(0, "2026-11-26T10:00:05.000Z", "primary"),
        emf(1, "2026-11-26T10:00:01.000Z", "secondary")]) + "\n")
    figures = latest_figures([tmp_path / "worker-1.log", tmp_path / "missing.log"])
    assert [(f["dimensions"]["Provider"], f["value"]) for f in figures] == [("primary", 0.0), ("secondary", 1.0)]
    text = prometheus_text(figures)
    assert "# TYPE tradeops_breaker_open gauge" in text
    assert 'tradeops_breaker_open{provider="primary"} 0 1795687205000' in text


# ---- events off the order's path ---------------------------------------------------------------
class _Requests:
    """Every AWS request the clients send, with the thread that sent it (botocore's before-send hook)."""

    def __init__(self, aws: Aws) -> None:
        self.sent: list[tuple[str, int]] = []
        for service in ("cloudwatch", "dynamodb", "sns"):
            getattr(aws, service).meta.events.register("before-send", self._record)

    def _record(self, event_name: str = "", **_: Any) -> None:
        # before-send.<service>.<Operation>, e.g. before-send.cloudwatch.PutMetricData
        self.sent.append((event_name.split(".")[-1], threading.get_ident()))

    def on(self, thread: int) -> list[str]:
        return [what for what, sender in self.sent if sender == thread]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _refused_submit(settings: Settings, events: EventLog) -> list[dict[str, Any]]:
    provider = make_provider("primary", "alpha", f"http://127.0.0.1:{_closed_port()}", api_key="k",
                             connect_timeout=0.5, read_timeout=0.5)
    router = Router(settings, {"primary": provider}, events)
    order = BrokerOrder(order_id=f"tel-{time.monotonic_ns()}", symbol="VOD.L", side="BUY", quantity=1,
                        order_type="MARKET", limit_price=None, account_ref="acct")
    with pytest.raises(NotReceived):
        router.submit("primary", order)  # refused: the breaker opens inside this call
    return list(router.snapshot().values())


def test_no_order_submit_path_sends_put_metric_data(aws_settings, caplog):
    """A submit that opens a breaker sends no AWS request at all from the submitting thread (no
    PutMetricData, no event put, no publish); the flusher publishes the event and its metric as EMF after."""
    caplog.set_level(logging.INFO, logger="tradeops.metrics")
    aws = Aws(aws_settings)
    requests = _Requests(aws)
    events = EventLog(aws, source="test-telemetry", echo=False, background=True)
    started = utcnow()
    breakers = _refused_submit(aws_settings, events)
    assert breakers[0]["state"] == "open"
    assert requests.on(threading.get_ident()) == [], "the submit itself made AWS requests"
    assert events.flush(timeout=10)
    assert not [w for w, _ in requests.sent if "PutMetricData" in w], "metrics go as EMF, never PutMetricData"
    opened = [e for e in read_events(aws, stream="routing", since=started) if e["source"] == "test-telemetry"]
    assert [e["kind"] for e in opened] == ["breaker_opened"]
    emf = [r for r in caplog.records if getattr(r, "_aws", None) and getattr(r, "BreakerOpen", None) == 1.0]
    assert emf and emf[0].Provider == "primary"
    assert events.stats()["published"] == 1 and events.stats()["dropped"] == 0


def test_the_hook_sees_an_inline_event_log_put_metric_data_on_the_calling_thread(aws_settings):
    """The contrast that keeps the test above honest: an inline EventLog (as the CLI uses) sends PutMetricData
    from the calling thread, and the before-send hook records it there."""
    aws = Aws(aws_settings)
    requests = _Requests(aws)
    _refused_submit(aws_settings, EventLog(aws, source="test-telemetry-inline", echo=False))
    assert any("PutMetricData" in w for w in requests.on(threading.get_ident()))


class _Stuck:
    """An AWS stand-in whose every write blocks until released (a table or topic that hangs)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.dynamodb = self

    def put_item(self, **_: Any) -> None:
        self.release.wait(10)


def test_a_full_event_queue_drops_and_counts_instead_of_blocking():
    """With the flusher stuck on AWS, emit() still returns at once; events past the queue's bound are
    dropped and counted, and the rest are published once AWS answers."""
    stuck = _Stuck()
    events = EventLog(stuck, source="t", names=names_for(Settings()),  # type: ignore[arg-type]
                      echo=False, background=True, queue_limit=3)
    started = time.monotonic()
    for n in range(10):
        assert events.emit("breaker_opened", n=n)["n"] == n
    assert time.monotonic() - started < 1.0
    stats = events.stats()
    assert stats["dropped"] >= 6 and stats["queued"] + stats["dropped"] == 10
    stuck.release.set()
    assert events.flush(timeout=10)
    assert events.stats()["published"] == stats["queued"]


# ---- the running stack -------------------------------------------------------------------------
def _json_lines(path: Path) -> list[dict[str, Any]]:
    # Every line of a stack process is one JSON object: json.loads fails the test on any other.
    return [json.loads(raw) for raw in path.read_text(errors="replace").splitlines() if raw.strip()]


def test_worker_intake_and_monitor_log_json_lines_naming_the_order(flow):
    """Log lines of the worker, intake and monitor parse as JSON with at/level/component, and lines about an
    order carry its order_id (an order placed and filled through the session stack)."""
    order_id = flow.post(flow.order_body(f"tel-log-{time.time_ns()}", 1))["order_id"]
    assert flow.wait_final([order_id], timeout=60)[order_id]["status"] == "FILLED"
    logs = Path(flow.stack["state_dir"]) / "logs"
    deadline = time.monotonic() + 20
    while True:
        seen = {}
        for component in ("intake", "worker-1", "worker-2", "monitor"):
            lines = _json_lines(logs / f"{component}.log")
            assert all({"at", "level", "component"} <= set(line) for line in lines), component
            seen[component] = [line for line in lines if line.get("order_id") == order_id]
        if seen["intake"] and (seen["worker-1"] or seen["worker-2"]) and seen["monitor"]:
            break
        assert time.monotonic() < deadline, {k: len(v) for k, v in seen.items()}
        time.sleep(0.5)
    assert seen["intake"][0]["message"] == "order accepted"
    assert any(line["message"].startswith("order handled") for line in seen["worker-1"] + seen["worker-2"])


def test_tradeops_metrics_prints_the_stack_figures_as_json_and_prometheus(flow):
    """`tradeops metrics --json` lists the monitor's figures read from the stack's EMF lines; --prometheus
    renders the same figures in the text format; asking for both is bad input (exit 2)."""
    env = flow.stack["env"]
    deadline = time.monotonic() + 20
    while True:
        result = run_cli("metrics", "--json", env=env)
        assert result.returncode == 0, result.stderr
        names = {f["name"] for f in json.loads(result.stdout)["figures"]}
        if "TotalExposureGbp" in names:
            break
        assert time.monotonic() < deadline, names
        time.sleep(1)
    prom = run_cli("metrics", "--prometheus", "--name", "TotalExposureGbp", env=env)
    assert prom.returncode == 0 and "# TYPE tradeops_total_exposure_gbp gauge" in prom.stdout
    both = run_cli("metrics", "--json", "--prometheus", env=env)
    assert both.returncode == 2 and "Traceback" not in both.stderr


def test_up_refuses_an_unknown_log_format_before_starting_anything(processes, tmp_path):
    """`tradeops up --log-format yaml` exits 2 with one line naming the formats, and starts nothing."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRADEOPS_")}
    result = run_cli("up", "--log-format", "yaml", env={**env, "TRADEOPS_STATE_DIR": str(tmp_path)})
    assert result.returncode == 2 and "unknown log format 'yaml': use json or text" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "logs").exists()


def test_the_operator_role_may_put_metrics_in_tradeops_namespace_only(aws_settings):
    """The CLI's and the gate's inline metrics (PutMetricData from the operator's or GateRole's session) are allowed
    by the template, and only into tradeops's namespace; the stack's process roles have no PutMetricData (they log
    EMF)."""
    _, doc = load_template(aws_settings.template)

    def puts(role: str) -> list[dict]:
        statements = role_statements(doc, role)
        return [st for st in statements if st["Effect"] == "Allow" and "cloudwatch:PutMetricData" in
                ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])]

    namespace = names_for(aws_settings).metric_namespace
    for role in ("OperatorRole", "GateRole"):  # the gate's flag changes send FlagChanged inline, as the CLI's do
        (allowed,) = puts(role)
        assert allowed["Condition"] == {"StringEquals": {"cloudwatch:namespace": namespace}}, role
    assert puts("WorkerRole") == [] and puts("MonitorRole") == []
