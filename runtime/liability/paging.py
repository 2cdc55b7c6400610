"""When to page a person: hysteresis, hold-down, grouping and repeats. Pure: values and ``now`` in, pages out.

The exact figures (exposure, the moment a threshold was crossed) are the monitor's and are never
delayed; this module only decides which of those moments are worth waking someone for. A price
hovering at a threshold crosses it every few seconds; a flapping broker opens and closes its
breaker every few seconds; either would page the duty engineer every few seconds, the topic gets
muted, and the page that matters is lost.

One :class:`PagingGroup` per threshold (or per broker) follows its *episodes*. Its keys (order ids
for a per-order threshold; one key for a total, a broker) are each breached or not, with
hysteresis::

    a key becomes breached when its value rises above the threshold,
    and stops being breached only when it falls below threshold - margin.

    idle ──a key breached──▶ pending ──breached for hold_down in all (or a value ≥ immediate)──▶ firing
     ▲                         │                                                                  │
     └──no key breached for recovery_hold (silently: nothing was announced)                      │
     └──no key breached for recovery_hold ─────────────────── page "recovery" ◀──────────────────┘

    firing: keys breached for the first time since the last page wait at most group_window and go
            out together (page "update"); with nothing new, the state is re-announced every
            ``repeat`` seconds (page "repeat"), so silence means recovered, never forgotten.

Hold-down counts the time the group spent breached in this episode (a breach that comes and goes
within the recovery hold does not start the count again). Every page carries the group's dedup
key, so a pager (PagerDuty, Opsgenie) collapses its repeats, and the time the episode began.

Properties (tests/test_paging.py): a breach sustained past the hold-down pages exactly once; an
oscillation within the margin pages at most once per repeat interval; a recovery is only ever
paged after a breach.

:class:`ExposurePaging` feeds one group per liability threshold (:class:`.watches.Threshold`) from the
exposure book (:mod:`.exposurebook`); :class:`BrokerPaging` feeds one group per broker from the
fleet's routing events (any worker's breaker open, or its in-flight watch suspecting the broker,
makes the broker unhealthy).

Time
    A group counts in seconds since the epoch (floats: its hold-downs and windows are float
    settings). :class:`ExposurePaging` takes the clock's datetimes
    (:func:`tradeops.runtime.platform.clock.utcnow`), like the book it is fed from, and converts
    them once (:func:`epoch_seconds`); :func:`from_epoch` turns a page's times back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from tradeops.runtime.liability.exposurebook import ExposureBook, TickResult
from tradeops.runtime.liability.orderexposure import OrderExposure, UnknownPrices
from tradeops.runtime.liability.watches import BREACH, Alert, Threshold, book_figures, limits_from, order_figure
from tradeops.runtime.platform.errors import ConfigError

if TYPE_CHECKING:
    from tradeops.runtime.platform.settings import Settings

__all__ = [
    "BREAKER_KINDS",
    "BrokerPaging",
    "ExposurePaging",
    "Page",
    "PageKind",
    "PagingGroup",
    "PagingRules",
    "epoch_seconds",
    "from_epoch",
]

PageKind = Literal["breach", "update", "repeat", "recovery"]
Key = str | None
_EPS = 1e-6  # seconds: a time difference this close to a limit has reached it (float subtraction)


def epoch_seconds(at: datetime) -> float:
    """A moment as a group counts time: seconds since the epoch."""
    return at.timestamp()


def from_epoch(seconds: float) -> datetime:
    """A group's (or a page's) time as the clock's UTC datetime."""
    return datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True)
class PagingRules:
    """How one group pages. Values compare with ``threshold``; times are seconds."""

    threshold: Decimal
    margin: Decimal = Decimal(0)  # a breach ends only below threshold - margin
    hold_down: float = 0.0  # breached this long in an episode before the first page
    immediate: Decimal | None = None  # a value at or above this pages at once
    recovery_hold: float = 0.0  # nothing breached this long before the recovery page
    group_window: float = 0.0  # keys newly breached while firing go out together at most this often
    repeat: float = 900.0  # an open episode is re-announced this often

    def __post_init__(self) -> None:
        problems = []
        if self.margin < 0:
            problems.append(f"margin must be ≥ 0 (got {self.margin})")
        for name in ("hold_down", "recovery_hold", "group_window"):
            if not getattr(self, name) >= 0:
                problems.append(f"{name} must be ≥ 0 (got {getattr(self, name)})")
        if not self.repeat > 0:
            problems.append(f"repeat must be > 0 (got {self.repeat})")
        if self.immediate is not None and self.immediate <= self.threshold:
            problems.append(f"immediate must be above the threshold {self.threshold} (got {self.immediate})")
        if problems:
            raise ConfigError("invalid paging settings: " + "; ".join(problems))

    @classmethod
    def exposure(cls, threshold: Decimal, settings: Settings) -> PagingRules:
        """The rules of one liability threshold from the ``paging_*`` settings."""
        return cls(threshold=threshold, margin=threshold * settings.paging_margin_pct / 100,
                   hold_down=settings.paging_hold_down_seconds,
                   immediate=threshold * settings.paging_immediate_multiple if threshold > 0 else None,
                   recovery_hold=settings.paging_recovery_seconds, group_window=settings.paging_group_seconds,
                   repeat=settings.paging_repeat_seconds)

    @classmethod
    def broker(cls, settings: Settings) -> PagingRules:
        """A broker's rules: unhealthy (1) or not (0); no margin, its own hold-down and recovery hold."""
        return cls(threshold=Decimal("0.5"), hold_down=settings.paging_broker_hold_down_seconds,
                   recovery_hold=settings.paging_broker_recovery_seconds, repeat=settings.paging_repeat_seconds)


@dataclass(frozen=True)
class Page:
    """One message for a person. ``values`` are the breached keys' current values, worst first."""

    kind: PageKind
    group: str
    dedup_key: str
    at: float
    began_at: float
    values: tuple[tuple[Key, Decimal], ...]
    new_keys: tuple[Key, ...] = ()
    transitions: int = 0
    announced: tuple[Key, ...] = ()  # every key paged in this episode (what a recovery is the recovery of)

    @property
    def count(self) -> int:
        return len(self.values)


@dataclass
class _Episode:
    began: float
    accrued: float = 0.0  # breached time of the earlier stretches of this episode
    stretch_since: float | None = None  # the current breached stretch began here
    clear_since: float | None = None  # nothing breached since here
    firing: bool = False
    last_sent: float = 0.0
    announced: set[Key] = field(default_factory=set)
    transitions: int = 0


class PagingGroup:
    """The paging state of one threshold (or broker) over its keys. Not thread-safe: one owner."""

    def __init__(self, name: str, rules: PagingRules, *, dedup_key: str) -> None:
        self.name = name
        self.rules = rules
        self.dedup_key = dedup_key
        self._breached: dict[Key, Decimal] = {}
        self._episode: _Episode | None = None

    # ---- reading -------------------------------------------------------------------------------
    @property
    def state(self) -> Literal["idle", "pending", "firing"]:
        if self._episode is None:
            return "idle"
        return "firing" if self._episode.firing else "pending"

    def tracking(self, key: Key) -> bool:
        """Whether ``key`` is breached here (its value must be observed on every change)."""
        return key in self._breached

    @property
    def began_at(self) -> float | None:
        return None if self._episode is None else self._episode.began

    # ---- input ---------------------------------------------------------------------------------
    def observe(self, key: Key, value: Decimal, now: float, *, transitions: int | None = None) -> list[Page]:
        """``key``'s value is ``value`` at ``now``. ``transitions`` (brokers) counts changes the caller saw;
        by default each key breached or no longer breached counts one."""
        return self.observe_many(((key, value),), now, transitions=transitions)

    def observe_many(self, values: Iterable[tuple[Key, Decimal]], now: float, *,
                     transitions: int | None = None) -> list[Page]:
        """Several keys' values at one moment (one tick of a symbol): breaches that start together page together."""
        pages = self.tick(now)  # what time alone made due before these values (a breach that lasted until now)
        rules = self.rules
        for key, value in values:
            was = key in self._breached
            counted = 0
            if not was and value > rules.threshold:
                self._enter(key, value, now)
                counted = 1
            # A threshold of 0 ("any is too many": unpriced orders) cannot be undershot: back to 0 is the recovery.
            elif was and (value < rules.threshold - rules.margin or value <= rules.threshold == 0):
                self._leave(key, now)
                counted = 1
            elif was:
                self._breached[key] = value
            if self._episode is not None:
                self._episode.transitions += counted if transitions is None else transitions
        return pages + self.tick(now)

    def forget(self, key: Key, now: float) -> list[Page]:
        """``key`` is gone (an order no longer pending): it is no longer breached, whatever its value was."""
        if key in self._breached:
            self._leave(key, now)
        return self.tick(now)

    def tick(self, now: float) -> list[Page]:
        """The pages due by ``now`` (time alone can make one due: a hold-down, a recovery hold, a repeat)."""
        ep, rules = self._episode, self.rules
        if ep is None:
            return []
        if not self._breached:
            if ep.clear_since is not None and now - ep.clear_since + _EPS >= rules.recovery_hold:
                self._episode = None
                return [self._page("recovery", ep, now)] if ep.firing else []
            if ep.firing and now - ep.last_sent + _EPS >= rules.repeat:
                ep.last_sent = now
                return [self._page("repeat", ep, now)]
            return []
        if not ep.firing:
            breached_for = ep.accrued + (now - ep.stretch_since if ep.stretch_since is not None else 0.0)
            worst = max(self._breached.values())
            if breached_for + _EPS >= rules.hold_down or (rules.immediate is not None and worst >= rules.immediate):
                ep.firing = True
                ep.last_sent = now
                ep.announced = set(self._breached)
                return [self._page("breach", ep, now, new=tuple(self._breached))]
            return []
        new = tuple(k for k in self._breached if k not in ep.announced)
        if new and now - ep.last_sent + _EPS >= rules.group_window:
            ep.last_sent = now
            ep.announced.update(new)
            return [self._page("update", ep, now, new=new)]
        if now - ep.last_sent + _EPS >= rules.repeat:
            ep.last_sent = now
            return [self._page("repeat", ep, now)]
        return []

    # ---- persistence (a restarted monitor must not page an open episode again) -----------------
    def snapshot(self) -> dict[str, Any] | None:
        """What must survive a restart: a firing episode (pending ones start afresh)."""
        ep = self._episode
        if ep is None or not ep.firing:
            return None
        return {"began": ep.began, "last_sent": ep.last_sent, "announced": sorted(ep.announced, key=str),
                "transitions": ep.transitions}

    def restore(self, saved: Mapping[str, Any], now: float) -> None:
        """Resume a firing episode as if nothing were breached since ``now``: keys observed breached again
        continue it silently, and if none is, its recovery is paged after the recovery hold."""
        self._breached.clear()
        self._episode = _Episode(began=float(saved["began"]), firing=True, last_sent=float(saved["last_sent"]),
                                 announced=set(saved.get("announced") or ()), clear_since=now,
                                 transitions=int(saved.get("transitions", 0)))

    # ---- internals -----------------------------------------------------------------------------
    def _enter(self, key: Key, value: Decimal, now: float) -> None:
        if self._episode is None:
            self._episode = _Episode(began=now)
        if not self._breached:
            self._episode.stretch_since = now
            self._episode.clear_since = None
        self._breached[key] = value

    def _leave(self, key: Key, now: float) -> None:
        del self._breached[key]
        ep = self._episode
        if not self._breached and ep is not None:
            if ep.stretch_since is not None:
                ep.accrued += now - ep.stretch_since
            ep.stretch_since = None
            ep.clear_since = now

    def _page(self, kind: PageKind, ep: _Episode, now: float, *, new: tuple[Key, ...] = ()) -> Page:
        worst = tuple(sorted(self._breached.items(), key=lambda kv: (-kv[1], str(kv[0]))))
        return Page(kind=kind, group=self.name, dedup_key=self.dedup_key, at=now, began_at=ep.began,
                    values=worst, new_keys=tuple(sorted(new, key=str)), transitions=ep.transitions,
                    announced=tuple(sorted(ep.announced, key=str)))


# --------------------------------------------------------------------------------------- exposure


class ExposurePaging:
    """The liability thresholds' paging, fed from the book and the raw crossings of :class:`.watches.LiabilityWatch`.

    A per-order group learns of a new breach from the watch's BREACH crossing, and then follows the
    order's value on every change while it is breached (so it sees it fall below the margin).
    Times are the clock's datetimes (see the module docstring).
    """

    def __init__(self, rules: Mapping[str, PagingRules]) -> None:
        missing = [t.value for t in Threshold if t not in rules]
        if missing:
            raise ConfigError(f"paging rules missing for {', '.join(missing)}")
        self.groups: dict[str, PagingGroup] = {t: PagingGroup(t, rules[t], dedup_key=f"tradeops/exposure/{t}")
                                               for t in Threshold}
        self._per_order = [(t, self.groups[t]) for t in Threshold if t.per_order]

    @classmethod
    def from_settings(cls, settings: Settings) -> ExposurePaging:
        return cls({t: PagingRules.exposure(limit, settings) for t, limit in limits_from(settings).items()})

    def on_orders(self, items: Iterable[OrderExposure], crossings: Iterable[Alert], now: datetime) -> list[Page]:
        """Per-order values that changed (a tick's ``changed``) and the watch's crossings among them."""
        values: dict[str, dict[Key, Decimal]] = {t: {} for t, _ in self._per_order}
        for alert in crossings:
            if alert.kind == BREACH and alert.key is not None and alert.value is not None and alert.name in values:
                values[alert.name][alert.key] = alert.value
        for item in items:
            for threshold, group in self._per_order:
                if group.tracking(item.order_id):
                    values[threshold][item.order_id] = order_figure(threshold, item)
        at = epoch_seconds(now)
        return [p for t, group in self._per_order if values[t] for p in group.observe_many(values[t].items(), at)]

    def on_tick(self, result: TickResult, crossings: Iterable[Alert], now: datetime) -> list[Page]:
        pages = self.on_orders(result.changed, crossings, now)
        return pages + self.groups[Threshold.TOTAL_AMOUNT].observe(None, result.total_exposure, epoch_seconds(now))

    def on_book(self, book: ExposureBook, now: datetime, unknown: tuple[UnknownPrices, UnknownPrices]) -> list[Page]:
        """The periodic look: every whole-book threshold (:func:`.watches.book_figures`: the age grows with no
        tick at all; ``unknown`` is the book's (unpriced, stale) orders) and every group's timers."""
        at = epoch_seconds(now)
        pages = []
        for threshold, figure in book_figures(book, now, unknown).items():
            # A duration in its float seconds' shortest form, as pages have always shown it.
            value = Decimal(str(figure.total_seconds())) if isinstance(figure, timedelta) else figure
            pages += self.groups[threshold].observe(None, value, at)
        return pages + self.tick(now)

    def on_order_left(self, order_id: str, now: datetime) -> list[Page]:
        return [p for _, group in self._per_order for p in group.forget(order_id, epoch_seconds(now))]

    def tick(self, now: datetime) -> list[Page]:
        at = epoch_seconds(now)
        return [p for group in self.groups.values() for p in group.tick(at)]

    def snapshot(self) -> dict[str, Any]:
        return {name: snap for name, group in self.groups.items() if (snap := group.snapshot()) is not None}

    def restore(self, saved: Mapping[str, Any], now: datetime) -> None:
        for name, state in saved.items():
            if name in self.groups and isinstance(state, Mapping):
                self.groups[name].restore(state, epoch_seconds(now))

    def resume(self, saved: Mapping[str, Any], breached: Mapping[str, Iterable[tuple[str, Decimal]]],
               now: datetime) -> list[Page]:
        """After a restart: restore the firing episodes ``saved`` (:meth:`snapshot`), and feed each per-order
        group the keys ``breached`` now. One that had paged goes on silently (or pages its recovery once
        the recovery hold has passed); a new one pages by the rules."""
        self.restore(saved, now)
        at = epoch_seconds(now)
        return [p for t, group in self._per_order for p in group.observe_many(breached.get(t, ()), at, transitions=0)]


# --------------------------------------------------------------------------------------- brokers

BREAKER_KINDS = frozenset({"breaker_opened", "breaker_closed", "breaker_half_open", "broker_suspect",
                           "broker_cleared"})


class BrokerPaging:
    """One group per broker over the whole fleet: it is unhealthy while any worker's breaker for it is not
    closed (or its in-flight watch suspects it), as the workers' routing events say.

    Workers only record their events; this is the one place that decides what pages, so N workers
    whose breakers open together page once, and a flapping breaker pages once with the number of
    transitions (breakers opening from closed, and closing) when it settles, or on the repeat. It is
    *flapping* when one worker's breaker opened ``flapping`` times or more in the episode.
    A worker silent for ``stale`` seconds (dead) stops counting.
    """

    def __init__(self, rules: PagingRules, *, stale: float = 60.0, flapping: int = 2) -> None:
        self.rules = rules
        self.stale = stale
        self.flapping = flapping
        self.groups: dict[str, PagingGroup] = {}
        self._sources: dict[str, dict[str, tuple[str, float]]] = {}  # provider -> source -> (state, at)
        self.last: dict[str, dict[str, Any]] = {}  # provider -> the last event that made it unhealthy
        self.suspicion: dict[str, tuple[float, dict[str, Any]]] = {}  # provider -> (when, its last broker_suspect)
        self._opens: dict[str, dict[str, int]] = {}  # provider -> source -> breaker openings this episode

    @classmethod
    def from_settings(cls, settings: Settings) -> BrokerPaging:
        return cls(PagingRules.broker(settings), flapping=settings.paging_broker_flapping)

    def group(self, provider: str) -> PagingGroup:
        if provider not in self.groups:
            self.groups[provider] = PagingGroup(provider, self.rules, dedup_key=f"tradeops/broker/{provider}")
        return self.groups[provider]

    def unhealthy(self, provider: str, now: float) -> list[str]:
        """The workers whose latest word is that ``provider`` is not usable."""
        return sorted(source for source, (state, at) in self._sources.get(provider, {}).items()
                      if state != "closed" and now - at < self.stale)

    def on_event(self, event: Mapping[str, Any], at: float, now: float) -> list[Page]:
        """One routing event (``at``: when it happened) seen at ``now``."""
        kind, provider, source = event.get("kind"), event.get("provider"), event.get("source")
        if kind not in BREAKER_KINDS or not isinstance(provider, str) or not isinstance(source, str):
            return []
        sources = self._sources.setdefault(provider, {})
        if self.group(provider).state == "idle":
            self._opens[provider] = {}  # a new episode counts its own flaps
        counted = 0
        if kind == "broker_suspect":
            state = "suspect"
        elif kind == "broker_cleared":
            state = "closed"
        else:
            state = str(event.get("to_state"))
            # A flap is leaving closed or coming back to it; open <-> half_open while down is not.
            counted = 1 if "closed" in (state, event.get("from_state")) else 0
            if state == "open" and event.get("from_state") == "closed":
                opens = self._opens.setdefault(provider, {})
                opens[source] = opens.get(source, 0) + 1
        previous = sources.get(source)
        if previous is None or at >= previous[1]:
            sources[source] = (state, at)
        if state != "closed":
            self.last[provider] = dict(event)
        if kind == "broker_suspect":
            self.suspicion[provider] = (at, dict(event))
        value = Decimal(1 if self.unhealthy(provider, now) else 0)
        return self.group(provider).observe(provider, value, now, transitions=counted)

    def tick(self, now: float) -> list[Page]:
        pages: list[Page] = []
        for provider, group in self.groups.items():
            if group.tracking(provider) and not self.unhealthy(provider, now):
                pages += group.observe(provider, Decimal(0), now, transitions=0)  # its workers went silent
            else:
                pages += group.tick(now)
        return pages

    def is_flapping(self, page: Page) -> bool:
        """Whether some worker's breaker for the page's broker opened ``flapping`` times or more in this episode."""
        return max(self._opens.get(page.group, {}).values(), default=0) >= self.flapping

    def snapshot(self) -> dict[str, Any]:
        """Firing episodes and what each worker last said (so a restart knows who still reports it down)."""
        return {"groups": {name: snap for name, group in self.groups.items() if (snap := group.snapshot())},
                "sources": {p: {s: list(v) for s, v in sources.items()} for p, sources in self._sources.items()}}

    def restore(self, saved: Mapping[str, Any], now: float) -> None:
        for provider, sources in (saved.get("sources") or {}).items():
            self._sources[provider] = {s: (str(v[0]), float(v[1])) for s, v in sources.items()}
        for name, state in (saved.get("groups") or {}).items():
            if isinstance(state, Mapping):
                self.group(name).restore(state, now)
                if self.unhealthy(name, now):  # still reported down: the episode goes on, silently
                    self.group(name).observe(name, Decimal(1), now, transitions=0)
