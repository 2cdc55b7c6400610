"""The circuit breaker: its rules as examples, then as properties of a generated state machine."""

from __future__ import annotations

import threading

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tradeops.runtime.orderpath.breaker import BreakerConfig, CircuitBreaker, Transition
from tradeops.runtime.platform.errors import ConfigError
from tradeops.runtime.platform.settings import Settings, load_settings

FAST, SLOW = 10.0, 2000.0


def make(**overrides) -> CircuitBreaker:
    return CircuitBreaker("primary", BreakerConfig(**overrides))


def trip(breaker: CircuitBreaker, now: float) -> Transition:
    """Fail calls until the breaker opens; return the opening transition."""
    for _ in range(breaker.config.window):
        transition = breaker.record_failure(now, reason="connection refused")
        if transition is not None:
            return transition
    raise AssertionError("breaker did not open")


# --------------------------------------------------------------------------- configuration


def test_defaults_match_the_settings_defaults():
    """The breaker_* defaults in Settings are the documented BreakerConfig defaults."""
    # Field defaults, not load_settings(): a TRADEOPS_BREAKER_* variable in the environment must not matter.
    defaults = {name: field.default for name, field in Settings.model_fields.items() if name.startswith("breaker_")}
    assert (
        BreakerConfig(**{name.removeprefix("breaker_"): value for name, value in defaults.items()}) == BreakerConfig()
    )
    assert BreakerConfig() == BreakerConfig(
        window=20, min_calls=5, failure_rate=0.5, slow_ms=1500.0, slow_rate=0.8, open_seconds=3.0,
        half_open_probes=2, refused_trip=1,
    )  # fmt: skip


def test_from_settings_reads_every_breaker_field():
    """Each breaker_* setting lands in the matching BreakerConfig field."""
    s = load_settings(
        breaker_window=10, breaker_min_calls=3, breaker_failure_rate=0.25, breaker_slow_ms=800.0,
        breaker_slow_rate=0.6, breaker_open_seconds=7.5, breaker_half_open_probes=4, breaker_refused_trip=3,
    )  # fmt: skip
    assert BreakerConfig.from_settings(s) == BreakerConfig(
        window=10, min_calls=3, failure_rate=0.25, slow_ms=800.0, slow_rate=0.6, open_seconds=7.5,
        half_open_probes=4, refused_trip=3,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"window": 4, "min_calls": 5}, "min_calls must be between 1 and window=4"),
        ({"window": 0, "min_calls": 1}, "window must be"),
        ({"failure_rate": 0.0}, "failure_rate must be in"),
        ({"slow_rate": 1.5}, "slow_rate must be in"),
        ({"slow_ms": -1.0}, "slow_ms must be > 0"),
        ({"open_seconds": float("nan")}, "open_seconds must be > 0"),
        ({"half_open_probes": 0}, "half_open_probes must be"),
        ({"refused_trip": 0}, "refused_trip must be"),
    ],
)
def test_impossible_config_is_a_config_error(overrides, message):
    """A config that could never trip or never recover is refused with a readable ConfigError."""
    with pytest.raises(ConfigError, match=message):
        BreakerConfig(**overrides)


# --------------------------------------------------------------------------- closed -> open


def test_stays_closed_below_min_calls_even_if_every_call_failed():
    """Fewer than min_calls outcomes never open the breaker."""
    breaker = make(min_calls=5)
    for i in range(4):
        assert breaker.record_failure(float(i)) is None
    assert breaker.state == "closed"
    assert breaker.allow(4.0)


def test_opens_when_failure_share_reaches_the_rate():
    """The call that brings the failure share to failure_rate (with min_calls seen) opens the breaker."""
    breaker = make(window=4, min_calls=4, failure_rate=0.5)
    assert breaker.record_success(FAST, 1.0) is None
    assert breaker.record_success(FAST, 1.1) is None
    assert breaker.record_failure(1.2) is None
    transition = breaker.record_failure(1.3, reason="HTTP 503")
    assert transition == Transition(
        provider="primary", from_state="closed", to_state="open",
        reason="failure rate 2/4 ≥ 50%; last: HTTP 503", at=1.3,
    )  # fmt: skip
    assert breaker.state == "open"


def test_opens_when_slow_share_reaches_the_slow_rate():
    """Successful calls slower than slow_ms count as slow, and enough of them open the breaker."""
    breaker = make(window=5, min_calls=5, slow_ms=1500.0, slow_rate=0.8)
    for i in range(3):
        assert breaker.record_success(SLOW, float(i)) is None
    assert breaker.record_success(FAST, 3.0) is None  # 3 slow of 4: below min_calls anyway
    transition = breaker.record_success(SLOW, 4.0)  # 4 slow of 5 = 80%
    assert transition is not None
    assert (transition.from_state, transition.to_state) == ("closed", "open")
    assert transition.reason.startswith("slow rate 4/5 ≥ 80%")


def test_a_call_of_exactly_slow_ms_is_not_slow():
    """Only a call slower than slow_ms counts as slow."""
    breaker = make(window=5, min_calls=5, slow_ms=1500.0, slow_rate=0.8)
    for i in range(5):
        assert breaker.record_success(1500.0, float(i)) is None
    assert breaker.snapshot(5.0)["slow_rate"] == 0.0


def test_old_outcomes_roll_out_of_the_window():
    """Only the last `window` outcomes count: old failures stop mattering."""
    breaker = make(window=4, min_calls=4, failure_rate=0.5)
    breaker.record_failure(0.0)
    for i in range(4):
        assert breaker.record_success(FAST, 1.0 + i) is None
    assert breaker.snapshot(5.0)["failure_rate"] == 0.0
    assert breaker.record_failure(6.0) is None  # 1 of the last 4
    assert breaker.snapshot(6.0)["calls_in_window"] == 4


def test_opening_clears_the_window():
    """After opening, the failures that tripped the breaker are forgotten."""
    breaker = make(window=10, min_calls=2)
    trip(breaker, 1.0)
    snap = breaker.snapshot(1.0)
    assert snap["calls_in_window"] == 0
    assert snap["failure_rate"] == 0.0
    assert snap["opened_at"] == 1.0


# --------------------------------------------------------------------------- open


def test_open_refuses_every_call_until_open_seconds_pass():
    """While open and before open_seconds, allow() says no, however often it is asked."""
    breaker = make(min_calls=1, open_seconds=3.0)
    trip(breaker, 10.0)
    for now in (10.0, 11.0, 12.5, 12.999):
        assert not breaker.allow(now)
    assert breaker.state == "open"


def test_results_arriving_while_open_are_ignored():
    """A late answer or an early health probe while open neither closes nor re-times the breaker."""
    breaker = make(min_calls=1, open_seconds=3.0)
    trip(breaker, 10.0)
    for _ in range(5):
        assert breaker.record_success(FAST, 11.0) is None
    assert breaker.record_failure(12.0) is None
    assert breaker.snapshot(12.0)["opened_at"] == 10.0
    assert breaker.snapshot(12.0)["state"] == "open"


def test_after_open_seconds_half_open_admits_only_the_probes():
    """Once open_seconds pass, allow() admits exactly half_open_probes calls and refuses the rest."""
    breaker = make(min_calls=1, open_seconds=3.0, half_open_probes=2)
    trip(breaker, 10.0)
    assert [breaker.allow(13.0) for _ in range(4)] == [True, True, False, False]
    assert breaker.state == "half_open"


def test_poll_reports_open_to_half_open_as_its_own_transition():
    """poll(now) reports the time-based move to half_open, and the next transition starts there."""
    breaker = make(min_calls=1, open_seconds=3.0, half_open_probes=1)
    trip(breaker, 10.0)
    assert breaker.poll(12.0) is None
    moved = breaker.poll(13.0)
    assert moved is not None
    assert (moved.from_state, moved.to_state, moved.at) == ("open", "half_open", 13.0)
    assert breaker.poll(13.5) is None
    assert breaker.allow(13.5)
    closed = breaker.record_success(FAST, 13.6)
    assert closed is not None
    assert (closed.from_state, closed.to_state) == ("half_open", "closed")


def test_a_trip_opens_a_closed_breaker_with_its_reason():
    """The in-flight watch's trip opens a closed breaker at once, whatever its window says."""
    breaker = make(min_calls=5)
    breaker.record_success(FAST, 1.0)
    transition = breaker.trip(1.2, reason="suspect: a call unanswered for 180 ms > 150 ms")
    assert transition == Transition("primary", "closed", "open", "suspect: a call unanswered for 180 ms > 150 ms", 1.2)
    assert not breaker.allow(1.3)


def test_a_trip_leaves_an_open_or_half_open_breaker_alone():
    """Open or half-open, a trip changes nothing: the way back stays the probes."""
    breaker = make(min_calls=1, open_seconds=3.0)
    trip(breaker, 10.0)
    assert breaker.trip(11.0, reason="suspect") is None
    assert breaker.snapshot(11.0)["opened_at"] == 10.0
    assert breaker.poll(13.0).to_state == "half_open"
    assert breaker.trip(13.1, reason="suspect") is None and breaker.state == "half_open"


# --------------------------------------------------------------------------- half_open


def test_closes_after_consecutive_successful_probes():
    """half_open becomes closed only when half_open_probes probes in a row succeed quickly."""
    breaker = make(min_calls=1, open_seconds=3.0, half_open_probes=2)
    trip(breaker, 10.0)
    assert breaker.allow(13.0)
    assert breaker.allow(13.0)
    # allow() cannot report the move to half_open, so the next record does.
    moved = breaker.record_success(FAST, 13.2)
    assert moved == Transition("primary", "open", "half_open", "open for 3 s; probing", 13.2)
    closed = breaker.record_success(FAST, 13.3)
    assert closed == Transition("primary", "half_open", "closed", "2 consecutive successful probes", 13.3)
    assert breaker.allow(13.4)
    assert breaker.snapshot(13.4)["calls_in_window"] == 0


def test_a_failed_probe_reopens_with_a_fresh_open_period():
    """Any failure in half_open opens the breaker again, timed from the failure."""
    breaker = make(min_calls=1, open_seconds=3.0, half_open_probes=2)
    trip(breaker, 10.0)
    assert breaker.poll(13.0).to_state == "half_open"
    assert breaker.allow(13.0)
    assert breaker.record_success(FAST, 13.1) is None
    reopened = breaker.record_failure(13.2, reason="timeout")
    assert reopened == Transition("primary", "half_open", "open", "probe failed: timeout", 13.2)
    assert not breaker.allow(16.1)
    assert breaker.allow(16.2)


def test_a_slow_probe_reopens_the_breaker():
    """A probe that succeeds but slower than slow_ms counts against the broker."""
    breaker = make(min_calls=1, open_seconds=3.0, slow_ms=1500.0)
    trip(breaker, 10.0)
    assert breaker.poll(13.0).to_state == "half_open"
    reopened = breaker.record_success(2500.0, 13.5)
    assert reopened is not None
    assert (reopened.from_state, reopened.to_state) == ("half_open", "open")
    assert "2500 ms > 1500 ms" in reopened.reason


def test_health_monitor_probes_alone_can_close_the_breaker():
    """Probe results recorded without allow() count in half_open, so the monitor can close a breaker."""
    breaker = make(min_calls=1, open_seconds=3.0, half_open_probes=2)
    trip(breaker, 10.0)
    moved = breaker.record_success(FAST, 13.0)  # first probe after open_seconds: half_open, 1 of 2
    assert moved is not None
    assert moved.to_state == "half_open"
    closed = breaker.record_success(FAST, 14.0)
    assert closed is not None
    assert closed.to_state == "closed"


def test_unanswered_probes_do_not_wedge_the_breaker():
    """If every probe slot is taken and no answer comes within open_seconds, the breaker reopens."""
    breaker = make(min_calls=1, open_seconds=3.0, half_open_probes=1)
    trip(breaker, 10.0)
    assert breaker.poll(13.0).to_state == "half_open"
    assert breaker.allow(13.0)
    assert not breaker.allow(15.9)
    reopened = breaker.poll(16.0)
    assert reopened == Transition("primary", "half_open", "open", "probes unanswered for 3 s", 16.0)
    assert breaker.snapshot(16.0)["opened_at"] == 16.0
    assert breaker.allow(19.0)


def test_a_change_made_and_undone_between_reports_is_not_reported():
    """Reported transitions are net changes, so half_open -> open unseen by a poll reports nothing."""
    breaker = make(min_calls=1, open_seconds=3.0, half_open_probes=1)
    trip(breaker, 10.0)
    assert breaker.allow(13.0)  # silently half_open
    assert breaker.record_failure(13.1) is None  # open again: same state as last reported
    assert breaker.snapshot(13.1)["opened_at"] == 13.1


def test_snapshot_shows_state_rates_and_window():
    """snapshot() reports state, failure and slow rates, calls in window and when it opened."""
    breaker = make(window=10, min_calls=10)
    breaker.record_success(FAST, 1.0)
    breaker.record_success(SLOW, 1.0)
    breaker.record_failure(1.0)
    breaker.record_failure(1.0)
    assert breaker.snapshot(2.0) == {
        "provider": "primary",
        "state": "closed",
        "failure_rate": 0.5,
        "slow_rate": 0.25,
        "calls_in_window": 4,
        "opened_at": None,
        "probes_admitted": 0,
        "probe_successes": 0,
    }


def test_snapshot_does_not_swallow_a_pending_transition():
    """Looking at the breaker does not consume the transition the next poll must report."""
    breaker = make(min_calls=1, open_seconds=3.0)
    trip(breaker, 10.0)
    assert breaker.snapshot(13.0)["state"] == "half_open"
    moved = breaker.poll(13.0)
    assert moved is not None
    assert moved.to_state == "half_open"


def test_concurrent_callers_in_half_open_get_at_most_the_probe_slots():
    """Threads racing allow() in half_open get exactly half_open_probes admissions between them."""
    breaker = make(min_calls=1, open_seconds=3.0, half_open_probes=3)
    trip(breaker, 10.0)
    breaker.poll(13.0)
    barrier = threading.Barrier(16)
    results: list[bool] = []
    results_lock = threading.Lock()

    def worker() -> None:
        barrier.wait()
        for _ in range(50):
            admitted = breaker.allow(13.5)
            with results_lock:
                results.append(admitted)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert sum(results) == 3
    assert len(results) == 16 * 50


# --------------------------------------------------------------------------- refused connections


def test_one_refused_connection_opens_a_closed_breaker_at_once():
    """By default the first refused connection opens the breaker, long before min_calls outcomes."""
    breaker = make(min_calls=5)
    for i in range(3):
        assert breaker.record_success(FAST, float(i)) is None
    transition = breaker.record_failure(3.0, reason="NotConnected", refused=True)
    assert transition == Transition(
        provider="primary", from_state="closed", to_state="open",
        reason="connection refused 1 time in a row; last: NotConnected", at=3.0,
    )  # fmt: skip
    assert not breaker.allow(3.1)


def test_timeouts_and_error_answers_still_wait_for_min_calls():
    """A failure that is not a refusal (a timeout, a 503) is judged by the window as before."""
    breaker = make(min_calls=5)
    for i in range(4):
        assert breaker.record_failure(float(i), reason="OutcomeUnknown") is None
    assert breaker.state == "closed"


def test_refused_trip_counts_refusals_in_a_row_and_an_answer_resets_the_count():
    """With refused_trip=2 one refusal does not open; an answered call in between starts the count again."""
    breaker = make(min_calls=10, window=10, refused_trip=2)
    assert breaker.record_failure(1.0, refused=True) is None
    assert breaker.record_success(FAST, 1.1) is None
    assert breaker.record_failure(1.2, refused=True) is None
    assert breaker.record_failure(1.3, reason="OutcomeUnknown") is None  # a non-refusal breaks the run too
    assert breaker.record_failure(1.4, refused=True) is None
    transition = breaker.record_failure(1.5, refused=True)
    assert transition is not None and transition.to_state == "open"
    assert transition.reason.startswith("connection refused 2 times in a row")


def test_a_breaker_opened_by_a_refusal_recovers_through_half_open_probes_only():
    """Opened by a refusal, the breaker stays open for open_seconds, then closes after half_open_probes
    answered probes; a refused probe re-opens it."""
    breaker = make(open_seconds=3.0, half_open_probes=2)
    assert breaker.record_failure(0.0, refused=True) is not None
    assert not breaker.allow(2.9)
    probing = breaker.poll(3.0)
    assert probing is not None and probing.to_state == "half_open"
    assert breaker.allow(3.0)
    reopened = breaker.record_failure(3.1, refused=True)
    assert reopened is not None and (reopened.from_state, reopened.to_state) == ("half_open", "open")
    assert breaker.poll(6.2) is not None and breaker.allow(6.2) and breaker.allow(6.2)
    assert breaker.record_success(FAST, 6.3) is None
    closed = breaker.record_success(FAST, 6.4)
    assert closed is not None and closed.to_state == "closed"
    # Closed again, one refusal is enough once more: the count started afresh.
    assert breaker.record_failure(7.0, refused=True) is not None


# --------------------------------------------------------------------------- properties


@st.composite
def configs(draw) -> BreakerConfig:
    window = draw(st.integers(1, 6))
    return BreakerConfig(
        window=window,
        min_calls=draw(st.integers(1, window)),
        failure_rate=draw(st.sampled_from([0.2, 0.5, 1.0])),
        slow_ms=1500.0,
        slow_rate=draw(st.sampled_from([0.4, 0.8, 1.0])),
        open_seconds=3.0,
        half_open_probes=draw(st.integers(1, 3)),
        refused_trip=draw(st.integers(1, 3)),
    )


latencies = st.sampled_from([5.0, 1500.0, 1500.5, 4000.0])
steps = st.sampled_from([0.0, 0.5, 1.0, 2.9, 3.0, 3.1, 7.0])


class BreakerMachine(RuleBasedStateMachine):
    """Drives one breaker with calls, health probes and time, checking its promises after every step."""

    @initialize(config=configs())
    def setup(self, config: BreakerConfig) -> None:
        self.config = config
        self.breaker = CircuitBreaker("primary", config)
        self.now = 100.0
        self.in_flight: list[tuple[float, bool]] = []  # (admitted at, admitted in half_open)
        self.transitions: list[Transition] = []
        self.observed = "closed"
        self.open_since: float | None = None
        self.fast_streak = 0  # fast successes since the last failure or slow success
        self.refused_streak = 0  # refused connections in a row while closed

    # -- helpers

    def observe(self) -> str:
        """Read the state at `now` (applying time-based moves) and note when it entered open."""
        state = self.breaker.snapshot(self.now)["state"]
        self.note(state)
        return state

    def note(self, state: str) -> None:
        # The model keeps its own clock of the open period rather than trusting the breaker's.
        if state == "open" and self.observed != "open":
            self.open_since = self.now
        if state != "closed":
            self.refused_streak = 0
        if self.open_since is not None and self.now - self.open_since < self.config.open_seconds:
            assert state == "open", "left open before open_seconds passed"
        self.observed = state

    def keep(self, transition: Transition | None) -> None:
        if transition is not None:
            assert transition.at == self.now
            assert transition.provider == "primary"
            self.transitions.append(transition)

    def recorded(self, before: str, transition: Transition | None, *, fast_success: bool,
                 refused: bool = False) -> None:
        self.fast_streak = self.fast_streak + 1 if fast_success else 0
        self.refused_streak = self.refused_streak + 1 if refused and before == "closed" else 0
        if self.refused_streak >= self.config.refused_trip:
            # refused_trip refusals in a row while closed: open at once, whatever the window says.
            assert self.breaker.state == "open" and transition is not None and transition.to_state == "open"

        after = self.breaker.state
        if before in ("open", "half_open") and after == "closed":
            # Never closed without a successful probe: only a fast success closes, after a full streak.
            assert fast_success
            assert self.fast_streak >= self.config.half_open_probes
            assert transition is not None
            assert transition.to_state == "closed"
        self.keep(transition)
        self.note(after)

    # -- rules

    @rule(dt=steps)
    def time_passes(self, dt: float) -> None:
        self.now += dt

    @rule()
    def allow(self) -> None:
        before = self.observe()
        admitted = self.breaker.allow(self.now)
        if self.open_since is not None and self.now - self.open_since < self.config.open_seconds:
            assert not admitted
        if before == "closed":
            assert admitted
        if admitted:
            self.in_flight.append((self.now, before == "half_open"))
        if before == "half_open" and admitted:
            # A call unanswered for open_seconds has been given up by the breaker (and by the
            # worker's own read timeout long before); the rest are genuinely concurrent.
            live = [t for t, half in self.in_flight if half and self.now - t < self.config.open_seconds]
            assert len(live) <= self.config.half_open_probes
        self.note(self.breaker.state)

    @precondition(lambda self: self.in_flight)
    @rule(pick=st.integers(0, 1000), latency=latencies)
    def call_succeeds(self, pick: int, latency: float) -> None:
        self.in_flight.pop(pick % len(self.in_flight))
        before = self.observe()
        t = self.breaker.record_success(latency, self.now)
        self.recorded(before, t, fast_success=latency <= self.config.slow_ms)

    @precondition(lambda self: self.in_flight)
    @rule(pick=st.integers(0, 1000))
    def call_fails(self, pick: int) -> None:
        self.in_flight.pop(pick % len(self.in_flight))
        before = self.observe()
        t = self.breaker.record_failure(self.now, reason="HTTP 503")
        self.recorded(before, t, fast_success=False)

    @rule(latency=latencies)
    def health_probe_succeeds(self, latency: float) -> None:
        before = self.observe()
        t = self.breaker.record_success(latency, self.now)
        self.recorded(before, t, fast_success=latency <= self.config.slow_ms)

    @rule()
    def health_probe_fails(self) -> None:
        before = self.observe()
        t = self.breaker.record_failure(self.now, reason="connection refused")
        self.recorded(before, t, fast_success=False)

    @rule()
    def connection_refused(self) -> None:
        before = self.observe()
        t = self.breaker.record_failure(self.now, reason="NotConnected", refused=True)
        self.recorded(before, t, fast_success=False, refused=True)

    @rule()
    def in_flight_watch_trips(self) -> None:
        before = self.observe()
        t = self.breaker.trip(self.now, reason="suspect")
        if before == "closed":
            assert self.breaker.state == "open" and t is not None and t.to_state == "open"
        else:
            assert self.breaker.state == before  # only a closed breaker is tripped
        self.keep(t)
        self.note(self.breaker.state)

    @rule()
    def poll(self) -> None:
        before = self.breaker.state
        t = self.breaker.poll(self.now)
        if before in ("open", "half_open"):
            assert self.breaker.state != "closed"  # time alone never closes a breaker
        self.keep(t)
        self.note(self.breaker.state)

    # -- invariants

    @invariant()
    def rates_are_shares(self) -> None:
        snap = self.breaker.snapshot(self.now)
        assert 0.0 <= snap["failure_rate"] <= 1.0
        assert 0.0 <= snap["slow_rate"] <= 1.0
        assert 0 <= snap["calls_in_window"] <= self.config.window
        assert snap["state"] in ("closed", "open", "half_open")
        assert snap["probes_admitted"] <= self.config.half_open_probes
        if snap["state"] != "closed":
            assert snap["calls_in_window"] == 0  # opening cleared the window
        self.note(snap["state"])

    @invariant()
    def transitions_chain(self) -> None:
        expected_from = "closed"
        for t in self.transitions:
            assert t.from_state == expected_from
            assert t.to_state != t.from_state
            expected_from = t.to_state


def test_breaker_state_machine_keeps_its_promises():
    """Under any interleaving of calls, probes and time, every breaker property holds."""
    run_state_machine_as_test(
        BreakerMachine, settings=settings(max_examples=300, stateful_step_count=60, deadline=None)
    )
