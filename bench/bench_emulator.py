"""The local stack's emulator (moto behind a DynamoDB lock) against plain moto server: correctness and cost.

Starts both servers on free ports, creates the same table on each, and runs, in the same run:

- **races**: 8 threads each make 60 optimistic increments of ONE item (read the counter, then a conditional
  UpdateItem ``SET n = :new IF n = :seen``, retried on a failed condition). On a server that applies a
  conditional write atomically the final counter equals the number of writes that reported success;
  anything else is a lost or doubled update. Printed: the anomalies per round (median of rounds).
- **throughput**: 8 threads each make 300 conditional UpdateItems on their OWN items (no contention), the
  executions table's typical load. Printed: median writes/s of the rounds on each server, and the ratio.
- **long poll**: the same throughput while another thread keeps an SQS long poll (WaitTimeSeconds=1) open,
  to show the lock never holds up other services.

Command: ``python bench/bench_emulator.py [--rounds 5]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
import uuid

import boto3
import botocore.config
import botocore.exceptions
import httpx

from tradeops.runtime.stack.supervisor import free_port, stop_process

THREADS = 8


def _start(module: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", module, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{endpoint}/moto-api/", timeout=1).status_code < 500:
                return proc, endpoint
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"{module} did not start")
        time.sleep(0.1)


def _client(endpoint: str, service: str):
    return boto3.client(service, endpoint_url=endpoint, region_name="eu-west-2", aws_access_key_id="testing",
                        aws_secret_access_key="testing",
                        config=botocore.config.Config(max_pool_connections=32, retries={"max_attempts": 1}))


def _table(endpoint: str) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    _client(endpoint, "dynamodb").create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}])
    return name


def _cas(ddb, table: str, key: str) -> bool:
    """One optimistic increment; True when the server said it succeeded."""
    got = ddb.get_item(TableName=table, Key={"k": {"S": key}}, ConsistentRead=True).get("Item")
    seen = int(got["n"]["N"]) if got else 0
    try:
        ddb.update_item(TableName=table, Key={"k": {"S": key}}, UpdateExpression="SET n = :new",
                        ConditionExpression="attribute_not_exists(n) OR n = :seen",
                        ExpressionAttributeValues={":new": {"N": str(seen + 1)}, ":seen": {"N": str(seen)}})
        return True
    except botocore.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise


def races(endpoint: str, per_thread: int = 60) -> int:
    """Lost or doubled increments of one contended item (0 when conditional writes are atomic)."""
    table = _table(endpoint)
    successes = [0] * THREADS

    def work(n: int) -> None:
        ddb = _client(endpoint, "dynamodb")
        done = 0
        while done < per_thread:
            if _cas(ddb, table, "counter"):
                successes[n] += 1
                done += 1

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = int(_client(endpoint, "dynamodb").get_item(TableName=table, Key={"k": {"S": "counter"}},
                                                       ConsistentRead=True)["Item"]["n"]["N"])
    return abs(sum(successes) - final)


def throughput(endpoint: str, per_thread: int = 300, long_poll: bool = False) -> float:
    """Conditional writes per second, 8 threads on their own items."""
    table = _table(endpoint)
    stop = threading.Event()
    poller = None
    if long_poll:
        sqs = _client(endpoint, "sqs")
        queue = sqs.create_queue(QueueName=f"bench-{uuid.uuid4().hex[:8]}")["QueueUrl"]

        def poll() -> None:
            while not stop.is_set():
                sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)

        poller = threading.Thread(target=poll)
        poller.start()

    def work(n: int) -> None:
        ddb = _client(endpoint, "dynamodb")
        for i in range(per_thread):
            ddb.update_item(TableName=table, Key={"k": {"S": f"t{n}-{i % 10}"}}, UpdateExpression="SET n = :n",
                            ConditionExpression="attribute_not_exists(n) OR n < :n",
                            ExpressionAttributeValues={":n": {"N": str(i)}})

    threads = [threading.Thread(target=work, args=(n,)) for n in range(THREADS)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    stop.set()
    if poller is not None:
        poller.join()
    return THREADS * per_thread / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    servers = {"moto.server": _start("moto.server"), "emulator": _start("tradeops.runtime.stack.emulator")}
    try:
        results: dict[str, dict[str, list[float]]] = {name: {"races": [], "writes/s": [], "writes/s + long poll": []}
                                                      for name in servers}
        for _ in range(args.rounds):
            for name, (_, endpoint) in servers.items():  # interleaved, so both see the same machine load
                results[name]["races"].append(races(endpoint))
                results[name]["writes/s"].append(throughput(endpoint))
                results[name]["writes/s + long poll"].append(throughput(endpoint, long_poll=True))
        print(f"{'':22} {'moto.server':>12} {'emulator':>12} {'ratio':>7}   (median of {args.rounds} rounds)")
        for figure in ("races", "writes/s", "writes/s + long poll"):
            plain = statistics.median(results["moto.server"][figure])
            ours = statistics.median(results["emulator"][figure])
            ratio = f"{ours / plain:7.2f}" if figure != "races" and plain else "       "
            print(f"{figure:22} {plain:12.1f} {ours:12.1f} {ratio}")
        print("races per round:", {name: r["races"] for name, r in results.items()})
    finally:
        for proc, _ in servers.values():
            stop_process(proc)


if __name__ == "__main__":
    main()
