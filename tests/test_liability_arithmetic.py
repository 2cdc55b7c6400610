"""The exposure arithmetic: the formula as a table, its rounding and refusals, and the one check of a number."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeops.runtime.liability.arithmetic import (
    PRICE,
    BadNumber,
    NumberProblem,
    adverse_exposure,
    adverse_pct,
    aware,
    micros,
    number,
    round_exposure,
    round_pct,
    seconds,
)
from tradeops.runtime.platform.errors import BadInput

# --------------------------------------------------------------------------- the formula


@pytest.mark.parametrize(
    ("side", "quote", "price", "quantity", "exposure", "pct"),
    [
        ("BUY", "100", "101", 10, "10", "1"),  # buyer pays more: adverse
        ("BUY", "100", "99", 10, "0", "0"),  # buyer pays less: not adverse
        ("BUY", "100", "100.00", 10, "0", "0"),  # equal: nothing
        ("SELL", "100", "99", 10, "10", "1"),  # seller gets less: adverse
        ("SELL", "100", "101", 10, "0", "0"),  # seller gets more: not adverse
        ("SELL", "100", "100", 10, "0", "0"),
        ("BUY", "101.25", "101.2501", 3, "0.0003", "0.00009876543209876543209876543210"),
        ("SELL", "250", "200", D("0.5"), "25", "20"),  # fractional shares
        ("BUY", "0.0001", "0.0002", 1_000_000, "100", "100"),
    ],
)
def test_adverse_exposure_and_pct_table(side, quote, price, quantity, exposure, pct):
    """Exposure is the adverse difference times quantity, exact; the move is that difference over the quote."""
    assert adverse_exposure(side, D(quote), D(price), quantity) == D(exposure)
    assert adverse_pct(side, D(quote), D(price)) == D(pct)


@pytest.mark.parametrize(
    ("exact", "reported"),
    [("0.005", "0.01"), ("0.004999", "0.00"), ("0.025", "0.03"), ("12.344", "12.34"), ("0", "0.00")],
)
def test_exposure_rounds_half_up_only_when_reported(exact, reported):
    """round_exposure rounds to the penny half up (0.025 -> 0.03, not banker's 0.02)."""
    assert round_exposure(D(exact)) == D(reported)
    assert str(round_exposure(D(exact))) == reported


def test_exposure_is_not_rounded_before_reporting():
    """A sub-penny exposure stays exact in the formula; rounding happens only at the edge."""
    assert adverse_exposure("BUY", D("1.000"), D("1.001"), 3) == D("0.003")


@pytest.mark.parametrize(
    ("side", "quote", "price", "quantity"),
    [
        ("HOLD", D(1), D(1), 1),
        ("buy", D(1), D(1), 1),
        ("BUY", D(0), D(1), 1),
        ("BUY", D(1), D(-1), 1),
        ("BUY", D(1), D("NaN"), 1),
        ("BUY", D(1), D("Infinity"), 1),
        ("BUY", D(1), 1.5, 1),
        ("BUY", D(1), D(2), 0),
        ("BUY", D(1), D(2), -3),
        ("BUY", D(1), D(2), True),
    ],
)
def test_formula_refuses_bad_input(side, quote, price, quantity):
    """Unknown sides, non-positive or non-finite amounts and floats are refused, not computed."""
    with pytest.raises(BadInput):
        adverse_exposure(side, quote, price, quantity)


prices = st.builds(lambda c, k: D(c).scaleb(-k), st.integers(1, 5_000_000), st.integers(0, 6))
quantities = st.one_of(st.integers(1, 10_000), st.builds(lambda c, k: D(c).scaleb(-k), st.integers(1, 10**6),
                                                          st.integers(0, 3)))
sides = st.sampled_from(["BUY", "SELL"])


@given(sides, prices, prices, quantities)
def test_exposure_is_never_negative_and_adverse_iff_move_is(side, quote, price, quantity):
    """Exposure is never negative, and is positive exactly when the adverse move is."""
    exposure = adverse_exposure(side, quote, price, quantity)
    assert exposure >= 0
    assert (exposure > 0) == (adverse_pct(side, quote, price) > 0)
    worse = price > quote if side == "BUY" else price < quote
    assert (exposure > 0) == worse


def test_percentages_round_half_up_to_four_places_when_reported():
    """round_pct reports a move to 4 decimal places, half up."""
    assert str(round_pct(D("0.00005"))) == "0.0001" and str(round_pct(D("1.23444"))) == "1.2344"


# --------------------------------------------------------------------------- the one check of a number


@pytest.mark.parametrize(
    ("value", "options", "problem"),
    [
        (1.5, {}, NumberProblem.NOT_A_NUMBER),  # money between our functions is Decimal
        ("1.5", {}, NumberProblem.NOT_A_NUMBER),
        (True, {"floats": True, "text": True}, NumberProblem.NOT_A_NUMBER),
        ("abc", {"text": True}, NumberProblem.NOT_A_NUMBER),
        (None, {}, NumberProblem.NOT_A_NUMBER),
        (D("NaN"), {}, NumberProblem.NAN),
        (float("nan"), {"floats": True}, NumberProblem.NAN),
        (D("-Infinity"), {}, NumberProblem.INFINITE),
        (0, {"positive": True}, NumberProblem.NOT_POSITIVE),
        (D("1E+10"), {"bounds": PRICE}, NumberProblem.OUT_OF_RANGE),
        (D("1.0000000000001"), {"bounds": PRICE}, NumberProblem.TOO_PRECISE),
    ],
)
def test_number_names_what_is_wrong(value, options, problem):
    """Every refusal says which rule the number broke (the monitor counts bad ticks by it), and is bad input."""
    with pytest.raises(BadNumber) as caught:
        number("x", value, **options)
    assert caught.value.problem is problem and caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("value", "options", "expected"),
    [
        (0.1, {"floats": True}, "0.1"),  # a float by its shortest decimal form, not its binary value
        (60.0, {"floats": True}, "60.0"),
        (" 101.25 ", {"text": True}, "101.25"),
        (-3, {}, "-3"),
        (D("1.000000000000000"), {"positive": True, "bounds": PRICE}, "1.000000000000000"),  # zeros are not places
    ],
)
def test_number_reads_exactly(value, options, expected):
    """An accepted number is exact, and keeps the digits it was given."""
    assert str(number("x", value, **options)) == expected


def test_times_must_name_their_zone():
    """A naive datetime names no instant and is refused; an aware one is read in UTC, to the microsecond."""
    with pytest.raises(BadInput):
        aware(datetime(2026, 1, 1), "t")
    with pytest.raises(BadInput):
        micros("2026-01-01T00:00:00Z", "t")
    moment = datetime(2026, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert aware(moment, "t") == datetime(2026, 1, 1, tzinfo=UTC) and aware(moment, "t").tzinfo is UTC
    assert micros(moment, "t") - micros(datetime(2026, 1, 1, tzinfo=UTC), "t") == 0
    assert seconds(timedelta(seconds=60, microseconds=1)) == D("60.000001")
