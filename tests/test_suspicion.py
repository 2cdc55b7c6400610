"""The in-flight watch: its rules as properties, then a router against real simulated brokers (a silent broker,
a slow one, one answering errors, and one refusing connections)."""

from __future__ import annotations

import ast
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.support.brokers import API_KEY, broker_pair
from tradeops.runtime.orderpath.providers import BrokerOrder, NotAccepted, NotConnected, OutcomeUnknown, make_provider
from tradeops.runtime.orderpath.router import Router
from tradeops.runtime.orderpath.suspicion import CallWatch, SuspicionConfig, judge, p99, threshold_ms
from tradeops.runtime.platform.errors import ConfigError
from tradeops.runtime.platform.settings import load_settings

CONFIG = SuspicionConfig(multiple=4.0, floor_ms=150.0, ceiling_ms=2000.0, min_samples=5, history=200)

latency = st.floats(min_value=0.1, max_value=3000.0, allow_nan=False)
history = st.lists(latency, min_size=CONFIG.min_samples, max_size=60)
moment = st.floats(min_value=0.0, max_value=10_000.0, allow_nan=False)


# --------------------------------------------------------------------------- the rules as properties


@given(latencies=history, now=moment, fractions=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8),
       last=st.one_of(st.none(), moment))
def test_a_broker_answering_within_its_p99_is_never_suspect(latencies, now, fractions, last):
    """Calls no older than the broker's recent p99 (itself within the read timeout) never make it suspect."""
    known = p99(latencies)
    assert known is not None
    assume(known <= CONFIG.ceiling_ms)
    starts = [now - f * known / 1000 for f in fractions]
    assert not judge(starts, last, latencies, now, CONFIG).suspect


@given(latencies=st.one_of(st.just([]), history), sent=moment, extra_ms=st.floats(0.001, 5000.0),
       answered_before=st.one_of(st.none(), st.floats(0.001, 100.0)), others=st.lists(moment, max_size=5))
def test_a_broker_silent_past_the_threshold_is_always_suspect(latencies, sent, extra_ms, answered_before, others):
    """A call sent after the last answer and unanswered for longer than the threshold makes the broker suspect."""
    limit = threshold_ms(p99(latencies) if len(latencies) >= CONFIG.min_samples else None, CONFIG)
    now = sent + (limit + extra_ms) / 1000
    last = None if answered_before is None else sent - answered_before
    verdict = judge([sent, *[min(o, now) for o in others]], last, latencies, now, CONFIG)
    assert verdict.suspect
    assert verdict.oldest_age_ms is not None and verdict.oldest_age_ms > verdict.threshold_ms == limit
    facts = verdict.evidence()
    assert facts["oldest_call_ms"] > facts["threshold_ms"], "the published evidence must read as a breach"


def test_evidence_of_a_call_just_past_the_threshold_still_reads_as_past_it():
    """Rounding to 0.1 ms never turns 150.04 > 150 into the self-contradicting 150.0 > 150.0."""
    verdict = judge([0.0], None, [30.0] * 10, 0.15004, CONFIG)
    assert verdict.suspect
    assert verdict.evidence()["oldest_call_ms"] == 150.1 and verdict.evidence()["threshold_ms"] == 150.0


@given(latencies=history, starts=st.lists(moment, min_size=1, max_size=8), now=moment)
def test_calls_sent_before_the_last_answer_are_never_evidence(latencies, starts, now):
    """However old, a call sent before the broker's latest answer does not make it suspect (it is alive)."""
    now = max(now, *starts)
    assert not judge(starts, max(starts), latencies, now, CONFIG).suspect


@given(a=st.one_of(st.none(), latency), b=st.one_of(st.none(), latency))
def test_the_threshold_is_bounded_and_grows_with_the_p99(a, b):
    """The threshold stays within [floor, ceiling], is the ceiling while the p99 is unknown, and never
    falls when the p99 rises."""
    for value in (a, b):
        assert CONFIG.floor_ms <= threshold_ms(value, CONFIG) <= CONFIG.ceiling_ms
    assert threshold_ms(None, CONFIG) == CONFIG.ceiling_ms
    if a is not None and b is not None and a <= b:
        assert threshold_ms(a, CONFIG) <= threshold_ms(b, CONFIG)


@given(latencies=st.lists(latency, max_size=30), starts=st.lists(moment, max_size=8),
       last=st.one_of(st.none(), moment), now=moment)
def test_the_decision_is_a_function_of_its_inputs(latencies, starts, last, now):
    """The same outcalls, history and ``now`` give the same verdict, whenever it is asked."""
    first = judge(starts, last, latencies, now, CONFIG)
    time.sleep(0.0005)
    assert judge(list(starts), last, list(latencies), now, CONFIG) == first


def test_the_decision_module_reads_no_clock():
    """suspicion.py imports no clock (time, datetime): every moment is passed in."""
    source = Path(__file__).resolve().parent.parent / "runtime" / "orderpath" / "suspicion.py"
    imported = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"time", "datetime", "asyncio"}


def test_the_p99_is_the_nearest_rank():
    """p99 of 1..100 is 99; of 1..200 it is 198; of nothing it is unknown."""
    assert p99([float(n) for n in range(100, 0, -1)]) == 99.0
    assert p99([float(n) for n in range(1, 201)]) == 198.0
    assert p99([]) is None


def test_the_call_watch_keeps_outstanding_calls_and_answered_latencies():
    """Started calls are outstanding until answered or ended; only answered ones with a latency feed the p99."""
    watch = CallWatch(SuspicionConfig(min_samples=1, history=3))
    first = watch.started(10.0)
    watch.answered(first, 10.005, 5.0)
    second = watch.started(10.010)
    assert watch.verdict(10.100).outstanding == 1 and watch.verdict(10.100).p99_ms == 5.0
    assert watch.verdict(10.200).suspect  # 190 ms > 150 ms floor, nothing answered since it was sent
    watch.ended(second)  # a timeout is no answer: no latency, and the last answer stays at 10.005
    assert watch.verdict(10.300).outstanding == 0 and not watch.verdict(10.300).suspect
    third = watch.started(10.300)
    watch.answered(watch.started(10.301), 10.302)  # an answer without a latency (an HTTP error) proves life
    assert not watch.verdict(11.000).suspect and watch.verdict(11.000).outstanding == 1
    watch.ended(third)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"multiple": 0.5}, "multiple must be ≥ 1"), ({"floor_ms": 0}, "floor_ms must be > 0"),
    ({"floor_ms": 300, "ceiling_ms": 200}, "ceiling_ms must be ≥ floor_ms"),
    ({"min_samples": 300, "history": 200}, "min_samples must be between 1 and history"),
])
def test_an_impossible_config_is_a_config_error(overrides, message):
    """A watch that could flag a broker answering at its p99, or never learn a p99, is refused."""
    with pytest.raises(ConfigError, match=message):
        SuspicionConfig(**overrides)


def test_the_ceiling_defaults_to_the_read_timeout():
    """Without suspect_ceiling_ms the threshold never exceeds the broker read timeout."""
    config = SuspicionConfig.from_settings(load_settings(broker_read_timeout=0.8))
    assert config.ceiling_ms == 800.0 and config.floor_ms == 150.0


# --------------------------------------------------------------------------- a router, real brokers


@pytest.fixture(scope="module")
def brokers(processes, tmp_path_factory):
    """Both simulated brokers as real HTTP servers."""
    with broker_pair(tmp_path_factory.mktemp("suspicion-sims")) as pair:
        yield pair


@pytest.fixture
def http(brokers):
    """A control client; every test starts and ends with both brokers healthy."""
    with httpx.Client(timeout=5) as client:
        for broker in brokers.values():
            client.post(f"{broker.control_url}/_sim/reset").raise_for_status()
        yield client
        for broker in brokers.values():
            client.post(f"{broker.control_url}/_sim/reset").raise_for_status()


class Recorder:
    """Keeps what the router publishes (the EventLog's emit signature), in memory."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, kind: str, **facts: Any) -> dict[str, Any]:
        event = {"kind": kind, **facts}
        self.events.append(event)
        return event


def _router(brokers, events: Recorder | None = None, read_timeout: float = 2.0, **overrides) -> Router:
    settings = load_settings(broker_read_timeout=read_timeout, suspect_min_samples=5, breaker_open_seconds=0.3,
                             breaker_half_open_probes=2, **overrides)
    providers = {name: make_provider(name, b.wire, b.url, api_key=API_KEY, connect_timeout=0.5,
                                     read_timeout=read_timeout)
                 for name, b in brokers.items()}
    return Router(settings, providers, events)  # type: ignore[arg-type]


def _order(n: int) -> BrokerOrder:
    return BrokerOrder(order_id=f"susp-{n}-{time.monotonic_ns()}", symbol="SYM1", side="BUY", quantity=1,
                       order_type="MARKET", limit_price=None, account_ref="acct")


def _fault(http_client: httpx.Client, broker, mode: str, **params) -> None:
    http_client.post(f"{broker.control_url}/_sim/fault", json={"mode": mode, **params}).raise_for_status()


def test_a_blackholed_broker_is_suspect_before_its_call_times_out(brokers, http):
    """Blackholed, the primary is found silent while the call is still waiting (well before the read
    timeout); its breaker opens and no mode sends it an order, with the evidence kept for status."""
    router = _router(brokers)
    try:
        for n in range(10):
            router.submit("primary", _order(n))
        _fault(http, brokers["primary"], "blackhole")
        outcome: list[BaseException] = []

        def send() -> None:
            try:
                router.submit("primary", _order(99))
            except OutcomeUnknown as exc:
                outcome.append(exc)

        call = threading.Thread(target=send)
        call.start()
        deadline = time.monotonic() + 5
        while "primary" not in router.suspect_names() and time.monotonic() < deadline:
            router.watch_silence()
            time.sleep(0.005)
        still_waiting = call.is_alive()
        call.join()
        assert "primary" in router.suspect_names() and still_waiting
        assert outcome, "the blackholed call ends as outcome unknown, as before"
        assert router.breakers["primary"].state == "open"
        evidence = router.suspects()["primary"]
        assert evidence["oldest_call_ms"] > evidence["threshold_ms"] >= 150.0 and evidence["p99_ms"] is not None
        assert router.choose("o-1", mode="auto", active="primary", trickle=0.0) == "secondary"
        assert router.choose("o-2", mode="manual", active="primary", trickle=0.0) is None
    finally:
        router.stop()


def test_a_suspect_broker_comes_back_through_probes_not_a_timer(brokers, http):
    """Healed, the primary stays suspect however long nobody probes it; two answered half-open probes
    close its breaker, and only then does it get orders again."""
    router = _router(brokers)
    try:
        for n in range(10):
            router.submit("primary", _order(n))
        _fault(http, brokers["primary"], "blackhole")
        def send() -> None:
            with pytest.raises(OutcomeUnknown):
                router.submit("primary", _order(1))

        call = threading.Thread(target=send)
        call.start()
        while "primary" not in router.suspect_names():
            router.watch_silence()
            time.sleep(0.005)
        call.join()
        _fault(http, brokers["primary"], "none")
        time.sleep(1.0)  # more than the breaker's open time: a timer alone would have let it back
        router.watch_silence()
        assert "primary" in router.suspect_names()
        assert router.choose("o-3", mode="manual", active="primary", trickle=0.0) is None
        router.probe("primary")
        router.probe("primary")
        assert router.breakers["primary"].state == "closed" and "primary" not in router.suspect_names()
        assert router.choose("o-4", mode="auto", active="primary", trickle=0.0) == "primary"
    finally:
        router.stop()


def test_a_slow_broker_that_answers_is_not_suspect(brokers, http):
    """50 ms of added latency, calls in flight all the time: the primary is never suspect."""
    router = _router(brokers)
    stop = threading.Event()
    try:
        for n in range(10):
            router.submit("primary", _order(n))
        _fault(http, brokers["primary"], "latency", ms=50)

        def watch() -> None:
            while not stop.is_set():
                router.watch_silence()
                time.sleep(0.002)

        watcher = threading.Thread(target=watch)
        watcher.start()
        for n in range(30):
            router.submit("primary", _order(100 + n))
        stop.set()
        watcher.join()
        assert router.suspect_names() == frozenset() and router.breakers["primary"].state == "closed"
    finally:
        stop.set()
        router.stop()


def test_an_error_answer_is_proof_of_life(brokers, http):
    """A broker answering 503 is failing, not silent: the call counts as answered (the breaker judges it)."""
    router = _router(brokers)
    try:
        _fault(http, brokers["primary"], "error", rate=1.0)
        with pytest.raises(NotAccepted) as caught:
            router.submit("primary", _order(1))
        assert caught.value.answered
        assert router.watches["primary"].verdict(time.monotonic()).outstanding == 0
    finally:
        router.stop()


def test_the_first_refused_connection_opens_the_breaker_and_is_published(brokers, http):
    """Primary down: the first order call fails NotConnected and the primary's breaker is open at once (one
    breaker_opened event saying why), so the very next auto choice is the secondary."""
    recorder = Recorder()
    router = _router(brokers, recorder, read_timeout=0.5)
    try:
        router.submit("primary", _order(0))
        _fault(http, brokers["primary"], "down")
        with pytest.raises(NotConnected):
            router.submit("primary", _order(1))
        assert router.breakers["primary"].state == "open"
        opened = [e for e in recorder.events if e["kind"] == "breaker_opened"]
        assert len(opened) == 1 and opened[0]["provider"] == "primary"
        assert opened[0]["reason"].startswith("connection refused 1 time in a row")
        assert router.choose("o-1", mode="auto", active="primary", trickle=0.0) == "secondary"
    finally:
        router.stop()


def test_a_blackhole_is_not_a_refusal_and_waits_for_the_window(brokers, http):
    """A read timeout (blackhole) is no proof the broker is down: one timed-out call leaves the breaker closed."""
    recorder = Recorder()
    router = _router(brokers, recorder, read_timeout=0.5, broker_suspicion=False)
    try:
        _fault(http, brokers["primary"], "blackhole")
        with pytest.raises(OutcomeUnknown):
            router.submit("primary", _order(2))
        assert router.breakers["primary"].state == "closed"
    finally:
        router.stop()


def test_a_breaker_opened_by_refusals_closes_through_health_probes_once_healed(brokers, http):
    """Refused, then healed: after the open time two answered health probes close the breaker (breaker_closed)."""
    recorder = Recorder()
    router = _router(brokers, recorder, read_timeout=0.5, breaker_refused_trip=2)
    try:
        _fault(http, brokers["primary"], "down")
        router.probe("primary")
        assert router.breakers["primary"].state == "closed"  # refused_trip=2: one refusal is not enough
        router.probe("primary")
        assert router.breakers["primary"].state == "open"
        _fault(http, brokers["primary"], "none")
        time.sleep(0.35)
        router.probe("primary")
        router.probe("primary")
        assert router.breakers["primary"].state == "closed"
        kinds = [e["kind"] for e in recorder.events if e["kind"].startswith("breaker_")]
        assert kinds[0] == "breaker_opened" and kinds[-1] == "breaker_closed"
    finally:
        router.stop()
