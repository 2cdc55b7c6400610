"""The intake API, served by uvicorn on a free port against the moto stack (no mocks of our code)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import httpx
import pytest

from tests.support.intake import AUTH, TOKEN, LiveServer, Probe
from tradeops.runtime.orderpath.intake import MAX_BODY_BYTES, create_app
from tradeops.runtime.orderpath.orders import order_json
from tradeops.runtime.platform.aws import Aws
from tradeops.runtime.platform.settings import Settings
from tradeops.runtime.stack.supervisor import free_port

REPO = Path(__file__).resolve().parent.parent
# --------------------------------------------------------------------------- servers and probes

@pytest.fixture(scope="module")
def probe(aws_settings: Settings) -> Iterator[Probe]:
    p = Probe(aws_settings)
    yield p
    p.cleanup()


@pytest.fixture(scope="module")
def live(aws_settings: Settings) -> Iterator[LiveServer]:
    with LiveServer(create_app(aws_settings, token=TOKEN)) as server:
        yield server


@pytest.fixture
def client(live: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.url, timeout=10) as c:
        yield c


def new_id(probe: Probe) -> str:
    order_id = f"t-{uuid.uuid4().hex[:16]}"
    probe.created.append(order_id)
    return order_id


def order_body(order_id: str | None, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"order_id": order_id, "account_id": "acc-1", "symbol": "VOD.L", "side": "BUY",
                            "quantity": 100, "quote_price": "101.25"}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


class _UnreachableAws(Aws):
    """Real boto3 clients aimed at a closed port, one attempt each: AWS that is down, quickly."""

    def __init__(self, settings: Settings, *, services: tuple[str, ...]) -> None:
        super().__init__(settings)
        self.services = services
        self.dead = f"http://127.0.0.1:{free_port()}"

    def client(self, service: str) -> Any:
        if service not in self.services:
            return super().client(service)
        return boto3.session.Session().client(
            service, endpoint_url=self.dead, region_name=self.settings.region,
            aws_access_key_id="testing", aws_secret_access_key="testing",
            config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1),
        )


# --------------------------------------------------------------------------- accepting orders

def test_valid_order_is_accepted_recorded_and_enqueued_once(client: httpx.Client, probe: Probe) -> None:
    """A valid order answers 202, is stored ACCEPTED with a history entry, and puts one message on the queue."""
    order_id = new_id(probe)
    items, depth = probe.snapshot()
    response = client.post("/orders", json=order_body(order_id), headers=AUTH)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["order_id"] == order_id and body["status"] == "ACCEPTED"
    assert body["quote_price"] == "101.25" and body["quantity"] == 100
    assert response.headers["location"] == f"/orders/{order_id}"
    assert probe.snapshot() == (items + 1, depth + 1)
    stored = probe.store.get(order_id)
    assert stored is not None and stored["status"] == "ACCEPTED" and stored["version"] == 1
    assert [(h["status"], h["actor"]) for h in stored["history"]] == [("ACCEPTED", "intake")]
    assert probe.take_messages(order_id) == [{"order_id": order_id}]


def test_order_without_id_gets_a_generated_one(client: httpx.Client, probe: Probe) -> None:
    """An order without order_id is given one, which the answer reports and GET finds."""
    response = client.post("/orders", json=order_body(None), headers=AUTH)
    assert response.status_code == 202
    order_id = response.json()["order_id"]
    probe.created.append(order_id)
    assert order_id.startswith("ord-")
    assert client.get(f"/orders/{order_id}", headers=AUTH).json()["order_id"] == order_id


def test_limit_order_keeps_its_price_as_a_string(client: httpx.Client, probe: Probe) -> None:
    """A LIMIT order's prices come back exactly, as decimal strings, never floats."""
    order_id = new_id(probe)
    response = client.post("/orders", headers={**AUTH, "Content-Type": "application/json"},
                           content=json.dumps(order_body(order_id, order_type="LIMIT", quote_price=99.1))
                           [:-1] + ', "limit_price": 100.10}')
    assert response.status_code == 202, response.text
    assert response.json()["limit_price"] == "100.1" and response.json()["quote_price"] == "99.1"
    got = client.get(f"/orders/{order_id}", headers=AUTH).json()
    assert got["limit_price"] == "100.1" and got["quote_price"] == "99.1"


def test_duplicate_order_id_returns_the_stored_order_without_a_second_message(
        client: httpx.Client, probe: Probe) -> None:
    """Resubmitting the same order (prices compared by value: 101.250 is 101.25) answers 200 with the
    stored order and enqueues nothing more."""
    order_id = new_id(probe)
    first = client.post("/orders", json=order_body(order_id), headers=AUTH)
    assert first.status_code == 202
    items, depth = probe.snapshot()
    again = client.post("/orders", json=order_body(order_id, quote_price="101.250"), headers=AUTH)
    assert again.status_code == 200
    assert again.json() == first.json()
    assert probe.snapshot() == (items, depth)
    assert probe.take_messages(order_id) == [{"order_id": order_id}]


@pytest.mark.parametrize(("changes", "fields"), [
    ({"quantity": 5}, ["quantity"]),
    ({"account_id": "acc-2", "side": "SELL"}, ["account_id", "side"]),
    ({"symbol": "BARC.L", "quote_price": "99"}, ["symbol", "quote_price"]),
    ({"order_type": "LIMIT", "limit_price": "101"}, ["order_type", "limit_price"]),
])
def test_a_reused_order_id_with_a_different_payload_is_409_naming_the_fields(
        client: httpx.Client, probe: Probe, changes: dict[str, Any], fields: list[str]) -> None:
    """The same order_id with another account, symbol, side, quantity, type or price answers 409 naming
    each differing field; the stored order and the queue are untouched."""
    order_id = new_id(probe)
    first = client.post("/orders", json=order_body(order_id), headers=AUTH)
    assert first.status_code == 202
    items, depth = probe.snapshot()
    clash = client.post("/orders", json=order_body(order_id, **changes), headers=AUTH)
    assert clash.status_code == 409, clash.text
    assert [f["field"] for f in clash.json()["fields"]] == fields
    assert order_id in clash.json()["error"] and all(f in clash.json()["error"] for f in fields)
    assert probe.snapshot() == (items, depth)
    assert client.get(f"/orders/{order_id}", headers=AUTH).json() == first.json()
    assert probe.take_messages(order_id) == [{"order_id": order_id}]


# --------------------------------------------------------------------------- rejected input

def _reasons(response: httpx.Response) -> dict[str, str]:
    return {f["field"]: f["reason"] for f in response.json()["fields"]}


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"account_id": ...}, "account_id", "required"),
    ({"quantity": 0}, "quantity", "greater than 0"),
    ({"quantity": -3}, "quantity", "greater than 0"),
    ({"quantity": 1.5}, "quantity", "integer"),
    ({"quantity": True}, "quantity", "not true/false"),
    ({"side": "HOLD"}, "side", "'BUY' or 'SELL'"),
    ({"order_type": "LIMIT"}, "limit_price", "required for a LIMIT order"),
    ({"limit_price": "100"}, "limit_price", "only allowed on a LIMIT order"),
    ({"quote_price": "-1"}, "quote_price", "greater than 0"),
    ({"placed_at": "2024-05-01T10:00:00"}, "placed_at", "timezone"),
    ({"colour": "red"}, "colour", "not permitted"),
])
def test_invalid_order_is_422_with_the_failing_field_and_nothing_written(
        client: httpx.Client, probe: Probe, changes: dict[str, Any], field: str, words: str) -> None:
    """Each rule broken answers 422 naming the field with a readable reason; nothing is stored or queued."""
    order_id = new_id(probe)
    before = probe.snapshot()
    response = client.post("/orders", json=order_body(order_id, **changes), headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid order"
    reasons = _reasons(response)
    assert list(reasons) == [field]
    assert words in reasons[field]
    assert probe.snapshot() == before
    assert probe.store.get(order_id) is None


@pytest.mark.parametrize(("fragment", "field"), [
    ('"quantity": 1e-999999999', "quantity"),
    ('"quantity": 1' + "0" * 200, "quantity"),
    ('"quote_price": 1e999999999', "quote_price"),
    ('"quote_price": "1e-999999999"', "quote_price"),
    ('"quote_price": "1234567890123"', "quote_price"),
    ('"placed_at": "0001-01-01T00:00:00+14:00"', "placed_at"),
    ('"synthetic": "yes"', "synthetic"),
])
def test_extreme_values_are_422_at_once_and_nothing_written(
        client: httpx.Client, probe: Probe, fragment: str, field: str) -> None:
    """Absurd numbers and dates answer 422 for their field at once (no stall, no 500) and write nothing."""
    before = probe.snapshot()
    body = order_body(new_id(probe))
    body.pop(fragment.split('"')[1], None)  # the fragment carries that key (a repeated key is a 400 of its own)
    raw = json.dumps(body)[:-1] + ", " + fragment + "}"
    started = time.monotonic()
    response = client.post("/orders", content=raw, headers=AUTH, timeout=5)
    assert time.monotonic() - started < 2
    assert response.status_code == 422, response.text
    assert list(_reasons(response)) == [field]
    assert probe.snapshot() == before


def test_several_failing_fields_get_one_entry_each(client: httpx.Client, probe: Probe) -> None:
    """Every failing field is reported once, so a caller can fix them all in one go."""
    response = client.post("/orders", json={"side": "HOLD", "quantity": 0, "symbol": "VOD.L"}, headers=AUTH)
    assert response.status_code == 422
    fields = [f["field"] for f in response.json()["fields"]]
    assert sorted(fields) == ["account_id", "quantity", "quote_price", "side"]


@pytest.mark.parametrize(("content", "headers"), [
    (b"not json", {}),
    (b'{"account_id": ', {}),
    (b'[{"account_id": "a"}]', {}),
    (b'"an order"', {}),
    (b'{"quote_price": NaN}', {}),
    (b"\xff\xfe\xfa", {}),
    (b"", {}),
])
def test_body_that_is_not_a_json_object_is_400_and_nothing_written(
        client: httpx.Client, probe: Probe, content: bytes, headers: dict[str, str]) -> None:
    """Not JSON, or JSON that is not an object, answers 400 with a reason; nothing is stored or queued."""
    before = probe.snapshot()
    response = client.post("/orders", content=content, headers={**AUTH, **headers})
    assert response.status_code == 400, response.text
    assert "error" in response.json() and "fields" not in response.json()
    assert probe.snapshot() == before


def test_body_over_16_kib_is_413_by_header(client: httpx.Client, probe: Probe) -> None:
    """A body over 16 KiB answers 413 (Content-Length says so); nothing is stored or queued."""
    order_id = new_id(probe)
    before = probe.snapshot()
    body = json.dumps(order_body(order_id, account_id="a" * (MAX_BODY_BYTES + 1)))
    response = client.post("/orders", content=body, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert "16384" in response.json()["error"]
    assert probe.snapshot() == before


def test_body_over_16_kib_without_length_is_413_by_bytes_read(client: httpx.Client, probe: Probe) -> None:
    """A chunked body (no Content-Length) is counted as it arrives and refused past 16 KiB."""
    before = probe.snapshot()
    body = json.dumps(order_body(new_id(probe), account_id="a" * MAX_BODY_BYTES)).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    response = client.post("/orders", content=chunks(), headers=AUTH)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert probe.snapshot() == before


def test_body_of_exactly_16_kib_is_read(client: httpx.Client, probe: Probe) -> None:
    """The limit is inclusive: a 16 KiB body is parsed (here: 422 for its over-long account_id)."""
    body = json.dumps(order_body(new_id(probe), account_id="x"))
    body = body[:-1] + " " * (MAX_BODY_BYTES - len(body)) + "}"
    assert len(body) == MAX_BODY_BYTES
    response = client.post("/orders", content=body, headers=AUTH)
    assert response.status_code == 202


# --------------------------------------------------------------------------- authentication

@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-token"},
    {"Authorization": f"Bearer {TOKEN}x"},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": TOKEN},
])
def test_missing_or_wrong_token_is_401_and_nothing_written(
        client: httpx.Client, probe: Probe, headers: dict[str, str]) -> None:
    """Without the right bearer token POST answers 401 with WWW-Authenticate and writes nothing."""
    order_id = new_id(probe)
    before = probe.snapshot()
    response = client.post("/orders", json=order_body(order_id), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]
    assert probe.snapshot() == before
    assert probe.store.get(order_id) is None


def test_token_is_checked_before_size_and_content(client: httpx.Client, probe: Probe) -> None:
    """An unauthenticated caller learns nothing about its body: oversized or garbage both answer 401."""
    assert client.post("/orders", content=b"x" * (MAX_BODY_BYTES + 10)).status_code == 401
    assert client.post("/orders", content=b"not json").status_code == 401


def test_get_needs_the_token(client: httpx.Client, probe: Probe) -> None:
    """GET /orders/{id} answers 401 without the token, even for an order that exists."""
    order_id = new_id(probe)
    assert client.post("/orders", json=order_body(order_id), headers=AUTH).status_code == 202
    response = client.get(f"/orders/{order_id}")
    assert response.status_code == 401
    assert "order_id" not in response.text


# --------------------------------------------------------------------------- reading orders

def test_get_shows_state_provider_fill_price_and_history(client: httpx.Client, probe: Probe) -> None:
    """GET returns the order as it moves on: status, provider, fill price (a string) and every transition."""
    order_id = new_id(probe)
    assert client.post("/orders", json=order_body(order_id), headers=AUTH).status_code == 202
    order = probe.store.require(order_id)
    order = probe.store.transition(order, "SUBMITTING", actor="worker-1", set_fields={"provider": "primary"})
    probe.store.transition(order, "FILLED", actor="worker-1", set_fields={"fill_price": Decimal("101.30")})
    got = client.get(f"/orders/{order_id}", headers=AUTH)
    assert got.status_code == 200
    body = got.json()
    assert body["status"] == "FILLED" and body["provider"] == "primary" and body["fill_price"] == "101.3"
    assert [(h["status"], h["actor"]) for h in body["history"]] == [
        ("ACCEPTED", "intake"), ("SUBMITTING", "worker-1"), ("FILLED", "worker-1")]
    assert body["history"][1]["provider"] == "primary"


@pytest.mark.parametrize("order_id", ["no-such-order", "x" * 65, "bad id", "%00"])
def test_get_unknown_order_is_404(client: httpx.Client, order_id: str) -> None:
    """An order id that is not stored (or could never be) answers 404 with a reason."""
    response = client.get(f"/orders/{order_id}", headers=AUTH)
    assert response.status_code == 404
    assert "no order" in response.json()["error"]


def test_order_json_writes_money_as_strings() -> None:
    """The shared serialiser turns every Decimal into a plain decimal string, nested ones too."""
    got = order_json({"quote_price": Decimal("1E+2"), "quantity": 3, "fill_price": Decimal("101.250"),
                      "history": [{"price": Decimal("0.10")}], "synthetic": False})
    assert got == {"quote_price": "100", "quantity": 3, "fill_price": "101.25",
                   "history": [{"price": "0.1"}], "synthetic": False}
    assert json.loads(json.dumps(got)) == got


# --------------------------------------------------------------------------- health and documentation

def test_health_needs_no_token_and_checks_the_table(client: httpx.Client) -> None:
    """GET /health answers {"ok": true} without a token when the orders table is reachable, with the AWS
    requests this process has sent by service and operation (load runs read them per order)."""
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and set(body) == {"ok", "aws_requests"}
    assert body["aws_requests"].get("dynamodb.GetItem", 0) >= 1
    assert all(isinstance(n, int) and n > 0 for n in body["aws_requests"].values())


def test_openapi_declares_bearer_auth_and_the_4xx_answers(client: httpx.Client) -> None:
    """The OpenAPI document tells clients to send a bearer token and lists every 4xx POST can answer."""
    doc = client.get("/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert any(s["type"] == "http" and s["scheme"] == "bearer" for s in schemes.values())
    post = doc["paths"]["/orders"]["post"]
    assert post["security"] and "security" not in doc["paths"]["/health"]["get"]
    assert {"200", "202", "400", "401", "413", "422", "503"} <= set(post["responses"])
    body_schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert set(body_schema["required"]) >= {"account_id", "symbol", "side", "quantity", "quote_price"}
    assert {"401", "404"} <= set(doc["paths"]["/orders/{order_id}"]["get"]["responses"])


# --------------------------------------------------------------------------- AWS trouble

def test_enqueue_failure_withdraws_the_order_and_answers_503(aws_settings: Settings, probe: Probe) -> None:
    """When SQS is down after the write, the order is deleted again and the caller gets a one-line 503."""
    order_id = new_id(probe)
    aws = _UnreachableAws(aws_settings, services=("sqs",))
    items, depth = probe.snapshot()
    with LiveServer(create_app(aws_settings, token=TOKEN, aws=aws)) as server:
        response = httpx.post(f"{server.url}/orders", json=order_body(order_id), headers=AUTH, timeout=10)
    assert response.status_code == 503
    error = response.json()["error"]
    assert "not queued" in error  # the write had succeeded: this is the undo path, not a failed write
    assert "\n" not in error and "Traceback" not in response.text
    assert probe.store.get(order_id) is None
    assert probe.snapshot() == (items, depth)


def test_retry_after_a_failed_enqueue_is_accepted(aws_settings: Settings, client: httpx.Client,
                                                  probe: Probe) -> None:
    """After a 503 the same order_id can be resubmitted and is accepted and enqueued normally."""
    order_id = new_id(probe)
    aws = _UnreachableAws(aws_settings, services=("sqs",))
    with LiveServer(create_app(aws_settings, token=TOKEN, aws=aws)) as server:
        assert httpx.post(f"{server.url}/orders", json=order_body(order_id), headers=AUTH,
                          timeout=10).status_code == 503
    response = client.post("/orders", json=order_body(order_id), headers=AUTH)
    assert response.status_code == 202
    assert probe.take_messages(order_id) == [{"order_id": order_id}]


def test_withdraw_leaves_an_order_a_worker_already_took(probe: Probe, client: httpx.Client) -> None:
    """The undo of a failed enqueue never deletes an order that has moved past ACCEPTED/version 1."""
    order_id = new_id(probe)
    assert client.post("/orders", json=order_body(order_id), headers=AUTH).status_code == 202
    order = probe.store.require(order_id)
    probe.store.transition(order, "SUBMITTING", actor="worker-1", set_fields={"provider": "primary"})
    assert probe.store.withdraw_unsent(order_id) is False
    assert probe.store.require(order_id)["status"] == "SUBMITTING"


def test_aws_unreachable_is_503_with_one_line(aws_settings: Settings, probe: Probe) -> None:
    """With AWS down, POST, GET and /health answer 503 with a one-line reason, never a traceback."""
    aws = _UnreachableAws(aws_settings, services=("sqs", "dynamodb"))
    with LiveServer(create_app(aws_settings, token=TOKEN, aws=aws)) as server, \
            httpx.Client(base_url=server.url, timeout=10) as c:
        answers = [c.post("/orders", json=order_body(new_id(probe)), headers=AUTH),
                   c.get("/orders/some-order", headers=AUTH), c.get("/health")]
    for response in answers:
        assert response.status_code == 503, response.text
        assert "\n" not in response.json()["error"] and "Traceback" not in response.text
    assert answers[2].json()["ok"] is False


# --------------------------------------------------------------------------- the process

def _process_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADEOPS_", "AWS_ENDPOINT_URL"))}
    env.update({"TRADEOPS_AWS_ENDPOINT_URL": settings.aws_endpoint_url or "", "TRADEOPS_REGION": settings.region,
                "TRADEOPS_NAME_PREFIX": settings.name_prefix, "TRADEOPS_PARAM_PREFIX": settings.param_prefix,
                "TRADEOPS_STATE_DIR": str(settings.state_dir), "PYTHONPATH": str(REPO)})
    env.update(extra)
    return env


def test_process_refuses_to_start_without_a_token(aws_settings: Settings, tmp_path: Path) -> None:
    """`python -m tradeops.runtime.orderpath.intake` without TRADEOPS_INTAKE_TOKEN exits 2 with a one-line reason."""
    done = subprocess.run([sys.executable, "-m", "tradeops.runtime.orderpath.intake", "--port", str(free_port())],
                          env=_process_env(aws_settings), cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "TRADEOPS_INTAKE_TOKEN" in done.stderr


def test_process_serves_quietly_and_exits_cleanly_on_sigterm(aws_settings: Settings, tmp_path: Path,
                                                              probe: Probe) -> None:
    """The process serves orders with no per-request log lines (health probes, reads: none; an accepted order: its
    one JSON line naming it, issue 13) and exits 0 on SIGTERM."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tradeops.runtime.orderpath.intake", "--host", "127.0.0.1",
                             "--port", str(port)],
                            env=_process_env(aws_settings, TRADEOPS_INTAKE_TOKEN=TOKEN), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "intake process did not come up"
            time.sleep(0.05)
        order_id = new_id(probe)
        assert httpx.post(f"{url}/orders", json=order_body(order_id), headers=AUTH, timeout=10).status_code == 202
        assert httpx.get(f"{url}/orders/{order_id}", headers=AUTH, timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0
    assert out == ""
    lines = [json.loads(line) for line in err.splitlines()]
    assert [(line["component"], line["message"], line["order_id"]) for line in lines] == [
        ("intake", "order accepted", order_id)]


# --------------------------------------------------------------------------- ambiguity refused

@pytest.mark.parametrize(("raw", "key"), [
    ('{"quantity": 10, "quantity": 9999}', "quantity"),
    ('{"placed_at": null, "placed_at": null}', "placed_at"),
])
def test_a_duplicate_key_is_400_naming_it_and_nothing_written(client: httpx.Client, probe: Probe, raw: str,
                                                              key: str) -> None:
    """A body with a key twice answers 400 naming the key (whatever the later one says); nothing is stored."""
    body = order_body(new_id(probe))
    body.pop(key, None)
    before = probe.snapshot()
    response = client.post("/orders", content=json.dumps(body)[:-1] + ", " + raw[1:], headers=AUTH)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == f"duplicate key {key!r} in the body: each key may appear once"
    assert probe.snapshot() == before


@pytest.mark.parametrize("quantity", ["10", 10.0, "1e1"])
def test_a_quantity_that_is_not_a_json_integer_is_refused(client: httpx.Client, probe: Probe, quantity: Any) -> None:
    """A share count is a JSON integer: "10", 10.0 and "1e1" answer 422 for quantity and write nothing."""
    before = probe.snapshot()
    response = client.post("/orders", json=order_body(new_id(probe), quantity=quantity), headers=AUTH)
    assert response.status_code == 422, response.text
    assert "JSON integer" in _reasons(response)["quantity"]
    assert probe.snapshot() == before


def test_prices_may_be_strings_or_numbers(client: httpx.Client, probe: Probe) -> None:
    """As documented, a price is a JSON string or number and is kept exactly as sent."""
    response = client.post("/orders", json=order_body(new_id(probe), quote_price=101.25), headers=AUTH)
    assert response.status_code == 202, response.text
    assert response.json()["quote_price"] == "101.25"


# --------------------------------------------------------------------------- slow clients are cut off

@pytest.fixture(scope="module")
def strict(aws_settings: Settings) -> Iterator[LiveServer]:
    """The intake as its process configures it, with timeouts short enough for a test."""
    settings = aws_settings.model_copy(update={"intake_header_timeout": 0.5, "intake_body_timeout": 0.5,
                                               "intake_idle_timeout": 1})
    with LiveServer(create_app(settings, token=TOKEN), settings) as server:
        yield server


def _closed_within(sock: Any, seconds: float) -> tuple[bool, bytes]:
    """Whether the server closes the connection within ``seconds``, and what it sent before."""
    sock.settimeout(seconds)
    got = b""
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return True, got
            got += chunk
    except TimeoutError:
        return False, got


def test_a_request_head_that_never_completes_is_cut_off(strict: LiveServer) -> None:
    """A client that opens a connection and sends half a request head is disconnected after the header timeout."""
    with socket.create_connection(("127.0.0.1", strict.port)) as sock:
        sock.sendall(b"POST /orders HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        closed, _ = _closed_within(sock, 5)
        assert closed and 0.3 < time.monotonic() - started < 3
    with socket.create_connection(("127.0.0.1", strict.port)) as idle:  # sends nothing at all
        assert _closed_within(idle, 5)[0]


def test_a_body_that_never_completes_is_408(strict: LiveServer) -> None:
    """A body slower than the body timeout answers 408 and the connection closes."""
    with socket.create_connection(("127.0.0.1", strict.port)) as sock:
        sock.sendall(b"POST /orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode() +
                     b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"acc")
        closed, answer = _closed_within(sock, 5)
    assert closed and answer.startswith(b"HTTP/1.1 408")


def test_an_idle_keep_alive_connection_is_closed(strict: LiveServer) -> None:
    """After a response, a connection that stays idle is closed after the idle timeout."""
    with socket.create_connection(("127.0.0.1", strict.port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        closed, answer = _closed_within(sock, 5)
        assert answer.startswith(b"HTTP/1.1 200") and closed and time.monotonic() - started < 3


# --------------------------------------------------------------------------- the tradable universe

def test_order_for_a_symbol_outside_the_universe_is_400_naming_it_and_nothing_written(
        client: httpx.Client, probe: Probe) -> None:
    """A symbol the feed does not price answers 400 naming it (field `symbol`); nothing is recorded or queued."""
    before = probe.snapshot()
    response = client.post("/orders", json=order_body(new_id(probe), symbol="NOPE.L"), headers=AUTH)
    assert response.status_code == 400, response.text
    body = response.json()
    assert "unknown symbol 'NOPE.L'" in body["error"] and "tradable universe" in body["error"]
    assert body["fields"] == [{"field": "symbol", "reason": "not in the tradable universe"}]
    assert probe.snapshot() == before


def test_a_synthetic_order_needs_no_priced_symbol(client: httpx.Client, probe: Probe) -> None:
    """A synthetic order (the runbooks' and drills' canary) is never exposure: a symbol outside the universe is
    accepted (202) for it, on an intake that refuses the same symbol for a customer order."""
    order_id = new_id(probe)
    response = client.post("/orders", json=order_body(order_id, symbol="CANARY", synthetic=True), headers=AUTH)
    assert response.status_code == 202, response.text
    assert probe.take_messages(order_id) == [{"order_id": order_id}]


def test_unpriced_symbols_are_accepted_when_the_operator_allows_them(aws_settings: Settings, probe: Probe) -> None:
    """With allow_unpriced_symbols a symbol outside the universe is recorded and queued (202), and a configured
    universe (TRADEOPS_SYMBOLS) replaces the shipped one."""
    allowing = aws_settings.model_copy(update={"allow_unpriced_symbols": True})
    narrow = aws_settings.model_copy(update={"symbols": "ZZZ.L"})
    with LiveServer(create_app(allowing, token=TOKEN)) as server, httpx.Client(base_url=server.url) as http:
        order_id = new_id(probe)
        answer = http.post("/orders", json=order_body(order_id, symbol="NOPE.L"), headers=AUTH)
        assert answer.status_code == 202, answer.text
        assert probe.take_messages(order_id) == [{"order_id": order_id}]
    with LiveServer(create_app(narrow, token=TOKEN)) as server, httpx.Client(base_url=server.url) as http:
        assert http.post("/orders", json=order_body(new_id(probe)), headers=AUTH).status_code == 400
        order_id = new_id(probe)
        assert http.post("/orders", json=order_body(order_id, symbol="ZZZ.L"), headers=AUTH).status_code == 202
        assert len(probe.take_messages(order_id)) == 1
