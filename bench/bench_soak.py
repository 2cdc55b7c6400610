"""Soak: ten minutes of steady load on the local stack with faults on a schedule; nothing lost, nothing grows.

Run:  python bench/bench_soak.py [--duration 10m] [--rate 10] [--workers 2] [--out runs/bench-soak]

Starts a private local stack (``tradeops up`` in a temporary state dir, auto routing, trickle 0.05 as
shipped) and runs ``tradeops load run steady`` against it for ``--duration`` (the same load runner as the
CLI: Locust in its own process, every order reconciled at the end). Meanwhile, on a fixed schedule
relative to the start (fractions of the duration, so a shorter run keeps the same shape):

- the primary flaps: three episodes of four cycles of 2 s ``down`` and 3 s healthy;
- a worker is SIGKILLed every 2 minutes (worker-1 and worker-2 in turn; the supervisor restarts it);
- the intake is SIGKILLed once, and the monitor once (the supervisor restarts each);
- a poison message (not an order) is put on the order queue every minute.

Then it reports, as a table and in ``<out>/soak.json``:

- orders placed, filled, lost, filled twice and dead-lettered, from the load runner's reconciliation;
  every message on the dead-letter queue explained (a planted poison message, or an order and its
  recorded reason);
- RSS and open file descriptors of every process of the stack, sampled every 10 s; each process's
  growth is its last sample against its first sample after the warm-up (``--warmup``, default 60 s,
  counted from the process's own start: restarted processes get their own warm-up);
- the monitor's totals against a recomputation from the orders table: one ledger entry per filled
  order of the run, and the sum of what the ledger owes equal to the compensation recomputed from each
  order's quote and fill; the monitor's pending count against the orders still open in the table.

The targets are zero lost, zero filled twice, only the planted poison messages dead-lettered, the
monitor's totals equal to the recomputation, and no process growing more than 20 % in memory after
warm-up, judged on tradeops's own processes (intake, workers, monitor, price feed, canary, supervisor).
The AWS emulator and the two simulated brokers are shown but not judged: they stand in for AWS's storage
and the brokers' books, and keep every item, message and fill in memory, so they grow with the orders the
soak stores (the report prints the brokers' growth per fill they hold). Exits 1 when a target is missed.

``--report FILE`` prints the report of a saved ``soak.json`` again without running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from tradeops.experiments.load import read_ids
from tradeops.runtime.liability.exposuretable import read_summary
from tradeops.runtime.liability.ledger import Ledger
from tradeops.runtime.liability.reimbursement import compensation
from tradeops.runtime.orderpath.orders import OrderStore
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.clock import parse_duration
from tradeops.runtime.platform.names import names_for
from tradeops.runtime.platform.settings import load_settings
from tradeops.runtime.platform.statefile import read_state, resolve_settings
from tradeops.runtime.stack import supervisor

GROWTH_LIMIT = 0.20
STAND_INS = ("aws ", "broker-")  # processes standing in for AWS and the brokers: not judged on growth
FINAL = {"FILLED", "REJECTED", "CANCELLED", "DEAD_LETTERED"}


def schedule(duration: float) -> list[tuple[float, str, str]]:
    """(seconds after the start, action, target) for the whole run, sorted by time."""
    plan: list[tuple[float, str, str]] = []
    for episode in (0.15, 0.45, 0.75):  # primary flapping
        for cycle in range(4):
            start = episode * duration + cycle * 5.0
            plan += [(start, "fault", "down"), (start + 2.0, "fault", "none")]
    kill, n = 120.0, 0
    while kill < duration:  # a worker SIGKILL every 2 minutes, in turn
        plan.append((kill, "kill", f"worker-{1 + n % 2}"))
        kill, n = kill + 120.0, n + 1
    plan += [(0.55 * duration, "kill", "intake"), (0.65 * duration, "kill", "monitor")]
    poison = 30.0
    while poison < duration:  # a poison message every minute
        plan.append((poison, "poison", f"soak-poison-{int(poison)}"))
        poison += 60.0
    return sorted(plan)


def proc_figures(pid: int) -> dict[str, int] | None:
    """RSS (KiB) and open descriptors of one process, from /proc; None when it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return {"rss_kib": rss, "fds": len(os.listdir(f"/proc/{pid}/fd"))}
    except (OSError, StopIteration, ValueError):
        return None


class Sampler(threading.Thread):
    """Every ``every`` s: RSS and descriptors of each process the stack's state file names."""

    def __init__(self, state_file: Path, every: float = 10.0) -> None:
        super().__init__(name="soak-sampler", daemon=True)
        self.state_file, self.every = state_file, every
        self.halt = threading.Event()
        self.samples: dict[str, list[dict[str, Any]]] = {}  # "<component> pid <pid>" -> samples
        self.first_seen: dict[str, float] = {}

    def sample(self) -> None:
        state = read_state(self.state_file) or {}
        pids = {name: comp.get("pid") for name, comp in (state.get("components") or {}).items()}
        pids["supervisor"] = state.get("supervisor_pid")
        now = time.time()
        for name, pid in pids.items():
            if not pid:
                continue
            figures = proc_figures(int(pid))
            if figures is None:
                continue
            key = f"{name} pid {pid}"
            self.first_seen.setdefault(key, now)
            self.samples.setdefault(key, []).append({"t": now, **figures})

    def run(self) -> None:
        while True:
            self.sample()
            if self.halt.wait(self.every):
                self.sample()
                return


def growth(sampler: Sampler, warmup: float) -> list[dict[str, Any]]:
    """Each process's first and last sample, and its growth after its own warm-up."""
    rows = []
    for key, samples in sorted(sampler.samples.items()):
        warm = [s for s in samples if s["t"] - sampler.first_seen[key] >= warmup]
        row: dict[str, Any] = {"process": key, "start": samples[0], "end": samples[-1], "samples": len(samples),
                               # the whole series, so a one-time step (a client built late) can be told from a trend
                               "series": [[round(s["t"] - sampler.first_seen[key], 1), s["rss_kib"], s["fds"]]
                                          for s in samples]}
        if len(warm) >= 2:
            row["rss_growth"] = round(warm[-1]["rss_kib"] / warm[0]["rss_kib"] - 1, 3)
            row["fds_growth"] = warm[-1]["fds"] - warm[0]["fds"]
            row["judged_from"] = warm[0]["t"]
        rows.append(row)
    return rows


def explain_dead_letters(aws: Aws, store: OrderStore) -> list[dict[str, Any]]:
    """Every message on the dead-letter queue: a planted poison message, or the order it carried and why."""
    names = names_for(aws.settings)
    url = aws.queue_url(names.order_dlq)
    seen: dict[str, dict[str, Any]] = {}
    for _ in range(20):  # receive with no visibility timeout until every message has been seen twice
        got = aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                      WaitTimeSeconds=0).get("Messages", [])
        fresh = [m for m in got if m["MessageId"] not in seen]
        for message in fresh:
            body = message["Body"]
            if body.startswith("not an order: soak-poison-"):
                seen[message["MessageId"]] = {"kind": "planted poison", "body": body}
                continue
            try:
                order_id = json.loads(body)["order_id"]
            except (ValueError, KeyError, TypeError):
                seen[message["MessageId"]] = {"kind": "unexplained", "body": body[:200]}
                continue
            order = store.get(order_id) or {}
            last = (order.get("history") or [{}])[-1]
            seen[message["MessageId"]] = {"kind": "order", "order_id": order_id, "status": order.get("status"),
                                          "reason": last.get("reason")}
        if not got:
            break
    return list(seen.values())


def monitor_check(aws: Aws, ids: list[str]) -> dict[str, Any]:
    """The ledger and the monitor's summary against a recomputation from the orders table."""
    store = OrderStore(aws)
    orders = store.get_many(ids)
    filled = {i: o for i, o in orders.items() if o.get("status") == "FILLED" and not o.get("synthetic")}
    expected = Decimal(0)
    for order in filled.values():
        quantity = order.get("filled_quantity") or order["quantity"]
        expected += compensation(str(order["side"]), Decimal(str(order["quote_price"])),
                                 Decimal(str(order["fill_price"])), Decimal(str(quantity)))
    entries = {e["order_id"]: e for e in Ledger(aws).entries() if e["order_id"] in filled}
    owed = sum((Decimal(str(e["amount"])) for e in entries.values()), Decimal(0))
    summary = read_summary(aws) or {}
    open_now = sum(1 for o in orders.values() if o.get("status") not in FINAL)
    return {"filled_orders": len(filled), "ledger_entries": len(entries),
            "missing_entries": sorted(set(filled) - set(entries))[:20],
            "owed_by_ledger_gbp": str(owed), "owed_recomputed_gbp": str(expected),
            "monitor_pending_orders": summary.get("pending_orders"), "open_in_table": open_now}


def run_faults(plan: list[tuple[float, str, str]], started: float, state_file: Path, aws: Aws,
               stop: threading.Event, log: list[dict[str, Any]]) -> None:
    http = httpx.Client(timeout=5)
    queue = aws.queue_url(names_for(aws.settings).order_queue)
    for at, action, target in plan:
        if stop.wait(max(0.0, started + at - time.time())):
            break
        state = read_state(state_file) or {}
        try:
            if action == "fault":
                control = state["brokers"]["primary"]["control"]
                http.post(f"{control}/_sim/fault", json={"mode": target}).raise_for_status()
            elif action == "kill":
                pid = int(state["components"][target]["pid"])
                os.kill(pid, signal.SIGKILL)
                target = f"{target} pid {pid}"
            elif action == "poison":
                aws.sqs.send_message(QueueUrl=queue, MessageBody=f"not an order: {target}")
            log.append({"at_s": round(time.time() - started, 1), "action": action, "target": target})
        except Exception as exc:  # a fault that could not be applied is reported, the soak goes on
            log.append({"at_s": round(time.time() - started, 1), "action": action, "target": target,
                        "error": str(exc)[:200]})
    http.post(f"{(read_state(state_file) or {})['brokers']['primary']['control']}/_sim/fault",
              json={"mode": "none"})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="10m")
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup", default="60s")
    parser.add_argument("--out", type=Path, default=Path("runs/bench-soak"))
    parser.add_argument("--report", type=Path, help="print the report of a saved soak.json and stop")
    args = parser.parse_args()
    if args.report:
        return report(json.loads(args.report.read_text(encoding="utf-8")))
    duration = parse_duration(args.duration)
    warmup = parse_duration(args.warmup)

    state_dir = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))}
    env["TRADEOPS_STATE_DIR"] = str(state_dir)
    settings = load_settings(state_dir=state_dir)
    print(f"starting a private stack in {state_dir} ...", flush=True)
    supervisor.launch(settings, workers=args.workers, local=True, ports={})
    try:
        settings = resolve_settings(settings)
        aws = Aws(settings)
        names = names_for(settings)
        for param, value in ((names.mode_param, "auto"), (names.active_param, "primary")):
            aws.ssm.put_parameter(Name=param, Value=value, Type="String", Overwrite=True)
        if args.out.exists():
            subprocess.run(["rm", "-rf", str(args.out)], check=True)
        sampler = Sampler(settings.state_file)
        started = time.time()
        sampler.start()
        plan = schedule(duration)
        faults: list[dict[str, Any]] = []
        stop = threading.Event()
        chaos = threading.Thread(target=run_faults, args=(plan, started, settings.state_file, aws, stop, faults),
                                 daemon=True)
        chaos.start()
        print(f"steady {args.rate}/s for {duration:.0f}s with {len(plan)} scheduled faults ...", flush=True)
        done = subprocess.run(["tradeops", "load", "run", "steady", "--rate", str(args.rate), "--duration",
                               f"{duration:.0f}s", "--drain", "120s", "--out", str(args.out), "--json", "--quiet"],
                              env=env, capture_output=True, text=True, timeout=duration + 1200)
        stop.set()
        chaos.join(10)
        sampler.halt.set()
        sampler.join(15)
        if done.returncode not in (0, 1):
            print(f"load run failed ({done.returncode}): {done.stderr.strip()[-2000:]}", file=sys.stderr)
            return 2
        summary = json.loads(done.stdout)
        accepted, unanswered = read_ids(args.out / "orders")
        time.sleep(5)  # the monitor's summary is written every second or so
        result = {
            "duration_s": duration, "rate": args.rate, "workers": args.workers,
            "orders": summary["orders"], "faults": faults,
            "dead_letters": explain_dead_letters(aws, OrderStore(aws)),
            "processes": growth(sampler, warmup),
            "monitor": monitor_check(aws, [*accepted, *unanswered]),
        }
    finally:
        supervisor.stop(settings)
    (args.out / "soak.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    return report(result)


def report(result: dict[str, Any]) -> int:
    orders, monitor = result["orders"], result["monitor"]
    print(f"\norders: placed {orders['placed']}, filled {orders['filled']}, lost {orders['lost']}, "
          f"filled twice {orders['filled_twice']}, dead-lettered {orders['dead_lettered']}, "
          f"rejected by the broker {orders['rejected']}, "
          f"pending {orders['pending']}, unanswered {orders.get('unanswered', 0)} "
          f"(found {orders.get('unanswered_found', 0)})")
    print("dead-letter queue:")
    for d in result["dead_letters"]:
        print("  " + (d["body"] if d["kind"] != "order" else f"order {d['order_id']} {d['status']}: {d['reason']}"))
    print(f"faults applied: {sum(1 for f in result['faults'] if 'error' not in f)}/{len(result['faults'])}")
    for f in result["faults"]:
        if "error" in f:
            print(f"  not applied at {f['at_s']} s: {f['action']} {f['target']}: {f['error']}")
    print(f"{'process':<34}{'rss start MiB':>14}{'rss end MiB':>12}{'growth':>8}{'fds':>10}")
    worst, fills = 0.0, result["orders"].get("by_provider") or {}
    for p in result["processes"]:
        g = p.get("rss_growth")
        if not p["process"].startswith(STAND_INS):
            worst = max(worst, g or 0.0)
        print(f"{p['process']:<34}{p['start']['rss_kib'] / 1024:>14.1f}{p['end']['rss_kib'] / 1024:>12.1f}"
              f"{'' if g is None else f'{g:+.1%}':>8}{p['start']['fds']:>5}->{p['end']['fds']:<4}"
              + ("  (not judged: stands in for AWS or a broker)" if p["process"].startswith(STAND_INS) else ""))
    for name, count in sorted(fills.items()):
        p = next((p for p in result["processes"] if p["process"].startswith(f"broker-{name} ")), None)
        if p and count:
            grown = (p["end"]["rss_kib"] - p["start"]["rss_kib"]) / count
            print(f"  broker-{name} holds {count} fills of this run: {grown:.2f} KiB of growth per fill")
    print(f"monitor: {monitor['ledger_entries']} ledger entries for {monitor['filled_orders']} filled orders; "
          f"owed £{monitor['owed_by_ledger_gbp']} by the ledger, £{monitor['owed_recomputed_gbp']} recomputed; "
          f"pending {monitor['monitor_pending_orders']} (table: {monitor['open_in_table']} open)")
    missed = []
    if orders["lost"] or orders["filled_twice"]:
        missed.append("orders lost or filled twice")
    if any(d["kind"] != "planted poison" for d in result["dead_letters"]):
        missed.append("dead letters other than the planted poison")
    if monitor["ledger_entries"] != monitor["filled_orders"] or \
            Decimal(monitor["owed_by_ledger_gbp"]) != Decimal(monitor["owed_recomputed_gbp"]):
        missed.append("the ledger disagrees with the orders table")
    if worst > GROWTH_LIMIT:
        missed.append(f"a process grew {worst:.0%} in memory after warm-up")
    print("targets: " + ("all met" if not missed else "MISSED: " + "; ".join(missed)))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
