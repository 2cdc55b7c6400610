"""AWS requests per filled order, by service, for the tradeops worker and a naive consumer.

Run:  python bench/bench_order_cost.py [--orders 400] [--rate 60]

Starts a private local stack (moto server, both simulated brokers) with no workers, then runs
the intake API and the consumer under test *in this process*, counting every AWS request they
send (tradeops.runtime.platform.aws.RequestCounter) by service and operation. The flow is steady: orders are
posted at --rate per second while the consumer runs. The same flow is then pushed through a
naive consumer (one message per receive, one delete per message, flags read from SSM per
order, GetItem per order) on a fresh queue state. Figures are per filled order.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tradeops.runtime.orderpath.intake import create_app
from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.orderpath.router import open_providers
from tradeops.runtime.orderpath.worker import Worker, broker_order
from tradeops.runtime.platform.aws import Aws, RequestCounter
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import load_settings
from tradeops.runtime.platform.statefile import resolve_settings
from tradeops.runtime.platform.universe import shipped_universe
from tradeops.runtime.stack import supervisor

# The orders' symbols: twenty of the shipped universe, each quoted at its start price.
SYMBOLS = [(i.ticker, str(i.start_price)) for i in shipped_universe()[:20]]

WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}


def counted(settings: Any) -> Aws:
    """An Aws whose clients count every request they send in a counter of their own."""
    return Aws(settings, max_pool=64, counter=RequestCounter())


def summarise(aws: Aws, filled: int) -> dict[str, Any]:
    # The counter's keys are "<service>.<Operation>".
    counts = {tuple(key.split(".", 1)): n for key, n in aws.counter.snapshot().items()}
    by_service: Counter = Counter()
    for (service, _), n in counts.items():
        by_service[service] += n
    ddb_writes = sum(n for (s, op), n in counts.items() if s == "dynamodb" and op in WRITES)
    return {
        "filled": filled,
        "per_order": {s: round(n / filled, 3) for s, n in sorted(by_service.items())},
        "dynamodb_writes_per_order": round(ddb_writes / filled, 3),
        "operations": {f"{s}.{op}": n for (s, op), n in sorted(counts.items())},
    }


def post_steady(client: TestClient, token: str, prefix: str, orders: int, rate: float) -> list[str]:
    ids = []
    start = time.monotonic()
    for n in range(orders):
        body = {"order_id": f"{prefix}-{n}", "account_id": f"acc-{n % 50}", "symbol": SYMBOLS[n % len(SYMBOLS)][0],
                "side": "BUY", "quantity": 1 + n % 5, "quote_price": SYMBOLS[n % len(SYMBOLS)][1]}
        r = client.post("/orders", json=body, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 202, r.text
        ids.append(body["order_id"])
        delay = start + (n + 1) / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return ids


def wait_filled(store: OrderStore, ids: list[str], timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        filled = sum(1 for i in ids if (store.get(i, consistent=False) or {}).get("status") == "FILLED")
        if filled == len(ids):
            return filled
        time.sleep(0.5)
    return filled


def run_tradeops(settings: Any, token: str, orders: int, rate: float) -> dict[str, Any]:
    intake_aws, worker_aws = counted(settings), counted(settings)
    intake = TestClient(create_app(settings, token=token, aws=intake_aws))
    worker = Worker(settings, worker_id="bench-worker", aws=worker_aws)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    ids = post_steady(intake, token, "fast", orders, rate)
    filled = wait_filled(OrderStore(Aws(settings)), ids)
    worker.stop_event.set()
    thread.join(30)
    return {"intake": summarise(intake_aws, filled), "worker": summarise(worker_aws, filled),
            "flag_reads_per_order": round(worker.flags.reads / filled, 4)}


def naive_consumer(settings: Any, aws: Aws, stop: threading.Event) -> None:
    """The consumer we are measured against: no batching, flags and order read per message."""
    names = names_for(settings)
    queue = aws.queue_url(names.order_queue)
    store = OrderStore(aws, names)
    providers = open_providers(settings, aws)
    while not stop.is_set():
        got = aws.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=1, WaitTimeSeconds=1)
        for message in got.get("Messages", []):
            active = aws.ssm.get_parameter(Name=names.active_param)["Parameter"]["Value"]
            aws.ssm.get_parameter(Name=names.processing_param)
            order = store.get(json.loads(message["Body"])["order_id"])
            order = store.transition(order, "SUBMITTING", actor="naive", set_fields={"provider": active})
            ex = providers[active].submit(broker_order(order, "naive"))
            store.transition(order, "FILLED", actor="naive", set_fields={"fill_price": ex.price})
            aws.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def run_naive(settings: Any, token: str, orders: int, rate: float) -> dict[str, Any]:
    intake = TestClient(create_app(settings, token=token, aws=Aws(settings)))
    consumer_aws = counted(settings)
    stop = threading.Event()
    thread = threading.Thread(target=naive_consumer, args=(settings, consumer_aws, stop), daemon=True)
    thread.start()
    ids = post_steady(intake, token, "naive", orders, rate)
    filled = wait_filled(OrderStore(Aws(settings)), ids)
    stop.set()
    thread.join(30)
    return {"consumer": summarise(consumer_aws, filled)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=400)
    parser.add_argument("--rate", type=float, default=60.0, help="orders per second posted")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="bench-cost-"))
    os.environ["TRADEOPS_CANARY_SECONDS"] = "0"
    settings = load_settings(state_dir=state, canary_seconds=0)
    supervisor.launch(settings, workers=0, local=True, ports={})
    try:
        settings = resolve_settings(settings)
        token = settings.intake_token or ""
        fast = run_tradeops(settings, token, args.orders, args.rate)
        naive = run_naive(settings, token, args.orders, args.rate)
    finally:
        supervisor.stop(settings)
    worker, intake, consumer = fast["worker"], fast["intake"], naive["consumer"]
    print(f"steady flow: {args.orders} orders at {args.rate:g}/s, one worker process")
    print(f"{'':28}{'tradeops worker':>18}{'naive consumer':>18}")
    for service in sorted(set(worker["per_order"]) | set(consumer["per_order"])):
        print(f"{service + ' requests/order':28}{worker['per_order'].get(service, 0):>18.3f}"
              f"{consumer['per_order'].get(service, 0):>18.3f}")
    print(f"{'dynamodb writes/order':28}{worker['dynamodb_writes_per_order']:>18.3f}"
          f"{consumer['dynamodb_writes_per_order']:>18.3f}")
    print(f"intake per order: {intake['per_order']} (dynamodb writes {intake['dynamodb_writes_per_order']})")
    print(f"dynamodb writes/order across intake and worker: "
          f"{intake['dynamodb_writes_per_order'] + worker['dynamodb_writes_per_order']:.3f}")
    print(f"worker flag reads (SSM GetParameters)/order: {fast['flag_reads_per_order']}")
    print(json.dumps({"tradeops": fast, "naive": naive}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
