"""Price ticks from the feed: what a well-formed one is, and why a malformed one is dropped. Pure, no I/O.

A tick is ``{"symbol": "VOD.L", "price": "101.25", "at": "2026-11-25T14:00:00.123Z", "seq": 17}``.
:func:`parse_tick` reads one exactly (JSON numbers as Decimal, never through float) or raises
:class:`BadTick`, whose ``kind`` is one of a few fixed labels (:class:`TickProblem`, or the
:class:`.arithmetic.NumberProblem` of a bad price): the monitor counts dropped ticks by it, so the
counters cannot grow with the input, and ``reason`` says the rest.
"""

from __future__ import annotations

import json
from collections.abc import Container, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from tradeops.runtime.liability.arithmetic import PRICE, BadNumber, NumberProblem, aware, number
from tradeops.runtime.platform.errors import BadInput

__all__ = ["BadTick", "Tick", "TickProblem", "parse_tick", "tick_price", "tick_time"]


class TickProblem(StrEnum):
    """Why a tick was dropped, when it is not its price's number (:class:`.arithmetic.NumberProblem`)."""

    NOT_JSON = "not JSON"
    NOT_AN_OBJECT = "not a JSON object"
    MISSING_SYMBOL = "missing symbol"
    BAD_SYMBOL = "symbol must"
    UNKNOWN_SYMBOL = "unknown symbol"
    MISSING_PRICE = "missing price"
    BAD_TIME = "timestamp"
    BAD_SEQ = "seq"
    OTHER = "other"


class BadTick(BadInput):
    """A price tick is malformed: ``kind`` says which rule it broke, ``reason`` how. The tick is dropped,
    nothing changes."""

    def __init__(self, kind: TickProblem | NumberProblem, reason: str) -> None:
        super().__init__(f"bad tick: {reason}")
        self.kind = kind
        self.reason = reason

    @classmethod
    def of(cls, refused: BadNumber) -> BadTick:
        """The tick whose price :func:`.arithmetic.number` refused."""
        return cls(refused.problem, refused.message)


@dataclass(frozen=True)
class Tick:
    """A validated price tick (see the module docstring)."""

    symbol: str
    price: Decimal
    at: datetime
    seq: int | None = None


def tick_price(raw: object, *, feed: bool = True) -> Decimal:
    """A tick's price: positive, within :data:`.arithmetic.PRICE`. From the ``feed``, text and JSON
    floats are read too; between our own functions only Decimals and ints are."""
    if raw is None:
        raise BadTick(TickProblem.MISSING_PRICE, "missing price")
    try:
        return number("price", raw, floats=feed, text=feed, positive=True, bounds=PRICE)
    except BadNumber as exc:
        raise BadTick.of(exc) from None


def tick_time(raw: object, *, feed: bool = True) -> datetime:
    """A tick's time in UTC. From the ``feed``, ISO 8601 text is read too; it must name its time zone."""
    if raw is None:
        raise BadTick(TickProblem.BAD_TIME, "missing timestamp 'at'")
    moment = raw
    if feed and isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise BadTick(TickProblem.BAD_TIME, f"bad timestamp {raw[:40]!r}: not ISO 8601") from None
    elif not isinstance(raw, datetime):
        raise BadTick(TickProblem.BAD_TIME, f"bad timestamp: {type(raw).__name__}, expected an ISO 8601 string")
    try:
        return aware(moment, "tick time")
    except BadInput:
        raise BadTick(TickProblem.BAD_TIME, f"bad timestamp {raw!s:.40}: no time zone") from None


def parse_tick(raw: bytes | str | Mapping[str, Any], known_symbols: Container[str] | None = None) -> Tick:
    """Validate one tick from the feed; raise BadTick with the reason when it is malformed."""
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            raise BadTick(TickProblem.NOT_JSON, "not JSON: not UTF-8 text") from None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw, parse_float=Decimal)
        except (ValueError, RecursionError) as exc:
            raise BadTick(TickProblem.NOT_JSON, f"not JSON: {exc}") from None
    if not isinstance(raw, Mapping):
        raise BadTick(TickProblem.NOT_AN_OBJECT, f"not a JSON object: {type(raw).__name__}")
    symbol = raw.get("symbol")
    if symbol is None:
        raise BadTick(TickProblem.MISSING_SYMBOL, "missing symbol")
    if not isinstance(symbol, str) or not symbol.strip():
        raise BadTick(TickProblem.BAD_SYMBOL, f"symbol must be a non-empty string, got {symbol!r:.40}")
    if known_symbols is not None and symbol not in known_symbols:
        raise BadTick(TickProblem.UNKNOWN_SYMBOL, f"unknown symbol {symbol!r:.40}")
    price = tick_price(raw.get("price"))
    at = tick_time(raw.get("at"))
    seq = raw.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
        raise BadTick(TickProblem.BAD_SEQ, f"seq must be a non-negative integer, got {seq!r:.40}")
    return Tick(symbol=symbol, price=price, at=at, seq=seq)
