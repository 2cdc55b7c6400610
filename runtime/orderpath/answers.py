"""What a broker's answer does to an order: the exactly-once decisions, in one pure function.

Every call the order path makes to the broker named in an order's ``provider`` (the worker's
submit, the resolver's status query and cancel, an operator's resolve and declare-void, the
canary) comes back with one of seven answers, and :func:`decide` says what it does to the order
as last read. For an order at that broker (SUBMITTING or IN_DOUBT)::

    answer           to a call      the order
    filled           any            → FILLED: price, quantity, broker, broker_ref and filled_at recorded
    rejected         submit, status → REJECTED: the broker's reason, else DEFAULT_REJECT_REASON
    outcome unknown  any            → IN_DOUBT (or stays so): it may be at the broker, so it goes
                                      nowhere else until that broker says it does not hold it
    not received     submit         free: the request never reached the broker
    not accepted     submit         free: the broker answered that it did not take it
    cancelled        any            free: the broker holds a cancellation, so never the order
    not held         status         free, once a cancel there has made "not found" permanent

A cancel answers with the broker's record of the order: FILLED is too late (it filled after
all), and REJECTED, like CANCELLED, means it holds no fill and now never will. For a status query
or a cancel any failed call is no answer: only a submit can fail with proof (:func:`.providers.ask`).

*Free* writes nothing by itself: the broker has proved it does not hold the order, so the order
may go to another broker (docs/architecture.md, "Exactly once across a broker switch"), and where
it goes is routing's choice. The caller then claims it for the next broker, releases it to
ACCEPTED (:func:`release`) or parks it until a broker can take it (:func:`park`).

With a void declared (:class:`Void`, ``tradeops orders declare-void``) every answer but an outcome
releases the order, under watch at that broker for a fill that comes too late
(:mod:`.double_executions`). An order that is ACCEPTED (at no broker) or final stays as it is.

So :func:`decide` clears ``provider`` only for a void, and never changes it: the callers change it
only by a claim or a release after a free answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from tradeops.runtime.orderpath.double_executions import WATCH_VOID
from tradeops.runtime.orderpath.states import (
    ACCEPTED,
    CANCELLED,
    FILLED,
    IN_DOUBT,
    REJECTED,
    SUBMITTING,
    check_transition,
)
from tradeops.runtime.platform.clock import iso

__all__ = [
    "ANSWERS_TO",
    "DEFAULT_REJECT_REASON",
    "LEASE",
    "PROOF",
    "STAY",
    "Answer",
    "Call",
    "Decision",
    "Execution",
    "Reply",
    "Void",
    "decide",
    "lease_left",
    "park",
    "release",
    "reply_of",
]


class Call(StrEnum):
    """The three calls about an order a broker answers."""

    SUBMIT = "submit"
    STATUS = "status"
    CANCEL = "cancel"


class Answer(StrEnum):
    """What a call came back with (see the module docstring for what each does to an order)."""

    FILLED = "filled"
    REJECTED = "rejected"
    OUTCOME_UNKNOWN = "outcome unknown"
    NOT_RECEIVED = "not received"
    NOT_ACCEPTED = "not accepted"
    CANCELLED = "cancelled"
    NOT_HELD = "not held"


ANSWERS_TO: Final[Mapping[Call, frozenset[Answer]]] = {
    Call.SUBMIT: frozenset(Answer) - {Answer.NOT_HELD},
    Call.STATUS: frozenset(Answer) - {Answer.NOT_RECEIVED, Answer.NOT_ACCEPTED},
    Call.CANCEL: frozenset({Answer.FILLED, Answer.OUTCOME_UNKNOWN, Answer.CANCELLED}),
}
"""The answers each call can come back with."""

PROOF: Final[frozenset[Answer]] = frozenset({Answer.NOT_RECEIVED, Answer.NOT_ACCEPTED, Answer.CANCELLED,
                                             Answer.NOT_HELD})
"""The answers that prove the broker does not hold the order: the only ones that free it."""

DEFAULT_REJECT_REASON: Final = "rejected"
"""The ``reject_reason`` recorded when a broker rejects an order without saying why."""

LEASE: Final = ("lease_owner", "lease_until")
"""The fields naming the worker on an order and until when: gone once no worker holds it."""


def lease_left(order: Mapping[str, Any], now: float) -> float:
    """Seconds left on the lease of the worker holding ``order`` at ``now`` (epoch seconds; ≤ 0: none).

    ``lease_until`` comes back from DynamoDB as a Decimal, which does no arithmetic with a float.
    """
    return float(order.get("lease_until") or 0) - now

_NOTE_CHARS = 300  # a history note is for a person: the first 300 characters say what happened


@dataclass(frozen=True)
class Execution:
    """A broker's record of one order. ``quantity`` is the filled quantity (0 unless FILLED);
    ``at`` is when the broker filled, rejected or cancelled it (None if it did not say)."""

    order_id: str
    provider: str
    status: str  # FILLED | REJECTED | CANCELLED
    price: Decimal | None
    quantity: int
    broker_ref: str | None
    at: datetime | None
    reason: str | None


@dataclass(frozen=True)
class Reply:
    """What one call to ``provider`` came back with: its answer, the broker's record when it sent one
    (a fill, a rejection, a cancellation), and why the call failed when it did."""

    call: Call
    provider: str
    answer: Answer
    execution: Execution | None = None
    error: str = ""

    def __post_init__(self) -> None:
        if self.answer not in ANSWERS_TO[self.call]:
            raise ValueError(f"a {self.call} cannot answer {self.answer!r}")
        if self.answer in (Answer.FILLED, Answer.REJECTED) and (
                self.execution is None or self.execution.status != self.answer.name):
            raise ValueError(f"a {self.answer} answer comes with the broker's {self.answer.name} record")

    def note(self) -> str:
        """What the answer says about the order, for its history."""
        if self.answer is Answer.OUTCOME_UNKNOWN:
            asked = {Call.SUBMIT: "", Call.STATUS: " did not answer a status query",
                     Call.CANCEL: " did not answer a cancel"}[self.call]
            return f"{self.provider}{asked}: {self.error}"
        if self.answer in (Answer.NOT_RECEIVED, Answer.NOT_ACCEPTED):
            return f"{self.provider} did not take it: {self.error}"
        if self.answer is Answer.CANCELLED:
            return f"{self.provider} holds a cancellation for this order"
        if self.answer is Answer.NOT_HELD:
            return f"{self.provider} does not hold the order"
        return f"{self.provider}: {self.answer}"


def reply_of(call: Call, provider: str, execution: Execution | None) -> Reply:
    """The answer a broker gave by returning ``execution`` (None: it holds no record) to ``call``."""
    if execution is None:
        if call is Call.SUBMIT:
            raise ValueError("a submit answers with the broker's record of the order")
        # A cancel always sends a record back; one that sends none has left nothing that could fill.
        answer = Answer.NOT_HELD if call is Call.STATUS else Answer.CANCELLED
    elif execution.status == FILLED:
        answer = Answer.FILLED
    elif execution.status == REJECTED and call is not Call.CANCEL:
        answer = Answer.REJECTED
    elif execution.status in (REJECTED, CANCELLED):
        answer = Answer.CANCELLED
    else:
        raise ValueError(f"unknown execution status {execution.status!r}")
    return Reply(call, provider, answer, execution)


@dataclass(frozen=True)
class Void:
    """An operator's declaration that the orders in flight at a broker are void: who, why, and under
    which runbook execution (None: by hand)."""

    by: str
    reason: str
    execution_id: str | None = None


@dataclass(frozen=True)
class Decision:
    """What to write on the order (``status`` None: nothing), and whether it may leave its broker.

    ``may_send_elsewhere``: the broker proved it does not hold the order; ``cancel_first``: but a
    copy could still reach it, so cancel it there before the order goes to any other broker.
    """

    status: str | None = None
    set_fields: Mapping[str, Any] = field(default_factory=dict)
    remove_fields: tuple[str, ...] = ()
    note: str = ""  # for the order's history ("": none)
    may_send_elsewhere: bool = False
    cancel_first: bool = False

    @property
    def settles(self) -> bool:
        """The broker answered with the order's outcome (FILLED or REJECTED)."""
        return self.status in (FILLED, REJECTED)

    @property
    def parks(self) -> bool:
        """The order waits IN_DOUBT with the broker that may hold it."""
        return self.status == IN_DOUBT


STAY: Final = Decision()
"""Nothing to write, and the order stays with its broker."""


def release(note: str, *, set_fields: Mapping[str, Any] | None = None) -> Decision:
    """Back to ACCEPTED, at no broker: only once its broker proved it does not hold it, or a void."""
    return Decision(ACCEPTED, dict(set_fields or {}), ("provider", *LEASE), note[:_NOTE_CHARS],
                    may_send_elsewhere=True)


def park(note: str) -> Decision:
    """IN_DOUBT: it stays with its broker, and the resolver asks that broker until it can move on."""
    return Decision(IN_DOUBT, {}, LEASE, note[:_NOTE_CHARS])


def decide(order: Mapping[str, Any], reply: Reply, *, now: datetime, void: Void | None = None) -> Decision:
    """What ``reply``, from the broker named in ``order['provider']``, does to ``order`` (as last read).

    ``now`` stands in for a fill time the broker did not give; ``void``: the broker's in-flight
    orders were declared void. Raises ValueError for a reply from another broker (a caller's bug).
    """
    state = order.get("status")
    if state not in (SUBMITTING, IN_DOUBT):
        return STAY  # ACCEPTED: at no broker, nothing to learn; final: nothing moves it
    if reply.provider != order.get("provider"):
        raise ValueError(f"order {order.get('order_id')}: an answer from {reply.provider} about an order "
                         f"held at {order.get('provider')}")
    if reply.answer in (Answer.FILLED, Answer.REJECTED):
        decision = _outcome(reply, now)
    elif void is not None:
        decision = _void(reply, void, now)
    elif reply.answer is Answer.OUTCOME_UNKNOWN:
        # It may be at the broker: nowhere else until that broker says it does not hold it.
        decision = park(reply.note()) if state == SUBMITTING else STAY
    else:
        # "Not found" now is not "never": a copy still on its way could fill there later.
        decision = Decision(note=reply.note()[:_NOTE_CHARS], may_send_elsewhere=True,
                            cancel_first=reply.answer is Answer.NOT_HELD)
    if decision.status is not None:
        check_transition(state, decision.status)
    return decision


def _outcome(reply: Reply, now: datetime) -> Decision:
    ex = reply.execution
    if ex is None:  # pragma: no cover - Reply refuses an outcome without a record
        raise ValueError("an outcome without the broker's record")
    if reply.answer is Answer.FILLED:
        fields = {"fill_price": ex.price, "filled_quantity": ex.quantity, "provider": reply.provider,
                  "broker_ref": ex.broker_ref, "filled_at": iso(ex.at or now)}
        return Decision(FILLED, {k: v for k, v in fields.items() if v is not None}, LEASE)
    return Decision(REJECTED, {"reject_reason": ex.reason or DEFAULT_REJECT_REASON, "provider": reply.provider},
                    LEASE)


def _void(reply: Reply, void: Void, now: datetime) -> Decision:
    """Released by an operator's word: what nobody can know is declared not held, under watch there."""
    note = f"declared void at {reply.provider} by {void.by}: {void.reason}" + (
        f" (execution {void.execution_id})" if void.execution_id else "")
    declared = {"provider": reply.provider, "by": void.by, "reason": void.reason,
                "execution_id": void.execution_id, "at": iso(now)}
    return release(note, set_fields={"void_declared": declared, "watch": WATCH_VOID})
