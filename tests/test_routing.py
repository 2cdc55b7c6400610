"""The routing decision: manual/auto tables, the flag values it reads, and properties over generated orders."""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradeops.runtime.orderpath.flags import validate_flag
from tradeops.runtime.orderpath.routing import MODES, PROVIDERS, choose_provider, other, trickle_bucket
from tradeops.runtime.platform.errors import BadInput

# Trickle 0.0 puts no order in the standby share and 1.0 puts every order in it, so the tables
# below are exact whatever the order_id hashes to.
NEVER, ALWAYS = 0.0, 1.0


def test_other_swaps_the_two_brokers():
    """other() maps each broker to the other one."""
    assert other("primary") == "secondary"
    assert other("secondary") == "primary"


def test_other_rejects_an_unknown_broker():
    """other() refuses a name that is not a broker."""
    with pytest.raises(ValueError, match="unknown provider 'tertiary'"):
        other("tertiary")


# --------------------------------------------------------------------------- manual mode

# (active healthy, standby healthy, active excluded, standby excluded) -> "A" (active) or None.
MANUAL_TABLE = [
    (ah, sh, ax, sx, None if ax else "A")
    for ah in (True, False)
    for sh in (True, False)
    for ax in (False, True)
    for sx in (False, True)
]


@pytest.mark.parametrize("active", PROVIDERS)
@pytest.mark.parametrize("trickle", [NEVER, 0.5, ALWAYS])
@pytest.mark.parametrize(("active_ok", "standby_ok", "active_ex", "standby_ex", "expected"), MANUAL_TABLE)
def test_manual_mode_always_uses_active_unless_excluded(
    active, trickle, active_ok, standby_ok, active_ex, standby_ex, expected
):
    """Manual mode sends every order to the active broker whatever its health, and never moves it."""
    standby = other(active)
    healthy = {active: active_ok, standby: standby_ok}
    exclude = {p for p, ex in ((active, active_ex), (standby, standby_ex)) if ex}
    got = choose_provider(
        order_id="ord-1", mode="manual", active=active, trickle=trickle, healthy=healthy, exclude=exclude
    )
    assert got == (active if expected == "A" else None)


# --------------------------------------------------------------------------- auto mode

# in trickle share?, active healthy, standby healthy, active excluded, standby excluded -> A / S / None
AUTO_TABLE = [
    # Outside the trickle share: active preferred, standby as fallback.
    (False, True, True, False, False, "A"),
    (False, True, False, False, False, "A"),
    (False, False, True, False, False, "S"),
    (False, False, False, False, False, None),
    (False, True, True, True, False, "S"),
    (False, True, False, True, False, None),
    (False, False, True, True, False, "S"),
    (False, False, False, True, False, None),
    (False, True, True, False, True, "A"),
    (False, True, False, False, True, "A"),
    (False, False, True, False, True, None),
    (False, False, False, False, True, None),
    (False, True, True, True, True, None),
    (False, True, False, True, True, None),
    (False, False, True, True, True, None),
    (False, False, False, True, True, None),
    # Inside the trickle share: standby preferred only if it is usable, else the active broker.
    (True, True, True, False, False, "S"),
    (True, True, False, False, False, "A"),
    (True, False, True, False, False, "S"),
    (True, False, False, False, False, None),
    (True, True, True, True, False, "S"),
    (True, True, False, True, False, None),
    (True, False, True, True, False, "S"),
    (True, False, False, True, False, None),
    (True, True, True, False, True, "A"),
    (True, True, False, False, True, "A"),
    (True, False, True, False, True, None),
    (True, False, False, False, True, None),
    (True, True, True, True, True, None),
    (True, True, False, True, True, None),
    (True, False, True, True, True, None),
    (True, False, False, True, True, None),
]


@pytest.mark.parametrize("active", PROVIDERS)
@pytest.mark.parametrize(("in_trickle", "active_ok", "standby_ok", "active_ex", "standby_ex", "expected"), AUTO_TABLE)
def test_auto_mode_matrix(active, in_trickle, active_ok, standby_ok, active_ex, standby_ex, expected):
    """Auto mode prefers active (standby for the trickle share) and falls back only to a usable broker."""
    standby = other(active)
    healthy = {active: active_ok, standby: standby_ok}
    exclude = [p for p, ex in ((active, active_ex), (standby, standby_ex)) if ex]
    got = choose_provider(
        order_id="ord-1",
        mode="auto",
        active=active,
        trickle=ALWAYS if in_trickle else NEVER,
        healthy=healthy,
        exclude=exclude,
    )
    assert got == {"A": active, "S": standby, None: None}[expected]


def test_auto_mode_counts_a_broker_missing_from_the_health_map_as_unhealthy():
    """A broker whose health is unknown is not chosen in auto mode."""
    got = choose_provider(order_id="o", mode="auto", active="primary", trickle=0.0, healthy={"secondary": True})
    assert got == "secondary"
    assert choose_provider(order_id="o", mode="auto", active="primary", trickle=0.0, healthy={}) is None


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "active-active"}, "unknown routing mode 'active-active'"),
        ({"mode": "AUTO"}, "unknown routing mode 'AUTO'"),
        ({"active": "tertiary"}, "unknown active provider 'tertiary'"),
        ({"active": ""}, "unknown active provider ''"),
        ({"exclude": ["brokerx"]}, "unknown excluded provider 'brokerx'"),
        ({"healthy": {"primary": True, "Primary": True}}, "unknown provider in health map 'Primary'"),
        ({"trickle": 1.5}, "trickle 1.5 must be between 0 and 1"),
        ({"trickle": -0.01}, "trickle -0.01 must be between 0 and 1"),
        ({"trickle": float("nan")}, "trickle nan must be between 0 and 1"),
    ],
)
def test_choose_provider_rejects_unknown_values_by_name(kwargs, message):
    """Garbage in any flag raises ValueError naming the bad value, whatever the mode."""
    args = {
        "order_id": "ord-1",
        "mode": "auto",
        "active": "primary",
        "trickle": 0.05,
        "healthy": {"primary": True, "secondary": True},
        "exclude": (),
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        choose_provider(**args)


# The flags routing reads are parsed where an operator sets them (flags.validate_flag); the workers'
# reads fall back to safe values for anything that would not pass it.


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0.0), ("0.05", 0.05), (" 0.5\n", 0.5), ("1", 1.0), ("1.0", 1.0), ("5e-2", 0.05)],
)
def test_the_trickle_flag_accepts_shares_between_0_and_1(text, expected):
    """The trickle flag takes a share in [0, 1], ignoring surrounding whitespace."""
    assert float(validate_flag("trickle", text)) == expected


@pytest.mark.parametrize("text", ["", " ", "5%", "abc", "1.01", "-0.1", "nan", "inf", "-inf", "0,05"])
def test_the_trickle_flag_refuses_anything_else(text):
    """The trickle flag refuses text that is not a share in [0, 1], naming the flag."""
    with pytest.raises(BadInput, match="flag trickle"):
        validate_flag("trickle", text)


@pytest.mark.parametrize(("text", "expected"), [("manual", "manual"), ("auto", "auto"), (" Auto\n", "auto")])
def test_the_mode_flag_accepts_the_two_modes(text, expected):
    """The mode flag takes manual or auto, ignoring surrounding whitespace and case."""
    assert validate_flag("mode", text) == expected
    assert expected in MODES


@pytest.mark.parametrize("text", ["", "automatic", "active-active", "paused", "primary"])
def test_the_mode_flag_refuses_anything_else(text):
    """The mode flag refuses an unknown mode, naming the value."""
    with pytest.raises(BadInput, match=f"flag mode must be one of manual, auto, not {text.strip().lower()!r}"):
        validate_flag("mode", text)


@pytest.mark.parametrize(
    ("text", "expected"), [("primary", "primary"), ("secondary", "secondary"), (" SECONDARY ", "secondary")]
)
def test_the_active_flag_accepts_the_two_brokers(text, expected):
    """The active flag takes primary or secondary, ignoring surrounding whitespace and case."""
    assert validate_flag("active", text) == expected


@pytest.mark.parametrize("text", ["", "a", "broker-a", "auto", "primary,secondary"])
def test_the_active_flag_refuses_anything_else(text):
    """The active flag refuses anything but the two brokers, naming the flag."""
    with pytest.raises(BadInput, match="flag active must be one of primary, secondary"):
        validate_flag("active", text)


# --------------------------------------------------------------------------- trickle bucket


def test_trickle_bucket_is_a_fixed_function_of_the_order_id():
    """The bucket comes from sha256 of the order id, so every worker and every run agree."""
    assert trickle_bucket("ord-1") == int("da724c619bef80ee", 16) / 2**64
    assert trickle_bucket("ord-1") != trickle_bucket("ord-2")


@given(st.text())
def test_trickle_bucket_is_in_unit_interval_and_stable(order_id):
    """trickle_bucket is always in [0, 1) and returns the same value for the same id."""
    bucket = trickle_bucket(order_id)
    assert 0.0 <= bucket < 1.0
    assert trickle_bucket(order_id) == bucket


# --------------------------------------------------------------------------- properties

modes = st.sampled_from(["manual", "auto"])
providers = st.sampled_from(PROVIDERS)
health_maps = st.fixed_dictionaries({"primary": st.booleans(), "secondary": st.booleans()})
excludes = st.sets(providers)
trickles = st.one_of(st.just(0.0), st.just(1.0), st.floats(0.0, 1.0))


@given(order_id=st.text(), mode=modes, active=providers, trickle=trickles, healthy=health_maps, exclude=excludes)
def test_choice_is_none_or_a_broker_not_excluded(order_id, mode, active, trickle, healthy, exclude):
    """The decision is either None or a known broker that is not in exclude."""
    got = choose_provider(
        order_id=order_id, mode=mode, active=active, trickle=trickle, healthy=healthy, exclude=exclude
    )
    assert got is None or (got in PROVIDERS and got not in exclude)


@given(order_id=st.text(), active=providers, trickle=trickles, unhealthy=providers, exclude=excludes)
def test_auto_never_chooses_an_unhealthy_broker_when_the_other_is_healthy(
    order_id, active, trickle, unhealthy, exclude
):
    """In auto mode an unhealthy broker is never chosen while the other one is healthy."""
    healthy = {unhealthy: False, other(unhealthy): True}
    got = choose_provider(
        order_id=order_id, mode="auto", active=active, trickle=trickle, healthy=healthy, exclude=exclude
    )
    assert got != unhealthy
    if other(unhealthy) not in exclude:
        assert got == other(unhealthy)


@given(order_id=st.text(), active=providers, trickle=trickles, unhealthy=st.sets(providers), exclude=excludes)
def test_auto_never_chooses_an_unhealthy_broker(order_id, active, trickle, unhealthy, exclude):
    """In auto mode the chosen broker, if any, is always a healthy one."""
    healthy = {p: p not in unhealthy for p in PROVIDERS}
    got = choose_provider(
        order_id=order_id, mode="auto", active=active, trickle=trickle, healthy=healthy, exclude=exclude
    )
    assert got is None or healthy[got]


@given(order_id=st.text(), mode=modes, active=providers, trickle=trickles, healthy=health_maps, exclude=excludes)
def test_same_order_same_inputs_same_answer(order_id, mode, active, trickle, healthy, exclude):
    """The same order_id with the same flags and health always gets the same broker."""
    kwargs = {"order_id": order_id, "mode": mode, "active": active, "trickle": trickle}
    first = choose_provider(**kwargs, healthy=dict(healthy), exclude=set(exclude))
    again = choose_provider(**kwargs, healthy=dict(healthy), exclude=tuple(sorted(exclude)))
    assert first == again


# derandomize: the ids are a pure function of the drawn seed, so each run checks the same cases
# and a ±2-point bound (4 standard deviations at 10,000 ids) can never flake.
@settings(max_examples=10, derandomize=True, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), trickle=st.floats(0.0, 1.0), active=providers)
def test_trickle_share_over_10000_orders_is_within_2_points(seed, trickle, active):
    """With both brokers healthy, the standby gets the trickle share of orders to within ±2 points."""
    rng = random.Random(seed)
    order_ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(10_000)]
    healthy = {"primary": True, "secondary": True}
    on_standby = sum(
        choose_provider(order_id=oid, mode="auto", active=active, trickle=trickle, healthy=healthy) == other(active)
        for oid in order_ids
    )
    assert abs(on_standby / len(order_ids) - trickle) <= 0.02


# --------------------------------------------------------------------------- suspect brokers


@pytest.mark.parametrize("active", PROVIDERS)
def test_manual_mode_keeps_orders_off_a_suspect_active_broker(active):
    """Manual mode: a suspect active broker gets no order (it waits in the queue); the standby is never used."""
    healthy = {p: True for p in PROVIDERS}
    assert choose_provider(order_id="o", mode="manual", active=active, trickle=0.0, healthy=healthy,
                           suspect={active}) is None
    assert choose_provider(order_id="o", mode="manual", active=active, trickle=0.0, healthy=healthy,
                           suspect={other(active)}) == active


@given(order_id=st.text(min_size=1, max_size=20), active=st.sampled_from(PROVIDERS),
       trickle=st.floats(0.0, 1.0), suspect=st.sets(st.sampled_from(PROVIDERS)),
       healthy_standby=st.booleans())
def test_auto_mode_never_sends_an_order_to_a_suspect_broker(order_id, active, trickle, suspect, healthy_standby):
    """Auto mode: a suspect broker is never chosen, even when its breaker still says healthy."""
    healthy = {active: True, other(active): healthy_standby}
    chosen = choose_provider(order_id=order_id, mode="auto", active=active, trickle=trickle, healthy=healthy,
                             suspect=suspect)
    assert chosen is None or chosen not in suspect
    if active in suspect and healthy_standby and other(active) not in suspect:
        assert chosen == other(active)


def test_an_unknown_suspect_broker_is_refused_by_name():
    """A suspect set naming no broker is a bug, refused with the name."""
    with pytest.raises(ValueError, match="suspect provider 'tertiary'"):
        choose_provider(order_id="o", mode="auto", active="primary", trickle=0.0, healthy={}, suspect={"tertiary"})
