"""The fault proxy: its fault vocabulary, every fault over real HTTP between an adapter and a simulated broker,
and a proxy that loses its broker reporting that as its own fault, never as the broker's."""

from __future__ import annotations

import secrets
import socket
import time
from decimal import Decimal

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.brokers import API_KEY, broker_pair, start_proxy, stop_proxy
from tradeops.experiments.faultbackends import FaultStep, ProxyBackend, unreached_upstream
from tradeops.runtime.brokers.control import ProxyControl, SimControl
from tradeops.runtime.brokers.proxyfaults import (
    INJECTED,
    MARKER_HEADER,
    UPSTREAM_REFUSED,
    UPSTREAM_UNREACHABLE,
    ProxyFault,
    delay_seconds,
    pace_seconds,
    parse_proxy_fault,
    strikes,
)
from tradeops.runtime.orderpath.providers import (
    BrokerOrder,
    NotAccepted,
    NotConnected,
    NotReceived,
    OutcomeUnknown,
    Provider,
    make_provider,
)
from tradeops.runtime.platform.errors import BadInput, OperationFailed
from tradeops.runtime.platform.settings import Settings

READ_TIMEOUT = 0.5


# ---- the vocabulary (no I/O) ------------------------------------------------------------------

@pytest.mark.parametrize("payload, shown", [
    ({"mode": "none"}, {"mode": "none"}),
    ({"mode": "down"}, {"mode": "down"}),
    ({"mode": "blackhole"}, {"mode": "blackhole"}),
    ({"mode": "latency", "ms": 800}, {"mode": "latency", "ms": 800, "jitter_ms": 0}),
    ({"mode": "latency", "ms": 800, "jitter_ms": 100}, {"mode": "latency", "ms": 800, "jitter_ms": 100}),
    ({"mode": "answer_delay", "ms": 5000}, {"mode": "answer_delay", "ms": 5000}),
    ({"mode": "reset"}, {"mode": "reset", "rate": 1}),
    ({"mode": "reset", "rate": 0.3}, {"mode": "reset", "rate": 0.3}),
    ({"mode": "error"}, {"mode": "error", "rate": 1, "status": 503}),
    ({"mode": "error", "rate": 0.5, "status": 429}, {"mode": "error", "rate": 0.5, "status": 429}),
    ({"mode": "bandwidth", "bytes_per_second": 2000}, {"mode": "bandwidth", "bytes_per_second": 2000}),
])
def test_every_documented_fault_parses_with_its_defaults(payload, shown):
    """Each shape the module docstring lists is accepted, and shown with only the parameters its mode uses."""
    assert parse_proxy_fault(payload).as_dict() == shown


@pytest.mark.parametrize("payload, reason", [
    ([], "JSON object"), ({"mode": "sideways"}, "mode must be one of"), ({"mode": "down", "ms": 5}, "unexpected: ms"),
    ({"mode": "latency"}, "needs ms"), ({"mode": "latency", "ms": -1}, "ms"), ({"mode": "reset", "rate": 2}, "rate"),
    ({"mode": "error", "status": 200}, "400 to 599"), ({"mode": "error", "status": True}, "400 to 599"),
    ({"mode": "bandwidth"}, "needs bytes_per_second"), ({"mode": "bandwidth", "bytes_per_second": 0}, "bytes_per"),
    ({"mode": "latency", "ms": float("nan")}, "ms must be a number"),
])
def test_a_bad_fault_is_refused_with_a_reason(payload, reason):
    """A malformed fault is a ValueError naming what is wrong: a typo never runs a drill against a healthy path."""
    with pytest.raises(ValueError, match=reason):
        parse_proxy_fault(payload)


def test_an_http_error_answer_is_refused_on_a_tcp_proxy():
    """`error` answers HTTP: a proxy relaying a wire that is not HTTP refuses it, and takes every other mode."""
    with pytest.raises(ValueError, match="tcp wire"):
        parse_proxy_fault({"mode": "error"}, protocol="tcp")
    assert parse_proxy_fault({"mode": "reset", "rate": 0.5}, protocol="tcp").mode == "reset"


@given(ms=st.floats(0, 10_000), jitter=st.floats(0, 10_000), draw=st.floats(0, 1, exclude_max=True))
def test_latency_stays_within_its_jitter_and_never_below_zero(ms, jitter, draw):
    """A latency delay is ms ± jitter_ms, never negative; no other mode delays a request."""
    fault = ProxyFault("latency", ms=ms, jitter_ms=jitter)
    delay = delay_seconds(fault, draw)
    assert delay >= 0 and max(0.0, ms - jitter) / 1000 - 1e-9 <= delay <= (ms + jitter) / 1000 + 1e-9
    assert delay_seconds(ProxyFault("answer_delay", ms=ms), draw) == 0


def test_rates_and_pacing_are_what_they_say():
    """A rate strikes that share of draws; bandwidth paces bytes at its rate and nothing under another fault."""
    assert strikes(ProxyFault("reset", rate=0.3), 0.29) and not strikes(ProxyFault("reset", rate=0.3), 0.3)
    assert not strikes(ProxyFault("error", rate=0.0), 0.0)
    assert pace_seconds(2000, ProxyFault("bandwidth", bytes_per_second=1000)) == 2.0
    assert pace_seconds(2000, ProxyFault("latency", ms=5)) == 0
    assert pace_seconds(0, ProxyFault("bandwidth", bytes_per_second=1)) == 0


# ---- over real HTTP: adapter -> proxy -> simulated broker -------------------------------------

@pytest.fixture(scope="module")
def stack(processes, tmp_path_factory):
    """Both simulated brokers and a fault proxy in front of each, for this module's tests."""
    logs = tmp_path_factory.mktemp("proxy-logs")
    with broker_pair(logs) as brokers:
        proxies = {name: start_proxy(name, broker.url, logs, seed=seed)
                   for seed, (name, broker) in enumerate(brokers.items(), start=1)}
        try:
            yield {"brokers": brokers, "proxies": proxies, "logs": logs}
        finally:
            for proxy in proxies.values():
                stop_proxy(proxy)


@pytest.fixture(params=["primary", "secondary"])
def name(request, stack) -> str:
    """Each broker in turn, its simulator and its proxy reset to no fault."""
    with SimControl(stack["brokers"][request.param].control_url) as sim:
        sim.reset()
    with ProxyControl(stack["proxies"][request.param].control_url) as proxy:
        proxy.reset()
    return request.param


@pytest.fixture
def proxy(stack, name):
    with ProxyControl(stack["proxies"][name].control_url) as ctl:
        yield ctl


@pytest.fixture
def sim(stack, name):
    with SimControl(stack["brokers"][name].control_url) as ctl:
        yield ctl


def _adapter(stack, name: str, *, fault_proxy: bool = True, url: str | None = None) -> Provider:
    broker = stack["brokers"][name]
    return make_provider(name, broker.wire, url or stack["proxies"][name].url, api_key=API_KEY, connect_timeout=0.5,
                         read_timeout=READ_TIMEOUT, fault_proxy=fault_proxy)


@pytest.fixture
def adapter(stack, name):
    provider = _adapter(stack, name)
    yield provider
    provider.close()


def _order() -> BrokerOrder:
    return BrokerOrder(order_id=f"p-{secrets.token_hex(6)}", symbol="VOD.L", side="BUY", quantity=10,
                       order_type="MARKET", limit_price=None, account_ref="acct-7")


def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_orders_fill_through_the_proxy_on_kept_alive_connections(adapter, sim, proxy):
    """With no fault, orders, status queries and health pass through unchanged: each fills once at the broker."""
    orders = [_order() for _ in range(5)]
    for order in orders:
        assert adapter.submit(order).status == "FILLED"
        assert adapter.status(order.order_id).status == "FILLED"
    assert adapter.health() >= 0
    assert sorted(f["order_id"] for f in sim.fills()) == sorted(o.order_id for o in orders)
    assert proxy.health()["counters"] == {"requests": 11, "forwarded": 11}


def test_down_refuses_connections_and_none_reopens_the_same_port(stack, name, adapter, sim, proxy):
    """`down` closes the proxy's port (NotConnected: the order is safe elsewhere); the broker never hears of it."""
    adapter.health()  # a pooled connection that `down` must drop too
    assert proxy.set_fault("down") == {"mode": "down"}
    assert _refused(stack["proxies"][name].port)
    with pytest.raises(NotConnected):
        adapter.submit(_order())
    assert sim.fills() == [] and proxy.fault() == {"mode": "down"}
    proxy.set_fault("none")
    assert adapter.submit(_order()).status == "FILLED"


def test_blackhole_holds_requests_unanswered_and_never_forwards_them(adapter, sim, proxy):
    """`blackhole` reads a request and never answers: OutcomeUnknown at the read timeout, nothing at the broker."""
    proxy.set_fault("blackhole")
    started = time.perf_counter()
    with pytest.raises(OutcomeUnknown):
        adapter.submit(_order())
    assert READ_TIMEOUT <= time.perf_counter() - started < READ_TIMEOUT + 1
    assert sim.fills() == [] and proxy.health()["counters"]["blackholed"] == 1
    proxy.set_fault("none")
    assert adapter.submit(_order()).status == "FILLED"


def test_latency_with_jitter_delays_each_request_within_its_bounds(adapter, proxy):
    """`latency` ms 150 ± 50: every request takes 100 to 200 ms more, spread over that range, and still fills."""
    proxy.set_fault("latency", ms=150, jitter_ms=50)
    took = []
    for _ in range(8):
        started = time.perf_counter()
        adapter.health()
        took.append(time.perf_counter() - started)
    assert min(took) >= 0.1 and max(took) < 0.2 + 0.15
    assert max(took) - min(took) > 0.01  # jittered, not one fixed delay
    assert adapter.submit(_order()).status == "FILLED"


def test_a_reset_after_forwarding_is_outcome_unknown_though_the_broker_filled(adapter, sim, proxy):
    """`reset` rate 1 forwards the request and, once the broker answered, resets the caller's connection: the
    outcome is unknown to the caller, the fill real."""
    proxy.set_fault("reset")
    order = _order()
    with pytest.raises(OutcomeUnknown):
        adapter.submit(order)
    proxy.set_fault("none")
    assert [f["order_id"] for f in sim.fills()] == [order.order_id]
    assert adapter.status(order.order_id).status == "FILLED"
    assert proxy.health()["counters"]["resets"] == 1


def test_answer_delay_lets_the_broker_act_and_the_caller_hear_late(adapter, sim, proxy):
    """`answer_delay` (the proxy's fill_after_timeout): forwarded at once, the answer held past the read timeout."""
    proxy.set_fault("answer_delay", ms=READ_TIMEOUT * 1000 + 300)
    order = _order()
    with pytest.raises(OutcomeUnknown):
        adapter.submit(order)
    assert [f["order_id"] for f in sim.fills()] == [order.order_id]


def test_error_answers_come_from_the_proxy_marked_and_at_their_rate(stack, name, adapter, sim, proxy):
    """`error` answers its status itself, marked injected, never forwarding; at rate 0.5 about half the requests."""
    proxy.set_fault("error", status=503)
    with pytest.raises((OutcomeUnknown, NotAccepted)):
        adapter.submit(_order())
    raw = httpx.get(f"{stack['proxies'][name].url}/anything", timeout=2)
    assert raw.status_code == 503 and raw.headers[MARKER_HEADER] == INJECTED
    assert sim.fills() == []
    proxy.set_fault("error", rate=0.5)
    failed = 0
    for _ in range(60):
        try:
            adapter.health()
        except (OutcomeUnknown, NotAccepted):
            failed += 1
    assert 10 < failed < 50


def test_bandwidth_paces_every_byte(stack, name, proxy):
    """`bandwidth` 4000 B/s: a request of 3 kB and its answer take at least 0.75 s."""
    proxy.set_fault("bandwidth", bytes_per_second=4000)
    started = time.perf_counter()
    httpx.post(f"{stack['proxies'][name].url}/v1/orders", content=b"x" * 3000, timeout=10)
    assert time.perf_counter() - started >= 0.75


def test_bad_fault_is_400_and_leaves_the_fault_as_it_was(proxy):
    """A refused fault is BadInput with the proxy's reason, and the fault in force stays."""
    proxy.set_fault("latency", ms=10)
    with pytest.raises(BadInput, match="fault unchanged"):
        proxy.set_fault("error", rate=3)
    assert proxy.fault() == {"mode": "latency", "ms": 10, "jitter_ms": 0}


# ---- a proxy that loses its broker ---------------------------------------------------------------

def test_a_broker_that_refuses_the_proxy_is_reported_down_not_as_an_answer(stack, name, adapter, sim, proxy):
    """Broker down behind the proxy: NotConnected naming the proxy's connection, an upstream-refused answer, and
    the proxy's health recording the stretch it could not reach the broker; also on a kept-alive connection the
    broker dropped going down."""
    adapter.health()  # the proxy now holds a kept-alive connection to the broker, which `down` resets
    sim.set_fault("down")
    try:
        with pytest.raises(NotConnected, match="refused the fault proxy's connection"):
            adapter.submit(_order())
        raw = httpx.get(f"{stack['proxies'][name].url}/anything", timeout=2)
        assert raw.status_code == 502 and raw.headers[MARKER_HEADER] == UPSTREAM_REFUSED
        health = proxy.health()
        assert not health["upstream_state"]["reachable"]
        assert health["upstream_lost"][-1]["state"] == UPSTREAM_REFUSED and health["upstream_lost"][-1]["until"] is None
    finally:
        sim.set_fault("none")
    assert adapter.submit(_order()).status == "FILLED"
    assert proxy.health()["upstream_lost"][-1]["until"] is not None


def test_a_proxy_that_cannot_reach_its_broker_says_it_is_its_own_path(processes, stack, tmp_path):
    """An upstream that cannot be reached (a name, a route, a timeout): NotReceived naming the proxy's path, never
    NotConnected (the broker's down); the proxy backend refuses to start a drill on it and reports the stretch."""
    # .invalid never resolves (RFC 2606): the proxy's own path is broken, no broker ever refused anything.
    lost = start_proxy("primary", "http://broker.invalid:9", tmp_path, connect_timeout=0.3)
    try:
        with make_provider("primary", "alpha", lost.url, api_key=API_KEY, connect_timeout=0.5, read_timeout=2,
                           fault_proxy=True) as provider:
            with pytest.raises(NotReceived, match="cannot reach it") as caught:
                provider.submit(_order())
            assert not isinstance(caught.value, NotConnected)
        raw = httpx.get(f"{lost.url}/anything", timeout=5)
        assert raw.status_code == 502 and raw.headers[MARKER_HEADER] == UPSTREAM_UNREACHABLE
        settings = Settings(primary_proxy_url=lost.control_url,
                            secondary_proxy_url=stack["proxies"]["secondary"].control_url)
        backend = ProxyBackend(settings)
        with pytest.raises(OperationFailed, match="a fault of the proxy's path, not the broker's"):
            backend.preflight([FaultStep("primary", "blackhole")])
        [line] = unreached_upstream(backend.observe(since="2000-01-01T00:00:00Z"))
        assert line.startswith("the fault proxy in front of primary could not reach it")
        assert "not the broker's" in line
    finally:
        stop_proxy(lost)


def test_an_adapter_not_told_of_a_proxy_reads_such_an_answer_as_the_brokers(stack, name, sim):
    """Without fault_proxy, a 502 carrying the proxy's header is the broker's answer (outcome unknown): a broker
    cannot claim it never saw an order by answering like a proxy."""
    sim.set_fault("down")
    try:
        with _adapter(stack, name, fault_proxy=False) as plain, pytest.raises(OutcomeUnknown):
            plain.submit(_order())
    finally:
        sim.set_fault("none")


def test_the_proxy_backend_maps_the_experiments_modes_onto_the_proxy(stack, name, sim):
    """ProxyBackend.inject shows the experiment's fill_after_timeout as the proxy's answer_delay and clear heals."""
    settings = Settings(primary_proxy_url=stack["proxies"]["primary"].control_url,
                        secondary_proxy_url=stack["proxies"]["secondary"].control_url)
    backend = ProxyBackend(settings)
    shown = backend.inject(FaultStep(name, "fill_after_timeout", {"ms": 700.0}))
    assert shown == {"backend": "proxy", "provider": name, "fault": {"mode": "answer_delay", "ms": 700}}
    assert backend.clear(name)["fault"] == {"mode": "none"}
    assert backend.preflight([])["proxies"][name]["upstream"] == stack["brokers"][name].url


# ---- a wire that is not HTTP -------------------------------------------------------------------

def test_a_tcp_proxy_relays_bytes_and_resets_or_blackholes_connections(stack, tmp_path):
    """protocol tcp relays the bytes both ways (an order fills); `reset` resets the caller's connection once the
    broker answered; `blackhole` swallows the bytes; `down` refuses."""
    broker = stack["brokers"]["primary"]
    tcp = start_proxy("primary", broker.url, tmp_path, protocol="tcp")
    try:
        with ProxyControl(tcp.control_url) as ctl, SimControl(broker.control_url) as sim:
            sim.reset()
            with _adapter(stack, "primary", url=tcp.url) as provider:
                assert provider.submit(_order()).status == "FILLED"
            ctl.set_fault("reset")
            with _adapter(stack, "primary", url=tcp.url) as provider, pytest.raises(OutcomeUnknown):
                provider.submit(_order())
            ctl.set_fault("blackhole")
            with _adapter(stack, "primary", url=tcp.url) as provider, pytest.raises(OutcomeUnknown):
                provider.submit(_order())
            ctl.set_fault("down")
            with _adapter(stack, "primary", url=tcp.url) as provider, pytest.raises(NotReceived):
                provider.submit(_order())
            assert len(sim.fills()) == 2  # the relayed order and the one reset after it reached the broker
            assert Decimal(sim.fills()[0]["price"]) > 0
    finally:
        stop_proxy(tcp)


# ---- reconciling by the brokers' own answers (a platform whose brokers keep no ledger we can read) -----------

def test_fills_by_status_asks_each_broker_and_leaves_unanswered_orders_unchecked(stack):
    """fills_by_status asks both brokers about every order: a fill where the broker has one, nothing where it
    does not, and an order a broker gave no answer about (its path blackholed) is unchecked, never assumed."""
    from tradeops.runtime.orderpath.fills import fills_by_status
    from tradeops.runtime.platform.aws import Aws

    brokers, proxies = stack["brokers"], stack["proxies"]
    for name in ("primary", "secondary"):
        with SimControl(brokers[name].control_url) as sim:
            sim.reset()
        with ProxyControl(proxies[name].control_url) as ctl:
            ctl.reset()
    settings = Settings(primary_url=proxies["primary"].url, secondary_url=proxies["secondary"].url,
                        primary_api_key=API_KEY, secondary_api_key=API_KEY, fault_proxy=True,
                        broker_read_timeout=0.5)
    placed = {name: _order() for name in ("primary", "secondary")}
    for name, order in placed.items():
        with _adapter(stack, name) as provider:
            assert provider.submit(order).status == "FILLED"
    never = _order().order_id
    ids = [*(o.order_id for o in placed.values()), never]
    fills, unchecked = fills_by_status(settings, Aws(settings), ids)
    assert {p: [f["order_id"] for f in fills[p]] for p in fills} == {
        "primary": [placed["primary"].order_id], "secondary": [placed["secondary"].order_id]}
    assert unchecked == []
    with ProxyControl(proxies["secondary"].control_url) as ctl:
        ctl.set_fault("blackhole")
        try:
            fills, unchecked = fills_by_status(settings, Aws(settings), ids)
        finally:
            ctl.set_fault("none")
    assert unchecked == sorted(ids) and fills["secondary"] == []
