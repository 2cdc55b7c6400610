"""tradeops load: the one locustfile. Customers place orders through the intake API.

Run it through ``tradeops load run SCENARIO`` (which adds reconciliation, thresholds and the
summary), or with plain Locust after ``eval "$(tradeops env)"``::

    locust -f loadtests/locustfile.py --headless -u 5 -r 5 -t 10s      # 5 customers, 1 order/s each
    TRADEOPS_LOAD_SCENARIO=market-open locust -f loadtests/locustfile.py --headless
    locust -f loadtests/locustfile.py --worker --master-host 10.0.0.5   # a worker on another machine

What it reads (all printed by ``tradeops env``): ``TRADEOPS_INTAKE_URL`` (or ``--host``),
``TRADEOPS_INTAKE_TOKEN_FILE`` (or ``TRADEOPS_INTAKE_TOKEN``), ``TRADEOPS_PRICES_URL`` (the live
feed; without it quotes are the scenario's ``fallback_price``). Options of its own:
``--scenario NAME|FILE`` (``TRADEOPS_LOAD_SCENARIO``; without it ``-u``/``-r``/``-t`` work as in any
locustfile, and with neither the ``steady`` scenario runs), ``--run-id`` and ``--record-dir``.

- The shape (:class:`ScenarioShape`) turns the scenario's orders-per-second curve into customers,
  each placing ``user_rate`` orders a second.
- Every order id carries the run id (``<run id>-<process tag>-<n>``), so the run's orders can be
  told apart from everything else in the orders table.
- Each process records the ids the intake answered 2xx for (and those whose answer never came);
  workers send theirs to the master with their stats reports, and the master (or a lone process)
  writes one file per process into ``--record-dir``. Nothing polls the intake per order.

This module imports Locust, and so gevent: only a Locust process may import it.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import secrets
import sys
import time
import urllib.request
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, LoadTestShape, constant_throughput, events, task
from locust.runners import MasterRunner, WorkerRunner

from tradeops.loadtests.mix import SymbolChooser
from tradeops.loadtests.scenario import Scenario, ScenarioError, load_scenario, new_run_id
from tradeops.loadtests.shapes import users_for

log = logging.getLogger("tradeops.load")

QUOTES_REFRESH_SECONDS = 2.0
FLUSH_SECONDS = 1.0
# After the shape ends, hold zero users this long so that workers finish their last requests
# and send their last report (they report every 3 s) before the master quits.
DISTRIBUTED_TAIL_SECONDS = 4.0
ACCEPTED, UNANSWERED = "accepted", "unanswered"


class _Record:
    """Order ids by outcome, kept until written (lone process, master) or reported (worker)."""

    def __init__(self) -> None:
        self.ids: dict[str, list[str]] = {ACCEPTED: [], UNANSWERED: []}

    def add(self, outcome: str, order_id: str) -> None:
        self.ids[outcome].append(order_id)

    def take(self) -> dict[str, list[str]]:
        taken, self.ids = self.ids, {ACCEPTED: [], UNANSWERED: []}
        return taken


def write_ids(folder: str, process: str, ids: dict[str, list[str]]) -> None:
    """Append ids to the process's files in ``folder`` (``<process>.accepted``, ``<process>.unanswered``)."""
    if not folder:
        return
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", process)
    for outcome, batch in ids.items():
        if batch:
            with open(Path(folder) / f"{safe}.{outcome}", "a", encoding="utf-8") as fh:
                fh.write("".join(f"{order_id}\n" for order_id in batch))


class _Load:
    """This process's view of the run: scenario, run id, token, quotes, and the ids it placed."""

    def __init__(self) -> None:
        self.scenario: Scenario | None = None
        self.mode = "scenario"  # or "users": plain -u/-r/-t
        self.run_id = ""
        self.tag = secrets.token_hex(3)
        self.seq = 0
        self.rng = random.Random()
        self.headers: dict[str, str] = {}
        self.quotes: dict[str, Decimal] = {}
        self.chooser: SymbolChooser | None = None
        self.record = _Record()
        self.prices_url = ""
        self.record_dir = ""  # where the master or a lone process writes the ids

    def next_order(self) -> dict[str, Any]:
        assert self.scenario is not None and self.chooser is not None
        self.seq += 1
        return self.scenario.mix.order(self.rng, self.chooser, self.quotes, f"{self.run_id}-{self.tag}-{self.seq}")

    def refresh_quotes(self) -> None:
        """The live feed's prices (``GET {prices}/prices``); on failure the last ones stay."""
        assert self.scenario is not None
        if self.prices_url:
            try:
                with urllib.request.urlopen(self.prices_url.rstrip("/") + "/prices", timeout=2) as answer:  # noqa: S310
                    prices = json.load(answer)["prices"]
                self.quotes = {s: Decimal(str(p)) for s, p in prices.items()}
            except (OSError, ValueError, KeyError, TypeError, InvalidOperation) as exc:
                log.warning("price feed at %s not readable (%s); keeping the last quotes", self.prices_url, exc)
        self.chooser = self.scenario.mix.chooser(self.quotes)


LOAD = _Load()


def _token() -> str:
    token = os.environ.get("TRADEOPS_INTAKE_TOKEN", "").strip()
    path = os.environ.get("TRADEOPS_INTAKE_TOKEN_FILE", "").strip()
    if not token and path:
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ScenarioError(f"intake token file {path}: {exc.strerror}") from None
    if not token:
        raise ScenarioError("no intake token: set TRADEOPS_INTAKE_TOKEN_FILE (eval \"$(tradeops env)\") "
                            "or TRADEOPS_INTAKE_TOKEN")
    return token


@events.init_command_line_parser.add_listener
def _arguments(parser: Any) -> None:
    group = parser.add_argument_group("tradeops")
    group.add_argument("--scenario", default="", env_var="TRADEOPS_LOAD_SCENARIO",
                       help="A shipped scenario (steady, market-open, spike, step) or a scenario file.")
    group.add_argument("--run-id", default="", env_var="TRADEOPS_LOAD_RUN_ID",
                       help="The run id every order id carries (default: a new one).")
    group.add_argument("--record-dir", default="", env_var="TRADEOPS_LOAD_RECORD_DIR",
                       help="Where to write the ids the intake accepted (one file per process).")
    group.add_argument("--prices-url", default="", env_var="TRADEOPS_PRICES_URL",
                       help="The price feed's address, for live quotes.")


@events.init.add_listener
def _init(environment: Any, **_: Any) -> None:
    """Resolve the scenario and run id (master or lone process) and check the token (who places orders)."""
    options = environment.parsed_options
    if options is None:  # used as a library, not by the locust command
        return
    runner = environment.runner
    LOAD.record_dir = options.record_dir
    try:
        if not isinstance(runner, MasterRunner):
            LOAD.headers = {"Authorization": f"Bearer {_token()}"}
        if not isinstance(runner, WorkerRunner):
            if options.scenario:
                scenario = load_scenario(options.scenario)
            else:
                scenario = load_scenario("steady")
                LOAD.mode = "users" if options.num_users is not None else "scenario"
            # Workers receive these with the master's first spawn message (custom options are forwarded).
            options.tradeops_scenario = scenario.to_json()
            options.tradeops_mode = LOAD.mode
            options.run_id = options.run_id or new_run_id()
    except ScenarioError as exc:
        sys.stderr.write(f"tradeops load: {exc}\n")
        sys.exit(2)
    if environment.stop_timeout is None or environment.stop_timeout == 0:
        # Let a customer finish the order it is placing when the load stops, so that every order
        # the intake recorded also has its answer recorded here.
        environment.stop_timeout = 10


@events.test_start.add_listener
def _start(environment: Any, **_: Any) -> None:
    options = environment.parsed_options
    LOAD.scenario = Scenario.from_json(options.tradeops_scenario)
    LOAD.mode = getattr(options, "tradeops_mode", "scenario")
    LOAD.run_id = options.run_id
    LOAD.prices_url = options.prices_url
    Customer.wait_time = constant_throughput(LOAD.scenario.user_rate)
    LOAD.refresh_quotes()
    if not isinstance(environment.runner, WorkerRunner) and options.record_dir:
        Path(options.record_dir).mkdir(parents=True, exist_ok=True)
        marker = {"run_id": LOAD.run_id, "scenario": LOAD.scenario.name, "started_epoch": time.time(),
                  "mode": LOAD.mode}
        (Path(options.record_dir) / "run.json").write_text(json.dumps(marker), encoding="utf-8")
    if not isinstance(environment.runner, MasterRunner):
        gevent.spawn(_quotes_loop)
    if not isinstance(environment.runner, MasterRunner | WorkerRunner):
        gevent.spawn(_flush_loop)


def _quotes_loop() -> None:
    while True:
        gevent.sleep(QUOTES_REFRESH_SECONDS)
        LOAD.refresh_quotes()


def _flush_loop() -> None:
    while True:
        gevent.sleep(FLUSH_SECONDS)
        write_ids(LOAD.record_dir, f"local-{LOAD.tag}", LOAD.record.take())


@events.quitting.add_listener
def _quitting(environment: Any, **_: Any) -> None:
    if not isinstance(environment.runner, MasterRunner | WorkerRunner):
        write_ids(LOAD.record_dir, f"local-{LOAD.tag}", LOAD.record.take())


@events.report_to_master.add_listener
def _report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    data["tradeops_ids"] = LOAD.record.take()


@events.worker_report.add_listener
def _worker_report(client_id: str, data: dict[str, Any], **_: Any) -> None:
    ids = data.get("tradeops_ids")
    if ids:
        write_ids(LOAD.record_dir, f"worker-{client_id}", ids)


class Customer(FastHttpUser):
    """A retail customer placing orders from the scenario's mix at ``user_rate`` orders a second."""

    host = os.environ.get("TRADEOPS_INTAKE_URL")
    wait_time = constant_throughput(1.0)
    connection_timeout = 5.0
    network_timeout = 10.0

    @task
    def place_order(self) -> None:
        body = LOAD.next_order()
        order_id = body["order_id"]
        with self.client.post("/orders", json=body, headers=LOAD.headers, name="POST /orders",
                              catch_response=True) as response:
            if response.status_code in (200, 202):
                LOAD.record.add(ACCEPTED, order_id)
                response.success()
                return
            if response.status_code == 0 or response.status_code >= 500:
                # No answer, or the intake failed: the order may or may not exist.
                LOAD.record.add(UNANSWERED, order_id)
            response.failure(f"HTTP {response.status_code}: {(response.text or '')[:120]}")


class ScenarioShape(LoadTestShape):
    """The scenario's rate curve as customers; with plain ``-u``/``-r``/``-t``, those instead."""

    use_common_options = True

    def tick(self) -> tuple[int, float] | None:
        elapsed = self.get_run_time()
        assert self.runner is not None and self.runner.environment.parsed_options is not None
        options = self.runner.environment.parsed_options
        if LOAD.mode == "users":
            if options.run_time and elapsed >= options.run_time:
                return None
            return options.num_users, options.spawn_rate
        # The first tick comes before test_start has set LOAD.scenario.
        scenario = LOAD.scenario or Scenario.from_json(options.tradeops_scenario)
        rate = scenario.shape.rate_at(elapsed)
        if rate is None:
            tail = DISTRIBUTED_TAIL_SECONDS if isinstance(self.runner, MasterRunner) else 0.0
            return (0, 1000.0) if elapsed < scenario.shape.duration + tail else None
        users = users_for(rate, scenario.user_rate)
        # Spawn a second's worth at once: new customers' orders spread evenly over the next second.
        return users, float(max(users, 1))
