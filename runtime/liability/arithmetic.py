"""The exposure arithmetic: what one waiting order costs its customer, exactly. Pure, no I/O.

While an order waits (a broker outage, a paused queue) the market moves away from the price the
customer was shown (``quote_price``). At a price:

- **exposure** (GBP) = (price - quote) x quantity for a BUY when price > quote;
  (quote - price) x quantity for a SELL when price < quote; 0 otherwise. Never negative.
- **adverse move** (percent) = that adverse difference / quote x 100; 0 when not adverse.

Rounding rule
    Amounts are computed exactly in Decimal and rounded to the penny only when they are stored or
    reported: exposure with ROUND_HALF_UP (:func:`round_exposure`), reimbursements with ROUND_UP,
    in the customer's favour (:mod:`tradeops.runtime.liability.reimbursement`). Totals are sums of
    exact values, so a reported total is the rounded exact total, not a sum of rounded parts.
    Thresholds compare exact values. A percentage is a division and cannot always be exact: it is
    correctly rounded to 28 significant digits (:func:`percent`), and reported to 4 decimal places
    (:func:`round_pct`).

Every number that comes in passes one check (:func:`number`), which says what is wrong with it
(:class:`NumberProblem`), and every moment one (:func:`aware`): a naive datetime names no instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import (
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)
from enum import StrEnum

from tradeops.runtime.platform.errors import BadInput

__all__ = [
    "BUY",
    "MAX_PRICE_PLACES",
    "MAX_QUANTITY_PLACES",
    "PRICE",
    "QUANTITY",
    "SELL",
    "BadNumber",
    "Bounds",
    "NumberProblem",
    "adverse_exposure",
    "adverse_pct",
    "aware",
    "checked_side",
    "micros",
    "number",
    "percent",
    "places",
    "round_exposure",
    "round_pct",
    "scaled",
    "seconds",
    "unscaled",
]

BUY = "BUY"
SELL = "SELL"
_SIDES = frozenset({BUY, SELL})

MAX_PRICE_PLACES = 12
"""Most decimal places a price or quote may carry (beyond it, a feed is sending nonsense)."""
MAX_QUANTITY_PLACES = 8


@dataclass(frozen=True)
class Bounds:
    """How large and how fine a number may be: below 10**(max_adjusted + 1), at most ``max_places`` places.

    The bounds keep the book's scaled integers small and refuse absurd input.
    """

    max_adjusted: int
    max_places: int


PRICE = Bounds(max_adjusted=9, max_places=MAX_PRICE_PLACES)  # prices and quotes below 10**10 GBP
QUANTITY = Bounds(max_adjusted=11, max_places=MAX_QUANTITY_PLACES)  # quantities below 10**12

_ZERO = Decimal(0)
_PENNY = Decimal("0.01")
_PCT_PLACES = Decimal("0.0001")
# 80 digits is far beyond any bounded input here; the Inexact trap turns "impossible" rounding
# into an error instead of a silently wrong amount.
_EXACT = Context(prec=80, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow, Inexact])
# Percentages: one correctly rounded division, independent of the caller's decimal context.
_PCT = Context(prec=28, rounding=ROUND_HALF_EVEN, traps=[InvalidOperation, DivisionByZero, Overflow])
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


# --------------------------------------------------------------------------------------- checks


class NumberProblem(StrEnum):
    """What is wrong with a number :func:`number` refused. The values are short, bounded labels
    (the monitor counts malformed ticks by them)."""

    NOT_A_NUMBER = "not a number"
    NAN = "NaN"
    INFINITE = "infinite"
    NOT_POSITIVE = "positive"
    OUT_OF_RANGE = "out of range"
    TOO_PRECISE = "decimal places"


class BadNumber(BadInput):
    """A number :func:`number` refused; ``problem`` says which rule it broke."""

    def __init__(self, problem: NumberProblem, message: str) -> None:
        super().__init__(message)
        self.problem = problem
        self.message = message


def number(what: str, value: object, *, floats: bool = False, text: bool = False, positive: bool = False,
           bounds: Bounds | None = None) -> Decimal:
    """``value`` as an exact, finite Decimal, or BadNumber naming ``what`` and what is wrong with it.

    Decimals and ints always, bools never. A float only with ``floats``, by its shortest decimal
    form (0.1 -> 0.1, as settings and JSON mean it); money passed between our own functions is
    Decimal, so they refuse floats. Text only with ``text`` (a feed's ``"101.25"``).
    """
    if type(value) is Decimal:
        result = value
    elif isinstance(value, int) and not isinstance(value, bool):
        result = Decimal(value)
    elif floats and isinstance(value, float):
        result = Decimal(repr(value))
    elif text and isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise BadNumber(NumberProblem.NOT_A_NUMBER, f"{what} is not a number: {value[:40]!r}") from None
    elif isinstance(value, Decimal):  # a subclass
        result = Decimal(value)
    else:
        shown = f"{value!r:.40}" if isinstance(value, bool | str | float) else type(value).__name__
        why = " (money is Decimal, never float)" if isinstance(value, float) else ""
        raise BadNumber(NumberProblem.NOT_A_NUMBER, f"{what} is not a number{why}: {shown}")
    if result.is_nan():
        raise BadNumber(NumberProblem.NAN, f"{what} is NaN")
    if result.is_infinite():
        raise BadNumber(NumberProblem.INFINITE, f"{what} is infinite")
    if positive and result <= 0:
        raise BadNumber(NumberProblem.NOT_POSITIVE, f"{what} must be positive, got {result}")
    if bounds is not None:
        if result.adjusted() > bounds.max_adjusted:
            raise BadNumber(NumberProblem.OUT_OF_RANGE, f"{what} is out of range: {result}")
        if places(result) > bounds.max_places:
            raise BadNumber(NumberProblem.TOO_PRECISE,
                            f"{what} has more than {bounds.max_places} decimal places: {result}")
    return result


def checked_side(side: object) -> str:
    """``side`` when it is BUY or SELL; BadInput otherwise (case matters: it is a wire value)."""
    if not isinstance(side, str) or side not in _SIDES:
        raise BadInput(f"side must be BUY or SELL, got {side!r}")
    return side


def _aware(moment: object, what: str) -> datetime:
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise BadInput(f"{what} must be a timezone-aware datetime, got {moment!r}")
    return moment


def aware(moment: object, what: str) -> datetime:
    """``moment`` in UTC; BadInput unless it is a timezone-aware datetime."""
    return _aware(moment, what).astimezone(UTC)


def micros(moment: object, what: str) -> int:
    """Microseconds since the epoch of a timezone-aware ``moment``: an int, cheap to compare and to heap."""
    return (_aware(moment, what) - _EPOCH) // _MICROSECOND


def seconds(duration: timedelta) -> Decimal:
    """``duration`` in seconds, exactly (to the microsecond, as a timedelta holds it)."""
    return unscaled(duration // _MICROSECOND, 6)


# --------------------------------------------------------------------------------------- exact decimals


def places(value: Decimal) -> int:
    """Decimal places ``value`` really needs (trailing zeros do not count)."""
    _sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0:
        return 0
    trailing = 0
    for digit in reversed(digits):
        if digit:
            break
        trailing += 1
    return max(0, -exponent - trailing)


def scaled(value: Decimal, places: int) -> int | None:
    """``value`` x 10**places as an int, or None when that is not a whole number."""
    shifted = value.scaleb(places, _EXACT)
    whole = int(shifted)
    return whole if whole == shifted else None


def unscaled(value: int, places: int) -> Decimal:
    """The Decimal that ``value`` units of 10**-places is."""
    return Decimal(value).scaleb(-places, _EXACT) if value else _ZERO


def percent(part: Decimal | int, whole: Decimal | int) -> Decimal:
    """``part`` / ``whole`` x 100, correctly rounded to 28 significant digits whatever the caller's context."""
    return _PCT.divide(_EXACT.multiply(part, 100), whole)


# --------------------------------------------------------------------------------------- the formula


def _adverse_diff(side: str, quote: Decimal, price: Decimal) -> Decimal:
    try:
        return _EXACT.subtract(price, quote) if side == BUY else _EXACT.subtract(quote, price)
    except Inexact:
        raise BadInput("price or quote has too many digits for exact arithmetic") from None


def adverse_exposure(side: str, quote: Decimal, price: Decimal, quantity: int | Decimal) -> Decimal:
    """Exact (unrounded) GBP cost to the customer of ``price`` versus ``quote``; never negative."""
    side = checked_side(side)
    diff = _adverse_diff(side, number("quote", quote, positive=True), number("price", price, positive=True))
    if diff <= 0:
        return _ZERO
    try:
        return _EXACT.multiply(diff, number("quantity", quantity, positive=True))
    except Inexact:
        raise BadInput("quantity has too many digits for exact arithmetic") from None


def adverse_pct(side: str, quote: Decimal, price: Decimal) -> Decimal:
    """Adverse move of ``price`` from ``quote`` in percent of the quote; 0 when not adverse."""
    side = checked_side(side)
    quote = number("quote", quote, positive=True)
    diff = _adverse_diff(side, quote, number("price", price, positive=True))
    if diff <= 0:
        return _ZERO
    return percent(diff, quote)


def round_exposure(amount: Decimal) -> Decimal:
    """An exact exposure rounded to the penny, half up: the form it is stored and reported in."""
    return amount.quantize(_PENNY, rounding=ROUND_HALF_UP)


def round_pct(pct: Decimal) -> Decimal:
    """A percentage rounded to 4 decimal places, half up: the form it is reported in."""
    return pct.quantize(_PCT_PLACES, rounding=ROUND_HALF_UP)
