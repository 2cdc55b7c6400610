"""The pure parts of load runs: shapes, thresholds, scenario validation, the order mix, reconciliation
and the summary figures. (Locust itself never enters this process: see the last test.)"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeops.experiments.loadreport import (
    aws_per_order,
    highest_sustained,
    http_figures,
    percentiles,
    stage_report,
    timeline,
)
from tradeops.loadtests.mix import Mix
from tradeops.loadtests.scenario import ScenarioError, load_scenario, scenario_from_document, shipped_scenarios
from tradeops.loadtests.shapes import Shape, Stage, users_for
from tradeops.loadtests.thresholds import BUILT_IN, ThresholdError, evaluate, merge, parse_threshold
from tradeops.runtime.orderpath.orders import OrderRequest
from tradeops.runtime.orderpath.reconcile import OUTCOMES, fill_times, reconcile
from tradeops.runtime.platform.clock import iso

REPO = Path(__file__).resolve().parent.parent


# ---- shapes ---------------------------------------------------------------------------------------
def test_steady_holds_its_rate_and_ends_at_its_duration():
    """steady answers its rate throughout and None from its duration on."""
    shape = Shape("steady", rate=20, duration=30)
    assert [shape.rate_at(t) for t in (0, 10, 29.99)] == [20, 20, 20]
    assert shape.rate_at(30) is None and shape.rate_at(-1) is None
    assert shape.expected_orders() == 600


def test_market_open_ramps_to_its_peak_then_decays_towards_the_base():
    """market-open starts at the base rate, peaks at the end of the ramp, and halves its excess every decay."""
    shape = Shape("market-open", rate=10, peak=60, ramp=120, decay=60, duration=600)
    assert shape.rate_at(0) == 10
    assert shape.rate_at(60) == pytest.approx(35)
    assert shape.rate_at(120) == pytest.approx(60)
    assert shape.rate_at(180) == pytest.approx(35)
    assert shape.rate_at(240) == pytest.approx(22.5)
    assert shape.peak_rate == 60


def test_spike_is_a_multiple_of_the_baseline_for_its_length():
    """spike is rate x multiple from `at` for `length`, the baseline before and after."""
    shape = Shape("spike", rate=10, multiple=5, at=20, length=15, duration=60)
    assert [shape.rate_at(t) for t in (19.9, 20, 34.9, 35)] == [10, 50, 50, 10]
    assert [s.name for s in shape.stages()] == ["before", "spike", "after"]
    assert shape.expected_orders() == 10 * 45 + 50 * 15


def test_step_climbs_by_its_step_every_interval_and_never_passes_its_peak():
    """step is a staircase capped at peak, and its stages are the stairs."""
    shape = Shape("step", rate=10, step=10, every=20, peak=35, duration=100)
    assert [shape.rate_at(t) for t in (0, 19.9, 20, 40, 60, 99)] == [10, 10, 20, 30, 35, 35]
    assert [s.rate for s in shape.stages()] == [10, 20, 30, 35, 35]


def test_stairs_of_a_non_round_length_each_name_their_own_level():
    """Stairs 41.789 s long: each stage's rate is its own stair's (summing the lengths drifted below k x every
    and named the stair before), so the total and the highest rate match the curve."""
    shape = Shape("step", rate=8.504, step=0.275, every=41.789, peak=340.605, duration=415.316)
    stages = shape.stages()
    assert [round(s.rate, 3) for s in stages] == [round(8.504 + 0.275 * k, 3) for k in range(len(stages))]
    assert all(shape.rate_at((s.start + s.end) / 2) == s.rate for s in stages)
    assert shape.peak_rate == stages[-1].rate


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["steady", "market-open", "spike", "step"]),
       rate=st.floats(0.5, 200), peak=st.floats(1, 400), duration=st.floats(5, 900),
       ramp=st.floats(1, 300), decay=st.floats(1, 300), every=st.floats(1, 60), step=st.floats(0, 50))
def test_expected_orders_is_the_integral_of_the_rate(kind, rate, peak, duration, ramp, decay, every, step):
    """The orders a shape asks for equal the integral of its rate curve, and no rate exceeds its peak rate."""
    shape = Shape(kind, rate=rate, peak=peak, duration=duration, ramp=ramp, decay=decay, every=every, step=step,
                  at=duration / 3, length=duration / 4)
    n = 4000
    dt = duration / n
    samples = [shape.rate_at((i + 0.5) * dt) for i in range(n)]
    assert all(s is not None and 0 <= s <= shape.peak_rate + 1e-9 for s in samples)
    numeric = sum(samples) * dt  # type: ignore[arg-type]
    assert shape.expected_orders() == pytest.approx(numeric, rel=0.02, abs=max(rate, peak, step) * every / 10 + 1)


@given(rate=st.floats(0.01, 10_000), user_rate=st.floats(0.1, 10))
def test_users_turn_an_order_rate_into_customers_within_half_a_customer(rate, user_rate):
    """users_for places at least one customer and comes within half a customer's rate of the target."""
    users = users_for(rate, user_rate)
    assert users >= 1
    assert abs(users * user_rate - rate) <= max(user_rate / 2 + 1e-9, user_rate - rate)


# ---- thresholds ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text,metric,value,of_target", [
    ("time_to_fill p99 < 2s", "time_to_fill p99", 2.0, False),
    ("time to fill p50 <= 500ms", "time_to_fill p50", 0.5, False),
    ("http failure rate < 0.1%", "http failure rate", 0.001, False),
    ("orders lost == 0", "orders lost", 0, False),
    ("orders pending after drain == 0", "orders pending after drain", 0, False),
    ("achieved rate >= 95% of target", "achieved rate", 0.95, True),
    ("achieved rate >= 18/s", "achieved rate", 18, False),
    ("aws requests per order < 30", "aws requests per order", 30, False),
])
def test_thresholds_read_the_way_the_issue_writes_them(text, metric, value, of_target):
    """Each example threshold parses to its metric, its value in base units, and whether it is a share of target."""
    t = parse_threshold(text)
    assert (t.metric, t.value, t.of_target) == (metric, pytest.approx(value), of_target)


@pytest.mark.parametrize("text,needle", [
    ("time_to_fill p99 2s", "METRIC OP VALUE"),
    ("time_to_fill p98 < 2s", "unknown metric"),
    ("time_to_fill p99 < fast", "duration"),
    ("http failure rate < lots", "share"),
    ("achieved rate >= most of target", "rate"),
    ("", "text like"),
])
def test_a_malformed_threshold_says_what_is_wrong(text, needle):
    """A threshold that cannot be read raises ThresholdError naming it and the reason."""
    with pytest.raises(ThresholdError, match=needle):
        parse_threshold(text)


def test_later_layers_override_a_threshold_on_the_same_metric():
    """merge keeps one threshold per metric: the command line over the scenario over the built-ins."""
    scenario = [parse_threshold("time_to_fill p99 < 2s")]
    cli = [parse_threshold("time_to_fill p99 < 1ms", source="command line"),
           parse_threshold("orders lost <= 3", source="command line")]
    merged = {t.metric: t for t in merge(BUILT_IN, scenario, cli)}
    assert merged["time_to_fill p99"].value == pytest.approx(0.001)
    assert merged["orders lost"].text == "orders lost <= 3"
    assert len(merged) == len(BUILT_IN) + 1


def test_a_metric_that_was_not_measured_fails_its_threshold():
    """No fills means no time-to-fill p99: the threshold fails and says it was not measured."""
    (verdict,) = evaluate([parse_threshold("time_to_fill p99 < 2s")], {"time_to_fill p99": None}, target_rate=20)
    assert not verdict.passed and "not measured" in verdict.line()


def test_a_share_of_target_is_judged_against_the_target_rate():
    """`achieved rate >= 95% of target` compares achieved / target, and shows both."""
    t = [parse_threshold("achieved rate >= 95% of target")]
    assert evaluate(t, {"achieved rate": 19.5}, target_rate=20)[0].passed
    low = evaluate(t, {"achieved rate": 18.0}, target_rate=20)[0]
    assert not low.passed and "90.0% of 20.00/s" in low.shown


def test_an_impossible_threshold_is_breached_and_names_the_measured_value():
    """time_to_fill p99 < 1ms against 350 ms is breached, and the line carries both."""
    (verdict,) = evaluate([parse_threshold("time_to_fill p99 < 1ms")], {"time_to_fill p99": 0.35}, target_rate=1)
    assert not verdict.passed
    assert verdict.line() == "time_to_fill p99 < 1ms: measured 350 ms (BREACHED)"


# ---- scenarios -----------------------------------------------------------------------------------
def test_every_shipped_scenario_validates_and_covers_the_four_shapes():
    """The shipped scenarios load, and between them cover steady, market-open, spike and step."""
    kinds = {load_scenario(name).shape.kind for name in shipped_scenarios()}
    assert kinds == {"steady", "market-open", "spike", "step"}


def test_command_line_parameters_replace_the_files_values():
    """--rate/--duration/--param replace the YAML's values before validation."""
    s = load_scenario("step", {"rate": "5", "duration": "40s", "every": "10s", "peak": "25", "drain": "3s"})
    assert (s.shape.rate, s.shape.duration, s.shape.every, s.shape.peak, s.drain) == (5, 40, 10, 25, 3)


@pytest.mark.parametrize("name,params,needle", [
    ("no-such-scenario", {}, "unknown scenario 'no-such-scenario'"),
    ("steady", {"rate": "-3"}, "steady.yaml: shape.rate: -3.0 is less than or equal to the minimum of 0"),
    ("steady", {"rate": "fast"}, "rate='fast': not a number"),
    ("steady", {"duration": "soon"}, "steady.yaml: shape.duration: 'soon' is not a duration"),
    ("steady", {"colour": "red"}, "unknown parameter 'colour'"),
])
def test_a_bad_scenario_or_parameter_names_file_field_and_reason(name, params, needle):
    """Scenario errors are one line naming the file, the field and the reason."""
    with pytest.raises(ScenarioError) as caught:
        load_scenario(name, params)
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_a_scenario_file_with_a_bad_threshold_or_mix_is_refused(tmp_path):
    """A scenario file is validated before anything runs: unknown fields, bad shares and bad thresholds."""
    base = {"name": "mine", "shape": {"kind": "steady", "rate": 5, "duration": "10s"}}
    with pytest.raises(ScenarioError, match=r"mine.yaml: thresholds\[1\]: .*unknown metric"):
        path = tmp_path / "mine.yaml"
        path.write_text(json.dumps({**base, "thresholds": ["orders lost == 0", "latency < 2s"]}))
        load_scenario(str(path))
    with pytest.raises(ScenarioError, match=r"x: mix.buy: 2 is greater than the maximum of 1"):
        scenario_from_document({**base, "mix": {"buy": 2}}, source="x")
    with pytest.raises(ScenarioError, match=r"x: \(top level\): Additional properties are not allowed"):
        scenario_from_document({**base, "extra": 1}, source="x")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(str(broken))


# ---- the order mix -------------------------------------------------------------------------------
QUOTES = {f"SYM{n}": Decimal(f"{90 + n}.{n % 100:02d}") for n in range(50)}


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32), limit=st.floats(0, 1), buy=st.floats(0, 1),
       low=st.floats(-500, 0), high=st.floats(0, 500))
def test_every_order_of_the_mix_is_one_the_intake_accepts(seed, limit, buy, low, high):
    """Whatever the mix, each order body passes the intake's own order model (OrderRequest)."""
    mix = Mix(limit=limit, buy=buy, limit_offset_bps=(low, high))
    rng = random.Random(seed)
    chooser = mix.chooser(QUOTES)
    for n in range(20):
        body = mix.order(rng, chooser, QUOTES, f"load-x-abc-{n}")
        OrderRequest.model_validate(body)
        assert body["quote_price"] == str(QUOTES[body["symbol"]])


def test_a_few_symbols_take_most_of_the_flow():
    """With the shipped skew, the five most popular of 50 symbols take over half the orders."""
    mix = load_scenario("steady").mix
    rng = random.Random(1)
    chooser = mix.chooser(QUOTES)
    picks = [mix.order(rng, chooser, QUOTES, str(n))["symbol"] for n in range(5000)]
    top5 = sum(picks.count(f"SYM{n}") for n in range(5))
    assert top5 > 2500
    assert len(set(picks)) > 30


def test_the_mix_places_buys_sells_markets_and_limits_in_its_proportions():
    """Side and type shares follow the mix within sampling error, and quantities stay whole and bounded."""
    mix = Mix(buy=0.7, limit=0.3, quantity_max=100)
    rng = random.Random(3)
    chooser = mix.chooser(QUOTES)
    orders = [mix.order(rng, chooser, QUOTES, str(n)) for n in range(4000)]
    assert sum(o["side"] == "BUY" for o in orders) / 4000 == pytest.approx(0.7, abs=0.03)
    assert sum(o["order_type"] == "LIMIT" for o in orders) / 4000 == pytest.approx(0.3, abs=0.03)
    assert all(1 <= o["quantity"] <= 100 for o in orders)


# ---- reconciliation ------------------------------------------------------------------------------
T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def _order(order_id: str, status: str, provider: str | None = "primary", fill_after: float = 0.5) -> dict:
    history = [{"at": iso(T0), "status": "ACCEPTED", "actor": "intake"}]
    if status == "FILLED":
        history.append({"at": iso(T0 + timedelta(seconds=fill_after)), "status": "FILLED", "actor": "w"})
    return {"order_id": order_id, "status": status, "provider": provider, "placed_at": iso(T0), "history": history}


def test_reconciliation_counts_every_outcome_and_names_the_offending_orders():
    """Filled, rejected, pending, dead-lettered, lost (missing, or FILLED with no fill), twice, wrong broker."""
    orders = {
        "ok": _order("ok", "FILLED"), "rej": _order("rej", "REJECTED"), "wait": _order("wait", "IN_DOUBT"),
        "dlq": _order("dlq", "DEAD_LETTERED"), "ghost": _order("ghost", "FILLED"),
        "twice": _order("twice", "FILLED"), "wrong": _order("wrong", "FILLED"),
        "told-no": _order("told-no", "REJECTED"),
    }
    fills = {"primary": [{"order_id": "ok"}, {"order_id": "twice"}, {"order_id": "told-no"},
                         {"order_id": "someone-else"}],
             "secondary": [{"order_id": "twice"}, {"order_id": "wrong"}]}
    accepted = [*orders, "missing"]
    r = reconcile(accepted, orders, fills, unanswered=["maybe", "ok"])
    assert r.placed == 9
    assert r.ids["filled"] == ["ok", "twice", "wrong"]
    assert r.ids["lost"] == ["ghost", "missing"]
    assert r.ids["filled_twice"] == ["twice"]
    assert r.ids["wrong_broker"] == ["twice", "wrong"]
    assert r.ids["unrecorded_fill"] == ["told-no"]
    assert (r.counts["rejected"], r.counts["pending"], r.counts["dead_lettered"]) == (2, 1, 1)
    assert (r.unanswered, r.unanswered_found) == (1, 0)


def test_without_fill_ledgers_filled_orders_are_taken_at_their_word():
    """No ledger: FILLED counts as filled, nothing is cross-checked, and the result says so."""
    r = reconcile(["a"], {"a": _order("a", "FILLED")}, None)
    assert r.counts["filled"] == 1 and r.counts["lost"] == 0 and not r.fills_checked


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["FILLED", "REJECTED", "ACCEPTED", "SUBMITTING", "IN_DOUBT",
                                           "DEAD_LETTERED", "CANCELLED", None]),
                          st.sets(st.sampled_from(["primary", "secondary"]))), max_size=40))
def test_every_placed_order_lands_in_exactly_one_outcome(cases):
    """The outcome counts partition the placed orders, whatever the states and fills."""
    orders, fills = {}, {"primary": [], "secondary": []}
    for n, (status, filled_at) in enumerate(cases):
        if status is not None:
            orders[str(n)] = _order(str(n), status)
        for provider in filled_at:
            fills[provider].append({"order_id": str(n)})
    r = reconcile([str(n) for n in range(len(cases))], orders, fills)
    assert sum(r.counts[o] for o in OUTCOMES) == r.placed == len(cases)
    assert sorted(oid for o in OUTCOMES for oid in r.ids[o]) == sorted(str(n) for n in range(len(cases)))


def test_time_to_fill_comes_from_the_orders_own_timestamps():
    """fill_times is placed_at to the FILLED history entry, for FILLED orders only."""
    times = fill_times([_order("a", "FILLED", fill_after=1.25), _order("b", "REJECTED")])
    assert [(oid, (f - p).total_seconds(), prov) for oid, p, f, prov in times] == [("a", 1.25, "primary")]


# ---- summary figures -----------------------------------------------------------------------------
def test_percentiles_are_nearest_rank():
    """p50/p90/p99/max/mean of 1..100 are 50, 90, 99, 100 and 50.5; none of nothing."""
    got = percentiles([float(v) for v in range(100, 0, -1)])
    assert (got["p50"], got["p90"], got["p99"], got["max"], got["mean"]) == (50, 90, 99, 100, 50.5)
    assert percentiles([])["p99"] is None


def test_http_figures_come_from_locusts_histogram():
    """Locust's JSON entry gives requests, failures, rate and response-time percentiles."""
    entry = {"num_requests": 100, "num_failures": 2, "response_times": {"10": 90, "200": 10},
             "total_response_time": 2900.0, "max_response_time": 210.0, "start_time": 0.0,
             "last_request_timestamp": 10.0}
    got = http_figures(entry, [])
    assert (got.requests, got.failures, got.failure_rate, got.rps) == (100, 2, 0.02, 10.0)
    assert (got.response_ms["p50"], got.response_ms["p99"], got.response_ms["max"], got.response_ms["mean"]) == \
        (10.0, 200.0, 210.0, 29.0)


def test_aws_requests_per_order_count_the_run_only_and_survive_a_restart():
    """Deltas per component by service; a component whose counter fell was restarted and counts from 0."""
    before = {"intake": {"dynamodb.PutItem": 10, "sqs.SendMessage": 10}, "worker-1": {"sqs.ReceiveMessage": 50}}
    after = {"intake": {"dynamodb.PutItem": 30, "sqs.SendMessage": 30}, "worker-1": {"sqs.ReceiveMessage": 5}}
    got = aws_per_order(before, after, filled=20)
    assert got["by_service"] == {"dynamodb": 20, "sqs": 25}
    assert got["per_filled_order"]["total"] == pytest.approx(45 / 20)
    assert aws_per_order(before, after, filled=0)["per_filled_order"] is None


def test_each_stair_is_judged_and_the_ceiling_is_the_last_sustained_one():
    """A stair is sustained when it achieved 95% of its target with p99 under the limit; the ceiling stops
    at the first stair that is not."""
    start = T0.timestamp()
    orders: dict[str, dict] = {}
    for stair, (count, fill_after) in enumerate([(100, 0.2), (200, 0.3), (300, 2.5)]):
        for n in range(count):
            oid = f"{stair}-{n}"
            order = _order(oid, "FILLED", fill_after=fill_after)
            placed = T0 + timedelta(seconds=stair * 10 + n * 10 / count)
            order["placed_at"] = iso(placed)
            order["history"][-1]["at"] = iso(placed + timedelta(seconds=fill_after))
            orders[oid] = order
    recon = reconcile(list(orders), orders, None)
    stages = [Stage("step 1", 0, 10, 10), Stage("step 2", 10, 20, 20), Stage("step 3", 20, 30, 30)]
    report = stage_report(stages, orders, recon, start, fill_limit=2.0)
    assert [s["placed"] for s in report] == [100, 200, 300]
    assert [s["sustained"] for s in report] == [True, True, False]
    assert highest_sustained(report) == 20
    buckets = timeline(orders.values(), start, ["primary", "secondary"])
    assert sum(b["placed"] for b in buckets) == 600
    assert sum(b["filled"]["primary"] for b in buckets) == 600


def test_gevent_never_enters_the_runtime_or_the_cli(processes):
    """Importing the CLI, the runner and the load package's pure modules pulls in neither gevent nor Locust."""
    code = ("import sys, tradeops.cli, tradeops.experiments.load, tradeops.loadtests.scenario; "
            "bad = [m for m in ('gevent', 'locust') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gevent" not in sys.modules and "locust" not in sys.modules
