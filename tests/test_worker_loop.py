"""The worker's receive loop against moto (over HTTP) and real simulated brokers: latency first."""

from __future__ import annotations

import threading
import time
import uuid
from decimal import Decimal

import httpx
import pytest

from tests.support.brokers import API_KEY, broker_pair
from tradeops.runtime.orderpath import heartbeats
from tradeops.runtime.orderpath.flags import FlagValues
from tradeops.runtime.orderpath.messages import order_message
from tradeops.runtime.orderpath.orders import OrderRequest, OrderStore, new_order
from tradeops.runtime.orderpath.providers import make_provider
from tradeops.runtime.orderpath.router import Router
from tradeops.runtime.orderpath.worker import Worker
from tradeops.runtime.platform.aws import Aws


@pytest.fixture(scope="module")
def brokers(processes, tmp_path_factory):
    """Both simulated brokers as real HTTP servers."""
    with broker_pair(tmp_path_factory.mktemp("worker-loop-sims")) as pair:
        yield pair


@pytest.fixture
def worker(aws_settings, brokers):
    """A worker on the 'ut' resources, its router on the real brokers; the primary healthy again afterwards."""
    settings = aws_settings.model_copy(update={"broker_read_timeout": 3.0, "worker_delete_flush_ms": 300})
    providers = {name: make_provider(name, b.wire, b.url, api_key=API_KEY, connect_timeout=0.5, read_timeout=3.0)
                 for name, b in brokers.items()}
    aws = Aws(settings)
    queue = aws.queue_url("ut-orders")
    while True:  # start from an empty queue (other modules share it; PurgeQueue is once a minute)
        got = aws.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                      VisibilityTimeout=0).get("Messages", [])
        if not got:
            break
        aws.sqs.delete_message_batch(QueueUrl=queue, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
    made = Worker(settings, worker_id=f"loop-{uuid.uuid4().hex[:6]}", aws=aws,
                  router=Router(settings, providers, None))
    yield made
    made.stop_event.set()
    made.pool.shutdown(wait=True)
    made.router.stop()
    for broker in brokers.values():
        httpx.post(f"{broker.control_url}/_sim/fault", json={"mode": "none"}).raise_for_status()


def _enqueue(worker: Worker, *, status: str) -> str:
    store = OrderStore(worker.aws)
    order, _ = store.create(new_order(OrderRequest(account_id="a", symbol="SYM1", side="BUY", quantity=1,
                                                   quote_price=Decimal("100"))))
    if status == "FILLED":
        order = store.transition(order, "SUBMITTING", actor="t", set_fields={"provider": "primary"})
        store.transition(order, "FILLED", actor="t", set_fields={"fill_price": Decimal("100")})
    worker.aws.sqs.send_message(QueueUrl=worker.queue_url, MessageBody=order_message(order["order_id"]))
    return order["order_id"]


def _queued(worker: Worker) -> int:
    attrs = worker.aws.sqs.get_queue_attributes(
        QueueUrl=worker.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_handled_messages_are_deleted_together_soon_after(worker):
    """Messages whose orders are final are deleted in one batch request within worker_delete_flush_ms,
    not one request per receive (no order waits for it: they are final already)."""
    for _ in range(3):
        _enqueue(worker, status="FILLED")
    got = 0
    while got < 3:
        got += worker.poll_once()
    assert worker.wait_idle(10)
    assert _queued(worker) == 3 and worker.deletes.requests == 0  # received, handled, delete still pending
    worker.deletes.flush(everything=False)  # fewer than 10: nothing goes before its time
    assert worker.deletes.requests == 0
    stop = threading.Event()
    flusher = threading.Thread(target=worker.deletes.run, args=(stop,))
    flusher.start()
    deadline = time.monotonic() + 5
    while _queued(worker) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    flusher.join()
    assert _queued(worker) == 0 and worker.deletes.requests == 1


def test_an_order_stuck_on_a_silent_broker_does_not_hold_up_the_loop(worker, brokers):
    """With the primary blackholed, the loop receives again while the order sent there is still waiting
    for its answer, instead of waiting out the read timeout behind it."""
    httpx.post(f"{brokers['primary'].control_url}/_sim/fault", json={"mode": "blackhole"}).raise_for_status()
    stuck = _enqueue(worker, status="ACCEPTED")
    received = 0
    while received == 0:
        received = worker.poll_once()
    returned_while_waiting = worker.in_flight == 1
    order = OrderStore(worker.aws).require(stuck)
    assert returned_while_waiting and order["status"] == "SUBMITTING" and order["provider"] == "primary"
    assert worker.wait_idle(10)
    assert OrderStore(worker.aws).require(stuck)["status"] == "IN_DOUBT"


class _Flags:
    """A worker's flag cache answering what the test sets."""

    def __init__(self, processing: str) -> None:
        self.processing = processing

    def get(self) -> FlagValues:
        return FlagValues(processing=self.processing, mode="manual", active="primary", trickle=0.0,
                          read_at=time.monotonic())


def test_a_worker_beats_at_once_when_it_sees_a_flag_stops_taking_and_lets_go_of_its_last_order(worker):
    """The fleet's readers do not wait a beat's interval: a worker beats as soon as it sees a flag change, stops
    taking orders (a pause) and, paused, lets go of the last order it held — so a quiesce hears the fleet drained
    within milliseconds. Its regular beats here are 30 s apart, so every beat the test sees is an early one."""
    worker.settings = worker.settings.model_copy(update={"heartbeat_seconds": 30.0})
    flags = _Flags("running")
    worker.flags = flags  # type: ignore[assignment]
    worker._flags()  # the flags it starts from
    beats = threading.Thread(target=worker._heartbeat_loop, daemon=True)
    beats.start()

    def beat() -> dict[str, object] | None:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            got = [w for w in heartbeats.fleet(worker.aws)["workers"] if w["worker_id"] == worker.worker_id]
            if got and got[0]["processing"] == flags.processing and got[0]["in_flight"] == worker.in_flight:
                return got[0]
            time.sleep(0.05)
        return None

    worker.taking, worker.in_flight = True, 1
    flags.processing = "paused"
    assert worker.poll_once() == 0 and not worker.taking
    seen = beat()
    assert seen is not None and seen["taking"] is False and seen["in_flight"] == 1, seen
    worker._done(1)
    drained = beat()
    assert drained is not None and drained["in_flight"] == 0, drained
    worker.stop_event.set()
    worker._beat_soon.set()  # wakes the loop, which sees the stop and returns without beating
    beats.join(timeout=5)
    assert not beats.is_alive()
