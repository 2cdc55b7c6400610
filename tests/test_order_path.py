"""The order path against the real local stack: exactly once, through faults, failover and crashes."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.orderflow import AlertInbox, Flow, wait_until
from tests.support.stack import run_cli
from tradeops.runtime.platform.clock import parse_iso


def _post_in_background(flow: Flow, prefix: str, count: int, every: float) -> tuple[threading.Thread, list[str]]:
    ids: list[str] = []

    def run() -> None:
        for n in range(count):
            ids.append(flow.post(flow.order_body(prefix, n))["order_id"])
            time.sleep(every)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, ids


def test_300_concurrent_orders_fill_exactly_once(flow):
    """300 orders posted concurrently all end FILLED with exactly one broker fill each, matching the record."""
    ids = flow.post_many(flow.unique("c300"), 300)
    assert len(set(ids)) == 300
    orders = flow.wait_final(ids, timeout=120)
    by_provider = flow.reconcile(orders)
    assert sum(len(c) for c in by_provider.values()) == 300


def test_auto_mode_primary_down_moves_new_orders_to_secondary(flow):
    """Auto mode: with the primary `down` mid-flow, new orders fill on the secondary; none lost, none doubled."""
    flow.flag("mode", "auto")
    flow.flag("trickle", "0")
    prefix = flow.unique("down")
    thread, ids = _post_in_background(flow, prefix, 60, 0.05)
    time.sleep(1.0)
    flow.fault("primary", "down")
    thread.join()
    late = flow.post_many(prefix + "-late", 20)
    orders = flow.wait_final(ids + late, timeout=90)
    by_provider = flow.reconcile(orders)
    assert all(orders[o]["provider"] == "secondary" for o in late)
    assert by_provider["primary"] and by_provider["secondary"]


def test_fill_after_timeout_never_double_fills(flow):
    """Primary answering only after the client gave up (but filling): in-doubt orders are resolved by asking
    the primary, and every order ends filled exactly once, never at both brokers."""
    flow.flag("mode", "auto")
    flow.flag("trickle", "0")
    flow.fault("primary", "fill_after_timeout", ms=2500)
    prefix = flow.unique("fat")
    thread, ids = _post_in_background(flow, prefix, 40, 0.05)
    thread.join()
    time.sleep(3)
    flow.fault("primary", "none")
    orders = flow.wait_final(ids, timeout=90)
    flow.reconcile(orders)
    resolved = [o for o in orders.values() if any(h["status"] == "IN_DOUBT" for h in o["history"])]
    assert resolved, "the fault should have put some orders in doubt"
    assert all(o["provider"] == "primary" for o in resolved), "an in-doubt order may only fill where it was sent"


def test_in_doubt_orders_wait_for_declare_void(flow):
    """Primary blackholed then down for good: its in-doubt orders are not sent to the secondary until an
    operator declares them void (recorded with who), and then they fill there exactly once."""
    flow.flag("mode", "auto")
    flow.flag("trickle", "0")
    flow.fault("primary", "blackhole")
    prefix = flow.unique("void")
    ids = flow.post_many(prefix, 6, threads=6)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        states = {flow.get(i)["status"] for i in ids}
        if "IN_DOUBT" in states and not states & {"SUBMITTING", "ACCEPTED"}:
            break
        time.sleep(0.3)
    flow.fault("primary", "down")
    doubtful = [i for i in ids if flow.get(i)["status"] == "IN_DOUBT"]
    assert doubtful, "blackholed orders should be in doubt"
    time.sleep(4)  # the resolver keeps asking; nothing may move
    assert all(flow.get(i)["status"] == "IN_DOUBT" for i in doubtful)
    assert not {f["order_id"] for f in flow.fills("secondary")} & set(doubtful)

    flow.roster({"duty-manager-ann": ["ops-manager"]}, break_glass=("ops-manager",))
    env = dict(flow.stack["env"], TRADEOPS_OPERATOR="duty-manager-ann")
    result = run_cli("orders", "declare-void", "--provider", "primary", "--reason", "primary lost", "--break-glass",
                     "--yes", "--json", env=env)
    assert result.returncode == 0, result.stderr
    declared = json.loads(result.stdout)
    assert set(doubtful) <= set(declared["released"]) and declared["declared_by"] == "duty-manager-ann"
    orders = flow.wait_final(ids, timeout=60)
    flow.reconcile(orders)
    for order_id in doubtful:
        order = orders[order_id]
        assert order["provider"] == "secondary"
        assert any("duty-manager-ann" in (h.get("note") or "") or h.get("actor") == "duty-manager-ann"
                   for h in order["history"])


def test_manual_toggle_and_pause(flow):
    """Manual mode: flipping the active broker moves new orders within 2 s, and every heartbeat says the worker saw
    it; `paused` stops fills within 2 s with in-flight 0 in every heartbeat; `running` resumes."""
    prefix = flow.unique("manual")
    flow.flag("active", "secondary")
    time.sleep(2.0)
    beats = flow.dynamodb.scan(TableName="tradeops-heartbeats")["Items"]
    live = [b for b in beats if time.time() - float(b["at_epoch"]["N"]) < 2]
    assert live and {(b["mode"]["S"], b["active"]["S"]) for b in live} == {("manual", "secondary")}
    first = flow.post_many(prefix + "-a", 10)
    orders = flow.wait_final(first, timeout=30)
    assert {o["provider"] for o in orders.values()} == {"secondary"}

    flow.flag("processing", "paused")
    time.sleep(2.0)
    held = flow.post_many(prefix + "-b", 10)
    time.sleep(2.0)
    assert {flow.get(i)["status"] for i in held} == {"ACCEPTED"}
    beats = flow.dynamodb.scan(TableName="tradeops-heartbeats")["Items"]
    live = [b for b in beats if time.time() - float(b["at_epoch"]["N"]) < 5]
    assert live and all(b["in_flight"]["N"] == "0" for b in live)

    # The broker first, then resume: a worker refreshing its flags between the two writes must not send the
    # held orders to the old one.
    flow.flag("active", "primary")
    flow.flag("processing", "running")
    orders = flow.wait_final(held, timeout=30)
    flow.reconcile(orders)
    assert {o["provider"] for o in orders.values()} == {"primary"}


def test_worker_killed_mid_batch_loses_nothing(flow):
    """SIGKILL on a worker while it holds orders: every order still fills exactly once."""
    flow.fault("primary", "latency", ms=400)
    prefix = flow.unique("kill")
    state = json.loads((Path(flow.stack["state_dir"]) / "stack.json").read_text())
    victim = state["components"]["worker-1"]["pid"]
    thread, ids = _post_in_background(flow, prefix, 200, 0.05)
    # Kill once an order is recorded SUBMITTING by worker-1: its call to the slow primary (400 ms) is in flight.
    # The orders themselves say so at once; a heartbeat could be a second stale, long enough for the call to end.
    def in_flight_at_victim() -> str | None:
        for order_id in ids[-6:]:
            order = flow.get(order_id)
            if order["status"] == "SUBMITTING" and order["history"][-1].get("actor") == "worker-1":
                return order_id
        return None

    caught = wait_until("an order in flight at worker-1", in_flight_at_victim, timeout=30, every=0.02)
    os.kill(victim, signal.SIGKILL)
    killed_at = time.time()
    thread.join()
    flow.fault("primary", "none")
    orders = flow.wait_final(ids, timeout=90)
    flow.reconcile(orders)
    # The order caught in flight was settled after the kill, exactly once (reconcile() above: the broker's own
    # fill is what got recorded), by whichever worker took it over: another one through the redelivered message
    # or the resolver, or worker-1's successor (the supervisor restarts it under the same id).
    settled_at = parse_iso(orders[caught]["history"][-1]["at"]).timestamp()
    assert orders[caught]["status"] == "FILLED" and settled_at >= killed_at - 0.5, orders[caught]["history"]


def test_poison_message_is_dead_lettered_and_work_goes_on(flow):
    """A message that is not an order reaches the DLQ after the configured receives; orders keep filling."""
    queue = flow.sqs.get_queue_url(QueueName="tradeops-orders")["QueueUrl"]
    dlq = flow.sqs.get_queue_url(QueueName="tradeops-orders-dlq")["QueueUrl"]
    marker = flow.unique("poison")
    flow.sqs.send_message(QueueUrl=queue, MessageBody=f"not json {marker}")
    ids = flow.post_many(flow.unique("alongside"), 20)
    flow.reconcile(flow.wait_final(ids, timeout=30))
    deadline = time.monotonic() + 60
    found = None
    while time.monotonic() < deadline and found is None:
        got = flow.sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                       VisibilityTimeout=0, MessageSystemAttributeNames=["ApproximateReceiveCount"])
        found = next((m for m in got.get("Messages", []) if marker in m["Body"]), None)
    assert found is not None, "poison message never reached the DLQ"
    events = flow.dynamodb.query(TableName="tradeops-events", KeyConditionExpression="#s = :s",
                                 ExpressionAttributeNames={"#s": "stream"},
                                 ExpressionAttributeValues={":s": {"S": "orders"}})["Items"]
    assert any("dead_letter" in e["kind"]["S"] and "5 receives" in e["body"]["S"] for e in events)


def test_canary_proves_each_broker_and_is_synthetic(flow):
    """A canary order goes to each broker whatever the routing says, is recorded synthetic, and its latency is
    published per broker."""
    from tradeops.runtime.orderpath.canary import send_canary
    from tradeops.runtime.orderpath.orders import OrderStore
    from tradeops.runtime.orderpath.router import open_providers
    from tradeops.runtime.platform.aws import Aws
    from tradeops.runtime.platform.events import EventLog
    from tradeops.runtime.platform.settings import load_settings
    from tradeops.runtime.platform.statefile import resolve_settings

    settings = resolve_settings(load_settings(state_dir=Path(flow.stack["state_dir"])))
    aws = Aws(settings)
    store, events = OrderStore(aws), EventLog(aws, source="test-canary", echo=False)
    providers = open_providers(settings, aws)
    for name in ("primary", "secondary"):
        result = send_canary(store, events, providers[name], salt="t")
        assert result["ok"] and result["latency_ms"] > 0
        order = store.require(result["order_id"])
        assert order["synthetic"] is True and order["status"] == "FILLED" and order["provider"] == name
        assert result["order_id"] in {f["order_id"] for f in flow.fills(name)}
    metrics = aws.cloudwatch.list_metrics(Namespace="Tradeops", MetricName="CanaryLatencyMs")["Metrics"]
    assert {d["Value"] for m in metrics for d in m["Dimensions"]} >= {"primary", "secondary"}


def test_broker_credentials_never_reach_the_logs(flow):
    """The brokers' API keys (from Secrets Manager) appear in no component's log after orders and faults."""
    import boto3

    secrets = boto3.client("secretsmanager", endpoint_url=flow.stack["aws_endpoint"], region_name="eu-west-2",
                           aws_access_key_id="testing", aws_secret_access_key="testing")
    keys = [secrets.get_secret_value(SecretId=f"tradeops/broker/{p}")["SecretString"] for p in ("primary", "secondary")]
    assert all(len(k) >= 20 for k in keys)
    logs = Path(flow.stack["state_dir"]) / "logs"
    texts = [p.read_text(errors="replace") for p in logs.glob("*.log")]
    assert texts
    assert not [k for k in keys for t in texts if k in t]


def test_breaker_changes_are_events_metrics_and_one_page_for_the_fleet(flow):
    """A broker failing then healing: breaker opened/closed events with timestamps in the events table from
    every worker, the BreakerOpen metric, and for the whole fleet one page when it turned unhealthy and one
    when it recovered (so a failover that healed itself still reaches a human, once)."""

    flow.wait_broker_paging_idle("secondary")
    inbox = AlertInbox(flow)
    started = time.time()
    try:
        flow.fault("secondary", "down")
        deadline = time.monotonic() + 30
        kinds: set[str] = set()
        sources: set[str] = set()
        while time.monotonic() < deadline and "breaker_closed" not in kinds:
            if "breaker_opened" in kinds:
                flow.fault("secondary", "none")
            items = flow.dynamodb.query(TableName="tradeops-events", KeyConditionExpression="#s = :s",
                                        ExpressionAttributeNames={"#s": "stream"},
                                        ExpressionAttributeValues={":s": {"S": "routing"}})["Items"]
            recent = [json.loads(i["body"]["S"]) for i in items]
            recent = [e for e in recent if e.get("provider") == "secondary"
                      and datetime.fromisoformat(e["at"].replace("Z", "+00:00")).timestamp() >= started - 1]
            kinds = {e["kind"] for e in recent}
            sources = {e["source"] for e in recent if e["kind"] == "breaker_opened"}
            time.sleep(0.3)
        assert {"breaker_opened", "breaker_closed"} <= kinds
        flow.wait_breakers_closed()
        deadline = time.monotonic() + 20  # the recovery pages after 10 s of health (test stack setting)
        pages: list[dict] = []
        while time.monotonic() < deadline and "broker_recovered" not in {m["kind"] for m in pages}:
            pages = [m for m in inbox.drain() if m.get("provider") == "secondary"]
            time.sleep(0.5)
        assert [m["kind"] for m in pages] == ["broker_unhealthy", "broker_recovered"], pages
        assert all(m["dedup_key"] == m["dedup_key_attribute"] == "tradeops/broker/secondary" for m in pages)
        assert pages[0]["began_at"] and pages[1]["transitions"] >= 2 * len(sources) >= 2
    finally:
        inbox.close()
    # The workers publish BreakerOpen as EMF lines in their logs (issue 13): `tradeops metrics` reads them back.
    figures = json.loads(run_cli("metrics", "--json", "--name", "BreakerOpen", env=flow.stack["env"]).stdout)["figures"]
    assert any(f["dimensions"].get("Provider") == "secondary" for f in figures)


def test_flag_change_from_the_cli_is_an_event_with_the_actor(flow):
    """`tradeops flags set` records a flag_set event (before, after, who) and the change reaches workers."""
    env = dict(flow.stack["env"], TRADEOPS_OPERATOR="ops-carol")
    result = run_cli("flags", "set", "trickle", "0.25", "--yes", env=env)
    assert result.returncode == 0, result.stderr
    items = flow.dynamodb.query(TableName="tradeops-events", KeyConditionExpression="#s = :s",
                                ExpressionAttributeNames={"#s": "stream"},
                                ExpressionAttributeValues={":s": {"S": "routing"}})["Items"]
    events = [json.loads(i["body"]["S"]) for i in items if i["kind"]["S"] == "flag_set"]
    assert any(e["flag"] == "trickle" and e["after"] == "0.25" and e["actor"] == "ops-carol" for e in events)
    bad = run_cli("flags", "set", "active", "tertiary", env=env)
    assert bad.returncode == 2 and "active" in bad.stderr and "Traceback" not in bad.stderr


def test_order_whose_intake_died_between_put_and_send_fills_exactly_once(flow):
    """The intake killed right after recording an order, before its message: the supervisor restarts it, the
    workers' sweeper re-enqueues the order, and it fills exactly once within the sweep age plus a few seconds;
    `status` counts the sweep."""
    import httpx

    from tradeops.runtime.orderpath.sweep import sweep_interval
    from tradeops.runtime.platform.faults import arm

    age = float(flow.stack["env"]["TRADEOPS_SWEEP_AGE_SECONDS"])
    state_dir = Path(flow.stack["state_dir"])
    intake_pid = lambda: json.loads((state_dir / "stack.json").read_text())["components"]["intake"]["pid"]  # noqa: E731
    before = intake_pid()
    body = flow.order_body(flow.unique("swept"), 1)
    arm(state_dir, "intake.after_put")
    posted = time.monotonic()
    with pytest.raises(httpx.TransportError):  # the intake died mid-request: the connection drops
        flow.http.post(f"{flow.stack['intake']}/orders", json=body, headers=flow.headers)
    wait_until("the supervisor to restart the intake", lambda: intake_pid() != before, 30, every=0.2)
    wait_until("the restarted intake to answer", lambda: _answers(flow), 30, every=0.2)
    assert not (state_dir / "faults" / "intake.after_put").exists(), "the fault point fires once"
    orders = flow.wait_final([body["order_id"]], timeout=age + 1.25 * sweep_interval(age) + 15)
    took = time.monotonic() - posted
    flow.reconcile(orders)
    order = orders[body["order_id"]]
    assert order["sweeps"] == 1, order["history"]
    assert any(h["status"] == "ACCEPTED" and "swept" in (h.get("note") or "") for h in order["history"])
    assert took <= age + 1.25 * sweep_interval(age) + 6, f"filled {took:.1f}s after the post"
    events = flow.dynamodb.query(TableName="tradeops-events", KeyConditionExpression="#s = :s",
                                 ExpressionAttributeNames={"#s": "stream"},
                                 ExpressionAttributeValues={":s": {"S": "orders"}})["Items"]
    swept = [json.loads(e["body"]["S"]) for e in events if e["kind"]["S"] == "order_swept"]
    assert [e["order_id"] for e in swept if e["order_id"] == body["order_id"]] == [body["order_id"]]
    status = run_cli("status", "--json", env=flow.stack["env"])
    assert json.loads(status.stdout)["swept"]["last_hour"] >= 1, status.stdout
    assert "re-enqueued in the last hour" in run_cli("status", env=flow.stack["env"]).stdout


def _answers(flow: Flow) -> bool:
    import httpx

    try:
        return flow.http.get(f"{flow.stack['intake']}/health").status_code == 200
    except httpx.HTTPError:
        return False
