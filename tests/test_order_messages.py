"""The order queue's message: one builder, one parser, and the parser never raises."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeops.runtime.orderpath.messages import order_message, parse_order_message


@given(st.text(min_size=1))
def test_a_built_message_parses_back_to_its_order_id(order_id):
    """Whatever the id, parse(build(id)) == id."""
    assert parse_order_message(order_message(order_id)) == order_id


@given(st.one_of(st.none(), st.integers(), st.binary(), st.text(),
                 st.builds(json.dumps, st.dictionaries(st.text(), st.integers()))))
def test_anything_else_is_not_an_order_message(body):
    """Garbage, JSON without a string order_id, or a non-string body: None, never an exception."""
    parsed = parse_order_message(body)
    assert parsed is None or isinstance(parsed, str)


def test_an_empty_order_id_cannot_be_built():
    """A message without an order id would be poison: refused when built."""
    with pytest.raises(ValueError):
        order_message("")
    assert parse_order_message('{"order_id": ""}') is None
    assert parse_order_message('{"order_id": 7}') is None
