"""The intake API's test helpers: its token, a real uvicorn server on a thread, and a probe of the orders table
and the order queue. Used by tests/test_intake.py and tests/test_intake_fuzz.py."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import uvicorn

from tradeops.runtime.orderpath.intake import server_config
from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.stack.supervisor import free_port

__all__ = ["AUTH", "TOKEN", "LiveServer", "Probe"]

TOKEN = "intake-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class LiveServer:
    """A real uvicorn server in a background thread (the way httpx tests its own client)."""

    def __init__(self, app: Any, settings: Settings | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if settings is not None:  # the intake process's own configuration (timeouts included)
            config = server_config(app, settings, host="127.0.0.1", port=self.port)
        else:
            config = uvicorn.Config(app, host="127.0.0.1", port=self.port, access_log=False, log_level="warning",
                                    lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class Probe:
    """Reads the orders table and the (shared) order queue the way a test needs to."""

    def __init__(self, settings: Settings) -> None:
        self.aws = Aws(settings)
        self.names = names_for(settings)
        self.store = OrderStore(self.aws, self.names)
        self.queue_url = self.aws.queue_url(self.names.order_queue)
        self.created: list[str] = []

    def items(self) -> int:
        """How many orders the table holds (a scan is fine in a test)."""
        total, kwargs = 0, {"TableName": self.names.orders_table, "Select": "COUNT"}
        while True:
            page = self.aws.dynamodb.scan(**kwargs)
            total += page["Count"]
            if "LastEvaluatedKey" not in page:
                return total
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def depth(self) -> int:
        """Messages on the order queue, visible or not; other modules share it, so compare deltas."""
        attrs = self.aws.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                            "ApproximateNumberOfMessagesDelayed"],
        )["Attributes"]
        return sum(int(v) for v in attrs.values())

    def snapshot(self) -> tuple[int, int]:
        return self.items(), self.depth()

    def take_messages(self, order_id: str) -> list[dict[str, Any]]:
        """Remove and return the messages for ``order_id``; others go back on the queue untouched."""
        mine, others = [], []
        while True:
            got = self.aws.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                               VisibilityTimeout=30, WaitTimeSeconds=0)
            batch = got.get("Messages", [])
            if not batch:
                break
            for msg in batch:
                body = json.loads(msg["Body"])
                (mine if body.get("order_id") == order_id else others).append(msg)
        for msg in mine:
            self.aws.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=msg["ReceiptHandle"])
        for msg in others:
            self.aws.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=msg["ReceiptHandle"],
                                                   VisibilityTimeout=0)
        return [json.loads(m["Body"]) for m in mine]

    def cleanup(self) -> None:
        """Leave nothing behind for later modules: our orders and their messages go."""
        for order_id in self.created:
            self.take_messages(order_id)
            self.aws.dynamodb.delete_item(TableName=self.names.orders_table, Key={"order_id": {"S": order_id}})
