"""The report's charts: matplotlib (no display, no pyplot, no network) to inline SVG.

Three charts in a drill's report, where a person would rather look than read: orders filled per
broker per second with the fault window shaded and detection, failover and the return to the primary
marked; queue depth and the oldest order's age; and total exposure on a scale that shows it, its
thresholds drawn only when they fall near the data (otherwise named as above the scale). The index of
reports has a fourth: each scenario's time to fail over, run after run. Each function takes plain
values and returns the SVG text (``<svg ...>...</svg>``), or None when the run recorded nothing to draw.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from tradeops.runtime.platform.clock import parse_iso
from tradeops.runtime.platform.errors import OperationFailed

try:
    import matplotlib
    import matplotlib.dates
    from matplotlib.axes import Axes

    # Figures are made without pyplot: no display, no global figure registry to close, and less import time
    # (pyplot loads the interactive backends). Saving as SVG draws with matplotlib's own SVG backend.
    from matplotlib.figure import Figure
except ModuleNotFoundError as exc:  # an extra (the runtime's image leaves it out): one line, not a traceback
    raise OperationFailed(f"charts need {exc.name}, not installed: pip install 'tradeops[reports]'") from None

__all__ = ["exposure_chart", "queue_chart", "throughput_chart", "trend_chart"]

# One style for every chart: the fonts are the system's (DejaVu ships with matplotlib), SVG text stays text.
matplotlib.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                            "axes.spines.right": False, "svg.hashsalt": "tradeops"})

COLOURS = {"primary": "#1f77b4", "secondary": "#ff7f0e", "fault": "#d62728", "detected": "#9467bd",
           "failed over": "#17becf", "back on the primary": "#2ca02c"}


def _figure() -> tuple[Figure, Axes]:
    # The constrained layout makes room for the legends outside the axes in one drawing pass.
    fig = Figure(figsize=(8, 3), layout="constrained")
    return fig, fig.add_subplot()


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _seconds(at: Any, origin: datetime) -> float | None:
    try:
        return (parse_iso(str(at)) - origin).total_seconds()
    except (ValueError, TypeError):
        return None


def _marks(ax: Any, origin: datetime, fault: Mapping[str, Any], marks: Mapping[str, Any]) -> None:
    start = _seconds(fault.get("started_at"), origin) if fault.get("started_at") else None
    healed = _seconds(fault.get("healed_at"), origin) if fault.get("healed_at") else None
    if start is not None:
        ax.axvspan(start, healed if healed is not None else ax.get_xlim()[1], color=COLOURS["fault"], alpha=0.12,
                   label=f"fault window ({fault.get('provider') or 'platform'})")
    for name, at in marks.items():
        x = _seconds(at, origin) if at else None
        if x is not None:
            ax.axvline(x, color=COLOURS.get(name, COLOURS["back on the primary"]), linestyle="--",
                       linewidth=1.2, label=name)


def throughput_chart(per_second: Sequence[Mapping[str, Any]], *, load_started: str, fault: Mapping[str, Any],
                     marks: Mapping[str, Any]) -> str | None:
    """Orders filled per second at each broker, the fault window shaded, detection and recovery marked."""
    if not per_second:
        return None
    origin = parse_iso(load_started)
    fig, ax = _figure()
    seconds = [float(row.get("second", i)) for i, row in enumerate(per_second)]
    for provider in ("primary", "secondary"):
        ax.plot(seconds, [float((row.get("filled") or {}).get(provider, 0)) for row in per_second],
                color=COLOURS[provider], label=f"filled at the {provider}", linewidth=1.6)
    ax.plot(seconds, [float(row.get("placed", 0)) for row in per_second], color="#7f7f7f", linestyle=":",
            label="placed")
    _marks(ax, origin, fault, marks)
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("orders per second")
    ax.set_title("Order throughput per broker")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _svg(fig)


def queue_chart(samples: Sequence[Mapping[str, Any]], *, load_started: str, fault: Mapping[str, Any]) -> str | None:
    """Messages in the order queue (visible and in flight) and the oldest pending order's age."""
    rows = [s for s in samples if isinstance(s.get("queue"), Mapping)]
    if not rows:
        return None
    origin = parse_iso(load_started)
    xs = [_seconds(s["at"], origin) or 0.0 for s in rows]
    depth = [float(((s["queue"].get("queue") or {}).get("visible") or 0)
                   + ((s["queue"].get("queue") or {}).get("in_flight") or 0)) for s in rows]
    age = [float(s.get("oldest_pending_seconds") or 0) for s in rows]
    fig, ax = _figure()
    ax.step(xs, depth, where="post", color=COLOURS["primary"], label="queue depth (messages)")
    ax.set_ylabel("messages")
    ax2 = ax.twinx()
    ax2.plot(xs, age, color=COLOURS["secondary"], label="oldest pending order (s)")
    ax2.set_ylabel("seconds")
    _marks(ax, origin, fault, {})
    ax.set_xlabel("seconds since the load started")
    ax.set_title("Queue depth and the oldest order's age")
    handles = ax.get_legend_handles_labels()
    more = ax2.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left", bbox_to_anchor=(1.08, 1.0), frameon=False)
    return _svg(fig)


def exposure_chart(samples: Sequence[Mapping[str, Any]], *, load_started: str, fault: Mapping[str, Any],
                   thresholds: Mapping[str, Decimal]) -> str | None:
    """Total exposure (GBP) over time, on a scale that shows it: a threshold is drawn when it is within twice the
    peak, and otherwise named in the title as above the scale (a £10,000 line over a £0 series hides the series)."""
    rows = [s for s in samples if s.get("exposure_gbp") is not None]
    if not rows:
        return None
    origin = parse_iso(load_started)
    xs = [_seconds(s["at"], origin) or 0.0 for s in rows]
    values = [Decimal(str(s["exposure_gbp"])) for s in rows]
    peak = max(values)
    reach = max(peak * 2, Decimal("1"))
    top = max(peak * Decimal("1.2"), Decimal("1"))
    fig, ax = _figure()
    ax.plot(xs, [float(v) for v in values], color=COLOURS["primary"], label="total exposure (GBP)")
    above: list[str] = []
    for (name, value), colour in zip(sorted(thresholds.items(), key=lambda kv: kv[1]), ("#bcbd22", "#d62728"),
                                     strict=False):
        if value <= reach:
            ax.axhline(float(value), color=colour, linestyle="-.", linewidth=1, label=f"{name} £{value:,.2f}")
            top = max(top, value * Decimal("1.1"))
        else:
            above.append(f"{name} £{value:,.2f}")
    ax.set_ylim(0, float(top))
    _marks(ax, origin, fault, {})
    ax.set_xlabel("seconds since the load started")
    ax.set_ylabel("GBP")
    title = f"Total exposure (peak £{peak:,.2f})"
    if above:
        title += f"; above this scale, not drawn: {', '.join(above)}"
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _svg(fig)


def trend_chart(trend: Mapping[str, Sequence[Mapping[str, Any]]]) -> str | None:
    """Time to fail over per scenario over time (one line per scenario)."""
    series = {name: [(parse_iso(str(p["at"])), float(p["time_to_fail_over"])) for p in points
                     if p.get("time_to_fail_over") is not None and p.get("at")]
              for name, points in trend.items()}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    fig, ax = _figure()
    for name, points in series.items():
        ax.plot([matplotlib.dates.date2num(p[0]) for p in points], [p[1] for p in points], marker="o", label=name)
    ax.xaxis_date()
    ax.set_ylabel("time to fail over (s)")
    ax.set_title("Time to fail over per scenario")
    fig.autofmt_xdate()
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _svg(fig)
