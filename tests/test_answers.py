"""What a broker's answer does to an order (runtime/orderpath/answers.py): every answer in every state,
and the exactly-once rules as properties. Pure: no emulator, no broker."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradeops.runtime.orderpath.answers import (
    ANSWERS_TO,
    DEFAULT_REJECT_REASON,
    LEASE,
    PROOF,
    STAY,
    Answer,
    Call,
    Execution,
    Reply,
    Void,
    decide,
    lease_left,
    park,
    release,
    reply_of,
)
from tradeops.runtime.orderpath.double_executions import WATCH_VOID
from tradeops.runtime.orderpath.providers import (
    AuthFailed,
    BrokerCallError,
    NotAccepted,
    NotConnected,
    NotReceived,
    OutcomeUnknown,
    ask,
)
from tradeops.runtime.orderpath.routing import PROVIDERS
from tradeops.runtime.orderpath.states import FINAL, IN_DOUBT, STATES, SUBMITTING, TRANSITIONS
from tradeops.runtime.platform.clock import iso

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
AT_BROKER = (SUBMITTING, IN_DOUBT)


def _order(status: str, provider: str | None = "primary") -> dict[str, object]:
    order: dict[str, object] = {"order_id": "o-1", "status": status, "version": 3}
    if provider is not None:
        order.update(provider=provider, lease_owner="w-1", lease_until=1_800_000_000)
    return order


def _execution(status: str, provider: str = "primary", *, price: str | None = "101.5", quantity: int = 3,
               broker_ref: str | None = "B-1", at: datetime | None = NOW, reason: str | None = None) -> Execution:
    return Execution(order_id="o-1", provider=provider, status=status, price=Decimal(price) if price else None,
                     quantity=quantity, broker_ref=broker_ref, at=at, reason=reason)


def _reply(call: Call, answer: Answer, provider: str = "primary") -> Reply:
    """A typical reply: the record a broker sends with the answer, or the error of a failed call."""
    record = {Answer.FILLED: _execution("FILLED", provider),
              Answer.REJECTED: _execution("REJECTED", provider, price=None, quantity=0, reason="LIMIT"),
              Answer.CANCELLED: _execution("CANCELLED", provider, price=None, quantity=0)}.get(answer)
    error = "" if record is not None or answer is Answer.NOT_HELD else f"{provider}: it went wrong"
    return Reply(call, provider, answer, record, error)


# ---- every answer in every state ------------------------------------------------------------------

# (next state, may be sent elsewhere, cancel there first) for an order at the broker that answered.
AT_THE_BROKER = {
    (SUBMITTING, Answer.FILLED): ("FILLED", False, False),
    (SUBMITTING, Answer.REJECTED): ("REJECTED", False, False),
    (SUBMITTING, Answer.OUTCOME_UNKNOWN): (IN_DOUBT, False, False),
    (SUBMITTING, Answer.NOT_RECEIVED): (None, True, False),
    (SUBMITTING, Answer.NOT_ACCEPTED): (None, True, False),
    (SUBMITTING, Answer.CANCELLED): (None, True, False),
    (SUBMITTING, Answer.NOT_HELD): (None, True, True),
    (IN_DOUBT, Answer.FILLED): ("FILLED", False, False),
    (IN_DOUBT, Answer.REJECTED): ("REJECTED", False, False),
    (IN_DOUBT, Answer.OUTCOME_UNKNOWN): (None, False, False),
    (IN_DOUBT, Answer.NOT_RECEIVED): (None, True, False),
    (IN_DOUBT, Answer.NOT_ACCEPTED): (None, True, False),
    (IN_DOUBT, Answer.CANCELLED): (None, True, False),
    (IN_DOUBT, Answer.NOT_HELD): (None, True, True),
}

EVERY_CASE = [(state, call, answer) for state in STATES for call in Call for answer in sorted(ANSWERS_TO[call])]


@pytest.mark.parametrize(("state", "call", "answer"), EVERY_CASE)
def test_every_answer_to_every_call_in_every_state(state, call, answer):
    """Each answer moves an order at that broker as the table says, and leaves any other order as it is."""
    decision = decide(_order(state), _reply(call, answer), now=NOW)
    if state in AT_BROKER:
        assert (decision.status, decision.may_send_elsewhere, decision.cancel_first) == AT_THE_BROKER[state, answer]
    else:
        assert decision == STAY


def test_the_table_covers_every_state_and_answer():
    """The expectations above name every answer for both states an order can be at a broker in."""
    assert set(AT_THE_BROKER) == {(s, a) for s in AT_BROKER for a in Answer}
    assert set(STATES) - frozenset(AT_BROKER) == FINAL | {"ACCEPTED"}


# ---- the exactly-once rules, over generated answers -----------------------------------------------

_money = st.decimals(min_value=Decimal("0.000001"), max_value=Decimal("99999999"), places=6)
_times = st.none() | st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                                  timezones=st.just(UTC))
_text = st.none() | st.text(min_size=1, max_size=400)


@st.composite
def replies(draw: st.DrawFn, provider: str | None = None) -> Reply:
    """Any reply a call can come back with, through the same mapping the adapters' answers take."""
    provider = provider or draw(st.sampled_from(PROVIDERS))
    call = draw(st.sampled_from(list(Call)))
    failures = sorted(ANSWERS_TO[call] & {Answer.OUTCOME_UNKNOWN, Answer.NOT_RECEIVED, Answer.NOT_ACCEPTED})
    if draw(st.booleans()):
        return Reply(call, provider, draw(st.sampled_from(failures)), error=draw(st.text(max_size=400)))
    statuses = ["FILLED", "REJECTED", "CANCELLED"] + ([] if call is Call.SUBMIT else [None])
    status = draw(st.sampled_from(statuses))
    if status is None:
        return reply_of(call, provider, None)
    execution = Execution(order_id="o-1", provider=provider, status=status,
                          price=draw(_money) if status == "FILLED" else draw(st.none() | _money),
                          quantity=draw(st.integers(min_value=0, max_value=10_000_000)),
                          broker_ref=draw(_text), at=draw(_times), reason=draw(_text))
    return reply_of(call, provider, execution)


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, object], Reply, Void | None]:
    """An order in any state, a reply from the broker named in it, and maybe a declared void."""
    state = draw(st.sampled_from(STATES))
    held_at = draw(st.sampled_from(PROVIDERS))
    order = _order(state, None if state == "ACCEPTED" else held_at)
    void = draw(st.none() | st.builds(Void, by=st.text(min_size=1, max_size=40), reason=st.text(max_size=200),
                                      execution_id=st.none() | st.text(min_size=1, max_size=40)))
    return order, draw(replies(held_at)), void


@given(cases())
def test_an_order_moves_only_as_the_state_table_allows(case):
    """Whatever the answer, the decided move is one states.TRANSITIONS allows (or none)."""
    order, reply, void = case
    decision = decide(order, reply, now=NOW, void=void)
    assert decision.status is None or decision.status in TRANSITIONS[order["status"]]
    assert len(decision.note) <= 300


@given(cases())
def test_never_sent_elsewhere_while_the_outcome_is_unknown(case):
    """An unknown outcome parks the order with its broker (or leaves it parked): never free, never moved."""
    order, reply, _ = case
    if reply.answer is not Answer.OUTCOME_UNKNOWN:
        reply = Reply(reply.call, reply.provider, Answer.OUTCOME_UNKNOWN, error="read timeout")
    decision = decide(order, reply, now=NOW)
    assert not decision.may_send_elsewhere and not decision.cancel_first
    assert decision.status in ((IN_DOUBT,) if order["status"] == SUBMITTING else (None,))
    assert "provider" not in decision.remove_fields and "provider" not in decision.set_fields


@given(cases())
def test_provider_is_cleared_or_changed_only_on_proof_or_a_void(case):
    """The broker named in the order stays named unless it proved it does not hold the order, or a void was
    declared (docs/architecture.md, "Exactly once across a broker switch")."""
    order, reply, void = case
    decision = decide(order, reply, now=NOW, void=void)
    if "provider" in decision.remove_fields:
        assert void is not None and reply.answer not in (Answer.FILLED, Answer.REJECTED)
    assert decision.set_fields.get("provider", order.get("provider")) == order.get("provider")
    if decision.may_send_elsewhere:
        assert reply.answer in PROOF or void is not None


@given(cases())
def test_an_outcome_is_recorded_whole_and_wins_over_a_void(case):
    """A fill records price, quantity, broker, broker_ref and time (the broker's, else now); a rejection the
    broker's reason, else the default; either ends the lease, void or not."""
    order, reply, void = case
    decision = decide(order, reply, now=NOW, void=void)
    if order["status"] not in AT_BROKER or reply.answer not in (Answer.FILLED, Answer.REJECTED):
        return
    ex = reply.execution
    assert ex is not None and decision.remove_fields == LEASE and not decision.may_send_elsewhere
    if reply.answer is Answer.FILLED:
        expected = {"fill_price": ex.price, "filled_quantity": ex.quantity, "provider": reply.provider,
                    "filled_at": iso(ex.at or NOW)}
        if ex.broker_ref is not None:
            expected["broker_ref"] = ex.broker_ref
        assert (decision.status, dict(decision.set_fields)) == ("FILLED", expected)
    else:
        assert (decision.status, dict(decision.set_fields)) == (
            "REJECTED", {"reject_reason": ex.reason or DEFAULT_REJECT_REASON, "provider": reply.provider})


@given(cases())
def test_a_void_releases_what_nobody_knows_under_watch(case):
    """With a void declared, an answer that is no outcome releases the order to ACCEPTED at no broker, under
    watch at the one it was voided at, saying who declared it and why."""
    order, reply, void = case
    if void is None or order["status"] not in AT_BROKER or reply.answer in (Answer.FILLED, Answer.REJECTED):
        return
    decision = decide(order, reply, now=NOW, void=void)
    assert decision.status == "ACCEPTED" and decision.remove_fields == ("provider", *LEASE)
    assert decision.set_fields == {"watch": WATCH_VOID, "void_declared": {
        "provider": order["provider"], "by": void.by, "reason": void.reason, "execution_id": void.execution_id,
        "at": iso(NOW)}}
    assert decision.note.startswith(f"declared void at {order['provider']} by {void.by}"[:300])


def test_a_rejection_without_a_reason_records_the_default():
    """A broker that rejects without saying why leaves DEFAULT_REJECT_REASON on the order."""
    reply = reply_of(Call.SUBMIT, "primary", _execution("REJECTED", price=None, quantity=0, reason=None))
    assert decide(_order(SUBMITTING), reply, now=NOW).set_fields["reject_reason"] == DEFAULT_REJECT_REASON == "rejected"


def test_a_fill_without_a_time_is_stamped_now():
    """A fill the broker did not time is recorded at ``now``."""
    reply = reply_of(Call.STATUS, "primary", _execution("FILLED", at=None))
    assert decide(_order(IN_DOUBT), reply, now=NOW).set_fields["filled_at"] == iso(NOW)


def test_an_answer_from_another_broker_is_refused():
    """An answer from a broker the order is not held at says nothing about it: a caller's bug, refused."""
    with pytest.raises(ValueError, match="an answer from secondary about an order held at primary"):
        decide(_order(SUBMITTING), _reply(Call.STATUS, Answer.NOT_HELD, "secondary"), now=NOW)


# ---- reading a broker's answer ----------------------------------------------------------------------

@pytest.mark.parametrize(("call", "status", "answer"), [
    (Call.SUBMIT, "FILLED", Answer.FILLED), (Call.SUBMIT, "REJECTED", Answer.REJECTED),
    (Call.SUBMIT, "CANCELLED", Answer.CANCELLED),
    (Call.STATUS, "FILLED", Answer.FILLED), (Call.STATUS, "REJECTED", Answer.REJECTED),
    (Call.STATUS, "CANCELLED", Answer.CANCELLED), (Call.STATUS, None, Answer.NOT_HELD),
    (Call.CANCEL, "FILLED", Answer.FILLED), (Call.CANCEL, "REJECTED", Answer.CANCELLED),
    (Call.CANCEL, "CANCELLED", Answer.CANCELLED), (Call.CANCEL, None, Answer.CANCELLED),
])
def test_a_brokers_record_reads_as_the_answer_to_its_call(call, status, answer):
    """FILLED is always a fill; a cancel's REJECTED, like its CANCELLED, means nothing will ever fill there;
    a status query's "not found" is not held."""
    execution = None if status is None else _execution(status, price="1" if status == "FILLED" else None)
    assert reply_of(call, "primary", execution).answer is answer


def test_a_submit_always_answers_with_a_record():
    """A submit that returns nothing is an adapter bug, not an answer."""
    with pytest.raises(ValueError, match="a submit answers with the broker's record"):
        reply_of(Call.SUBMIT, "primary", None)


def test_a_reply_only_carries_an_answer_its_call_can_give():
    """A status query cannot be "not received" with proof, and an outcome comes with its record."""
    with pytest.raises(ValueError, match="a status cannot answer"):
        Reply(Call.STATUS, "primary", Answer.NOT_RECEIVED)
    with pytest.raises(ValueError, match="comes with the broker's FILLED record"):
        Reply(Call.SUBMIT, "primary", Answer.FILLED)


def _raising(exc: BrokerCallError):
    def send():
        raise exc
    return send


@pytest.mark.parametrize(("exc", "on_submit"), [
    (NotReceived("x", provider="primary"), Answer.NOT_RECEIVED),
    (NotConnected("x", provider="primary"), Answer.NOT_RECEIVED),
    (NotAccepted("x", provider="primary"), Answer.NOT_ACCEPTED),
    (AuthFailed("x", provider="primary"), Answer.NOT_ACCEPTED),
    (OutcomeUnknown("x", provider="primary"), Answer.OUTCOME_UNKNOWN),
    (BrokerCallError("x", provider="primary"), Answer.OUTCOME_UNKNOWN),
])
def test_only_a_submit_fails_with_proof(exc, on_submit):
    """A failed submit proves "not received" or "not accepted" when its error says so; a failed status query or
    cancel is no answer at all, so the outcome stays unknown."""
    assert ask(Call.SUBMIT, "primary", _raising(exc)) == Reply(Call.SUBMIT, "primary", on_submit, error="x")
    for call in (Call.STATUS, Call.CANCEL):
        assert ask(call, "primary", _raising(exc)).answer is Answer.OUTCOME_UNKNOWN


def test_parking_and_releasing_end_the_lease():
    """A parked order keeps its broker; a released one has none; neither keeps a worker's lease."""
    assert (park("x").status, park("x").remove_fields) == (IN_DOUBT, LEASE)
    assert (release("x").status, release("x").remove_fields) == ("ACCEPTED", ("provider", *LEASE))
    assert len(park("n" * 500).note) == len(release("n" * 500).note) == 300


def test_a_lease_read_back_from_dynamodb_counts_down_in_seconds():
    """``lease_until`` comes back as a Decimal: the seconds left are a float all the same; no lease is none left."""
    assert lease_left({"lease_until": Decimal("1000")}, 990.5) == 9.5
    assert lease_left({}, 5.0) == -5.0
