"""The live panel of ``tradeops drill run`` at a terminal: what the drill is doing and what the platform does.

One panel, redrawn in place twice a second (rich's ``Live``) from the drill's own records: the phase it is in
and about how long is left of it (the experiment's pauses, the drain limit), then from the metrics timeline it
samples once a second, the orders a second each broker fills, each broker's breaker (the worst any worker
reports, or ``suspect``), orders in doubt and pending, the exposure and the routing flags.

:class:`PanelState` holds the figures and words them (no terminal, no clock of its own: ``now`` is passed);
:class:`DrillPanel` draws it. The command shows it only at a terminal: piped, or with ``--json``, a drill
prints nothing but its result.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tradeops.experiments.drill import Progress

__all__ = ["DrillPanel", "PanelState"]

_RANK = {"closed": 0, "half_open": 1, "open": 2}


class PanelState:
    """The panel's figures, from the drill's progress and its timeline's rows."""

    def __init__(self, scenario: str, providers: Sequence[str] = ("primary", "secondary")) -> None:
        self.scenario = scenario
        self.providers = tuple(providers)
        self.phase = "starting"
        self.detail = ""
        self.phase_started: float | None = None
        self.phase_seconds: float | None = None
        self.rates: dict[str, float | None] = {p: None for p in self.providers}
        self.breakers: dict[str, str] = {}
        self.in_doubt: int | None = None
        self.pending: int | None = None
        self.exposure: str | None = None
        self.routing: Mapping[str, Any] = {}
        self._filled: dict[str, dict[str, int]] = {}
        self._sampled_at: float | None = None

    def on_progress(self, progress: Progress, now: float) -> None:
        self.phase, self.detail = progress.phase, progress.detail
        self.phase_started, self.phase_seconds = now, progress.seconds

    def on_sample(self, row: Mapping[str, Any], now: float) -> None:
        """One row of the drill's timeline (see ``_Sampler.sample``); a row with an error changes nothing."""
        if "error" in row:
            return
        workers: Mapping[str, Mapping[str, Any]] = row.get("workers") or {}
        filled = {w: {p: int((v.get("filled_at") or {}).get(p, 0)) for p in self.providers}
                  for w, v in workers.items()}
        if self._sampled_at is not None and now > self._sampled_at:
            elapsed = now - self._sampled_at
            for provider in self.providers:
                # A worker new since the last row (or restarted: its counters start again) adds nothing yet.
                delta = sum(max(0, counts[provider] - self._filled[w][provider])
                            for w, counts in filled.items() if w in self._filled)
                self.rates[provider] = delta / elapsed
        self._filled, self._sampled_at = filled, now
        worst: dict[str, str] = {}
        for worker in workers.values():
            for provider, state in (worker.get("breakers") or {}).items():
                if _RANK.get(state, 0) >= _RANK.get(worst.get(provider, "closed"), 0):
                    worst[provider] = state
        suspected = {p for worker in workers.values() for p in worker.get("suspect") or []}
        self.breakers = {**worst, **{p: "suspect" for p in suspected if worst.get(p, "closed") == "closed"}}
        self.in_doubt = row.get("in_doubt")
        self.pending = row.get("pending_orders")
        self.exposure = row.get("exposure_gbp")
        self.routing = row.get("flags") or {}

    def time_left(self, now: float) -> float | None:
        if self.phase_started is None or self.phase_seconds is None:
            return None
        return max(0.0, self.phase_started + self.phase_seconds - now)

    def rows(self, now: float) -> list[tuple[str, str]]:
        """``(label, value)`` lines, in the panel's order; ``-`` for what has not been seen yet."""
        left = self.time_left(now)
        rate = ", ".join(f"{p} {'-' if r is None else f'{r:.1f}'}" for p, r in self.rates.items())
        breakers = ", ".join(f"{p} {self.breakers.get(p, '-')}" for p in self.providers)
        routing = (f"{self.routing.get('mode')}, active {self.routing.get('active')}, processing "
                   f"{self.routing.get('processing')}") if self.routing else "-"
        return [
            ("phase", f"{self.phase}: {self.detail}" if self.detail else self.phase),
            ("time left", "-" if left is None else f"about {left:.0f} s"),
            ("orders/s filled", rate),
            ("breakers", breakers),
            ("in doubt", "-" if self.in_doubt is None else str(self.in_doubt)),
            ("pending", "-" if self.pending is None else str(self.pending)),
            ("exposure", "-" if self.exposure is None else f"£{self.exposure}"),
            ("routing", routing),
        ]


class DrillPanel:
    """The panel, live on ``console`` while the drill runs (a context manager); fed from the drill's threads."""

    def __init__(self, console: Console, scenario: str, *, clock: Any = None) -> None:
        import time

        from rich.live import Live  # only a drill at a terminal draws; `import tradeops.cli` stays light

        self.clock = clock or time.monotonic
        self.state = PanelState(scenario)
        self.lock = threading.Lock()
        self.live = Live(self, console=console, refresh_per_second=2, transient=True)

    def __enter__(self) -> DrillPanel:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()

    def progress(self, progress: Progress) -> None:
        with self.lock:
            self.state.on_progress(progress, self.clock())

    def sample(self, row: Mapping[str, Any]) -> None:
        with self.lock:
            self.state.on_sample(row, self.clock())

    def __rich__(self) -> RenderableType:
        with self.lock:
            rows = self.state.rows(self.clock())
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        for label, value in rows:
            table.add_row(label, Text(value))
        return Panel(Group(table), title=f"drill {self.state.scenario}", expand=False)
