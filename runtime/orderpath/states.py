"""The order state machine as data: the states, their groups, and every allowed transition. Pure.

::

    ACCEPTED ──claim──▶ SUBMITTING ──fill──▶ FILLED
       ▲  │                │  │ ▲  └──reject──▶ REJECTED
       │  │                │  │ └─ re-claim (lease taken over, failed over to the other broker)
       │  │                │  └──no answer──▶ IN_DOUBT ──▶ SUBMITTING (the resolver asks again)
       │  │                │                     │  └──▶ FILLED | REJECTED (the broker answered)
       │  │                └──release (no broker holds it)──┐
       └──┴────────────────────────────── declared void ◀───┘
    any pending state ──▶ DEAD_LETTERED (its message was dead-lettered)
    ACCEPTED | IN_DOUBT ──▶ CANCELLED (cancelled before or at the broker)

``OrderStore.transition`` refuses any move not in :data:`TRANSITIONS`, so a bug can never write a
state the exactly-once rule does not know (the rule itself: :mod:`.orders`).
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACCEPTED",
    "CANCELLED",
    "DEAD_LETTERED",
    "FILLED",
    "FINAL",
    "IN_DOUBT",
    "PENDING",
    "REJECTED",
    "STATES",
    "SUBMITTING",
    "TRANSITIONS",
    "IllegalTransition",
    "check_transition",
]

ACCEPTED: Final = "ACCEPTED"
SUBMITTING: Final = "SUBMITTING"
IN_DOUBT: Final = "IN_DOUBT"
FILLED: Final = "FILLED"
REJECTED: Final = "REJECTED"
CANCELLED: Final = "CANCELLED"
DEAD_LETTERED: Final = "DEAD_LETTERED"

STATES: Final[tuple[str, ...]] = (ACCEPTED, SUBMITTING, IN_DOUBT, FILLED, REJECTED, CANCELLED, DEAD_LETTERED)
PENDING: Final[frozenset[str]] = frozenset({ACCEPTED, SUBMITTING, IN_DOUBT})
"""Not yet final: the customer is still waiting (exposure and oldest-order age count these)."""
FINAL: Final[frozenset[str]] = frozenset({FILLED, REJECTED, CANCELLED, DEAD_LETTERED})
"""Nothing moves an order out of these."""

TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    ACCEPTED: frozenset({SUBMITTING, CANCELLED, DEAD_LETTERED}),
    SUBMITTING: frozenset({SUBMITTING, FILLED, REJECTED, IN_DOUBT, ACCEPTED, DEAD_LETTERED}),
    IN_DOUBT: frozenset({SUBMITTING, FILLED, REJECTED, ACCEPTED, CANCELLED, DEAD_LETTERED}),
    FILLED: frozenset(),
    REJECTED: frozenset(),
    CANCELLED: frozenset(),
    DEAD_LETTERED: frozenset(),
}


class IllegalTransition(ValueError):
    """A move the state machine does not allow (a bug in the caller, never an operator error)."""


def check_transition(current: str, new: str) -> None:
    """Raise IllegalTransition unless an order in ``current`` may move to ``new``."""
    if new not in TRANSITIONS:
        raise IllegalTransition(f"unknown order state {new!r}")
    allowed = TRANSITIONS.get(current)
    if allowed is None:
        raise IllegalTransition(f"unknown order state {current!r}")
    if new not in allowed:
        raise IllegalTransition(f"an order may not move from {current} to {new}"
                                + ("" if allowed else f" ({current} is final)"))
