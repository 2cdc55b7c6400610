"""The simulated brokers (both wires, every fault) and the provider adapters, over real HTTP."""

from __future__ import annotations

import json
import secrets
import signal
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.brokers import API_KEY, Broker, broker_pair, start_broker, stop_broker, wait_healthy
from tests.support.stack import REPO
from tradeops.runtime.brokers.control import SimControl
from tradeops.runtime.brokers.faults import Fault, parse_fault
from tradeops.runtime.brokers.orderbook import Book, make_order
from tradeops.runtime.brokers.sim import sim_command
from tradeops.runtime.brokers.wires import WIRES, HttpRequest
from tradeops.runtime.orderpath.providers import (
    AuthFailed,
    BrokerOrder,
    NotAccepted,
    NotReceived,
    OutcomeUnknown,
    Provider,
    _refusal,
    make_provider,
)
from tradeops.runtime.platform.errors import BadInput, ConfigError, StackError

READ_TIMEOUT = 0.3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.fixture(scope="module")
def brokers(processes, tmp_path_factory):
    """Both simulated brokers, started once for this module's tests."""
    with broker_pair(tmp_path_factory.mktemp("sim-logs")) as pair:
        yield pair


@pytest.fixture(scope="module")
def http():
    """One plain client for raw requests (a new httpx client per call costs ~0.1 s of TLS setup)."""
    with httpx.Client(timeout=5) as client:
        yield client


@pytest.fixture(autouse=True)
def _clean(request):
    """Every broker test starts from an empty book and no fault."""
    if "brokers" in request.fixturenames:
        client = request.getfixturevalue("http")
        for broker in request.getfixturevalue("brokers").values():
            client.post(f"{broker.control_url}/_sim/reset").raise_for_status()
    yield


@pytest.fixture(params=["primary", "secondary"])
def broker(request, brokers) -> Broker:
    return brokers[request.param]


@pytest.fixture
def control(broker):
    with SimControl(broker.control_url) as ctl:
        yield ctl


def _adapter(broker: Broker, *, api_key: str | None = API_KEY, read_timeout: float = READ_TIMEOUT) -> Provider:
    return make_provider(broker.name, broker.wire, broker.url, api_key=api_key, connect_timeout=0.3,
                         read_timeout=read_timeout)


@pytest.fixture
def provider(broker):
    adapter = _adapter(broker)
    yield adapter
    adapter.close()


def _order(order_id: str | None = None, *, symbol: str = "VOD.L", side: str = "BUY", quantity: int = 10,
           limit: str | None = None) -> BrokerOrder:
    return BrokerOrder(order_id=order_id or f"o-{secrets.token_hex(6)}", symbol=symbol, side=side,
                       quantity=quantity, order_type="LIMIT" if limit else "MARKET",
                       limit_price=Decimal(limit) if limit else None, account_ref="acct-7")


# Fills, dedup, status, cancel ------------------------------------------------------------

def test_market_order_fills_at_once_and_is_the_ground_truth(provider, control):
    """A MARKET order fills in full at once, and /_sim/fills records exactly that fill."""
    order = _order(quantity=25)
    execution = provider.submit(order)
    assert (execution.status, execution.quantity, execution.provider) == ("FILLED", 25, provider.name)
    assert execution.price == execution.price.quantize(Decimal("0.01")) and execution.price > 0
    assert execution.at is not None and execution.at.tzinfo is not None and execution.broker_ref
    [fill] = control.fills()
    assert fill["order_id"] == order.order_id and fill["provider"] == provider.name
    assert (Decimal(fill["price"]), fill["quantity"], fill["symbol"], fill["side"]) == (
        execution.price, 25, "VOD.L", "BUY")
    assert datetime.fromisoformat(fill["filled_at"]).utcoffset().total_seconds() == 0


def test_resubmitted_order_returns_the_first_result_and_never_fills_twice(provider, control):
    """Resubmitting an order id answers the first fill again; the broker holds one fill."""
    order = _order()
    first = provider.submit(order)
    again = provider.submit(order)
    assert again == first
    assert [f["order_id"] for f in control.fills()] == [order.order_id]


def test_concurrent_duplicates_fill_once(provider, control):
    """Twenty concurrent submissions of one order id make one fill and one answer."""
    order = _order()
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: provider.submit(order), range(20)))
    assert len({a.broker_ref for a in answers}) == 1
    assert len(control.fills()) == 1


def test_status_reports_held_order_and_none_for_unknown(provider):
    """status() returns the held outcome, and None when the broker never saw the id."""
    filled = provider.submit(_order())
    assert provider.status(filled.order_id) == filled
    assert provider.status("never-sent-1") is None


def test_cancel_of_filled_order_is_too_late(provider):
    """Cancelling a filled order fails by reporting it FILLED."""
    filled = provider.submit(_order())
    assert provider.cancel(filled.order_id) == filled


def test_cancel_of_unknown_order_tombstones_it_against_late_arrival(provider, control):
    """Cancelling an unheld id answers CANCELLED and a later submission of it is refused, not filled."""
    order = _order()
    cancelled = provider.cancel(order.order_id)
    assert cancelled is not None and cancelled.status == "CANCELLED" and cancelled.quantity == 0
    late = provider.submit(order)
    assert late.status == "CANCELLED" and late.price is None
    assert provider.status(order.order_id).status == "CANCELLED"
    assert control.fills() == []


def test_limit_order_fills_only_when_marketable(provider, control):
    """A marketable LIMIT order fills at the market price; a non-marketable one is REJECTED with a reason."""
    control.set_prices({"BP.L": "100.00"})
    buy_low = provider.submit(_order(symbol="BP.L", limit="99.99"))
    sell_high = provider.submit(_order(symbol="BP.L", side="SELL", limit="100.01"))
    buy_ok = provider.submit(_order(symbol="BP.L", limit="100.00"))
    for rejected in (buy_low, sell_high):
        assert rejected.status == "REJECTED" and "not marketable" in rejected.reason and rejected.quantity == 0
    assert (buy_ok.status, buy_ok.price) == ("FILLED", Decimal("100.00"))
    assert [f["order_id"] for f in control.fills()] == [buy_ok.order_id]
    assert provider.cancel(buy_low.order_id).status == "REJECTED"


def test_quantity_over_broker_maximum_is_a_business_rejection(provider):
    """A quantity above the broker's maximum is a REJECTED execution, not an error."""
    execution = provider.submit(_order(quantity=5_000_000))
    assert execution.status == "REJECTED" and "maximum" in execution.reason


def test_adapter_reports_invalid_input_as_rejection_with_reason(provider):
    """An order the broker cannot parse comes back REJECTED naming the offending wire field."""
    execution = provider.submit(_order(symbol="vod lower"))
    assert execution.status == "REJECTED"
    assert execution.reason.startswith("INVALID_REQUEST") and ("instrument" in execution.reason
                                                                or "ticker" in execution.reason)
    assert provider.status(execution.order_id) is None


def test_fill_price_follows_the_feed(provider, control):
    """After /_sim/prices sets a price, fills are at exactly the latest value set."""
    control.set_prices({"VOD.L": "101.25"})
    assert provider.submit(_order()).price == Decimal("101.25")
    assert provider.submit(_order()).price == Decimal("101.25")
    control.set_prices({"VOD.L": Decimal("99.5")})
    assert provider.submit(_order()).price == Decimal("99.50")
    assert control.prices()["VOD.L"] == "99.50"


def test_bad_prices_are_refused_and_change_nothing(control, http):
    """A malformed price update is a 400 and leaves every price as it was."""
    control.set_prices({"VOD.L": "101.25"})
    for bad in ({"prices": {"VOD.L": "-1"}}, {"prices": {"VOD.L": "1", "bad sym": "2"}}, {"prices": []}, [1]):
        response = http.post(f"{control.base_url}/_sim/prices", json=bad)
        assert response.status_code == 400 and "unchanged" in response.json()["error"]
    assert control.prices()["VOD.L"] == "101.25" and "bad sym" not in control.prices()


def test_unpinned_prices_walk_in_pence_near_100():
    """The seeded walk starts near 100, moves at most 10p a step, keeps 2 dp, and repeats with its seed."""
    book, twin = Book("x", 3), Book("x", 3)
    path = [book.price("AAA") for _ in range(200)]
    assert path == [twin.price("AAA") for _ in range(200)]
    assert Decimal(90) < path[0] < Decimal(110)
    assert all(p == p.quantize(Decimal("0.01")) for p in path)
    assert all(abs(b - a) <= Decimal("0.10") for a, b in pairwise(path))


def test_book_tombstone_refuses_late_order_without_a_fill():
    """In the book itself, a cancelled-before-arrival id is answered CANCELLED and never fills."""
    book, now = Book("x", 1), datetime.now(UTC)
    book.cancel("o1", now)
    order = make_order(order_id="o1", symbol="VOD.L", side="BUY", quantity=1, order_type="MARKET",
                       limit_price=None, account_ref="a")
    record, created = book.submit(order, now)
    assert (record.state, created, book.fills()) == ("CANCELLED", False, [])


# Each wire's rejection of bad input ------------------------------------------------------

ALPHA_GOOD = {"clientOrderId": "raw-1", "instrument": "VOD.L", "side": "BUY", "qty": 5, "ordType": "MKT",
              "limitPx": None, "accountRef": "a"}
BETA_GOOD = {"client_ref": "raw-1", "ticker": "VOD.L", "direction": "B", "units": 5, "kind": "market",
             "px_limit": None, "acct": "a"}


@pytest.mark.parametrize(("change", "field"), [
    ({"qty": 0}, "qty"), ({"qty": "5"}, "qty"), ({"side": "buy"}, "side"), ({"ordType": "LMT"}, "limitPx"),
    ({"instrument": None}, "instrument"), ({"clientOrderId": "has space"}, "clientOrderId"), ({"extra": 1}, "extra"),
    ({"ordType": "LMT", "limitPx": "1.234"}, "limitPx"),
])
def test_alpha_refuses_bad_input_with_400_and_reason(brokers, change, field, http):
    """alpha answers bad input with HTTP 400 INVALID_REQUEST naming the field, and holds nothing."""
    url = brokers["primary"].url
    response = http.post(f"{url}/v1/orders", json={**ALPHA_GOOD, **change}, headers={"X-Api-Key": API_KEY})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "INVALID_REQUEST" and field in error["message"]
    assert http.get(f"{url}/v1/orders/raw-1", headers={"X-Api-Key": API_KEY}).status_code == 404


def test_alpha_refuses_malformed_json_and_unknown_routes(brokers, http):
    """alpha answers non-JSON with 400, an unknown path with 404, a wrong method with 405 — never 500."""
    url, headers = brokers["primary"].url, {"X-Api-Key": API_KEY}
    assert http.post(f"{url}/v1/orders", content=b"{not json", headers=headers).status_code == 400
    assert http.post(f"{url}/v1/orders", content=b"NaN", headers=headers).status_code == 400
    assert http.get(f"{url}/v2/nothing", headers=headers).json()["error"]["code"] == "NOT_FOUND"
    assert http.put(f"{url}/v1/orders/x", headers=headers).status_code == 405


@pytest.mark.parametrize(("change", "field"), [
    ({"units": -1}, "units"), ({"direction": "BUY"}, "direction"), ({"kind": "limit"}, "px_limit"),
    ({"ticker": 7}, "ticker"), ({"px_limit": "1"}, "px_limit"), ({"acct": ""}, "acct"),
])
def test_beta_refuses_bad_input_in_the_body_with_reason(brokers, change, field, http):
    """beta answers bad input with HTTP 200 and result=error INVALID_REQUEST naming the field."""
    url, headers = brokers["secondary"].url, {"Authorization": f"Bearer {API_KEY}"}
    response = http.post(f"{url}/api/execute", json={**BETA_GOOD, **change}, headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert (body["result"], body["error_code"]) == ("error", "INVALID_REQUEST") and field in body["detail"]
    status = http.post(f"{url}/api/status", json={"client_ref": "raw-1"}, headers=headers).json()
    assert status["status"] == "not_found"
    garbled = http.post(f"{url}/api/status", content=b"[", headers=headers)
    assert garbled.status_code == 200 and garbled.json()["error_code"] == "INVALID_REQUEST"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
_fields = st.sampled_from([*ALPHA_GOOD, *BETA_GOOD, "x"])
_bodies = st.dictionaries(_fields, _json | st.sampled_from(["VOD.L", "B", "S", "BUY", "MKT", "LMT", "limit",
                                                           "market", "1.00", 5]), max_size=8)


@settings(max_examples=300, deadline=None)
@given(wire=st.sampled_from(sorted(WIRES)), body=_bodies | _json,
       path=st.sampled_from(["/v1/orders", "/v1/orders/o1", "/api/execute", "/api/status", "/api/cancel"]),
       method=st.sampled_from(["POST", "GET", "DELETE"]))
def test_any_order_api_input_gets_an_answer_below_500(wire, body, path, method):
    """Whatever JSON arrives, both wires answer with a business outcome or a 4xx, never a crash or a 500."""
    request = HttpRequest(method, path, {"x-api-key": "k", "authorization": "Bearer k"},
                          json.dumps(body).encode())
    _, reply = WIRES[wire].handle(Book("p", 1), request, api_key="k", now=datetime.now(UTC))
    assert reply.status < 500 and json.dumps(reply.body)


# Auth ------------------------------------------------------------------------------------

def test_wrong_api_key_fails_auth_without_revealing_any_key(broker, http):
    """A wrong key is AuthFailed (a NotAccepted); neither key appears in the error, adapter or answer."""
    wrong = "wrong-" + secrets.token_hex(8)
    with _adapter(broker, api_key=wrong) as adapter:
        with pytest.raises(AuthFailed) as caught:
            adapter.submit(_order())
        assert isinstance(caught.value, NotAccepted) and caught.value.provider == broker.name
        text = f"{caught.value} {caught.value!r} {adapter!r} {adapter._client.auth!r}"
        assert wrong not in text and API_KEY not in text
        assert adapter.health() >= 0  # health needs no key
    raw = http.post(f"{broker.url}/v1/orders" if broker.wire == "alpha" else f"{broker.url}/api/execute",
                     json={}, headers={"X-Api-Key": wrong, "Authorization": f"Bearer {wrong}"})
    assert raw.status_code == 401 and wrong not in raw.text and API_KEY not in raw.text


def test_missing_api_key_is_refused(broker):
    """Without a key the order API answers 401 and holds nothing."""
    with _adapter(broker, api_key=None) as adapter, pytest.raises(AuthFailed):
        adapter.status("any-order")


def test_health_answers_without_any_key(broker):
    """The health probe an operator's doctor and runbook plan make carries no key, and every wire answers it."""
    with _adapter(broker, api_key=None) as adapter:
        assert adapter._client.auth is None
        assert adapter.health() >= 0


# Faults ----------------------------------------------------------------------------------

def test_down_refuses_connections_while_control_answers_and_none_restores(provider, control, broker):
    """`down` closes the order port (NotReceived, even on a pooled connection); `none` re-opens it."""
    provider.health()  # leaves a pooled keep-alive connection behind
    assert control.set_fault("down") == {"mode": "down"}
    assert _refused(broker.order_port)
    order = _order()
    with pytest.raises(NotReceived) as caught:
        provider.submit(order)
    assert (caught.value.provider, caught.value.order_id) == (broker.name, order.order_id)
    with pytest.raises(NotReceived):
        provider.health()
    assert control.health()["fault"] == {"mode": "down"}
    control.set_fault("none")
    assert provider.submit(order).status == "FILLED"


def test_error_rate_one_is_not_accepted_and_nothing_is_held(provider, control, broker, http):
    """`error` at rate 1 answers 503 accepted:false: NotAccepted, no fill, and the order is not held."""
    control.set_fault("error")
    order = _order()
    with pytest.raises(NotAccepted) as caught:
        provider.submit(order)
    assert not isinstance(caught.value, AuthFailed) and caught.value.order_id == order.order_id
    with pytest.raises(NotAccepted):
        provider.health()
    path = "/v1/orders" if broker.wire == "alpha" else "/api/execute"
    raw = http.post(f"{broker.url}{path}", json={})
    assert raw.status_code == 503 and "false" in raw.text and "accepted" in raw.text
    control.set_fault("none")
    assert control.fills() == [] and provider.status(order.order_id) is None


def test_error_rate_is_a_share_of_requests(provider, control):
    """`error` with rate 0.5 refuses some requests and serves the rest."""
    control.set_fault("error", rate=0.5)
    refused = 0
    for _ in range(60):
        try:
            provider.health()
        except NotAccepted:
            refused += 1
    assert 10 < refused < 50


def test_latency_delays_every_answer(provider, control):
    """`latency` delays order-API answers by ms, and orders still fill."""
    control.set_fault("latency", ms=150)
    assert provider.health() >= 150
    started = time.perf_counter()
    assert provider.submit(_order()).status == "FILLED"
    assert time.perf_counter() - started >= 0.15


def test_latency_beyond_read_timeout_is_outcome_unknown_yet_fills(provider, control):
    """A latency longer than the read timeout is OutcomeUnknown, and the order is still dealt with."""
    control.set_fault("latency", ms=500)
    order = _order()
    with pytest.raises(OutcomeUnknown):
        provider.submit(order)
    time.sleep(0.4)
    control.set_fault("none")
    assert provider.status(order.order_id).status == "FILLED"


def test_blackhole_is_outcome_unknown_after_the_read_timeout(provider, control):
    """`blackhole` never answers: OutcomeUnknown once the read timeout passes, and no fill."""
    control.set_fault("blackhole")
    order = _order()
    started = time.perf_counter()
    with pytest.raises(OutcomeUnknown) as caught:
        provider.submit(order)
    assert READ_TIMEOUT <= time.perf_counter() - started < READ_TIMEOUT + 1
    assert caught.value.order_id == order.order_id
    control.set_fault("none")
    assert control.fills() == [] and provider.status(order.order_id) is None


def test_blackhole_drops_the_connection_when_the_fault_changes(broker, control, http):
    """A request held by `blackhole` is dropped without an answer as soon as the fault changes."""
    control.set_fault("blackhole")
    outcome: list[BaseException] = []
    path = "/v1/health" if broker.wire == "alpha" else "/api/ping"

    def call() -> None:
        try:
            http.get(f"{broker.url}{path}", timeout=10)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.3)
    assert caller.is_alive()
    control.set_fault("none")
    caller.join(3)
    assert not caller.is_alive()
    assert isinstance(outcome[0], httpx.TransportError) and not isinstance(outcome[0], httpx.TimeoutException)


def test_fill_after_timeout_fills_though_submit_is_outcome_unknown(provider, control):
    """`fill_after_timeout`: submit times out (OutcomeUnknown) but the fill exists and status says FILLED."""
    control.set_fault("fill_after_timeout", ms=2000)
    assert control.fault() == {"mode": "fill_after_timeout", "ms": 2000}
    order = _order()
    with pytest.raises(OutcomeUnknown):
        provider.submit(order)
    assert [f["order_id"] for f in control.fills()] == [order.order_id]
    started = time.perf_counter()
    status = provider.status(order.order_id)
    assert status.status == "FILLED" and time.perf_counter() - started < READ_TIMEOUT
    assert provider.cancel(order.order_id).status == "FILLED"
    control.set_fault("none")
    assert provider.submit(order).broker_ref == status.broker_ref and len(control.fills()) == 1


@pytest.mark.parametrize("bad", [
    b"{not json", b"[]", b'{"mode": "sideways"}', b'{"mode": "error", "rate": 2}', b'{"mode": "latency"}',
    b'{"mode": "latency", "ms": -5}', b'{"mode": "down", "ms": 5}', b'{"mode": "error", "rate": true}', b"",
])
def test_bad_fault_is_400_with_reason_and_fault_unchanged(brokers, bad, http):
    """A malformed or unknown fault is refused with 400 and a reason; the current fault stays."""
    control_url = brokers["primary"].control_url
    http.post(f"{control_url}/_sim/fault", json={"mode": "error", "rate": 0.25}).raise_for_status()
    response = http.post(f"{control_url}/_sim/fault", content=bad)
    assert response.status_code == 400 and response.json()["error"].startswith("fault unchanged")
    assert http.get(f"{control_url}/_sim/fault").json() == {"mode": "error", "rate": 0.25}


def test_fault_vocabulary_defaults():
    """parse_fault fills documented defaults: error rate 1, fill_after_timeout 5000 ms."""
    assert parse_fault({"mode": "error"}) == Fault("error", rate=1.0)
    assert parse_fault({"mode": "fill_after_timeout"}).as_dict() == {"mode": "fill_after_timeout", "ms": 5000}
    assert parse_fault({"mode": "latency", "ms": 12.5}).as_dict() == {"mode": "latency", "ms": 12.5}


def test_control_client_raises_our_errors(brokers):
    """SimControl turns a refused fault into BadInput and an unreachable control port into a StackError."""
    with SimControl(brokers["primary"].control_url) as ctl, pytest.raises(BadInput):
        ctl.set_fault("sideways")
    with SimControl(f"http://127.0.0.1:{_free_port()}", timeout=0.3) as ctl, pytest.raises(StackError):
        ctl.health()


def test_reset_clears_orders_fills_tombstones_and_fault(provider, control, broker):
    """/_sim/reset forgets orders, fills, tombstones and the fault (re-opening a downed port)."""
    filled = provider.submit(_order())
    tombstoned = provider.cancel("ghost-1")
    assert tombstoned.status == "CANCELLED"
    control.set_fault("down")
    control.reset()
    assert control.health() == {"ok": True, "name": broker.name, "wire": broker.wire, "fault": {"mode": "none"}}
    assert control.fills() == []
    assert provider.status(filled.order_id) is None and provider.status("ghost-1") is None


# Load and process lifecycle --------------------------------------------------------------

def test_sustains_hundreds_of_orders_per_second_from_concurrent_clients(provider, control):
    """400 orders from 16 threads all fill, once each, at several hundred orders per second."""
    orders = [_order() for _ in range(400)]
    started = time.perf_counter()
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(provider.submit, orders))
    rate = len(orders) / (time.perf_counter() - started)
    assert all(a.status == "FILLED" for a in answers)
    assert len(control.fills()) == 400
    assert rate > 200, f"only {rate:.0f} orders/s"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_broker_cleanly_and_quietly(processes, tmp_path, signum):
    """SIGTERM/SIGINT: exit 0, both ports closed, nothing printed (and never the key)."""
    broker = start_broker("lifecycle", "beta", 9, tmp_path)
    try:
        wait_healthy(broker)
        with _adapter(broker) as adapter:
            assert adapter.submit(_order()).status == "FILLED"
        broker.proc.send_signal(signum)
        assert broker.proc.wait(5) == 0
        assert _refused(broker.order_port) and _refused(broker.control_port)
        assert broker.log.read_text() == ""
    finally:
        stop_broker(broker)


def test_busy_port_is_one_line_and_exit_1(processes, tmp_path):
    """A port already taken makes the broker exit 1 with one line on stderr, not a traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(sim_command(name="x", wire="alpha", host="127.0.0.1", order_port=port,
                                          control_port=_free_port(), seed=1),
                              cwd=REPO, capture_output=True, text=True, timeout=10)
    assert proc.returncode == 1 and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


# Adapter contract ------------------------------------------------------------------------

def test_make_provider_refuses_unknown_wire():
    """An unknown wire name is a ConfigError, not a late AttributeError."""
    with pytest.raises(ConfigError):
        make_provider("p", "gamma", "http://127.0.0.1:1", api_key=None, connect_timeout=1, read_timeout=1)


def test_broker_order_refuses_inconsistent_fields():
    """A non-positive quantity, a MARKET order with a limit price, or a LIMIT order without one is BadInput."""
    with pytest.raises(BadInput):
        BrokerOrder("o", "VOD.L", "BUY", 0, "MARKET", None, "a")
    with pytest.raises(BadInput):
        BrokerOrder("o", "VOD.L", "BUY", 1, "MARKET", Decimal("1"), "a")
    with pytest.raises(BadInput):
        BrokerOrder("o", "VOD.L", "BUY", 1, "LIMIT", None, "a")


@pytest.mark.parametrize(("status", "accepted", "kind"), [
    (503, False, NotAccepted), (503, None, OutcomeUnknown), (500, None, OutcomeUnknown),
    (502, True, OutcomeUnknown), (401, None, AuthFailed), (403, None, AuthFailed), (429, None, NotAccepted),
    (200, False, NotAccepted),
])
def test_refusals_are_classified_by_what_they_say_about_the_order(status, accepted, kind):
    """Only an explicit "not accepted" or a 4xx is safe to resend; any other 5xx leaves the outcome unknown."""
    error = _refusal("p", "o1", status, accepted=accepted, detail="x")
    assert type(error) is kind and (error.provider, error.order_id) == ("p", "o1")
