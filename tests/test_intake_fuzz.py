"""The intake API under generated requests from its own OpenAPI document (schemathesis, positive and negative).

Properties: no request ever gets a 5xx; every answer is documented (status, content type, body
schema); and a rejected (4xx) request leaves the orders table and the order queue as they were.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.intake import AUTH, TOKEN, LiveServer, Probe
from tradeops.runtime.orderpath.intake import create_app
from tradeops.runtime.platform.settings import Settings

# The last test checks what the fuzzing tests before it stored: the module's tests run on one worker, in order.
pytestmark = pytest.mark.xdist_group("tests/test_intake_fuzz.py")


@pytest.fixture(scope="module")
def probe(aws_settings: Settings) -> Iterator[Probe]:
    p = Probe(aws_settings)
    yield p
    p.cleanup()


@pytest.fixture(scope="module")
def live(aws_settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(create_app(aws_settings, token=TOKEN)) as server:
        yield server


@pytest.fixture(scope="module")
def intake_schema(live: LiveServer) -> Any:
    return schemathesis.openapi.from_url(f"{live.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("intake_schema")

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@schema.include(method="POST", path="/orders").parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_post_orders_never_5xx_and_rejections_change_nothing(case: Any, probe: Probe) -> None:
    """Generated POST /orders bodies never get a 5xx; a 4xx leaves the table and queue unchanged."""
    before = probe.snapshot()
    response = case.call(headers=AUTH, timeout=10)
    case.validate_response(response, checks=CHECKS)
    if response.status_code == 202:
        probe.created.append(response.json()["order_id"])
    if 400 <= response.status_code < 500:
        assert probe.snapshot() == before, f"a {response.status_code} changed the orders table or queue"


@schema.include(method="GET").parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_reads_never_5xx_and_write_nothing(case: Any, probe: Probe) -> None:
    """Generated GET requests (orders by id, health) never get a 5xx and never write."""
    before = probe.snapshot()
    response = case.call(headers=AUTH, timeout=10)
    case.validate_response(response, checks=CHECKS)
    assert probe.snapshot() == before


def test_fuzzed_orders_reached_the_accept_path(live: LiveServer, probe: Probe) -> None:
    """The generator is not only producing rejects: the valid orders it made were accepted and stored."""
    assert probe.created, "no generated order was accepted; the generator never reached the 202 path"
    with httpx.Client(base_url=live.url, timeout=10) as client:
        for order_id in probe.created[:5]:
            got = client.get(f"/orders/{order_id}", headers=AUTH)
            assert got.status_code == 200 and got.json()["status"] == "ACCEPTED"
