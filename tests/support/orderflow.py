"""Helpers for end-to-end order tests: post orders, wait for outcomes, reconcile against broker fills."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import httpx

from tradeops.runbooks.identity import Operators
from tradeops.runbooks.testing import install_roster
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.settings import load_settings
from tradeops.runtime.platform.universe import start_price

FINAL = {"FILLED", "REJECTED", "CANCELLED", "DEAD_LETTERED"}
# The symbols the order-path tests trade, quoted at their start price (the walks stay near it); the liability
# and paging modules move other symbols of the universe.
ORDERFLOW_SYMBOLS = ("VOD.L", "BARC.L", "LLOY.L", "HSBA.L", "BP.L")


def wait_until(what: str, check: Any, timeout: float, every: float = 0.1) -> Any:
    """Call ``check`` until it returns something true (returned), or fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


class Flow:
    """Talks to one running stack the way the platform and an SRE would: HTTP and boto3."""

    def __init__(self, stack: dict[str, Any]) -> None:
        self.stack = stack
        token_file = Path(stack["state_dir"]) / "intake-token"
        self.headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        self.http = httpx.Client(timeout=10, limits=httpx.Limits(max_connections=64))
        kw = dict(endpoint_url=stack["aws_endpoint"], region_name=stack["region"],
                  aws_access_key_id="testing", aws_secret_access_key="testing")
        self.ssm = boto3.client("ssm", **kw)
        self.sqs = boto3.client("sqs", **kw)
        self.dynamodb = boto3.client("dynamodb", **kw)

    # ---- control ------------------------------------------------------------------------------
    def fault(self, provider: str, mode: str, **params: Any) -> None:
        r = self.http.post(f"{self.stack['brokers'][provider]['control']}/_sim/fault", json={"mode": mode, **params})
        r.raise_for_status()

    def flag(self, name: str, value: str) -> None:
        path = {"processing": "/tradeops/processing", "mode": "/tradeops/routing/mode",
                "active": "/tradeops/routing/active", "trickle": "/tradeops/routing/trickle"}[name]
        self.ssm.put_parameter(Name=path, Value=value, Type="String", Overwrite=True)

    def roster(self, roles: dict[str, list[str]], *, break_glass: tuple[str, ...] = ()) -> None:
        """Make ``roles`` the stack's shared roster (a test's own: no four-eyes to change it)."""
        settings = load_settings(aws_endpoint_url=self.stack["aws_endpoint"], region=self.stack["region"],
                                 state_dir=Path(self.stack["state_dir"]))
        install_roster(Aws(settings), Operators(roles={k: frozenset(v) for k, v in roles.items()},
                                                break_glass=frozenset(break_glass)))

    def proxy_fault(self, provider: str, mode: str, **params: Any) -> None:
        """Set the fault of the fault proxy in front of ``provider`` (a stack started with TRADEOPS_FAULT_PROXY)."""
        r = self.http.post(f"{self.stack['brokers'][provider]['proxy']}/_proxy/fault", json={"mode": mode, **params})
        r.raise_for_status()

    def reset(self) -> None:
        """Routing back to defaults, faults off, the fault proxies' too (fills are kept: tests use their own ids);
        returns once every live worker has seen the flags and closed its breakers."""
        for provider in ("primary", "secondary"):
            self.fault(provider, "none")
            if self.stack["brokers"][provider].get("proxy"):
                self.proxy_fault(provider, "none")
        self.flag("mode", "manual")
        self.flag("active", "primary")
        self.flag("trickle", "0.05")
        self.flag("processing", "running")
        self.wait_fleet(processing="running", mode="manual", active="primary")

    def wait_breakers_closed(self, timeout: float = 20.0) -> None:
        """Wait until every live worker reports both brokers' breakers closed (a previous test's faults healed)."""
        self.wait_fleet(timeout=timeout)

    def wait_fleet(self, timeout: float = 20.0, **flags: str) -> None:
        """Wait until every live worker reports both brokers' breakers closed and, in a beat sent after this call,
        the flags ``flags`` as it last read them (a worker reads them at most a second late: an order posted
        before every worker has seen a switch may still go where the previous test left routing)."""
        since = time.time()
        deadline = time.monotonic() + timeout
        seen: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            beats = self.dynamodb.scan(TableName="tradeops-heartbeats")["Items"]
            seen = [{"worker": b["worker_id"]["S"], "at": float(b["at_epoch"]["N"]),
                     "breakers": json.loads(b["breakers"]["S"]),
                     **{k: b.get(k, {}).get("S") for k in ("processing", "mode", "active")}} for b in beats]
            live = [w for w in seen if time.time() - w["at"] < 5]
            if live and all(set(w["breakers"].values()) == {"closed"} for w in live) and (not flags or all(
                    w["at"] >= since and all(w[k] == v for k, v in flags.items()) for w in live)):
                return
            time.sleep(0.3)
        raise AssertionError(f"the workers did not close their breakers or see {flags or 'the flags'} in {timeout}s: "
                             f"{seen}")

    def wait_broker_paging_idle(self, provider: str, timeout: float = 40.0) -> None:
        """Until the fleet's broker pager has no episode open for ``provider`` (an earlier fault's recovery
        paged), so that what a test does next starts a new one."""
        state = json.loads((Path(self.stack["state_dir"]) / "stack.json").read_text())
        url = state["components"]["monitor"]["url"]
        wait_until(f"the pager's episode for {provider} to end", lambda: self.http.get(
            f"{url}/health").json().get("broker_paging", {}).get(provider, "idle") == "idle", timeout, every=0.5)

    def fills(self, provider: str) -> list[dict[str, Any]]:
        r = self.http.get(f"{self.stack['brokers'][provider]['control']}/_sim/fills")
        r.raise_for_status()
        return r.json()["fills"]

    # ---- orders -------------------------------------------------------------------------------
    def order_body(self, prefix: str, n: int, **extra: Any) -> dict[str, Any]:
        symbol = ORDERFLOW_SYMBOLS[n % len(ORDERFLOW_SYMBOLS)]
        return {"order_id": f"{prefix}-{n}", "account_id": f"acc-{n % 17}", "symbol": symbol,
                "side": "BUY" if n % 2 else "SELL", "quantity": 1 + n % 9,
                "quote_price": str(start_price(symbol)), **extra}

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        r = self.http.post(f"{self.stack['intake']}/orders", json=body, headers=self.headers)
        assert r.status_code in (200, 202), r.text
        return r.json()

    def post_many(self, prefix: str, count: int, *, start: int = 0, threads: int = 32) -> list[str]:
        with ThreadPoolExecutor(threads) as pool:
            done = list(pool.map(lambda n: self.post(self.order_body(prefix, n)), range(start, start + count)))
        return [o["order_id"] for o in done]

    def get(self, order_id: str) -> dict[str, Any]:
        r = self.http.get(f"{self.stack['intake']}/orders/{order_id}", headers=self.headers)
        r.raise_for_status()
        return r.json()

    def wait_final(self, order_ids: list[str], timeout: float = 60.0) -> dict[str, dict[str, Any]]:
        """Wait until every order is in a final state; returns them all (fails listing stragglers)."""
        deadline = time.monotonic() + timeout
        orders: dict[str, dict[str, Any]] = {}
        pending = list(order_ids)
        while pending and time.monotonic() < deadline:
            with ThreadPoolExecutor(16) as pool:
                got = list(pool.map(self.get, pending))
            for order in got:
                orders[order["order_id"]] = order
            pending = [o["order_id"] for o in got if o["status"] not in FINAL]
            if pending:
                time.sleep(0.3)
        assert not pending, f"{len(pending)} orders not final after {timeout}s: " + ", ".join(
            f"{oid}={orders[oid]['status']}" for oid in pending[:10])
        return orders

    def reconcile(self, orders: dict[str, dict[str, Any]]) -> dict[str, Counter]:
        """Every order FILLED exactly once across both brokers, and its record matches that fill."""
        fills = {p: [f for f in self.fills(p) if f["order_id"] in orders] for p in ("primary", "secondary")}
        per_order: Counter = Counter()
        by_provider: dict[str, Counter] = {p: Counter(f["order_id"] for f in fills[p]) for p in fills}
        for provider, provider_fills in fills.items():
            for fill in provider_fills:
                per_order[fill["order_id"]] += 1
                order = orders[fill["order_id"]]
                assert order["provider"] == provider, (fill, order["provider"])
                assert Decimal(order["fill_price"]) == Decimal(fill["price"]), (fill, order["fill_price"])
        for order_id, order in orders.items():
            assert order["status"] == "FILLED", (order_id, order["status"], order.get("history"))
            assert per_order[order_id] == 1, f"{order_id} has {per_order[order_id]} fills"
        return by_provider

    def unique(self, name: str) -> str:
        return f"{name}-{uuid.uuid4().hex[:8]}"


@contextmanager
def fresh_flow(stack: dict[str, Any]) -> Iterator[Flow]:
    """A Flow on ``stack``, with routing flags and broker faults reset before and after (what a test changed)."""
    flow = Flow(stack)
    flow.reset()
    yield flow
    flow.reset()


class AlertInbox:
    """An SQS queue subscribed to the alert topic: what reaches a human (moto delivers SNS to SQS)."""

    def __init__(self, flow: Flow) -> None:
        kw = dict(endpoint_url=flow.stack["aws_endpoint"], region_name=flow.stack["region"],
                  aws_access_key_id="testing", aws_secret_access_key="testing")
        self.sqs, self.sns = flow.sqs, boto3.client("sns", **kw)
        self.url = self.sqs.create_queue(QueueName=f"inbox-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        topic = next(t["TopicArn"] for t in self.sns.list_topics()["Topics"]
                     if t["TopicArn"].endswith(":tradeops-alerts"))
        self.subscription = self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)["SubscriptionArn"]
        self.messages: list[dict[str, Any]] = []

    def drain(self) -> list[dict[str, Any]]:
        """Every message received so far: its JSON body, with ``subject`` and ``dedup_key_attribute`` added."""
        while True:
            got = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            if not got.get("Messages"):
                return self.messages
            for m in got["Messages"]:
                envelope = json.loads(m["Body"])
                attributes = envelope.get("MessageAttributes", {})
                self.messages.append({**json.loads(envelope["Message"]), "subject": envelope.get("Subject"),
                                      "kind_attribute": attributes.get("kind", {}).get("Value"),
                                      "dedup_key_attribute": attributes.get("dedup_key", {}).get("Value")})
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])

    def close(self) -> None:
        self.sns.unsubscribe(SubscriptionArn=self.subscription)
        self.sqs.delete_queue(QueueUrl=self.url)
