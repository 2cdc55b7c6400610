"""Price ticks: a well-formed tick read exactly, and every malformed one refused with its kind."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from tradeops.runtime.liability.arithmetic import NumberProblem
from tradeops.runtime.liability.ticks import BadTick, TickProblem, parse_tick
from tradeops.runtime.platform.errors import BadInput

GOOD = {"symbol": "VOD.L", "price": "101.25", "at": "2026-11-25T14:00:00.123Z", "seq": 17}


def test_parse_tick_reads_bytes_text_and_dicts():
    """A well-formed tick parses from bytes, text or a dict, with an exact price and a UTC time."""
    expected = parse_tick(GOOD)
    assert parse_tick(json.dumps(GOOD)) == parse_tick(json.dumps(GOOD).encode()) == expected
    assert expected.price == D("101.25") and expected.seq == 17
    assert expected.at == datetime(2026, 11, 25, 14, 0, 0, 123000, tzinfo=UTC)


def test_parse_tick_reads_json_numbers_exactly_and_converts_offsets():
    """A JSON number price is read as a Decimal, not a float; an offset time becomes UTC."""
    tick = parse_tick(b'{"symbol": "VOD.L", "price": 101.1, "at": "2026-11-25T15:00:00+01:00"}', {"VOD.L"})
    assert str(tick.price) == "101.1" and tick.seq is None
    assert tick.at == datetime(2026, 11, 25, 14, 0, tzinfo=UTC) and tick.at.tzinfo is UTC


@pytest.mark.parametrize(
    ("raw", "reason", "kind"),
    [
        (b"\xff\xfe", "not JSON", TickProblem.NOT_JSON),
        ("{not json", "not JSON", TickProblem.NOT_JSON),
        ("[1, 2]", "not a JSON object", TickProblem.NOT_AN_OBJECT),
        ({**GOOD, "symbol": None}, "missing symbol", TickProblem.MISSING_SYMBOL),
        ({k: v for k, v in GOOD.items() if k != "symbol"}, "missing symbol", TickProblem.MISSING_SYMBOL),
        ({**GOOD, "symbol": "  "}, "non-empty string", TickProblem.BAD_SYMBOL),
        ({**GOOD, "symbol": "ZZZ.L"}, "unknown symbol", TickProblem.UNKNOWN_SYMBOL),
        ({k: v for k, v in GOOD.items() if k != "price"}, "missing price", TickProblem.MISSING_PRICE),
        ({**GOOD, "price": "abc"}, "not a number", NumberProblem.NOT_A_NUMBER),
        ({**GOOD, "price": True}, "not a number", NumberProblem.NOT_A_NUMBER),
        ({**GOOD, "price": [1]}, "not a number", NumberProblem.NOT_A_NUMBER),
        ({**GOOD, "price": "NaN"}, "NaN", NumberProblem.NAN),
        ('{"symbol": "VOD.L", "price": NaN, "at": "2026-11-25T14:00:00Z"}', "NaN", NumberProblem.NAN),
        ({**GOOD, "price": "-Infinity"}, "infinite", NumberProblem.INFINITE),
        ('{"symbol": "VOD.L", "price": Infinity, "at": "2026-11-25T14:00:00Z"}', "infinite", NumberProblem.INFINITE),
        ({**GOOD, "price": "-1"}, "positive", NumberProblem.NOT_POSITIVE),
        ({**GOOD, "price": "0"}, "positive", NumberProblem.NOT_POSITIVE),
        ({**GOOD, "price": "1e999999"}, "out of range", NumberProblem.OUT_OF_RANGE),
        ({**GOOD, "price": "1.0000000000001"}, "decimal places", NumberProblem.TOO_PRECISE),
        ({k: v for k, v in GOOD.items() if k != "at"}, "missing timestamp", TickProblem.BAD_TIME),
        ({**GOOD, "at": "yesterday"}, "bad timestamp", TickProblem.BAD_TIME),
        ({**GOOD, "at": 1764079200}, "bad timestamp", TickProblem.BAD_TIME),
        ({**GOOD, "at": "2026-11-25T14:00:00"}, "no time zone", TickProblem.BAD_TIME),
        ({**GOOD, "seq": -1}, "seq", TickProblem.BAD_SEQ),
        ({**GOOD, "seq": "17"}, "seq", TickProblem.BAD_SEQ),
    ],
)
def test_parse_tick_refuses_malformed_ticks(raw, reason, kind):
    """Each malformed tick is refused with a BadTick whose reason names the problem and whose kind labels it."""
    with pytest.raises(BadTick) as caught:
        parse_tick(raw, known_symbols={"VOD.L"})
    assert reason in caught.value.reason
    assert caught.value.kind is kind
    assert isinstance(caught.value, BadInput) and caught.value.exit_code == 2


def test_kinds_are_few_and_do_not_grow_with_the_input():
    """A tick's kind is one of a fixed set whatever its content: a symbol spelled like a problem is still unknown."""
    labels = {k.value for k in TickProblem} | {k.value for k in NumberProblem}
    with pytest.raises(BadTick) as caught:
        parse_tick({**GOOD, "symbol": "NaN positive"}, known_symbols={"VOD.L"})
    assert caught.value.kind is TickProblem.UNKNOWN_SYMBOL and caught.value.kind.value in labels
    with pytest.raises(BadTick) as caught:
        parse_tick({**GOOD, "at": "NaN"})
    assert caught.value.kind is TickProblem.BAD_TIME

