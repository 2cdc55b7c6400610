"""Which broker an order goes to: a pure decision over the control flags and broker health.

The worker reads the flags from SSM (``/tradeops/routing/mode``, ``active``, ``trickle``;
:mod:`.flags` reads them and falls back to safe values for garbage), asks its breakers which
brokers are healthy, and calls ``choose_provider`` once per order. ``None`` means "no broker may
take this order now": the worker leaves it on the queue and tries again later.

The flags come from a parameter store an operator can edit by hand, so ``choose_provider`` checks
every input again and raises ``ValueError`` naming a bad value rather than route on it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Collection, Mapping

__all__ = [
    "MODES",
    "PROVIDERS",
    "choose_provider",
    "other",
    "trickle_bucket",
]

PROVIDERS = ("primary", "secondary")
MODES = ("manual", "auto")


def _check_provider(provider: str, what: str = "provider") -> str:
    if provider not in PROVIDERS:
        raise ValueError(f"unknown {what} {provider!r}: expected one of {', '.join(PROVIDERS)}")
    return provider


def other(provider: str) -> str:
    """The broker that is not ``provider``."""
    _check_provider(provider)
    return PROVIDERS[1] if provider == PROVIDERS[0] else PROVIDERS[0]


def trickle_bucket(order_id: str) -> float:
    """A stable number in [0, 1) for ``order_id``: the same order lands in the same bucket on every worker."""
    # A hash, not random(): a redelivered order must make the same choice on whichever worker takes it.
    digest = hashlib.sha256(order_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def choose_provider(
    *,
    order_id: str,
    mode: str,
    active: str,
    trickle: float,
    healthy: Mapping[str, bool],
    exclude: Collection[str] = (),
    suspect: Collection[str] = (),
) -> str | None:
    """The broker this order should go to now, or ``None`` if none may take it.

    ``manual``: always ``active``, whatever its health; ``None`` if ``active`` is excluded or
    suspect — in manual mode tradeops never moves an order on its own, the order waits for the
    operator (or, for a suspect broker, for its breaker's probes to prove it answers again).

    ``auto``: ``active`` is preferred, except that orders whose ``trickle_bucket`` is below
    ``trickle`` prefer the standby (when it is healthy and not excluded) so the standby path is
    always proven. If the preferred broker is unhealthy or excluded the other is used when it is
    healthy and not excluded. A broker missing from ``healthy`` counts as unhealthy.

    ``exclude`` lists brokers this order must not go to (e.g. one that may still hold it).
    ``suspect`` lists brokers the in-flight watch found silent (:mod:`.suspicion`): an order sent
    to one would most likely end in doubt, so no mode sends it there.
    """
    if mode not in MODES:
        raise ValueError(f"unknown routing mode {mode!r}: expected one of {', '.join(MODES)}")
    _check_provider(active, "active provider")
    for name in exclude:
        _check_provider(name, "excluded provider")
    for name in suspect:
        _check_provider(name, "suspect provider")
    for name in healthy:
        _check_provider(name, "provider in health map")
    if not (isinstance(trickle, int | float) and math.isfinite(trickle) and 0.0 <= trickle <= 1.0):
        raise ValueError(f"routing trickle {trickle!r} must be between 0 and 1")

    if mode == "manual":
        return None if active in exclude or active in suspect else active

    def usable(provider: str) -> bool:
        return bool(healthy.get(provider, False)) and provider not in exclude and provider not in suspect

    standby = other(active)
    preferred = active
    if trickle > 0.0 and trickle_bucket(order_id) < trickle and usable(standby):
        preferred = standby
    if usable(preferred):
        return preferred
    fallback = other(preferred)
    return fallback if usable(fallback) else None
